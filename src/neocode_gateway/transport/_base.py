"""The one interface every listening transport implements.

The server sees only this: it asks a listener to :meth:`~Listener.open` the
endpoint (synchronously, before the event loop runs, so that every "cannot
listen" condition is reported as a clean error), to :meth:`~Listener.start`
accepting into asyncio protocols, to :meth:`~Listener.stop_accepting` at
shutdown, and to :meth:`~Listener.release` the endpoint at exit.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeAlias

from neocode_gateway.transport._peercred import PeerCredentials

if TYPE_CHECKING:  # asyncio is not imported to open an endpoint (the daemon's first ping)
    import asyncio
    import socket

ProtocolFactory: TypeAlias = "Callable[[], asyncio.Protocol]"


class Listener(abc.ABC):
    """A local endpoint that accepts connections."""

    #: The address as users write it (socket path or pipe name).
    address: str

    @abc.abstractmethod
    def open(self) -> None:
        """Claim the endpoint; raise :class:`~neocode_gateway.errors.TransportError` if unusable."""

    @abc.abstractmethod
    async def start(self, protocol_factory: ProtocolFactory) -> None:
        """Start accepting; each connection gets a protocol from ``protocol_factory``."""

    @abc.abstractmethod
    def stop_accepting(self) -> None:
        """Stop accepting new connections (existing ones are left alone)."""

    @abc.abstractmethod
    def release(self) -> None:
        """Give the endpoint back (remove our socket file, drop our lock). Idempotent."""

    async def adopt(
        self, sock: socket.socket, protocol_factory: ProtocolFactory
    ) -> asyncio.Protocol:
        """Serve ``sock``, a connection accepted before :meth:`start` (the daemon's early
        pings), like one accepted by the listener; return its protocol."""
        import asyncio

        loop = asyncio.get_running_loop()
        _, protocol = await loop.connect_accepted_socket(protocol_factory, sock)
        return protocol

    @abc.abstractmethod
    def peer_credentials(self, transport: asyncio.BaseTransport) -> PeerCredentials:
        """Who is on the other end of an accepted connection (before any byte is read).

        Raises :class:`~neocode_gateway.errors.PeerCredentialsUnavailable`.
        """

    def describe(self) -> dict[str, object]:
        """Facts about the endpoint for status output and logs."""
        return {"address": self.address}
