"""The log: numbering and recording events, fan-out after the commit, recovery, retention.

An event is encoded first and numbered only once its frame exists, so a value
that cannot be encoded never leaves a gap in a session's numbering. The frame
is encoded once; those bytes are stored, fanned out and replayed unchanged.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any, Final

from neocode_gateway.errors import StoreError
from neocode_gateway.protocol import (
    GATEWAY_RESTARTED,
    encode_event_data,
    event_head,
    event_middle,
    utc_timestamp,
)
from neocode_gateway.sessions._ids import EventClock
from neocode_gateway.sessions._journal import Journal, Pending
from neocode_gateway.sessions._model import Session
from neocode_gateway.store import EventRow, Store

if TYPE_CHECKING:
    from neocode_gateway.sessions._core import SessionCore

log = logging.getLogger("neocode_gateway.sessions")
#: Rows are plain tuples underneath: made without the named tuple's argument parsing.
_row: Final = tuple.__new__

#: Seconds between two passes of retention.
RETENTION_PERIOD: Final = 3600.0
#: Sessions whose old events are deleted per loop turn, and events per delete.
RETENTION_SESSIONS_PER_TURN: Final = 64
RETENTION_CHUNK: Final = 5000


class EventLog:
    """Appends events to the journal and fans out what committed."""

    __slots__ = (
        "_core",
        "_middles",
        "_retention",
        "_ts",
        "clock",
        "events_logged",
        "journal",
        "waiting",
    )

    def __init__(self, core: SessionCore, journal: Journal) -> None:
        self._core = core
        self.journal = journal
        self.clock = EventClock()
        #: The timestamp of the batch being filled: events of one loop turn share it.
        self._ts = ""
        #: Each event type's :func:`event_middle` for that timestamp.
        self._middles: dict[str, bytes] = {}
        #: Events recorded and not yet committed (after the last append).
        self.waiting = 0
        self.events_logged = 0
        self._retention: asyncio.Task[None] | None = None

    def append(
        self, session: Session, run_id: str | None, event_type: str, data: dict[str, Any]
    ) -> int:
        """Encode, number and record one event; it is fanned out after its commit.

        The hot path of every event: the frame is joined from the session's cached
        head, and the events of one loop turn (one batch, committed together) share
        one timestamp, read when the batch starts.
        """
        journal = self.journal
        if not journal.scheduled or not self._ts:
            self._ts = self.clock.now()
            self._middles = {}
        ts = self._ts
        seq = session.last_seq + 1
        if session.head_run != run_id or not session.head:
            session.head = event_head(session.id, run_id)
            session.head_run = run_id
        middle = self._middles.get(event_type)
        if middle is None:
            middle = self._middles[event_type] = event_middle(event_type, ts)
        frame = encode_event_data(session.head, seq, middle, data)  # may raise
        session.last_seq = seq
        self.waiting = journal.event(
            _row(EventRow, (session.id, seq, run_id, event_type, ts, frame))
        )
        session.updated_at = ts
        self.events_logged += 1
        return seq

    def committed(self, pending: list[Pending], single: bool = False) -> None:
        """Committed events: each session's run of them goes to its live bindings."""
        cache = self._core.cache
        deliver = self._core.streams.deliver
        if single:  # one session's events (a burst): no grouping to do
            session = cache.peek(pending[0].session_id)
            if session is not None:
                session.committed_seq = pending[-1].seq
                if session.bindings:
                    deliver(session, pending)
            return
        start = 0
        count = len(pending)
        while start < count:
            session_id = pending[start].session_id
            end = start + 1
            while end < count and pending[end].session_id == session_id:
                end += 1
            session = cache.peek(session_id)
            if session is not None:
                session.committed_seq = pending[end - 1].seq
                if session.bindings:
                    deliver(session, pending[start:end])
            start = end

    # -- recovery -----------------------------------------------------------------------

    def recover(self, store: Store) -> None:
        """End the runs the previous gateway left active; void their permission requests.

        One rule for a permission pending when the gateway stops, whatever the
        stop: it is *void* (no decision was made; the next start says so in the
        log as the run's ``gateway_restarted``), never a made-up ``cancel``.
        """
        voided = store.void_pending_permissions()
        runs = store.recover()
        for run in runs:
            session = self._core.cache.get(run.session_id)
            if session is None:  # pragma: no cover - the foreign key prevents it
                continue
            self.append(
                session,
                run.run_id,
                "run_error",
                {"code": GATEWAY_RESTARTED, "message": "the gateway restarted during the run"},
            )
            self.journal.update_run(
                session.id, run.run_id, state="error", ended_seq=session.last_seq
            )
            self.journal.update_session(session.id, active_run_id=None)
        if runs or voided:
            log.info(
                "recovered: %d interrupted runs ended with gateway_restarted, "
                "%d pending permission requests voided",
                len(runs),
                voided,
            )

    # -- retention ----------------------------------------------------------------------

    def start_retention(self, days: int) -> None:
        """Delete events older than ``days`` now and every hour, off the hot path."""
        if days > 0:
            self._retention = asyncio.get_running_loop().create_task(
                self._retain(days), name="retention"
            )

    def stop_retention(self) -> None:
        if self._retention is not None:
            self._retention.cancel()

    async def _retain(self, days: int) -> None:
        store = self._core.store
        while True:
            cutoff = utc_timestamp(time.time() - days * 86400)
            deleted = 0
            try:
                # One query finds the sessions with an event older than the cutoff
                # (each by its primary key); deleting is then a few sessions per turn.
                sessions = store.sessions_with_events_before(cutoff)
                for index, session_id in enumerate(sessions):
                    while True:
                        count, first_seq = store.delete_session_events_before(
                            session_id, cutoff, RETENTION_CHUNK
                        )
                        deleted += count
                        if count < RETENTION_CHUNK:
                            break
                        await asyncio.sleep(0)
                    session = self._core.cache.peek(session_id)
                    if session is not None:
                        session.first_seq = first_seq
                    if index % RETENTION_SESSIONS_PER_TURN == RETENTION_SESSIONS_PER_TURN - 1:
                        await asyncio.sleep(0)
                store.delete_decisions_before(cutoff)
            except StoreError as exc:
                log.warning("retention: old events could not be deleted: %s", exc)
            if deleted:
                log.info("retention: deleted %d events older than %d days", deleted, days)
            await asyncio.sleep(RETENTION_PERIOD)
