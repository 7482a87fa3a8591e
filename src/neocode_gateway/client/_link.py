"""The asyncio client's connection: one socket, many concurrent requests, typed errors.

Requests are written as soon as they are made (pipelining) and each waits on
its own future; :mod:`neocode_gateway.client._protocol` resolves the futures
as the responses arrive. The contract's actions are
:class:`~neocode_gateway.client._async.AsyncGatewayClient`'s, on top of this.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any, Final, Self, cast

import msgspec

from neocode_gateway.client._local import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_REQUEST_TIMEOUT,
    MAX_RESPONSE_BYTES,
    check_trusted,
    client_default_address,
    new_request_id,
    os_reason,
)
from neocode_gateway.client._protocol import ClientProtocol, RawResponse
from neocode_gateway.client._streams import Subscription
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
from neocode_gateway.protocol import (
    Frame,
    encode_frame,
)
from neocode_gateway.transport import PeerCredentials, is_pipe_address, read_peer_credentials

log = logging.getLogger("neocode_gateway.client")

#: Unsolicited frames of no session kept for :meth:`AsyncGatewayClient.frames` (oldest dropped).
DEFAULT_MAX_QUEUED_FRAMES: Final = 1024
#: Longest response line accepted: answers (``load_session`` of a long session) can be far
#: larger than the 1 MiB a request may be.
DEFAULT_MAX_RESPONSE_BYTES: Final = MAX_RESPONSE_BYTES
#: Seconds ``close()`` lets the transport flush before aborting it.
CLOSE_GRACE: Final = 1.0


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


class GatewayLink:
    """The connection half of :class:`~._async.AsyncGatewayClient`: connecting, the
    server-uid check, ``hello``, pipelined requests matched by ``request_id``, and the
    routing of frames that answer no request."""

    def __init__(
        self,
        address: str | None = None,
        *,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        request_timeout: float | None = DEFAULT_REQUEST_TIMEOUT,
        on_event: Callable[[Frame], None] | None = None,
        max_queued_events: int = DEFAULT_MAX_QUEUED_FRAMES,
        max_frame_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        trust_any_uid: bool = False,
        client_name: str | None = None,
        device: str | None = None,
    ) -> None:
        _check_timeout("connect_timeout", connect_timeout, allow_none=False)
        _check_timeout("request_timeout", request_timeout, allow_none=True)
        if max_queued_events < 1:
            raise ValueError(f"max_queued_events must be at least 1, got {max_queued_events}")
        self.address: str = address or client_default_address()
        #: Talk to a gateway run by another user (by default: only ours or root's).
        self.trust_any_uid = trust_any_uid
        self._subscriptions: list[Subscription] = []
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
        #: Said to the gateway at every connect (``hello``, contract v1.2): decisions made
        #: through this client are recorded as this client's.
        self.client_name = client_name
        self.device = device

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
                # Where the OS cannot tell, the socket directory's rules are the guard.
                self._peer = None
        self._check_peer(transport)
        if self.client_name:
            self._say_hello(protocol)
        return self

    def _say_hello(self, protocol: ClientProtocol) -> None:
        """Write ``hello`` now, ahead of any request (its answer is not waited for)."""
        key = new_request_id()
        payload: dict[str, Any] = {"client": self.client_name}
        if self.device:
            payload["device"] = self.device
        frame = {"type": "request", "action": "hello", "request_id": key, "payload": payload}
        future: asyncio.Future[RawResponse] = asyncio.get_running_loop().create_future()
        future.add_done_callback(_ignore_outcome)
        protocol.pending.add(key, future)
        protocol.write(msgspec.json.encode(frame) + b"\n")

    def _check_peer(self, transport: asyncio.BaseTransport) -> None:
        """Refuse a gateway run by another user: it would read every request we send."""
        try:
            check_trusted(self.address, self._peer.uid if self._peer else None, self.trust_any_uid)
        except GatewayUnreachable:
            cast(asyncio.Transport, transport).abort()
            self._protocol = None
            raise

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

    # -- frames that answer no request (routed by the client: events) -------------------

    def _unsolicited(self, frame: Frame) -> None:
        raise NotImplementedError

    def _stream_ended(self) -> None:
        raise NotImplementedError


def _ignore_outcome(future: asyncio.Future[Any]) -> None:
    """An answer nobody waits for (``hello``'s): retrieve it, so asyncio does not warn."""
    if not future.cancelled():
        future.exception()
