"""One client connection: framing, ordered responses, deadlines, back-pressure.

A :class:`Connection` is an ``asyncio.Protocol`` (not a stream task): the event
loop calls :meth:`data_received` and every complete frame of that read is
answered, in order, with one ``write``. Handlers may answer synchronously
(bytes) or asynchronously (an awaitable); responses still leave in request
order, and :meth:`send` lets the gateway push a frame at any time (events).

Deadlines are timestamps checked by the server's single sweeper, not timers
per frame: ``read_deadline`` is when the next whole frame must have arrived,
``write_deadline`` when a paused (not draining) client is given up on.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Final, TypeAlias, cast

from neocode_gateway.errors import FrameError
from neocode_gateway.protocol import (
    INTERNAL_ERROR,
    INVALID_FRAME,
    Frame,
    LineFramer,
    codes,
    encode_error,
    parse_frame,
)
from neocode_gateway.transport import PeerCredentials

if TYPE_CHECKING:
    from neocode_gateway.server._server import Server

#: What a handler returns: the response line now, or an awaitable of it later.
HandlerResult: TypeAlias = bytes | Awaitable[bytes]
Handler: TypeAlias = Callable[[Frame, "Connection"], HandlerResult]

_INF: Final = float("inf")
log = logging.getLogger("neocode_gateway.server")


class Connection(asyncio.Protocol):
    """The server side of one accepted connection."""

    __slots__ = (
        "_close_when_flushed",
        "_framer",
        "_handler",
        "_queue",
        "_server",
        "closed",
        "peer",
        "read_deadline",
        "transport",
        "write_deadline",
    )

    def __init__(self, server: Server, handler: Handler) -> None:
        self._server = server
        self._handler = handler
        self._framer = LineFramer(server.config.max_frame_bytes)
        # Responses waiting behind an unfinished asynchronous one, in request order.
        self._queue: deque[bytes | asyncio.Future[bytes]] = deque()
        self._close_when_flushed = False
        self.transport: asyncio.Transport | None = None
        self.peer: PeerCredentials | None = None
        self.read_deadline = _INF
        self.write_deadline = _INF
        self.closed = False

    # -- asyncio.Protocol -------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not registered subclasses of asyncio's ABCs.
        self.transport = cast(asyncio.Transport, transport)
        self._server._admit(self)

    def data_received(self, data: bytes) -> None:
        if self._close_when_flushed:
            return  # a fatal error is being flushed; nothing more is read
        framer = self._framer
        lines = framer.feed(data)
        if lines:
            self._answer(lines)
            if not self._queue:
                self.read_deadline = self._server.next_read_deadline
        if framer.overflowed:
            self._refuse_oversized()

    def eof_received(self) -> bool:
        line = self._framer.feed_eof()
        if line is not None and not self._close_when_flushed:
            self._answer([line])
        self._refuse_oversized()
        self._close_after_flush()
        return True  # we close ourselves once every response is written

    def _refuse_oversized(self) -> None:
        """A line passed the size limit: one error frame (after earlier answers), then close."""
        framer = self._framer
        if framer.overflowed and not self._close_when_flushed:
            self._emit(
                encode_error(INVALID_FRAME, codes.msg_frame_too_large(framer.max_frame_bytes))
            )
            self._close_after_flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        for item in self._queue:
            if isinstance(item, asyncio.Future):
                item.cancel()
        self._queue.clear()
        self._server._forget(self)
        # Break the transport <-> protocol cycle so that the pair is freed by
        # reference counting now, not by a later garbage-collector pass.
        self.transport = None

    def pause_writing(self) -> None:
        # The client is not reading: stop reading its requests (so we stop producing
        # replies) and give it until the write deadline to drain.
        self.write_deadline = self._server.loop_time() + self._server.config.write_timeout
        if self.transport is not None and not self.closed:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        self.write_deadline = _INF
        if self.transport is not None and not self.closed and not self._close_when_flushed:
            self.transport.resume_reading()
            self.read_deadline = self._server.next_read_deadline

    # -- answering --------------------------------------------------------------------

    def _answer(self, lines: list[bytes]) -> None:
        out: list[bytes] = []
        handler = self._handler
        queue = self._queue
        for line in lines:
            try:
                frame = parse_frame(line)
            except FrameError as err:
                reply = encode_error(
                    err.code, err.message, action=err.action, request_id=err.request_id
                )
                if queue:
                    queue.append(reply)
                else:
                    out.append(reply)
                if err.fatal:
                    self._flush(out)
                    self._close_after_flush()
                    return
                continue
            try:
                result = handler(frame, self)
            except Exception:
                log.exception("handler for action %r failed", frame.action)
                result = encode_error(
                    INTERNAL_ERROR,
                    codes.MSG_INTERNAL,
                    action=frame.action,
                    request_id=frame.request_id,
                )
            if type(result) is bytes:
                if queue:
                    queue.append(result)
                else:
                    out.append(result)
            else:
                self._flush(out)
                out = []
                queue.append(self._track(result, frame))  # type: ignore[arg-type]
        self._flush(out)

    def _track(self, result: Awaitable[bytes], frame: Frame) -> asyncio.Future[bytes]:
        task = asyncio.ensure_future(_guard(result, frame.action, frame.request_id))
        task.add_done_callback(self._release_queue)
        self.read_deadline = _INF  # the client is waiting for us, not the other way round
        return task

    def _release_queue(self, _: object = None) -> None:
        queue = self._queue
        out: list[bytes] = []
        while queue:
            head = queue[0]
            if isinstance(head, bytes):
                out.append(head)
            elif not head.done():
                break
            elif not head.cancelled():
                out.append(head.result())
            queue.popleft()
        self._flush(out)
        if not queue:
            self.read_deadline = self._server.next_read_deadline
            if self._close_when_flushed:
                self._close_now()

    def _flush(self, out: list[bytes]) -> None:
        if out and self.transport is not None and not self.closed:
            self.transport.write(out[0] if len(out) == 1 else b"".join(out))

    def _emit(self, data: bytes) -> None:
        if self._queue:
            self._queue.append(data)
        else:
            self._flush([data])

    def _close_after_flush(self) -> None:
        self._close_when_flushed = True
        if not self._queue:
            self._close_now()

    def _close_now(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()  # flushes what is buffered, then closes

    # -- public API for the gateway ---------------------------------------------------

    def send(self, data: bytes) -> None:
        """Push one or more encoded frame lines to the client now (events)."""
        if not self.closed:
            self._flush([data])

    def close(self) -> None:
        """Close gracefully: answer what was already read, then close."""
        if self.transport is not None and not self.closed:
            self.transport.pause_reading()
        self._close_after_flush()

    def expire(self) -> None:
        """The read deadline passed: close now (abort if the client is not even reading)."""
        transport = self.transport
        if transport is None or self.closed:
            return
        if transport.get_write_buffer_size():
            transport.abort()
        else:
            transport.close()

    def abort(self) -> None:
        """Drop the connection now, discarding anything unsent."""
        if self.transport is not None and not self.closed:
            self.transport.abort()

    @property
    def busy(self) -> bool:
        """Whether responses are still owed to the client."""
        return bool(self._queue)


async def _guard(result: Awaitable[bytes], action: str | None, request_id: str | None) -> bytes:
    """Await a handler's answer; a failure becomes an ``internal_error`` frame, never a crash."""
    try:
        return await result
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("handler for action %r failed", action)
        return encode_error(
            INTERNAL_ERROR, codes.MSG_INTERNAL, action=action, request_id=request_id
        )
