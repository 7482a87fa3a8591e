"""The client side of one connection: NDJSON in, responses matched to the requests out.

Two pieces, both free of sockets so the unit tests can drive them byte by byte:

* :class:`PendingTable` remembers the requests that still owe a response and
  finds the one a response frame answers. The gateway answers the requests of
  one connection in order, and echoes ``request_id``; matching by id (and not
  only by position) keeps the client right if a later gateway ever answers
  out of order, and the position is the fallback for responses that carry no
  id (the answer to a line that was not valid JSON, for example).
* :class:`ClientProtocol` is the ``asyncio.Protocol``: it splits the stream
  with the same :class:`~neocode_gateway.protocol.LineFramer` the server uses,
  decodes each line into the same :class:`~neocode_gateway.protocol.Frame`,
  resolves the waiting request, hands everything else (events the gateway
  pushes) to a sink, and fails every waiting request when the connection ends.

A request that timed out or was cancelled stays in the table until its late
answer arrives, so that the late answer is consumed by its own entry instead
of being mistaken, by position, for the answer to the next request.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import msgspec

from neocode_gateway.errors import ClientError, ConnectionClosed, ProtocolViolation
from neocode_gateway.protocol import DEFAULT_MAX_FRAME_BYTES, FRAME_TYPES, Frame, LineFramer

log = logging.getLogger("neocode_gateway.client")

_decoder: Final = msgspec.json.Decoder(Frame)
#: How much of an offending line a ProtocolViolation quotes.
_QUOTE_BYTES: Final = 80


@dataclass(frozen=True, slots=True)
class RawResponse:
    """One response: the decoded :attr:`frame` and the exact :attr:`line` the gateway sent.

    :attr:`line` has no line terminator. Keeping it lets tools print what the
    gateway said byte for byte, including fields this client does not know.
    """

    frame: Frame
    line: bytes

    @property
    def is_error(self) -> bool:
        """Whether the gateway answered with an error frame."""
        return self.frame.type == "error"


class Pending:
    """One request waiting for its response."""

    __slots__ = ("answered", "future", "key")

    def __init__(self, key: str | None, future: asyncio.Future[RawResponse]) -> None:
        #: The ``request_id`` the response will echo, or None if it will carry none.
        self.key = key
        self.future = future
        #: Set once a response was assigned to this entry (the future may be done before).
        self.answered = False


class PendingTable:
    """Requests that still owe a response, findable by ``request_id`` and by age.

    Both indexes skip answered entries lazily, so resolving is O(1) amortized
    even with thousands of pipelined requests.
    """

    __slots__ = ("_by_id", "_order", "_unanswered")

    def __init__(self) -> None:
        self._order: deque[Pending] = deque()
        self._by_id: dict[str, deque[Pending]] = {}
        self._unanswered = 0

    def __len__(self) -> int:
        """Requests still waiting for a response (including abandoned ones)."""
        return self._unanswered

    def add(self, key: str | None, future: asyncio.Future[RawResponse]) -> Pending:
        """Remember a request that was just written; ``key`` is its ``request_id``."""
        entry = Pending(key, future)
        self._order.append(entry)
        if key is not None:
            self._by_id.setdefault(key, deque()).append(entry)
        self._unanswered += 1
        return entry

    def match(self, frame: Frame) -> Pending | None:
        """Take the entry that ``frame`` answers, or None if it answers none.

        An id the table knows picks the oldest request with that id. A
        response without an id answers the oldest request, except an event:
        events without an id are the gateway's own news, not answers. A frame
        whose id is unknown answers nothing.
        """
        request_id = frame.request_id
        if request_id:
            queue = self._by_id.get(request_id)
            entry = _pop_unanswered(queue) if queue is not None else None
            if queue is not None and not queue:
                del self._by_id[request_id]
        elif frame.type == "event":
            entry = None
        else:
            entry = _pop_unanswered(self._order)
        if entry is not None:
            entry.answered = True
            self._unanswered -= 1
            self._trim()
        return entry

    def _trim(self) -> None:
        order = self._order
        while order and order[0].answered:
            order.popleft()

    def fail_all(self, make_error: Callable[[], ClientError]) -> None:
        """The connection is gone: every waiting request fails with a fresh error."""
        for entry in self._order:
            if not entry.answered and not entry.future.done():
                entry.future.set_exception(make_error())
            entry.answered = True
        self._order.clear()
        self._by_id.clear()
        self._unanswered = 0


def _pop_unanswered(queue: deque[Pending]) -> Pending | None:
    while queue:
        entry = queue.popleft()
        if not entry.answered:
            return entry
    return None


def quote(line: bytes) -> str:
    """A short, printable excerpt of ``line`` for error messages."""
    text = line[:_QUOTE_BYTES].decode("utf-8", "replace")
    return repr(text + ("..." if len(line) > _QUOTE_BYTES else ""))


def decode_response(line: bytes) -> Frame:
    """Decode one line from the gateway; raise :class:`ProtocolViolation` if it is no frame."""
    try:
        frame = _decoder.decode(line)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise ProtocolViolation(
            f"the gateway sent a line that is not a valid frame ({exc}): {quote(line)}"
        ) from None
    if frame.type not in FRAME_TYPES:
        raise ProtocolViolation(
            f"the gateway sent a frame with type {frame.type!r}, expected one of "
            f"{', '.join(sorted(FRAME_TYPES))}: {quote(line)}"
        )
    if frame.type == "error" and frame.error is None:
        raise ProtocolViolation(f"the gateway sent an error frame without error: {quote(line)}")
    return frame


class ClientProtocol(asyncio.Protocol):
    """One client connection as an asyncio protocol.

    ``on_unsolicited`` receives every frame that answers no request (events
    the gateway pushes), ``on_closed`` is called once when the connection is
    gone. Write flow control is honoured through :meth:`drain`.
    """

    def __init__(
        self,
        address: str,
        on_unsolicited: Callable[[Frame], None],
        *,
        on_closed: Callable[[], None] | None = None,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
    ) -> None:
        self.address = address
        self._on_closed = on_closed
        self.pending = PendingTable()
        self.transport: asyncio.Transport | None = None
        self._framer = LineFramer(max_frame_bytes)
        self._on_unsolicited = on_unsolicited
        self._loop = asyncio.get_running_loop()
        self._lost: asyncio.Future[None] = self._loop.create_future()
        self._paused = False
        self._drain_waiters: list[asyncio.Future[None]] = []
        self._received_any = False
        #: Why the connection ended; None while it is open.
        self.close_reason: str | None = None

    # -- asyncio.Protocol ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self._received_any = True
        framer = self._framer
        for line in framer.feed(data):
            if not self._line_received(line):
                return
        if framer.overflowed:
            self._violation(
                ProtocolViolation(
                    f"the gateway sent a line longer than {framer.max_frame_bytes} bytes"
                )
            )

    def eof_received(self) -> bool:
        line = self._framer.feed_eof()
        if line is not None:
            self._line_received(line)
        elif self._framer.overflowed:
            self._violation(
                ProtocolViolation(
                    f"the gateway sent a line longer than {self._framer.max_frame_bytes} bytes"
                )
            )
        if self.close_reason is None:
            self.close_reason = self._hung_up()
        return False  # let the transport close: the gateway is done with us

    def _hung_up(self) -> str:
        if self._received_any:
            return "the gateway closed the connection"
        # Closed before a single byte: what the gateway does at its connection limit
        # (and to a peer it refuses).
        return "the gateway closed the connection (it may be at its connection limit)"

    def connection_lost(self, exc: Exception | None) -> None:
        if self.close_reason is None:
            # A reset or a broken pipe is the gateway hanging up while we were writing.
            hung_up = exc is None or isinstance(exc, ConnectionError)
            self.close_reason = self._hung_up() if hung_up else f"the connection was lost: {exc}"
        reason = self.close_reason
        self.pending.fail_all(lambda: ConnectionClosed(f"{reason} ({self.address})"))
        self._wake_drainers()
        if not self._lost.done():
            self._lost.set_result(None)
        if self._on_closed is not None:
            self._on_closed()

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        self._wake_drainers()

    # -- reading ------------------------------------------------------------------------

    def _line_received(self, line: bytes) -> bool:
        """Deliver one line; False if it broke the protocol (the connection is then closing)."""
        try:
            frame = decode_response(line)
        except ProtocolViolation as exc:
            self._violation(exc)
            return False
        entry = self.pending.match(frame)
        if entry is None:
            self._on_unsolicited(frame)
        elif not entry.future.done():
            entry.future.set_result(RawResponse(frame, line.rstrip(b"\r\t ")))
        return True

    def _violation(self, exc: ProtocolViolation) -> None:
        """The stream cannot be trusted any more: fail every request with ``exc`` and drop it."""
        if self.close_reason is None:
            self.close_reason = f"closed after a protocol violation: {exc}"
        self.pending.fail_all(lambda: ProtocolViolation(str(exc)))
        if self.transport is not None:
            self.transport.abort()

    # -- writing ------------------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        """Whether requests can still be written."""
        return (
            self.close_reason is None
            and self.transport is not None
            and not self.transport.is_closing()
        )

    def write(self, data: bytes) -> None:
        """Write request bytes; the caller checked :attr:`is_open`."""
        assert self.transport is not None
        self.transport.write(data)

    async def drain(self) -> None:
        """Wait while the transport's write buffer is above its high-water mark."""
        if not self._paused:
            return
        waiter = self._loop.create_future()
        self._drain_waiters.append(waiter)
        await waiter

    def _wake_drainers(self) -> None:
        """Let writers go on; after a close, each request's own future reports the error."""
        waiters, self._drain_waiters = self._drain_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    # -- closing ------------------------------------------------------------------------

    def close(self, reason: str) -> None:
        """Close from our side: waiting requests fail with :class:`ConnectionClosed` now."""
        if self.close_reason is None:
            self.close_reason = reason
        self.pending.fail_all(lambda: ConnectionClosed(f"{reason} ({self.address})"))
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    async def wait_lost(self, timeout: float) -> None:
        """Wait for :meth:`connection_lost`; abort the transport if it takes too long.

        ``transport.close()`` flushes the write buffer first, which never ends
        if the gateway stopped reading; closing must not hang on that.
        """
        if self._lost.done():
            return
        try:
            await asyncio.wait_for(asyncio.shield(self._lost), timeout)
        except TimeoutError:
            if self.transport is not None:
                self.transport.abort()
            await self._lost
