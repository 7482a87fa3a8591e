"""One client connection: reading, framing, answering in order, deadlines.

A :class:`Connection` is an ``asyncio.Protocol`` (not a stream task): the event
loop calls :meth:`data_received` and every complete frame of that read is
answered. Handlers may answer synchronously (bytes) or asynchronously (an
awaitable); :meth:`~._outbound.Outbound.send` pushes frames (events) at any
time. How answers and pushed frames leave, and what waits for the client, is
the writing half: :mod:`._outbound` and :mod:`._flow`.

Reading never stops for pushed frames (a client with an event backlog can
still send ``cancel``); only owed answers pause it, above a bound, so that a
client pipelining without reading cannot grow memory without limit. One read
is handled at most 256 frames or 256 KiB per loop turn; the rest waits its
turn. Deadlines are timestamps checked by the server's single sweeper, not
timers per frame. State is allocated on first use: an idle connection costs
well under a kilobyte of Python objects.
"""

from __future__ import annotations

import asyncio
import logging
import time
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
from neocode_gateway.server._debug import log_request
from neocode_gateway.server._flow import _INF
from neocode_gateway.server._outbound import MAX_OWED, MAX_OWED_BYTES, Callback, Outbound
from neocode_gateway.transport import PeerCredentials

if TYPE_CHECKING:
    from neocode_gateway.server._server import Server

#: What a handler returns: the response line now, or an awaitable of it later.
HandlerResult: TypeAlias = bytes | Awaitable[bytes]
Handler: TypeAlias = Callable[[Frame, "Connection"], HandlerResult]
CloseCallback: TypeAlias = Callable[["Connection"], None]

#: Frames of one read handled before yielding to other connections, and their bytes.
MAX_BATCH_FRAMES: Final = 256
MAX_BATCH_BYTES: Final = 256 << 10
log = logging.getLogger("neocode_gateway.server")


