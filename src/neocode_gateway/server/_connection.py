"""One client connection: framing, one ordered outbound path, deadlines, back-pressure.

A :class:`Connection` is an ``asyncio.Protocol`` (not a stream task): the event
loop calls :meth:`data_received` and every complete frame of that read is
answered. Handlers may answer synchronously (bytes) or asynchronously (an
awaitable); :meth:`Connection.send` pushes frames (events) at any time.

**One outbound path.** Everything the connection writes goes through one FIFO:
a response takes its place when its request is read (an asynchronous answer
reserves its slot and holds everything behind it until it is ready); a pushed
frame takes its place when :meth:`send` is called. So a handler that returns
its ack and then starts streaming always has the ack written first, and
answers keep request order. The fast path (nothing queued, the socket
writable) joins the answers of one read into one ``write``.

**Back-pressure.** When the socket's buffer passes its high-water mark, frames
wait in the connection's own queue, where they are counted
(:attr:`pending_bytes`, :meth:`oldest_pending_age`) for the layer above to
decide about slow consumers; :meth:`drain` lets it pace a replay by the
client's reading. Pushed frames never stop the connection from *reading* (a
client with an event backlog can still send ``cancel``); only owed responses
do, above a bound, so that a client pipelining without reading cannot grow
memory without limit. A client that makes no progress for the write timeout
is aborted; one that reads slowly but steadily is not.

Deadlines are timestamps checked by the server's single sweeper, not timers
per frame.
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
from neocode_gateway.transport import PeerCredentials

if TYPE_CHECKING:
    from neocode_gateway.server._server import Server

#: What a handler returns: the response line now, or an awaitable of it later.
HandlerResult: TypeAlias = bytes | Awaitable[bytes]
Handler: TypeAlias = Callable[[Frame, "Connection"], HandlerResult]
CloseCallback: TypeAlias = Callable[["Connection"], None]

_INF: Final = float("inf")
#: Reading pauses while this many responses are owed (queued or being computed)...
MAX_OWED: Final = 256
#: ...or this many bytes of responses wait; it resumes below half of each.
MAX_OWED_BYTES: Final = 1 << 20
#: Frames of one read handled before yielding to other connections, and their bytes.
MAX_BATCH_FRAMES: Final = 256
MAX_BATCH_BYTES: Final = 256 << 10
log = logging.getLogger("neocode_gateway.server")


class _Chunk:
    """Bytes waiting in the outbound queue: a response, or a pushed frame (``since`` > 0)."""

    __slots__ = ("data", "mark", "since")

    def __init__(self, data: bytes, since: float, mark: tuple[str, int] | None) -> None:
        self.data = data
        self.since = since
        self.mark = mark


_Item: TypeAlias = "_Chunk | asyncio.Future[bytes]"


class Connection(asyncio.Protocol):
    """The server side of one accepted connection."""

    __slots__ = (
        "_answering",
        "_backlog",
        "_batch",
        "_close_callbacks",
        "_close_when_flushed",
        "_debug",
        "_delivered",
        "_drain_waiters",
        "_framer",
        "_handler",
        "_held",
        "_owed",
        "_owed_bytes",
        "_paused",
        "_queue",
        "_queued_bytes",
        "_reading_paused",
        "_server",
        "_stall_size",
        "bound",
        "bytes_out",
        "closed",
        "dropped_frames",
        "frames_out",
        "id",
        "peer",
        "read_deadline",
        "transport",
        "write_deadline",
    )

    def __init__(self, server: Server, handler: Handler) -> None:
        self._server = server
        self._handler = handler
        self._framer = LineFramer(server.config.max_frame_bytes)
        #: The outbound FIFO behind the socket: chunks ready to write, slots of answers owed.
        self._queue: deque[_Item] = deque()
        self._queued_bytes = 0
        #: Answers of the read being handled, written together when it ends (fast path).
        self._batch: list[bytes] | None = None
        self._answering = False
        #: Frames pushed by a handler while it runs: written after its own answer.
        self._held: list[tuple[bytes, tuple[str, int] | None]] = []
        #: Lines read but not handled yet (a long pipelined read is handled over loop turns).
        self._backlog: deque[bytes] = deque()
        self._owed = 0
        self._owed_bytes = 0
        self._paused = False
        self._reading_paused = False
        self._stall_size = 0
        self._close_when_flushed = False
        self._close_callbacks: list[CloseCallback] = []
        self._drain_waiters: list[asyncio.Future[bool]] = []
        self._delivered: dict[str, int] = {}
        self._debug = log.isEnabledFor(logging.DEBUG)
        self.transport: asyncio.Transport | None = None
        self.peer: PeerCredentials | None = None
        self.read_deadline = _INF
        self.write_deadline = _INF
        self.closed = False
        #: Set by the layer above while the connection waits for events (no idle deadline).
        self.bound = False
        self.bytes_out = 0
        self.frames_out = 0
        self.dropped_frames = 0
        self.id = server.next_connection_id()

    # -- asyncio.Protocol -------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not registered subclasses of asyncio's ABCs.
        self.transport = cast(asyncio.Transport, transport)
        self._server._admit(self)

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
                and not self._queue
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

    def _answer_one(self, line: bytes) -> bool:
        """The fast path: one valid frame in a read, nothing queued. ``False``: use ``_answer``.

        A read with one request (a client waiting for each answer) is the common case;
        this path takes it with the fewest steps and writes the answer at once.
        """
        try:
            frame = parse_frame(line)
        except FrameError:
            return False  # errors take the general path (it re-parses: errors are rare)
        self._answering = True
        try:
            result = self._handler(frame, self)
        except Exception:
            self._server.handler_failed(frame.action)
            result = encode_error(
                INTERNAL_ERROR, codes.MSG_INTERNAL, action=frame.action, request_id=frame.request_id
            )
        finally:
            self._answering = False
        if type(result) is bytes:
            transport = self.transport
            if transport is not None and not self.closed:
                transport.write(result)
                self.bytes_out += len(result)
                self.frames_out += 1
        else:
            self._reserve(result, frame, 0.0)  # type: ignore[arg-type]
        if self._held:
            self._release_held()
        if self._close_when_flushed and not self._queue:
            self._close_now()
        return True

    def _release_held(self) -> None:
        """Frames a handler pushed while it ran: they go after its answer."""
        held, self._held = self._held, []
        for data, mark in held:
            self.send(data, mark=mark)

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
        for item in self._queue:
            if isinstance(item, asyncio.Future):
                item.cancel()  # request-scoped work ends with its connection
        self._queue.clear()
        self._backlog.clear()
        self._queued_bytes = 0
        self._wake_drainers(False)
        self._server._forget(self)
        callbacks, self._close_callbacks = self._close_callbacks, []
        for callback in callbacks:
            try:
                callback(self)
            except Exception:
                log.exception("a close callback failed")
        # Break the transport <-> protocol cycle so that the pair is freed by
        # reference counting now, not by a later garbage-collector pass.
        self.transport = None

    def pause_writing(self) -> None:
        # The socket's buffer is full: frames now wait in our queue; give the client
        # until the write deadline to make progress.
        self._paused = True
        transport = self.transport
        self._stall_size = transport.get_write_buffer_size() if transport else 0
        self.write_deadline = self._server.loop_time() + self._server.config.write_timeout

    def resume_writing(self) -> None:
        self._paused = False
        self.write_deadline = _INF
        self._pump()

    # -- answering --------------------------------------------------------------------

    def _answer(self, lines: list[bytes]) -> None:
        """Handle the frames of one read, in order; answers leave through the FIFO."""
        if len(lines) > MAX_BATCH_FRAMES:
            self._backlog.extend(lines[MAX_BATCH_FRAMES:])
            lines = lines[:MAX_BATCH_FRAMES]
        fast = not self._queue and not self._paused
        if fast:
            self._batch = []
        handler = self._handler
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
                        self._backlog.clear()
                        self._close_after_flush()
                        return
                    continue
                start = time.perf_counter() if self._debug else 0.0
                try:
                    result = handler(frame, self)
                except Exception:
                    self._server.handler_failed(frame.action)
                    result = encode_error(
                        INTERNAL_ERROR,
                        codes.MSG_INTERNAL,
                        action=frame.action,
                        request_id=frame.request_id,
                    )
                if type(result) is bytes:
                    if self._debug:
                        self._log_request(frame, result, start)
                    self._respond(result)
                else:
                    self._reserve(result, frame, start)  # type: ignore[arg-type]
                if self._held:
                    for data, mark in self._held:
                        self._push(data, mark)
                    self._held = []
                if size > MAX_BATCH_BYTES and index + 1 < len(lines):
                    # Yield to other connections: the rest of this read waits its turn.
                    self._backlog.extendleft(reversed(lines[index + 1 :]))
                    break
        finally:
            self._answering = False
            self._flush_batch()
            if self._close_when_flushed and not self._queue:
                self._close_now()  # closing was asked for while this read was answered
        if self._backlog and not self._close_when_flushed:
            self._defer_backlog()

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

    def _respond(self, data: bytes) -> None:
        """A response ready now: into the batch (fast path) or the queue."""
        batch = self._batch
        if batch is not None and not self._queue:
            batch.append(data)
        else:
            self._enqueue(_Chunk(data, 0.0, None))
            self._owed += 1
            self._owed_bytes += len(data)
            self._check_owed()

    def _reserve(self, result: Awaitable[bytes], frame: Frame, start: float) -> None:
        """An asynchronous answer: reserve its slot; what follows waits behind it."""
        self._flush_batch()
        task = asyncio.ensure_future(self._guard(result, frame, start))
        self._queue.append(task)
        self._owed += 1
        task.add_done_callback(self._answer_ready)
        self.read_deadline = _INF  # the client is waiting for us, not the other way round
        self._check_owed()

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
            self._log_request(frame, reply, start)
        return reply

    def _answer_ready(self, future: asyncio.Future[bytes]) -> None:
        if not self.closed:
            self._pump()

    def _flush_batch(self) -> None:
        batch = self._batch
        self._batch = None
        if batch:
            self._write(batch[0] if len(batch) == 1 else b"".join(batch), len(batch), None)

    def _enqueue(self, chunk: _Chunk) -> None:
        self._queue.append(chunk)
        self._queued_bytes += len(chunk.data)
        if not self._paused and len(self._queue) == 1:
            self._pump()

    def _pump(self) -> None:
        """Write what is ready at the head of the queue, while the socket takes it."""
        queue = self._queue
        out: list[bytes] = []
        frames = 0
        mark: tuple[str, int] | None = None
        while queue and not self._paused:
            head = queue[0]
            if isinstance(head, _Chunk):
                data = head.data
                self._queued_bytes -= len(data)
                if head.since == 0.0:
                    self._owed -= 1
                    self._owed_bytes -= len(data)
                if head.mark is not None:
                    if out:  # write what precedes a marked frame, so its offset is exact
                        self._write(b"".join(out), frames, mark)
                        out, frames = [], 0
                    mark = head.mark
                out.append(data)
                frames += 1
                queue.popleft()
                if mark is not None:
                    self._write(b"".join(out), frames, mark)
                    out, frames, mark = [], 0, None
                continue
            if not head.done():
                break
            queue.popleft()
            self._owed -= 1
            if not head.cancelled():
                out.append(head.result())
                frames += 1
        if out:
            self._write(b"".join(out), frames, mark)
        if not queue:
            if not self._backlog:
                self.read_deadline = self._server.next_read_deadline
            if not self._paused:
                self._wake_drainers(True)
            if self._close_when_flushed:
                self._close_now()
        self._maybe_resume_reading()

    def _write(self, data: bytes, frames: int, mark: tuple[str, int] | None) -> None:
        transport = self.transport
        if transport is None or self.closed:
            self.dropped_frames += frames
            return
        transport.write(data)
        self.bytes_out += len(data)
        self.frames_out += frames
        if mark is not None:
            self._delivered[mark[0]] = mark[1]

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
        if not self._queue and not self._answering:
            self._close_now()

    def _close_now(self) -> None:
        self._flush_batch()
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()  # flushes what is buffered, then closes

    def _wake_drainers(self, value: bool) -> None:
        waiters, self._drain_waiters = self._drain_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(value)

    def _log_request(self, frame: Frame, reply: bytes, start: float) -> None:
        outcome = "ack"
        if reply.startswith(b'{"type":"error"'):
            marker = reply.find(b'"code":"')
            outcome = "error " + reply[marker + 8 : reply.find(b'"', marker + 8)].decode()
        log.debug(
            "conn %d %s request_id=%s session=%s -> %s in %.2f ms",
            self.id,
            frame.action,
            frame.request_id,
            frame.session_id,
            outcome,
            (time.perf_counter() - start) * 1000,
        )

    # -- public API for the layers above ----------------------------------------------

    def send(self, data: bytes, *, mark: tuple[str, int] | None = None) -> bool:
        """Push one or more encoded frame lines, after everything already queued.

        ``mark=(key, value)`` (e.g. a session id and the last ``seq`` in ``data``)
        makes :meth:`delivered` report ``value`` once all of ``data`` has been
        handed to the socket. Returns ``False`` (and counts the frame as dropped) when
        the connection is closing or closed.
        """
        if self.closed or self._close_when_flushed or self.transport is None:
            self.dropped_frames += 1
            return False
        if self._answering:
            # A handler pushes while it runs: its own answer's place comes first.
            self._held.append((data, mark))
            return True
        return self._push(data, mark)

    def _push(self, data: bytes, mark: tuple[str, int] | None) -> bool:
        batch = self._batch
        if batch is not None and not self._queue and mark is None:
            batch.append(data)  # pushed while a read is answered: after the answers so far
            return True
        if self._queue or self._paused or batch:
            self._flush_batch()
            chunk = _Chunk(data, self._server.loop_time(), mark)
            self._queue.append(chunk)
            self._queued_bytes += len(data)
            if not self._paused and len(self._queue) == 1:
                self._pump()
            return True
        self._write(data, 1, mark)
        return True

    def delivered(self, key: str) -> int | None:
        """The last mark value for ``key`` whose frames were all handed to the socket.

        Everything written after it in the stream (an error frame, say) reaches
        the client after those frames, so this is what a client has seen in
        full once it reads a frame written now.
        """
        return self._delivered.get(key)

    @property
    def pending_bytes(self) -> int:
        """Bytes waiting in the gateway for this client: our queue plus the socket buffer."""
        transport = self.transport
        buffered = transport.get_write_buffer_size() if transport is not None else 0
        return self._queued_bytes + buffered

    @property
    def pending_frames(self) -> int:
        """Frames (and owed answers) waiting in the outbound queue."""
        return len(self._queue)

    def oldest_pending_age(self, now: float) -> float:
        """Seconds the oldest pushed frame still in the queue has waited (0.0 if none)."""
        for item in self._queue:
            if isinstance(item, _Chunk) and item.since:
                return now - item.since
        return 0.0

    async def drain(self) -> bool:
        """Wait until the connection can take more; ``False`` if it closed meanwhile."""
        if self.closed or self._close_when_flushed:
            return False
        if not self._queue and not self._paused:
            return True
        waiter: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._drain_waiters.append(waiter)
        return await waiter

    def add_close_callback(self, callback: CloseCallback) -> None:
        """Call ``callback(connection)`` once, when the connection is gone."""
        if self.closed:
            callback(self)
        else:
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
        kept: deque[_Item] = deque()
        for item in self._queue:
            if isinstance(item, _Chunk) and item.since:
                self._queued_bytes -= len(item.data)
                self.dropped_frames += 1
                continue
            kept.append(item)
        self._queue = kept
        self._backlog.clear()
        if self.transport is not None:
            self.transport.pause_reading()
            self._reading_paused = True
        self._respond(data)
        self._close_after_flush()
        self._wake_drainers(False)

    def expire(self) -> None:
        """The read deadline passed: close now (abort if the client is not even reading)."""
        transport = self.transport
        if transport is None or self.closed:
            return
        if transport.get_write_buffer_size():
            transport.abort()
        else:
            transport.close()

    def write_stalled(self, now: float) -> bool:
        """At the write deadline: ``True`` if the client made no progress since the last check."""
        transport = self.transport
        if transport is None:
            return False
        size = transport.get_write_buffer_size()
        if size < self._stall_size:
            self._stall_size = size  # it reads, slowly: give it another period
            self.write_deadline = now + self._server.config.write_timeout
            return False
        return True

    def abort(self) -> None:
        """Drop the connection now, discarding anything unsent."""
        if self.transport is not None and not self.closed:
            self.transport.abort()

    @property
    def busy(self) -> bool:
        """Whether responses are still owed to the client."""
        return self._owed > 0 or bool(self._backlog)

    @property
    def idle_expirable(self) -> bool:
        """Whether the idle read deadline applies (not bound, or a frame half-read)."""
        return not self.bound or self._framer.buffered > 0
