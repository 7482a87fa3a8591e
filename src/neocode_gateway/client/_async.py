"""The asyncio client: one connection, many concurrent requests, typed errors.

Requests are written as soon as they are made (pipelining) and each waits on
its own future; :mod:`neocode_gateway.client._protocol` resolves the futures
as the responses arrive. The blocking :class:`~neocode_gateway.client.GatewayClient`
drives this same class, so there is one implementation of the client.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import sys
import time
from collections.abc import AsyncIterator, Callable, Mapping
from types import TracebackType
from typing import Any, Final, Self, cast

import msgspec

from neocode_gateway.client._protocol import ClientProtocol, RawResponse
from neocode_gateway.errors import (
    ClientError,
    ConnectionClosed,
    ErrorFrameReceived,
    GatewayUnreachable,
    PeerCredentialsUnavailable,
    ProtocolViolation,
    RequestTimeout,
    TransportError,
)
from neocode_gateway.protocol import DEFAULT_MAX_FRAME_BYTES, Frame, encode_frame
from neocode_gateway.transport import (
    PeerCredentials,
    default_address,
    is_pipe_address,
    read_peer_credentials,
)

log = logging.getLogger("neocode_gateway.client")

#: Seconds to wait for the connection to be established.
DEFAULT_CONNECT_TIMEOUT: Final = 3.0
#: Seconds to wait for the response to one request.
DEFAULT_REQUEST_TIMEOUT: Final = 30.0
#: Unsolicited frames kept for :meth:`AsyncGatewayClient.events` before the oldest are dropped.
DEFAULT_MAX_QUEUED_EVENTS: Final = 1024
#: Seconds ``close()`` lets the transport flush before aborting it.
CLOSE_GRACE: Final = 1.0

_ids: Final = itertools.count(1)


def new_request_id() -> str:
    """A request id unique within this process: ``c<pid>-<counter>``."""
    return f"c{os.getpid()}-{next(_ids)}"


def os_reason(exc: OSError) -> str:
    """The OS reason of a failed connect, as the error messages print it."""
    if exc.errno:
        return os.strerror(exc.errno).lower()
    return str(exc) or type(exc).__name__


def _check_timeout(name: str, value: float | None, *, allow_none: bool) -> None:
    if value is None and allow_none:
        return
    if value is None or not value > 0:
        raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")


def _line_key(line: bytes) -> str | None:
    """The ``request_id`` the gateway will echo for a raw request line, if any.

    The gateway echoes a non-empty string ``request_id`` whenever the line is
    a JSON object; for anything else its answer carries no id and is matched
    by position.
    """
    try:
        value = msgspec.json.decode(line)
    except (msgspec.DecodeError, RecursionError):
        return None
    if isinstance(value, dict):
        request_id = value.get("request_id")
        if isinstance(request_id, str) and request_id:
            return request_id
    return None


def raise_for_error(frame: Frame) -> Frame:
    """Raise :class:`ErrorFrameReceived` if ``frame`` is an error frame, else return it."""
    if frame.type == "error" and frame.error is not None:
        raise ErrorFrameReceived(
            frame.error.code, frame.error.message, action=frame.action, request_id=frame.request_id
        )
    return frame


async def _dial(
    address: str, factory: Callable[[], ClientProtocol], timeout: float
) -> tuple[asyncio.BaseTransport, ClientProtocol]:
    """Open the connection: a named pipe on Windows, a Unix socket elsewhere."""
    if is_pipe_address(address):
        if sys.platform == "win32":  # pragma: no cover - exercised by the Windows CI only
            from neocode_gateway.transport._windows import connect_pipe

            transport, protocol = await connect_pipe(address, factory, timeout=timeout)
            return transport, cast(ClientProtocol, protocol)
        raise GatewayUnreachable(address, "named pipes exist only on Windows")
    loop = asyncio.get_running_loop()
    try:
        return await loop.create_unix_connection(factory, address)
    except NotImplementedError:  # pragma: no cover - Windows event loops
        raise GatewayUnreachable(
            address, "this platform's event loop has no Unix sockets; use a named pipe"
        ) from None


class AsyncGatewayClient:
    """An asyncio client of the gateway, for one connection.

    Use it as ``async with AsyncGatewayClient() as client:``. Any number of
    tasks may call :meth:`request` at the same time on one client: each
    request gets a ``request_id`` (generated when absent) and the response
    that echoes it. ``connect_timeout`` and ``request_timeout`` are seconds
    and may be changed at any time (``request_timeout=None`` waits forever).

    Frames the gateway sends that answer no request (events) go to
    ``on_event`` if given, else to the :meth:`events` iterator, which keeps
    the latest ``max_queued_events`` of them.
    """

    def __init__(
        self,
        address: str | None = None,
        *,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        request_timeout: float | None = DEFAULT_REQUEST_TIMEOUT,
        on_event: Callable[[Frame], None] | None = None,
        max_queued_events: int = DEFAULT_MAX_QUEUED_EVENTS,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
    ) -> None:
        _check_timeout("connect_timeout", connect_timeout, allow_none=False)
        _check_timeout("request_timeout", request_timeout, allow_none=True)
        if max_queued_events < 1:
            raise ValueError(f"max_queued_events must be at least 1, got {max_queued_events}")
        self.address: str = address or default_address()
        self.connect_timeout = connect_timeout
        self.request_timeout = request_timeout
        self.on_event = on_event
        self.max_queued_events = max_queued_events
        self.max_frame_bytes = max_frame_bytes
        #: Unsolicited frames dropped because nobody read :meth:`events` in time.
        self.dropped_events = 0
        self._protocol: ClientProtocol | None = None
        self._events: asyncio.Queue[Frame | None] = asyncio.Queue()
        self._peer: PeerCredentials | None = None

    def __repr__(self) -> str:
        state = "connected" if self.connected else "not connected"
        return f"<{type(self).__name__} {self.address} {state}>"

    # -- connection ---------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """Whether the connection is open and requests can be made."""
        return self._protocol is not None and self._protocol.is_open

    @property
    def peer(self) -> PeerCredentials | None:
        """Who owns the gateway's end of the connection (pid, uid), where the OS tells."""
        return self._peer

    async def connect(self) -> Self:
        """Connect to :attr:`address`; a no-op if already connected.

        Raises :class:`GatewayUnreachable` (with the OS reason) when nothing
        accepts connections there, :class:`RequestTimeout` after
        :attr:`connect_timeout` seconds.
        """
        if self.connected:
            return self
        self._events = asyncio.Queue()
        self._peer = None

        def factory() -> ClientProtocol:
            return ClientProtocol(
                self.address,
                self._unsolicited,
                on_closed=self._stream_ended,
                max_frame_bytes=self.max_frame_bytes,
            )

        timeout = self.connect_timeout
        try:
            async with asyncio.timeout(timeout):
                transport, protocol = await _dial(self.address, factory, timeout)
        except ClientError:
            raise
        except TransportError as exc:  # pragma: no cover - a malformed pipe name, on Windows
            raise GatewayUnreachable(self.address, str(exc)) from None
        except TimeoutError:
            raise RequestTimeout(
                f"could not connect to the gateway at {self.address} within {timeout:g} s"
            ) from None
        except OSError as exc:
            raise GatewayUnreachable(self.address, os_reason(exc)) from None
        self._protocol = protocol
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                self._peer = read_peer_credentials(sock)
            except (PeerCredentialsUnavailable, OSError):
                self._peer = None
        return self

    async def close(self) -> None:
        """Close the connection; requests still waiting fail with :class:`ConnectionClosed`."""
        protocol = self._protocol
        if protocol is None:
            return
        protocol.close("the client closed the connection")
        await protocol.wait_lost(CLOSE_GRACE)

    async def __aenter__(self) -> Self:
        return await self.connect()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def _open_protocol(self) -> ClientProtocol:
        protocol = self._protocol
        if protocol is None:
            raise RuntimeError(
                "the client is not connected: use 'async with AsyncGatewayClient()' "
                "or 'await client.connect()' first"
            )
        if not protocol.is_open:
            # No reason yet: the transport saw a write error (the gateway hung up) and
            # has not called connection_lost yet.
            reason = protocol.close_reason or "the gateway closed the connection"
            raise ConnectionClosed(f"{reason} ({self.address})")
        return protocol

    # -- requests -----------------------------------------------------------------------

    def prepare(self, frame: Frame | Mapping[str, Any]) -> Frame:
        """The request as it will be sent: a :class:`Frame`, ``type`` and ``request_id`` filled.

        A mapping is converted with the frame's own types (``ValueError`` if a
        field has the wrong type); ``type`` defaults to ``"request"`` and a
        missing or empty ``request_id`` is generated. ``frame`` is not modified.
        """
        if isinstance(frame, Frame):
            prepared = frame
        elif isinstance(frame, Mapping):
            try:
                prepared = msgspec.convert(dict(frame), Frame)
            except msgspec.ValidationError as exc:
                raise ValueError(f"not a valid frame: {exc}") from None
        else:
            raise TypeError(f"a frame is a Frame or a mapping, not {type(frame).__name__}")
        changes: dict[str, str] = {}
        if not prepared.type:
            changes["type"] = "request"
        if not prepared.request_id:
            changes["request_id"] = new_request_id()
        return msgspec.structs.replace(prepared, **changes) if changes else prepared

    async def request(
        self,
        frame: Frame | Mapping[str, Any],
        *,
        timeout: float | None = None,
        raise_on_error: bool = True,
    ) -> Frame:
        """Send one request and return the response frame that answers it.

        ``timeout`` overrides :attr:`request_timeout` for this call. An error
        frame raises :class:`ErrorFrameReceived` unless ``raise_on_error`` is
        false, in which case it is returned like any other response.
        """
        prepared = self.prepare(frame)
        response = await self._exchange(encode_frame(prepared), prepared.request_id, timeout)
        if raise_on_error:
            raise_for_error(response.frame)
        return response.frame

    async def request_line(self, line: bytes | str, *, timeout: float | None = None) -> RawResponse:
        """Send one raw request line exactly as given; return the response, error or not.

        For tools that relay frames they did not build (``neocode-gateway
        call --frame``): nothing is checked or filled in, so the gateway's own
        validation answers. A trailing newline is optional; a line that is
        blank or holds a newline inside is a ``ValueError`` (the gateway would
        answer it with no response, or with two).
        """
        data = line.encode() if isinstance(line, str) else bytes(line)
        if data.endswith(b"\n"):
            data = data[:-1]
        if b"\n" in data:
            raise ValueError("a request line must not contain a newline")
        if not data.strip(b" \t\r"):
            raise ValueError("a blank line is not a request (the gateway does not answer it)")
        return await self._exchange(data + b"\n", _line_key(data), timeout)

    async def ping(self, *, timeout: float | None = None) -> float:
        """Ping the gateway; return the round-trip time in seconds."""
        prepared = self.prepare(Frame(type="request", action="ping"))
        data = encode_frame(prepared)
        start = time.perf_counter()
        response = await self._exchange(data, prepared.request_id, timeout)
        elapsed = time.perf_counter() - start
        reply = raise_for_error(response.frame)
        if reply.type != "ack":
            raise ProtocolViolation(
                f"the gateway answered ping with a {reply.type} frame: {response.line!r}"
            )
        return elapsed

    async def _exchange(self, data: bytes, key: str | None, timeout: float | None) -> RawResponse:
        protocol = self._open_protocol()
        wait = self.request_timeout if timeout is None else timeout
        _check_timeout("timeout", wait, allow_none=True)
        future: asyncio.Future[RawResponse] = asyncio.get_running_loop().create_future()
        protocol.pending.add(key, future)
        protocol.write(data)
        try:
            async with asyncio.timeout(wait):
                await protocol.drain()
                return await future
        except TimeoutError:
            which = f" to request {key!r}" if key else ""
            raise RequestTimeout(
                f"no response{which} from the gateway at {self.address} within {wait:g} s"
            ) from None

    # -- unsolicited frames -------------------------------------------------------------

    def _unsolicited(self, frame: Frame) -> None:
        if self.on_event is not None:
            try:
                self.on_event(frame)
            except Exception:
                log.exception("the on_event callback failed")
            return
        queue = self._events
        if queue.qsize() >= self.max_queued_events:
            queue.get_nowait()
            self.dropped_events += 1
        queue.put_nowait(frame)

    def _stream_ended(self) -> None:
        self._events.put_nowait(None)

    async def events(self) -> AsyncIterator[Frame]:
        """Frames that answer no request (events), as they arrive; ends when the connection does."""
        queue = self._events
        while True:
            frame = await queue.get()
            if frame is None:
                queue.put_nowait(None)  # every other iterator ends too
                return
            yield frame

    def take_events(self) -> list[Frame]:
        """The unsolicited frames received so far, without waiting."""
        queue = self._events
        frames: list[Frame] = []
        ended = False
        while not queue.empty():
            frame = queue.get_nowait()
            if frame is None:
                ended = True
            else:
                frames.append(frame)
        if ended:
            queue.put_nowait(None)
        return frames
