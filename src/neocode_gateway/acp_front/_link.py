"""The front door's one connection to the gateway: connect, start the daemon, reconnect.

The front door is a client of the contract like any other front-end. It
holds one :class:`~neocode_gateway.client.AsyncGatewayClient`; when none
answers at the address it starts the daemon itself (detached, in its own
session, logging to its own ``gateway.log``) so that an editor works on a
machine where nobody ran ``neocode-gateway`` first. When the connection is
lost (the gateway was stopped or killed) the next request connects again,
starting the daemon again if need be: the editor sees one failed request,
never a dead agent.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

from neocode_gateway.client import AsyncGatewayClient, client_default_address
from neocode_gateway.client._autostart import GatewayDown, ensure_gateway
from neocode_gateway.errors import GatewayUnreachable, RequestTimeout

log = logging.getLogger("neocode_gateway.acp_front")

__all__ = ["GatewayDown", "GatewayLink"]


class GatewayLink:
    """A connected client, made on demand; ``note`` writes a line for the user (stderr)."""

    def __init__(
        self,
        address: str | None = None,
        *,
        autostart: bool = True,
        daemon_args: Sequence[str] = (),
        note: Callable[[str], None] | None = None,
    ) -> None:
        self.address = address or client_default_address()
        self.autostart = autostart
        self.daemon_args = list(daemon_args)
        self.note = note or (lambda text: None)
        self._client: AsyncGatewayClient | None = None
        self._lock = asyncio.Lock()
        #: Bumped at every new connection: followers of an older one must bind again.
        self.generation = 0
        self.started_pid: int | None = None

    @property
    def connected(self) -> bool:
        return self._client is not None and self._client.connected

    async def client(self) -> AsyncGatewayClient:
        """The connected client; connects (and starts the daemon) when there is none."""
        client = self._client
        if client is not None and client.connected:
            return client
        async with self._lock:
            client = self._client
            if client is not None and client.connected:
                return client
            if client is not None:
                await client.close()
            self._client = await self._connect()
            self.generation += 1
            return self._client

    async def _connect(self) -> AsyncGatewayClient:
        client = AsyncGatewayClient(self.address, request_timeout=30.0, client_name="acp")
        try:
            return await client.connect()
        except (GatewayUnreachable, RequestTimeout) as exc:
            if not self.autostart:
                raise GatewayDown(
                    f"no gateway answers at {self.address} ({exc}); start one with: neocode-gateway"
                ) from None
        self.started_pid = await ensure_gateway(
            self.address,
            daemon_args=self.daemon_args,
            note=lambda text: self.note(f"neocode-gateway acp: {text}"),
        )
        client = AsyncGatewayClient(self.address, request_timeout=30.0, client_name="acp")
        return await client.connect()

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None
