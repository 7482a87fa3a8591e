"""What the pages of one web process share: gateway connections, pollers, the device watch.

Why pollers: the contract pushes events only for sessions a connection is bound
to, and has no stream of "a permission is waiting somewhere" or "the session
list changed". One service connection asks ``list_pending`` (every 0.5 s, and
at once when a page sees a permission event or answers one) and the first page
of ``list_sessions`` (every second), and tells every page what changed. The
device watch closes, within a quarter of a second, the pages of a device that
was revoked, expired or paired again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any, Final

import msgspec

from neocode_gateway.client import AsyncGatewayClient
from neocode_gateway.errors import ClientError
from neocode_gateway.protocol import Frame
from neocode_gateway.web._devices import DeviceStore

if TYPE_CHECKING:
    from neocode_gateway.web._bridge import PageBridge

log = logging.getLogger("neocode_gateway.web")
PENDING_EVERY: Final = 0.5
SESSIONS_EVERY: Final = 1.0
DEVICES_EVERY: Final = 0.25


def _ignore(frame: Frame) -> None:
    """Events of sessions no page follows on this connection (a run's own binding)."""


class Hub:
    """The shared half of the web process; ``start()`` once the loop runs."""

    def __init__(self, address: str, store: DeviceStore) -> None:
        self.address = address
        self.store = store
        self.pages: set[PageBridge] = set()
        self.pending: list[dict[str, Any]] = []
        self.top_sessions: list[dict[str, Any]] = []
        self.gateway_up = False
        self._poke = asyncio.Event()
        self._shared: dict[str, AsyncGatewayClient] = {}
        self._shared_lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []

    async def connect(self, device: str | None) -> AsyncGatewayClient:
        """A new connection that says ``hello`` as ``web`` and this device (for the audit)."""
        client = AsyncGatewayClient(
            self.address,
            connect_timeout=3.0,
            request_timeout=30.0,
            on_event=_ignore,
            client_name="web",
            device=device,
        )
        return await client.connect()

    async def shared(self, device: str) -> AsyncGatewayClient:
        """The connection the JSON API uses for this device (made on first use, or again)."""
        async with self._shared_lock:
            client = self._shared.get(device)
            if client is None or not client.connected:
                client = await self.connect(device)
                self._shared[device] = client
            return client

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._poll(), name="web-poll"),
            asyncio.create_task(self._watch_devices(), name="web-devices"),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for client in self._shared.values():
            await client.close()

    def poke(self) -> None:
        """Ask ``list_pending`` now (a permission was asked or answered)."""
        self._poke.set()

    async def _poll(self) -> None:
        client: AsyncGatewayClient | None = None
        loop = asyncio.get_running_loop()
        next_sessions = 0.0
        delay = 0.05
        while True:
            try:
                if client is None or not client.connected:
                    client = await self.connect(None)
                    self._set_up(True)
                    delay = 0.05
                reply = await client.request({"action": "list_pending"})
                payload = reply.payload if isinstance(reply.payload, dict) else {}
                pending = list(payload.get("requests") or [])
                if _ids(pending) != _ids(self.pending):
                    self.pending = pending
                    await self._each(lambda page, p=pending: page.send_pending(p))
                if loop.time() >= next_sessions:
                    next_sessions = loop.time() + SESSIONS_EVERY
                    top = (await client.list_sessions(limit=50)).get("sessions", [])
                    if top != self.top_sessions:
                        self.top_sessions = top
                        encoded = msgspec.json.encode(
                            {"t": "sessions", "sessions": top, "merge": True}
                        ).decode()
                        await self._each(lambda page, e=encoded: page.send_top_sessions(e))
            except (ClientError, ConnectionError, OSError) as exc:
                log.debug("poll: %s", exc)
                client = None
                self._set_up(False)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)
                continue
            self._poke.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._poke.wait(), PENDING_EVERY)

    def _set_up(self, up: bool) -> None:
        self.gateway_up = up

    async def _each(self, send: Any) -> None:
        for page in list(self.pages):
            with contextlib.suppress(Exception):
                await send(page)

    async def _watch_devices(self) -> None:
        while True:
            await asyncio.sleep(DEVICES_EVERY)
            try:
                live = self.store.live_hashes()
            except ValueError as exc:
                log.warning("devices file: %s", exc)
                continue
            for page in list(self.pages):
                if live.get(page.device.name) != page.device.token_hash:
                    await page.end("this device was revoked or its pairing expired")


def _ids(requests: list[dict[str, Any]]) -> list[str]:
    return [str(r.get("request_id")) for r in requests]
