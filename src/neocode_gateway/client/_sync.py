"""The blocking client, for scripts: the asyncio client driven by a private event loop.

Wrapping :class:`~neocode_gateway.client.AsyncGatewayClient` (instead of a
second, socket-based implementation) keeps one definition of framing,
matching, timeouts and errors. The private loop runs in a daemon thread of
its own for the life of the connection, so the connection keeps reading
between calls: a bound blocking client is never cut as a slow consumer while
its caller is busy (its events wait in bounded queues; see
:class:`~neocode_gateway.client.EventsDropped`).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any, Self, TypeVar

from neocode_gateway.client._async import AsyncGatewayClient, RunStream
from neocode_gateway.client._link import DEFAULT_MAX_RESPONSE_BYTES
from neocode_gateway.client._local import DEFAULT_CONNECT_TIMEOUT, DEFAULT_REQUEST_TIMEOUT
from neocode_gateway.client._protocol import RawResponse
from neocode_gateway.protocol import Event, Frame, InputPart
from neocode_gateway.transport import PeerCredentials

_T = TypeVar("_T")


class GatewayClient:
    """A blocking client of the gateway, for one connection.

    Use it as ``with GatewayClient() as client: client.ping()``. Same
    arguments, timeouts and exceptions as
    :class:`~neocode_gateway.client.AsyncGatewayClient`; one thread at a time.
    The connection is read by a private event loop in a daemon thread, also
    between calls; events go to :meth:`session_events`, run streams, or
    :meth:`take_events`.
    """

    def __init__(
        self,
        address: str | None = None,
        *,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        request_timeout: float | None = DEFAULT_REQUEST_TIMEOUT,
        max_frame_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None,
        trust_any_uid: bool = False,
        client_name: str | None = None,
        device: str | None = None,
    ) -> None:
        self._client = AsyncGatewayClient(
            address,
            connect_timeout=connect_timeout,
            request_timeout=request_timeout,
            max_frame_bytes=max_frame_bytes,
            trust_any_uid=trust_any_uid,
            client_name=client_name,
            device=device,
        )
        self._loop_factory = loop_factory
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

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
        return self._loop is not None and self._client.connected

    @property
    def peer(self) -> PeerCredentials | None:
        """Who owns the gateway's end of the connection, where the OS tells."""
        return self._client.peer

    def connect(self) -> Self:
        """Connect (see :meth:`AsyncGatewayClient.connect`); a no-op if connected."""
        if self._loop is None:
            self._start_loop()
        try:
            self._run(self._client.connect())
        except BaseException:
            self._stop_loop()
            raise
        return self

    def close(self) -> None:
        """Close the connection and the private event loop. Idempotent."""
        if self._loop is None:
            return
        try:
            self._run(self._client.close())
        finally:
            self._stop_loop()

    def _start_loop(self) -> None:
        loop = (self._loop_factory or asyncio.new_event_loop)()
        ready = threading.Event()

        def main() -> None:
            asyncio.set_event_loop(loop)
            loop.call_soon(ready.set)
            loop.run_forever()

        thread = threading.Thread(target=main, name="neocode-gateway-client", daemon=True)
        thread.start()
        ready.wait()
        self._loop, self._thread = loop, thread

    def _stop_loop(self) -> None:
        loop, thread = self._loop, self._thread
        self._loop = self._thread = None
        if loop is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        if thread is not None:
            thread.join(5)
        if not loop.is_running():
            loop.close()

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
        loop = self._loop
        if loop is None:
            coro.close()
            raise RuntimeError(
                "the client is not connected: use 'with GatewayClient()' or call connect() first"
            )
        future = asyncio.run_coroutine_threadsafe(coro, loop)
        try:
            return future.result()
        except BaseException:
            future.cancel()
            raise

    def _iterate(self, iterator: AsyncIterator[_T]) -> Iterator[_T]:
        try:
            while True:
                try:
                    yield self._run(_anext(iterator))
                except StopAsyncIteration:
                    return
        finally:
            aclose = getattr(iterator, "aclose", None)
            if aclose is not None and self._loop is not None:
                self._run(aclose())

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

    # -- contract v1.1 ----------------------------------------------------------------------

    def run(
        self,
        input_text: str | None = None,
        *,
        input_parts: Sequence[InputPart | Mapping[str, Any]] | None = None,
        session_id: str | None = None,
        workdir: str | None = None,
        agent: str | None = None,
        mode: str | None = None,
        run_id: str | None = None,
        request_id: str | None = None,
    ) -> BlockingRunStream:
        """Start a run; iterate the result for its events (see :meth:`AsyncGatewayClient.run`)."""

        async def start() -> RunStream:
            # In the client's loop thread: the request is sent and its events collected there.
            return await self._client.run(
                input_text,
                input_parts=input_parts,
                session_id=session_id,
                workdir=workdir,
                agent=agent,
                mode=mode,
                run_id=run_id,
                request_id=request_id,
            )

        return BlockingRunStream(self, self._run(start()))

    def cancel(self, run_id: str | None = None, *, session_id: str | None = None) -> dict[str, Any]:
        """Cancel a run; the ack's payload."""
        return self._run(self._client.cancel(run_id, session_id=session_id))

    def resolve_permission(
        self, permission_id: str, decision: str, *, option_id: str | None = None
    ) -> dict[str, Any]:
        """Answer a permission request."""
        return self._run(
            self._client.resolve_permission(permission_id, decision, option_id=option_id)
        )

    def list_sessions(
        self, *, limit: int | None = None, cursor: str | None = None
    ) -> dict[str, Any]:
        """One page of sessions, newest first."""
        return self._run(self._client.list_sessions(limit=limit, cursor=cursor))

    def iter_sessions(self, *, page_size: int = 50) -> Iterator[dict[str, Any]]:
        """Every session, newest first."""
        return self._iterate(self._client.iter_sessions(page_size=page_size))

    def load_session(self, session_id: str) -> dict[str, Any]:
        """A session and its transcript."""
        return self._run(self._client.load_session(session_id))

    def create_session(self, **options: Any) -> dict[str, Any]:
        """A session without a run (``workdir``, ``agent``, ``mode``, ``title``,
        ``mcp_servers``)."""
        return self._run(self._client.create_session(**options))

    def delete_session(self, session_id: str) -> dict[str, Any]:
        """Delete a session and its log."""
        return self._run(self._client.delete_session(session_id))

    def compact(self, session_id: str) -> dict[str, Any]:
        """Compact a session's context."""
        return self._run(self._client.compact(session_id))

    def status(self) -> dict[str, Any]:
        """What the gateway is doing."""
        return self._run(self._client.status())

    def bind_stream(
        self, session_id: str, *, after_seq: int | None = None, run_id: str | None = None
    ) -> dict[str, Any]:
        """Receive a session's events on this connection."""
        return self._run(self._client.bind_stream(session_id, after_seq=after_seq, run_id=run_id))

    def unbind_stream(self, session_id: str) -> None:
        """Stop receiving a session's events."""
        self._run(self._client.unbind_stream(session_id))

    def session_events(
        self,
        session_id: str,
        *,
        after_seq: int | None = None,
        run_id: str | None = None,
        follow: bool = True,
        reconnect: bool = False,
        reconnect_timeout: float = 30.0,
    ) -> Iterator[Event]:
        """A session's events, each once (see :meth:`AsyncGatewayClient.session_events`)."""
        return self._iterate(
            self._client.session_events(
                session_id,
                after_seq=after_seq,
                run_id=run_id,
                follow=follow,
                reconnect=reconnect,
                reconnect_timeout=reconnect_timeout,
            )
        )


async def _anext(iterator: AsyncIterator[_T]) -> _T:
    return await iterator.__anext__()


class BlockingRunStream:
    """A run's events for blocking code: iterate it; ``result()`` waits for the end."""

    def __init__(self, client: GatewayClient, stream: RunStream) -> None:
        self._client = client
        self._stream = stream
        assert stream.ack is not None  # accepted
        self.ack: Frame = stream.ack
        self.session_id = stream.session_id
        self.run_id = stream.run_id

    @property
    def terminal(self) -> Event | None:
        """The run's terminal event, once seen."""
        return self._stream.terminal

    def __iter__(self) -> Iterator[Event]:
        return self._client._iterate(self._stream)

    def result(self) -> Event:
        """Consume the run to its end; return its terminal event."""
        return self._client._run(self._stream.result())

    def cancel(self) -> dict[str, Any]:
        """Cancel this run."""
        return self._client._run(self._stream.cancel())
