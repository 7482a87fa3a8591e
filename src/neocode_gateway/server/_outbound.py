"""What a connection writes: answers in request order, pushed frames beside them.

:class:`Outbound` is the writing half of :class:`~._connection.Connection`
(a base class, so that a connection stays one small object). Two queues wait
behind the socket when it cannot take more:

* **answers not ready**, in request order: an answer still being computed (a
  future) holds the answers behind it, and nothing else.
* **frames ready to write**, in the order they became ready: answers (once
  every earlier answer is ready) and pushed frames (events). Live events are
  counted (bytes, and the age of the oldest) for the slow-consumer rule;
  replayed ones are paced by :meth:`drain` and not counted.

So an event never waits for an answer still being computed, and an answer
never overtakes an event pushed before it was ready (after the ``unbind_stream``
answer, nothing of that binding follows).

Callbacks registered with :meth:`after_answer` while a request is handled run
once that request's answer has been handed to the socket: that is how a layer
above orders a pushed frame after an answer when it must.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Final, TypeAlias

from neocode_gateway.server._flow import _ANSWER, _REPLAY, Flow, _Chunk

if TYPE_CHECKING:
    from neocode_gateway.server._server import Server

#: Reading pauses while this many answers are owed (queued or being computed)...
MAX_OWED: Final = 256
#: ...or this many bytes of answers wait; it resumes below half of each.
MAX_OWED_BYTES: Final = 1 << 20

Callback: TypeAlias = Callable[[], None]


class _Slot:
    """One answer owed: its bytes once ready, or the future computing them."""

    __slots__ = ("callbacks", "data", "future")

    def __init__(
        self,
        data: bytes | None,
        future: asyncio.Future[bytes] | None,
        callbacks: list[Callback] | None,
    ) -> None:
        self.data = data
        self.future = future
        self.callbacks = callbacks


def _run(callbacks: list[Callback] | None) -> None:
    if callbacks:
        for callback in callbacks:
            callback()


class Outbound(Flow):
    """Answers and pushed frames of one connection, and their back-pressure."""

    __slots__ = (
        "_answering",
        "_batch",
        "_batch_callbacks",
        "_current",
        "_owed",
        "_owed_bytes",
        "bytes_out",
        "dropped_frames",
        "frames_out",
    )

    def __init__(self, server: Server) -> None:
        super().__init__(server)
        self._owed = 0
        self._owed_bytes = 0
        self._answering = False
        #: Callbacks to run after the answer of the request being handled now.
        self._current: list[Callback] | None = None
        #: Answers of the read being handled, written together when it ends (fast path).
        self._batch: list[bytes] | None = None
        self._batch_callbacks: list[Callback] | None = None
        self.bytes_out = 0
        self.frames_out = 0
        self.dropped_frames = 0

    # -- hooks the reading half implements ----------------------------------------------

    def _all_written(self) -> None:
        """Every answer and pushed frame is out (the reading half may re-arm deadlines)."""

    def _maybe_resume_reading(self) -> None:
        """Owed answers went below the bound (the reading half may read again)."""

    def _check_owed(self) -> None:
        """Owed answers grew (the reading half may pause reading)."""

    def _close_now(self) -> None:
        self._flush_batch()
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()  # flushes what is buffered, then closes

    # -- answers --------------------------------------------------------------------------

    def _respond(self, data: bytes, callbacks: list[Callback] | None = None) -> None:
        """An answer ready now: into the batch (fast path), or behind the earlier answers."""
        batch = self._batch
        if batch is not None and not self._answers and not self._pushed:
            batch.append(data)
            if callbacks:
                self._defer_to_batch(callbacks)
            return
        self._owed += 1
        self._owed_bytes += len(data)
        self._check_owed()
        if self._answers:
            self._answers.append(_Slot(data, None, callbacks))
            return
        self._ready(data, callbacks)

    def _ready(self, data: bytes, callbacks: list[Callback] | None) -> None:
        """An answer takes its place among the frames ready to write (after every frame
        pushed so far); what must follow it may be pushed now."""
        if not self._paused and not self._pushed:
            self._owed -= 1
            self._owed_bytes -= len(data)
            self._write(data, 1, None)
        else:
            if self._pushed is None:
                self._pushed = deque()
            self._pushed.append(_Chunk(data, _ANSWER, None))
        _run(callbacks)

    def _defer_to_batch(self, callbacks: list[Callback]) -> None:
        """Callbacks of an answer in the batch: run when the batch is written."""
        if self._batch_callbacks is None:
            self._batch_callbacks = []
        self._batch_callbacks.extend(callbacks)

    def _reserve_slot(
        self, future: asyncio.Future[bytes], callbacks: list[Callback] | None
    ) -> None:
        """An answer still being computed: it takes its place among the answers now."""
        self._flush_batch()
        if self._answers is None:
            self._answers = deque()
        self._answers.append(_Slot(None, future, callbacks))
        self._owed += 1
        future.add_done_callback(self._answer_ready)
        self._check_owed()

    def _answer_ready(self, future: asyncio.Future[bytes]) -> None:
        """Move the answers at the head that are ready to the frames ready to write."""
        answers = self._answers
        while answers and not self.closed:
            head = answers[0]
            if head.future is not None:
                if not head.future.done():
                    return
                data = None if head.future.cancelled() else head.future.result()
                if data is not None:
                    self._owed_bytes += len(data)
            else:
                data = head.data
            answers.popleft()
            if data is None:
                self._owed -= 1
                _run(head.callbacks)
            else:
                self._ready(data, head.callbacks)
        if not answers:
            self._pump()

    def _flush_batch(self) -> None:
        batch = self._batch
        self._batch = None
        if batch:
            data = batch[0] if len(batch) == 1 else b"".join(batch)
            self._write(data, len(batch), None)
        callbacks, self._batch_callbacks = self._batch_callbacks, None
        _run(callbacks)

    def after_answer(self, callback: Callback) -> None:
        """Call ``callback`` once the answer to the request being handled now is written
        (at once when no request is being handled)."""
        if not self._answering:
            callback()
            return
        if self._current is None:
            self._current = []
        self._current.append(callback)

    # -- pushed frames --------------------------------------------------------------------

    def send(
        self, data: bytes, *, mark: tuple[str, int] | None = None, replay: bool = False
    ) -> bool:
        """Push encoded frame lines, after earlier pushes, not behind answers being computed.

        ``mark=(key, value)`` makes :meth:`delivered` report ``value`` once all of
        ``data`` has been handed to the socket. ``replay`` frames are paced by
        :meth:`drain` and never counted as waiting. Returns ``False`` (and counts the
        frame as dropped) when the connection is closing or closed. A frame pushed by
        a handler while it runs goes after that handler's own answer.
        """
        if self.closed or self._close_when_flushed or self.transport is None:
            self.dropped_frames += 1
            return False
        if self._answering:
            self.after_answer(lambda: self._push(data, mark, replay))
            return True
        self._push(data, mark, replay)
        return True

    def _push(self, data: bytes, mark: tuple[str, int] | None, replay: bool) -> None:
        if self.closed or self.transport is None:
            self.dropped_frames += 1
            return
        if not self._paused and not self._pushed:
            self._write(data, 1, mark)
            return
        if self._pushed is None:
            self._pushed = deque()
        self._pushed.append(_Chunk(data, _REPLAY if replay else self._server.loop_time(), mark))
        if not replay:
            self._pushed_bytes += len(data)

    # -- writing --------------------------------------------------------------------------

    def _pump(self) -> None:
        """Write the frames ready, in order, while the socket takes them."""
        pushed = self._pushed
        while pushed and not self._paused:
            chunk = pushed.popleft()
            size = len(chunk.data)
            if chunk.since > 0.0:
                self._pushed_bytes -= size
            elif chunk.since == _ANSWER:
                self._owed -= 1
                self._owed_bytes -= size
            self._write(chunk.data, 1, chunk.mark)
        if not pushed and not self._paused:
            self._wake_drainers(True)
        if not pushed and not self._answers:
            self._all_written()
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
            if self._delivered is None:
                self._delivered = {}
            self._delivered[mark[0]] = mark[1]

    def _wake_drainers(self, value: bool) -> None:
        waiters, self._drain_waiters = self._drain_waiters, None
        for waiter in waiters or ():
            if not waiter.done():
                waiter.set_result(value)

    def _drop_queues(self) -> None:
        """The connection is gone: answers being computed are cancelled, nothing is written."""
        for slot in self._answers or ():
            if slot.future is not None:
                slot.future.cancel()  # request-scoped work ends with its connection
        self._answers = None
        self._pushed = None
        self._pushed_bytes = 0
        self._wake_drainers(False)

    def _drop_pushed(self) -> None:
        """Forget the pushed frames still queued, not the answers (a fatal error follows)."""
        if self._pushed:
            kept = deque(c for c in self._pushed if c.since == _ANSWER)
            self.dropped_frames += len(self._pushed) - len(kept)
            self._pushed = kept
        self._pushed_bytes = 0
