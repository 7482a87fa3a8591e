"""Bindings: who receives a session's events, replay from the log, and slow consumers.

**Joining replay and live.** A binding keeps a ``cursor``, the last ``seq``
handed to its subscriber. While it may not receive live events (its request's
answer is not written yet, or it is replaying), committed events simply pass
it by; when it may again, it reads the log from its cursor up to the last
committed event and turns live in the same loop turn as its last read, so
nothing is missed and nothing is doubled.

**Answers first.** A binding made or touched by a request waits until that
request's answer is written (``Subscriber.after_answer``): so ``run``,
``bind_stream`` and ``cancel`` are answered before the events they concern,
while the events of other sessions flow past an answer that is slow to come.

**Replay is paced, not counted.** Pages of at most ``REPLAY_PAGE_BYTES`` are
read from the log and sent as replay (outside the slow-consumer rule), and the
next page is read only once the subscriber has taken the last one: memory per
replaying binding is one page, whatever the log's size.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any, Final

from neocode_gateway.errors import StoreError
from neocode_gateway.protocol import (
    INTERNAL_ERROR,
    INVALID_ACTION,
    SLOW_CONSUMER,
    ErrorBody,
    Frame,
    codes,
    encode_error,
    encode_frame,
)
from neocode_gateway.sessions._journal import Pending
from neocode_gateway.sessions._model import Binding, Session
from neocode_gateway.sessions._subscriber import Subscriber
from neocode_gateway.sessions._wire import RequestError, ack

if TYPE_CHECKING:
    from neocode_gateway.sessions._core import SessionCore

log = logging.getLogger("neocode_gateway.sessions")

#: A replay page: bytes read from the log before the subscriber must take them.
REPLAY_PAGE_BYTES: Final = 256 << 10


class AnswerHold:
    """Events of the binding it names wait until the answer it was made for is written."""

    __slots__ = ("binding", "released")

    def __init__(self) -> None:
        self.binding: Binding | None = None
        self.released = False


class Streams:
    """Every binding, by subscriber and by session."""

    __slots__ = ("_core", "by_sub")

    def __init__(self, core: SessionCore) -> None:
        self._core = core
        self.by_sub: dict[Subscriber, dict[str, Binding]] = {}

    @property
    def count(self) -> int:
        return sum(len(b) for b in self.by_sub.values())

    # -- bind_stream / unbind_stream ----------------------------------------------------

    def bind_stream(self, frame: Frame, sub: Subscriber) -> bytes:
        """``bind_stream``: replay from ``after_seq`` (if given), then follow live."""
        session = self._core.cache.require(frame.session_id)
        payload = frame.payload if isinstance(frame.payload, dict) else {}
        after_seq = payload.get("after_seq")
        run_id = frame.run_id or None
        self.check_room(sub, session)
        last_seq = session.committed_seq
        result: dict[str, Any] = {"last_seq": last_seq, "replayed": 0}
        if after_seq is None:
            cursor = last_seq
        elif after_seq > last_seq:
            # A cursor from the future (a log restored from a backup, another gateway's
            # numbers): say so rather than wait silently for numbers that were given out.
            result["reset"] = True
            cursor = last_seq
        else:
            cursor = after_seq
            if session.first_seq > after_seq + 1:
                result["gap"] = True
                result["first_seq"] = session.first_seq
                cursor = session.first_seq - 1
            if run_id is None:
                result["replayed"] = last_seq - cursor
            else:
                result["replayed"] = self._core.store.count_events(
                    session.id, cursor, last_seq, run_id
                )
        binding = self._bind(sub, session, run_id, cursor, replace=True)
        self.hold(binding)
        return ack(frame, result, session_id=session.id)

    def unbind_stream(self, frame: Frame, sub: Subscriber) -> bytes:
        """``unbind_stream``: stop receiving a session's events (idempotent)."""
        bindings = self.by_sub.get(sub)
        if bindings is not None and frame.session_id in bindings:
            self.drop(bindings[frame.session_id])
        return ack(frame, {"message": codes.MSG_STREAM_UNBOUND}, session_id=frame.session_id)

    def check_room(self, sub: Subscriber, session: Session) -> None:
        bindings = self.by_sub.get(sub, {})
        if session.id not in bindings and len(bindings) >= self._core.config.max_bindings:
            raise RequestError(INVALID_ACTION, codes.MSG_TOO_MANY_BINDINGS)

    def hold_answer(self, sub: Subscriber) -> AnswerHold:
        """A hold on the answer being computed now, for a binding made later (``run``
        binds only once its rows are logged, after the handler has returned)."""
        hold = AnswerHold()
        sub.after_answer(lambda: self._end_hold(hold))
        return hold

    def _end_hold(self, hold: AnswerHold) -> None:
        hold.released = True
        if hold.binding is not None:
            self._release(hold.binding)

    def bind_for_run(self, sub: Subscriber, session: Session, hold: AnswerHold) -> Binding:
        """The sender of ``run`` follows its session from now on, once its answer is written
        (an existing binding of the whole session stays: a replay under way completes)."""
        binding = self._bind(sub, session, None, session.committed_seq, replace=False)
        if hold.released:
            self._catch_up(binding)
        else:
            binding.held += 1
            binding.live = False
            hold.binding = binding
        return binding

    def _bind(
        self, sub: Subscriber, session: Session, run_id: str | None, cursor: int, *, replace: bool
    ) -> Binding:
        bindings = self.by_sub.get(sub)
        if bindings is None:
            bindings = self.by_sub[sub] = {}
            sub.add_close_callback(self.closed)
        old = bindings.get(session.id)
        if old is not None:
            if not replace and old.run_id is None:
                return old
            if not replace:  # a run-filtered binding widens, from where it was
                cursor = min(cursor, old.cursor)
            self.drop(old)
        binding = Binding(sub, session, run_id, cursor)
        bindings[session.id] = binding
        session.bindings[sub] = binding
        sub.bound = True
        return binding

    # -- holding a binding behind an answer ---------------------------------------------

    def hold(self, binding: Binding) -> None:
        """Keep ``binding``'s events behind the answer being computed now."""
        binding.held += 1
        binding.live = False
        binding.sub.after_answer(lambda: self._release(binding))

    def hold_session(self, sub: Subscriber, session_id: str) -> None:
        """Hold ``sub``'s binding of a session (if any) behind the answer being computed."""
        binding = self.by_sub.get(sub, {}).get(session_id)
        if binding is not None:
            self.hold(binding)

    def _release(self, binding: Binding) -> None:
        binding.held -= 1
        if binding.held <= 0 and binding.session.bindings.get(binding.sub) is binding:
            self._catch_up(binding)

    def _catch_up(self, binding: Binding) -> None:
        """Turn live now if nothing is missing, else replay from the cursor first."""
        if binding.held > 0 or binding.replay is not None:
            return
        if binding.cursor >= binding.session.committed_seq:
            binding.live = True
            return
        binding.live = False
        binding.replay = asyncio.get_running_loop().create_task(
            self._replay(binding), name=f"replay {binding.session.id}"
        )

    async def _replay(self, binding: Binding) -> None:
        """Write logged events after the cursor, paced by the subscriber; then turn live."""
        session = binding.session
        sub = binding.sub
        store = self._core.store
        try:
            while True:
                if binding.held > 0:
                    return  # an answer must go first: released, it replays on from the cursor
                target = session.committed_seq
                if binding.cursor >= target:
                    binding.replay = None
                    if binding.held <= 0:
                        binding.live = True  # no await between the check and this
                    return
                rows = store.read_events_bytes(
                    session.id, binding.cursor, target, REPLAY_PAGE_BYTES, run_id=binding.run_id
                )
                if not rows:
                    binding.cursor = target
                    continue
                data = rows[0][1] if len(rows) == 1 else b"".join([r[1] for r in rows])
                last = rows[-1][0]
                del rows
                if not sub.send(data, mark=(session.id, last), replay=True):
                    return
                del data
                binding.cursor = last
                if not await sub.drain():
                    return
                await asyncio.sleep(0)  # let other subscribers in between pages
        except StoreError as exc:
            log.error("replay of session %s failed: %s", session.id, exc)  # noqa: TRY400
            sub.close_with_error(
                encode_error(INTERNAL_ERROR, f"replay failed: {exc}", action="bind_stream")
            )
        finally:
            if binding.replay is asyncio.current_task():
                binding.replay = None

    # -- fan-out --------------------------------------------------------------------------

    def deliver(self, session: Session, events: list[Pending]) -> None:
        """Committed events of one session: to each of its live bindings."""
        whole: bytes | None = None
        last_seq = events[-1].seq
        limit = self._core.config.slow_consumer_bytes
        for binding in list(session.bindings.values()):
            if not binding.live:
                continue
            sub = binding.sub
            if binding.run_id is None:
                if whole is None:
                    whole = (
                        events[0].frame if len(events) == 1 else b"".join([e.frame for e in events])
                    )
                data = whole
            else:
                mine = [e for e in events if e.run_id == binding.run_id]
                if not mine:
                    binding.cursor = last_seq
                    continue
                data = b"".join([e.frame for e in mine])
            binding.cursor = last_seq
            if not sub.send(data, mark=(session.id, last_seq)):
                continue
            if sub.pending_bytes > limit:
                self.slow_consumer(sub, session.id)

    # -- ends -----------------------------------------------------------------------------

    def drop(self, binding: Binding) -> None:
        sub = binding.sub
        session = binding.session
        if session.bindings.get(sub) is binding:
            del session.bindings[sub]
        if binding.replay is not None:
            binding.replay.cancel()
            binding.replay = None
        binding.live = False
        bindings = self.by_sub.get(sub)
        if bindings is not None and bindings.get(session.id) is binding:
            del bindings[session.id]
            sub.forget_mark(session.id)
            if not bindings:
                sub.bound = False
        self._core.cache.evict()

    def closed(self, sub: Subscriber) -> None:
        """The subscriber is gone: every binding of it ends."""
        for binding in list(self.by_sub.pop(sub, {}).values()):
            if binding.session.bindings.get(sub) is binding:
                del binding.session.bindings[sub]
            if binding.replay is not None:
                binding.replay.cancel()
                binding.replay = None
        self._core.cache.evict()

    def stop(self) -> None:
        for bindings in self.by_sub.values():
            for binding in bindings.values():
                if binding.replay is not None:
                    binding.replay.cancel()

    def check_slow_consumers(self, now: float) -> None:
        """The sweeper's tick: cut subscribers whose oldest live event waits too long."""
        limit = self._core.config.slow_consumer_seconds
        for sub, bindings in list(self.by_sub.items()):
            if bindings and sub.oldest_pending_age(now) > limit:
                self.slow_consumer(sub, next(iter(bindings)))

    def slow_consumer(self, sub: Subscriber, session_id: str) -> None:
        """Write one ``slow_consumer`` error and close (spec v1.1 section 7)."""
        bindings = self.by_sub.get(sub, {})
        # Name the session whose events are furthest behind on this subscriber.
        worst, last, behind = session_id, sub.delivered(session_id) or 0, -1
        for sid, binding in bindings.items():
            delivered = sub.delivered(sid) or 0
            if binding.session.committed_seq - delivered > behind:
                worst, last = sid, delivered
                behind = binding.session.committed_seq - delivered
        log.warning(
            "slow consumer: closing a connection bound to session %s (last delivered seq %d, "
            "%d bytes waiting)",
            worst,
            last,
            sub.pending_bytes,
        )
        frame = Frame(
            type="error",
            session_id=worst,
            payload={"last_seq": last},
            error=ErrorBody(code=SLOW_CONSUMER, message=codes.msg_slow_consumer(last)),
        )
        self.closed(sub)
        sub.close_with_error(encode_frame(frame))
