"""The blocking client, for scripts: the asyncio client driven by a private event loop.

Wrapping :class:`~neocode_gateway.client.AsyncGatewayClient` (instead of a
second, socket-based implementation) keeps one definition of framing,
matching, timeouts and errors. The private ``asyncio.Runner`` owns its loop,
so this class works in any thread that is not already running an event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Mapping
from types import TracebackType
from typing import Any, Self, TypeVar

from neocode_gateway.client._async import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_REQUEST_TIMEOUT,
    AsyncGatewayClient,
)
from neocode_gateway.client._protocol import RawResponse
from neocode_gateway.protocol import DEFAULT_MAX_FRAME_BYTES, Frame
from neocode_gateway.transport import PeerCredentials

_T = TypeVar("_T")


class GatewayClient:
    """A blocking client of the gateway, for one connection.

    Use it as ``with GatewayClient() as client: client.ping()``. Same
    arguments, timeouts and exceptions as
    :class:`~neocode_gateway.client.AsyncGatewayClient`; one thread at a time.
    Events the gateway pushes are only read while a call runs; collect them
    with :meth:`take_events`.
    """

    def __init__(
        self,
        address: str | None = None,
        *,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        request_timeout: float | None = DEFAULT_REQUEST_TIMEOUT,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
        loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None,
    ) -> None:
        self._client = AsyncGatewayClient(
            address,
            connect_timeout=connect_timeout,
            request_timeout=request_timeout,
            max_frame_bytes=max_frame_bytes,
        )
        self._loop_factory = loop_factory
        self._runner: asyncio.Runner | None = None

    def __repr__(self) -> str:
        state = "connected" if self.connected else "not connected"
        return f"<{type(self).__name__} {self.address} {state}>"

    @property
    def address(self) -> str:
        """The socket path or pipe name this client connects to."""
        return self._client.address

    @property
    def connect_timeout(self) -> float:
        """Seconds to wait for the connection."""
        return self._client.connect_timeout

    @connect_timeout.setter
    def connect_timeout(self, value: float) -> None:
        self._client.connect_timeout = value

    @property
    def request_timeout(self) -> float | None:
        """Seconds to wait for each response (None: forever)."""
        return self._client.request_timeout

    @request_timeout.setter
    def request_timeout(self, value: float | None) -> None:
        self._client.request_timeout = value

    @property
    def connected(self) -> bool:
        """Whether the connection is open."""
        return self._runner is not None and self._client.connected

    @property
    def peer(self) -> PeerCredentials | None:
        """Who owns the gateway's end of the connection, where the OS tells."""
        return self._client.peer

    def connect(self) -> Self:
        """Connect (see :meth:`AsyncGatewayClient.connect`); a no-op if connected."""
        if self._runner is None:
            self._runner = asyncio.Runner(loop_factory=self._loop_factory)
        try:
            self._runner.run(self._client.connect())
        except BaseException:
            self._runner.close()
            self._runner = None
            raise
        return self

    def close(self) -> None:
        """Close the connection and the private event loop. Idempotent."""
        runner = self._runner
        if runner is None:
            return
        self._runner = None
        try:
            runner.run(self._client.close())
        finally:
            runner.close()

    def __enter__(self) -> Self:
        return self.connect()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _run(self, coro: Coroutine[Any, Any, _T]) -> _T:
        if self._runner is None:
            coro.close()
            raise RuntimeError(
                "the client is not connected: use 'with GatewayClient()' or call connect() first"
            )
        return self._runner.run(coro)

    def prepare(self, frame: Frame | Mapping[str, Any]) -> Frame:
        """The request as it will be sent (see :meth:`AsyncGatewayClient.prepare`)."""
        return self._client.prepare(frame)

    def ping(self, *, timeout: float | None = None) -> float:
        """Ping the gateway; return the round-trip time in seconds."""
        return self._run(self._client.ping(timeout=timeout))

    def request(
        self,
        frame: Frame | Mapping[str, Any],
        *,
        timeout: float | None = None,
        raise_on_error: bool = True,
    ) -> Frame:
        """Send one request and return its response (see :meth:`AsyncGatewayClient.request`)."""
        return self._run(
            self._client.request(frame, timeout=timeout, raise_on_error=raise_on_error)
        )

    def request_line(self, line: bytes | str, *, timeout: float | None = None) -> RawResponse:
        """Send one raw line; return the response (see :meth:`AsyncGatewayClient.request_line`)."""
        return self._run(self._client.request_line(line, timeout=timeout))

    def take_events(self) -> list[Frame]:
        """Unsolicited frames (events) received during earlier calls."""
        return self._client.take_events()
