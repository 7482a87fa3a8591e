"""One page's WebSocket, bridged to its own gateway connection.

Why one connection per page: the gateway binds sessions per connection and
names the client that answers a permission by its ``hello``, so each page is a
client of the contract with its device's name, and one page leaving unbinds
nothing of another's. The bridge folds events into items
(:class:`~neocode_gateway.web._render.TranscriptView`) and sends them in
batches: what is queued when the page can take more goes in one message, so a
10,000-event replay arrives in a few large messages and a live run in one
message per event.

Nothing lost, nothing doubled: the page says the last ``seq`` it shows and
where the run it shows began (``anchor``); the bridge re-reads the log from the
anchor, rebuilds the items silently and sends only what changed after that
``seq``. When the gateway goes away the page is told (``gateway: down``), the
bridge connects again by itself and resumes from the last ``seq`` it folded.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any, Final

import msgspec
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from neocode_gateway.client import AsyncGatewayClient, EventsDropped
from neocode_gateway.errors import ClientError, ConnectionClosed
from neocode_gateway.web._actions import gateway_error, perform, session_meta
from neocode_gateway.web._auth import ApiError, allows
from neocode_gateway.web._devices import Device
from neocode_gateway.web._hub import Hub
from neocode_gateway.web._render import TranscriptView, permission_buttons

log = logging.getLogger("neocode_gateway.web")
#: Events folded into one message to the page, at most.
BATCH: Final = 2000
FIRST_BATCH: Final = 200
#: Sessions sent in the first message of the list (the rest follow in pages of 500).
FIRST_PAGE: Final = 100
MAX_SESSIONS: Final = 10_000
_PERMISSION_EVENTS: Final = frozenset({"permission_request", "permission_resolved"})
#: msgspec's encoder: several times faster than json.dumps on large item batches.
_encode: Final = msgspec.json.Encoder().encode


class PageBridge:
    """The server side of one open page."""

    def __init__(self, ws: WebSocket, device: Device, hub: Hub) -> None:
        self.ws = ws
        self.device = device
        self.hub = hub
        self.client: AsyncGatewayClient | None = None
        self._ready = asyncio.Event()
        self._send_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()
        self._follow: asyncio.Task[None] | None = None
        self.view: TranscriptView | None = None
        self._ended = False

    # -- sending ------------------------------------------------------------------------

    async def send(self, message: dict[str, Any]) -> None:
        await self.send_text(_encode(message).decode())

    async def send_text(self, text: str) -> None:
        """One message, already encoded (a broadcast is encoded once for every page)."""
        if self._ended or self.ws.application_state != WebSocketState.CONNECTED:
            return
        async with self._send_lock:
            with contextlib.suppress(RuntimeError, WebSocketDisconnect, OSError):
                await self.ws.send_text(text)

    async def send_pending(self, requests: list[dict[str, Any]]) -> None:
        can = allows(self.device.scope, "resolve")
        out = []
        for request in requests:
            tool = request.get("tool_call") or {}
            rid = str(request.get("request_id", ""))
            out.append(
                {
                    "request_id": rid,
                    "session_id": request.get("session_id"),
                    "title": str(tool.get("title") or "a tool call"),
                    "html": permission_buttons(rid, request.get("options")) if can else "",
                }
            )
        await self.send({"t": "pending", "requests": out})

    async def send_top_sessions(self, encoded: str) -> None:
        await self.send_text(encoded)

    async def end(self, reason: str) -> None:
        """Close the page for good (revoked device): code 4401, the page does not retry."""
        if self._ended:
            return
        self._ended = True
        with contextlib.suppress(RuntimeError, WebSocketDisconnect, OSError):
            await self.ws.close(code=4401, reason=reason[:120])

    # -- life ---------------------------------------------------------------------------

    async def serve(self) -> None:
        await self.ws.accept()
        self.hub.pages.add(self)
        self._spawn(self._gateway_loop())
        await self.send({"t": "hello", "device": self.device.name, "scope": self.device.scope})
        await self.send_pending(self.hub.pending)
        try:
            while not self._ended:
                text = await self.ws.receive_text()
                try:
                    message = json.loads(text)
                except ValueError:
                    message = None
                if isinstance(message, dict):
                    await self._handle(message)
                else:
                    await self.send({"t": "err", "status": 400, "message": "not a JSON object"})
        except (WebSocketDisconnect, RuntimeError, KeyError):
            pass
        finally:
            self.hub.pages.discard(self)
            for task in list(self._tasks):
                task.cancel()
            if self.client is not None:
                await self.client.close()

    def _spawn(self, coro: Any) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _gateway_loop(self) -> None:
        """Stay connected to the gateway; tell the page when it is down and when back."""
        delay = 0.05
        told_down = False
        while True:
            try:
                client = await self.hub.connect(self.device.name)
            except (ClientError, OSError):
                if not told_down:
                    told_down = True
                    await self.send({"t": "gateway", "up": False})
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)
                continue
            self.client, delay, told_down = client, 0.05, False
            self._ready.set()
            await self.send({"t": "gateway", "up": True})
            if self.view is not None:  # a session was open: resume after what it folded
                self._start_follow(self.view, self.view.last_seq, self.view.last_seq)
            async for _ in client.events():
                pass  # ends when the connection does
            self._ready.clear()
            self.client = None
            told_down = True
            await self.send({"t": "gateway", "up": False})

    async def _client(self) -> AsyncGatewayClient:
        try:
            async with asyncio.timeout(5.0):
                await self._ready.wait()
        except TimeoutError:
            raise ApiError(503, "the gateway is not reachable; reconnecting") from None
        assert self.client is not None
        return self.client

    # -- what the page asks -------------------------------------------------------------

    async def _handle(self, message: dict[str, Any]) -> None:
        op = message.get("op")
        ref = message.get("ref")
        try:
            if op == "list":
                self._spawn(self._send_list())
            elif op == "open":
                await self._open(message)
            elif op == "close":
                self._stop_follow()
                self.view = None
            elif op in ("resolve", "cancel", "run"):
                result = await perform(await self._client(), self.device, op, message)
                if op == "resolve":
                    self.hub.poke()
                await self.send({"t": "ack", "ref": ref, "op": op, "result": result})
            else:
                raise ApiError(400, f"unknown op {op!r}")
        except ApiError as exc:
            await self.send(
                {"t": "err", "ref": ref, "op": op, "status": exc.status, "message": exc.message}
            )

    async def _send_list(self) -> None:
        try:
            client = await self._client()
            cursor, sent, first = None, 0, True
            while sent < MAX_SESSIONS:
                page = await client.list_sessions(limit=FIRST_PAGE if first else 500, cursor=cursor)
                sessions = page.get("sessions", [])
                sent += len(sessions)
                cursor = page.get("next_cursor")
                await self.send(
                    {"t": "sessions", "sessions": sessions, "reset": first, "more": bool(cursor)}
                )
                first = False
                if not cursor:
                    return
        except (ClientError, ConnectionError) as exc:
            error = gateway_error(exc)
            await self.send(
                {"t": "err", "op": "list", "status": error.status, "message": error.message}
            )
        except ApiError as exc:
            await self.send(
                {"t": "err", "op": "list", "status": exc.status, "message": exc.message}
            )

    async def _open(self, message: dict[str, Any]) -> None:
        session_id = message.get("session")
        after = message.get("after_seq")
        anchor = message.get("from_seq")
        after = after if isinstance(after, int) and after > 0 else 0
        anchor = anchor if isinstance(anchor, int) and anchor > 0 else 0
        self._stop_follow()
        self.view = None
        meta = await session_meta(await self._client(), str(session_id or ""))
        await self.send({"t": "opened", "session": meta, "op": "open"})
        view = TranscriptView(
            meta.get("id", str(session_id)), can_approve=allows(self.device.scope, "resolve")
        )
        self.view = view
        bind_after = max(anchor - 1, 0) if after else 0
        self._start_follow(view, bind_after, after)

    def _stop_follow(self) -> None:
        if self._follow is not None:
            self._follow.cancel()
            self._follow = None

    def _start_follow(self, view: TranscriptView, bind_after: int, suppress: int) -> None:
        self._stop_follow()
        self._follow = self._spawn(self._follow_session(view, bind_after, suppress))

    async def _follow_session(self, view: TranscriptView, bind_after: int, suppress: int) -> None:
        client = self.client
        if client is None:
            return
        session_id = view.session_id
        while True:
            sub = client.subscribe(session_id)
            try:
                ack = await client.bind_stream(session_id, after_seq=bind_after)
                if ack.get("reset"):  # not this log's numbers: start over
                    await self.send({"t": "reset", "session": session_id})
                    view.clear()
                    bind_after = suppress = 0
                    continue
                await self.send(
                    {"t": "bound", "session": session_id, "last_seq": ack.get("last_seq", 0)}
                )
                limit = FIRST_BATCH  # the first screen first, then larger batches
                while True:
                    batch = [await sub.get()]
                    while len(batch) < limit and (more := sub.get_nowait()) is not None:
                        batch.append(more)
                    await self._fold(view, batch, suppress)
                    limit = BATCH
            except EventsDropped:
                bind_after = suppress = view.last_seq  # resume where the folding stopped
            except (ConnectionClosed, StopAsyncIteration):
                return  # the gateway loop resumes once connected again
            except ClientError as exc:
                error = gateway_error(exc)
                await self.send(
                    {"t": "err", "op": "open", "status": error.status, "message": error.message}
                )
                return
            finally:
                client.unsubscribe(sub)

    async def _fold(self, view: TranscriptView, batch: list[Any], suppress: int) -> None:
        items: dict[str, dict[str, Any]] = {}
        poke = False
        for event in batch:
            poke = poke or event.event_type in _PERMISSION_EVENTS
            for item in view.feed(event):
                if item["seq"] > suppress:
                    items[item["id"]] = item  # an update keeps the item's first place
        if poke:
            self.hub.poke()
        if items:
            await self.send(
                {
                    "t": "items",
                    "session": view.session_id,
                    "items": list(items.values()),
                    "last_seq": view.last_seq,
                    "anchor": view.anchor,
                    "active": view.active_run,
                }
            )