class Connection(Outbound, asyncio.Protocol):
    """The server side of one accepted connection (its writing half is :class:`Outbound`)."""

    __slots__ = (
        "_backlog",
        "_close_callbacks",
        "_debug",
        "_framer",
        "_handler",
        "_reading_paused",
        "bound",
        "id",
        "peer",
        "read_deadline",
    )

    def __init__(self, server: Server, handler: Handler) -> None:
        super().__init__(server)
        self._handler = handler
        self._framer = LineFramer(server.config.max_frame_bytes)
        #: Lines read but not handled yet (a long pipelined read is handled over loop turns).
        self._backlog: deque[bytes] | None = None
        self._reading_paused = False
        self._close_callbacks: list[CloseCallback] | None = None
        self._debug = log.isEnabledFor(logging.DEBUG)
        self.peer: PeerCredentials | None = None
        self.read_deadline = _INF
        #: Set by the layer above while the connection waits for events (no idle deadline).
        self.bound = False
        self.id = server.next_connection_id()

    # -- asyncio.Protocol -------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not registered subclasses of asyncio's ABCs.
        self.transport = cast(asyncio.Transport, transport)
        self._server.admit(self)

    def data_received(self, data: bytes) -> None:
        if self._close_when_flushed:
            return  # a fatal error is being flushed; nothing more is read
        framer = self._framer
        started = framer.buffered if self.bound else 1
        lines = framer.feed(data)
        if lines:
            if self._backlog:
                self._backlog.extend(lines)
            elif (
                len(lines) == 1
                and not self._answers
                and not self._pushed
                and not self._paused
                and not self._debug
                and self._answer_one(lines[0])
            ):
                pass
            else:
                self._answer(lines)
            if not self._owed and not self._backlog:
                self.read_deadline = self._server.next_read_deadline
        elif not started and framer.buffered:
            # A bound connection has no idle deadline, but a frame it starts must complete.
            self.read_deadline = self._server.next_read_deadline
        if framer.overflowed:
            self._refuse_oversized()

    def _failed(self, frame: Frame) -> bytes:
        """A handler raised: log it (rate-limited) and answer ``internal_error``."""
        self._server.handler_failed(frame.action)
        return encode_error(
            INTERNAL_ERROR, codes.MSG_INTERNAL, action=frame.action, request_id=frame.request_id
        )

    def _answer_one(self, line: bytes) -> bool:
        """The fast path: one valid frame in a read, nothing queued. ``False``: use ``_answer``.

        A read with one request (a client waiting for each answer) is the common case;
        this path takes it with the fewest steps and writes the answer at once.
        """
        try:
            frame = parse_frame(line)
        except FrameError:
            return False  # errors take the general path (it re-parses: errors are rare)
        self._answering = True  # what the handler asks to run after its answer waits for it
        try:
            result = self._handler(frame, self)
        except Exception:
            result = self._failed(frame)
        finally:
            self._answering = False
        callbacks, self._current = self._current, None
        if type(result) is bytes:
            self._write(result, 1, None)
            if callbacks:
                for callback in callbacks:
                    callback()
        else:
            self._reserve(result, frame, 0.0, callbacks)  # type: ignore[arg-type]
        if self._close_when_flushed and not self._answers and not self._pushed:
            self._close_now()
        return True

    def eof_received(self) -> bool:
        line = self._framer.feed_eof()
        if line is not None and not self._close_when_flushed:
            if self._backlog:
                self._backlog.append(line)
            else:
                self._answer([line])
        self._drain_backlog()
        self._refuse_oversized()
        self._close_after_flush()
        return True  # we close ourselves once every response is written

    def _refuse_oversized(self) -> None:
        """A line passed the size limit: one error frame (after earlier answers), then close."""
        framer = self._framer
        if framer.overflowed and not self._close_when_flushed:
            self._drain_backlog()
            self._respond(
                encode_error(INVALID_FRAME, codes.msg_frame_too_large(framer.max_frame_bytes))
            )
            self._close_after_flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._drop_queues()
        self._backlog = None
        self._server.forget(self)
        callbacks, self._close_callbacks = self._close_callbacks, None
        for callback in callbacks or ():
            try:
                callback(self)
            except Exception:
                log.exception("a close callback failed")
        # Break the transport <-> protocol cycle so that the pair is freed by
        # reference counting now, not by a later garbage-collector pass.
        self.transport = None

    # -- answering --------------------------------------------------------------------

    def _answer(self, lines: list[bytes]) -> None:
        """Handle the frames of one read, in order; answers leave in request order."""
        if len(lines) > MAX_BATCH_FRAMES:
            self._backlog_extend(lines[MAX_BATCH_FRAMES:])
            lines = lines[:MAX_BATCH_FRAMES]
        batch = None
        if not self._answers and not self._pushed and not self._paused:
            batch = self._batch = []
        handler = self._handler
        debug = self._debug
        size = 0
        self._answering = True
        try:
            for index, line in enumerate(lines):
                size += len(line)
                try:
                    frame = parse_frame(line)
                except FrameError as err:
                    self._respond(
                        encode_error(
                            err.code, err.message, action=err.action, request_id=err.request_id
                        )
                    )
                    if err.fatal:
                        self._backlog = None
                        self._close_after_flush()
                        return
                    continue
                start = time.perf_counter() if debug else 0.0
                # The handler is called inline (this loop is the pipelined hot path);
                # what it asks to run after its answer goes with that answer.
                try:
                    result = handler(frame, self)
                except Exception:
                    result = self._failed(frame)
                callbacks = self._current
                if callbacks is not None:
                    self._current = None
                if type(result) is bytes:
                    if debug:
                        log_request(self.id, frame, result, start)
                    if batch is not None:  # nothing is queued: into this read's one write
                        batch.append(result)
                        if callbacks:
                            self._defer_to_batch(callbacks)
                    else:
                        self._respond(result, callbacks)
                else:
                    self._reserve(result, frame, start, callbacks)  # type: ignore[arg-type]
                    batch = None  # the answers behind it wait for it
                if size > MAX_BATCH_BYTES and index + 1 < len(lines):
                    # Yield to other connections: the rest of this read waits its turn.
                    if self._backlog is None:
                        self._backlog = deque()
                    self._backlog.extendleft(reversed(lines[index + 1 :]))
                    break
        finally:
            self._answering = False
            self._flush_batch()
            if self._close_when_flushed and not self._answers and not self._pushed:
                self._close_now()  # closing was asked for while this read was answered
        if self._backlog and not self._close_when_flushed:
            self._defer_backlog()

    def _backlog_extend(self, lines: list[bytes]) -> None:
        if self._backlog is None:
            self._backlog = deque()
        self._backlog.extend(lines)

    def _defer_backlog(self) -> None:
        transport = self.transport
        if transport is not None and not self.closed and not self._reading_paused:
            transport.pause_reading()
            self._reading_paused = True
        self._server.call_soon(self._continue_backlog)

    def _continue_backlog(self) -> None:
        if self.closed or not self._backlog:
            return
        lines = list(self._backlog)
        self._backlog.clear()
        self._answer(lines)
        if not self._backlog:
            if not self._owed:
                self.read_deadline = self._server.next_read_deadline
            self._maybe_resume_reading()

    def _drain_backlog(self) -> None:
        """Handle every line already read, now (closing: answer what was read)."""
        while self._backlog and not self.closed:
            lines = list(self._backlog)
            self._backlog.clear()
            self._answer(lines)

    def _reserve(
        self,
        result: Awaitable[bytes],
        frame: Frame,
        start: float,
        callbacks: list[Callback] | None,
    ) -> None:
        """An asynchronous answer: reserve its slot; the answers behind it wait."""
        task = asyncio.ensure_future(self._guard(result, frame, start))
        self._reserve_slot(task, callbacks)
        self.read_deadline = _INF  # the client is waiting for us, not the other way round

    async def _guard(self, result: Awaitable[bytes], frame: Frame, start: float) -> bytes:
        """Await a handler's answer; a failure becomes ``internal_error``, never a crash."""
        try:
            reply = await result
        except asyncio.CancelledError:
            if self.closed or self._server.stopping:
                raise  # the connection went away: request-scoped work ends with it
            self._server.handler_failed(frame.action, cancelled=True)
            reply = encode_error(
                INTERNAL_ERROR, codes.MSG_INTERNAL, action=frame.action, request_id=frame.request_id
            )
        except Exception:
            self._server.handler_failed(frame.action)
            reply = encode_error(
                INTERNAL_ERROR, codes.MSG_INTERNAL, action=frame.action, request_id=frame.request_id
            )
        if self._debug:
            log_request(self.id, frame, reply, start)
        return reply

    # -- Outbound's hooks -------------------------------------------------------------

    def _all_written(self) -> None:
        if not self._backlog:
            self.read_deadline = self._server.next_read_deadline

    def _check_owed(self) -> None:
        if self._reading_paused or self.closed:
            return
        if self._owed >= MAX_OWED or self._owed_bytes >= MAX_OWED_BYTES:
            transport = self.transport
            if transport is not None:
                transport.pause_reading()
                self._reading_paused = True

    def _maybe_resume_reading(self) -> None:
        if (
            self._reading_paused
            and not self._backlog
            and self._owed < MAX_OWED // 2
            and self._owed_bytes < MAX_OWED_BYTES // 2
            and not self._close_when_flushed
            and not self.closed
            and self.transport is not None
        ):
            self._reading_paused = False
            self.transport.resume_reading()

    def _close_after_flush(self) -> None:
        self._close_when_flushed = True
        if not self._answers and not self._pushed and not self._answering:
            self._close_now()

    # -- public API for the layers above ----------------------------------------------

    def add_close_callback(self, callback: CloseCallback) -> None:
        """Call ``callback(connection)`` once, when the connection is gone."""
        if self.closed:
            callback(self)
            return
        if self._close_callbacks is None:
            self._close_callbacks = []
        self._close_callbacks.append(callback)

    def close(self) -> None:
        """Close gracefully: answer what was already read, then close."""
        if self.transport is not None and not self.closed:
            self.transport.pause_reading()
            self._reading_paused = True
        self._drain_backlog()
        self._close_after_flush()

    def close_with_error(self, data: bytes) -> None:
        """Drop the pushed frames still queued, write ``data`` (an error frame), close."""
        if self.closed or self._close_when_flushed:
            return
        self._drop_pushed()
        self._backlog = None
        if self.transport is not None:
            self.transport.pause_reading()
            self._reading_paused = True
        self._respond(data)
        self._close_after_flush()
        self._wake_drainers(False)

    @property
    def busy(self) -> bool:
        """Whether responses are still owed to the client."""
        return self._owed > 0 or bool(self._backlog)

    @property
    def idle_expirable(self) -> bool:
        """Whether the idle read deadline applies (not bound, or a frame half-read)."""
        return not self.bound or self._framer.buffered > 0
