"""Group commit: the changes of one loop turn, written in one transaction, then fanned out.

Everything the core changes (events, sessions, runs, permissions) is recorded
here first. :meth:`Journal.flush` runs once per loop turn (``call_soon``) and
commits it all in one SQLite transaction; only then are the turn's events
written to clients. An event is therefore never seen before it is durable, and
a burst of events costs one commit, not one per event.

**A failed commit loses nothing.** The batch stays, later changes join it,
and the commit is tried again after a back-off (20 ms, doubling up to 1 s)
until it succeeds. Numbering is never reused and order is kept, so the log
that finally lands is the one that would have landed without the failure.
While a batch waits, :attr:`Journal.failing` tells the core to refuse new
work, and :meth:`Journal.retract` lets a request that was not yet answered
take its own rows back out (nothing is acked that is not durable).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any, Final

from neocode_gateway.errors import StoreError
from neocode_gateway.store import (
    EventRow,
    GrantRow,
    PermissionRow,
    RunRow,
    SessionRow,
    Store,
    WriteBatch,
)

log = logging.getLogger("neocode_gateway.sessions")

#: Events waiting for their commit (then fanned out): the rows themselves.
Pending = EventRow
RETRY_FIRST: Final = 0.02
RETRY_MAX: Final = 1.0


class Journal:
    """Collects one loop turn's changes; commits them together; reports what committed."""

    __slots__ = (
        "_batch",
        "_delay",
        "_events",
        "_loop",
        "_on_committed",
        "_sessions",
        "_store",
        "_waiters",
        "commits",
        "failing_since",
        "last_error",
        "scheduled",
    )

    def __init__(
        self,
        store: Store,
        loop: asyncio.AbstractEventLoop,
        on_committed: Callable[[list[Pending], bool], None],
    ) -> None:
        self._store = store
        self._loop = loop
        self._on_committed = on_committed
        self._batch = WriteBatch()
        self._events = self._batch.events
        #: The sessions with events in the batch (a burst is nearly always one).
        self._sessions: set[str] = set()
        #: Whether a flush is scheduled: a batch has started this loop turn (or waits for a retry).
        self.scheduled = False
        self._waiters: list[asyncio.Future[bool]] = []
        self._delay = RETRY_FIRST
        self.commits = 0
        #: ``time.monotonic()`` of the first failure of the batch now waiting, else ``None``.
        self.failing_since: float | None = None
        self.last_error: StoreError | None = None

    @property
    def failing(self) -> bool:
        """Whether a batch that failed to commit is waiting for its retry."""
        return self.failing_since is not None

    @property
    def batch(self) -> WriteBatch:
        """The batch being filled this loop turn (schedules its commit)."""
        if not self.scheduled:
            self.scheduled = True
            self._loop.call_soon(self.flush)
        return self._batch

    @property
    def pending_events(self) -> int:
        """Events recorded and not yet committed."""
        return len(self._events)

    def event(self, row: EventRow) -> int:
        """Record one event (fanned out after its commit); return how many now wait.

        The hot path of every event: no per-event session update (each session's
        ``last_seq`` and ``updated_at`` are taken from its last event at commit).
        """
        if not self.scheduled:
            self.scheduled = True
            self._loop.call_soon(self.flush)
        events = self._events
        if not events or row[0] != events[-1][0]:  # the session id (tuple indexing is fastest)
            self._sessions.add(row[0])
        events.append(row)
        return len(events)

    def session(self, row: SessionRow) -> None:
        """Record a new session."""
        self.batch.new_sessions.append(row)

    def update_session(self, session_id: str, **fields: Any) -> None:
        """Record changed session fields (merged with earlier changes of this turn)."""
        self.batch.session_updates.setdefault(session_id, {}).update(fields)

    def run(self, row: RunRow) -> None:
        """Record a new run."""
        self.batch.new_runs.append(row)

    def update_run(self, session_id: str, run_id: str, **fields: Any) -> None:
        """Record changed run fields."""
        self.batch.run_updates.setdefault((session_id, run_id), {}).update(fields)

    def permission(self, row: PermissionRow) -> None:
        """Record a new permission request."""
        self.batch.new_permissions.append(row)

    def update_permission(self, permission_id: str, **fields: Any) -> None:
        """Record a changed permission request."""
        self.batch.permission_updates.setdefault(permission_id, {}).update(fields)

    def grant(self, row: GrantRow) -> None:
        """Record a new grant."""
        self.batch.new_grants.append(row)

    def update_grant(self, grant_id: str, **fields: Any) -> None:
        """Record a changed grant (a use, a revocation)."""
        self.batch.grant_updates.setdefault(grant_id, {}).update(fields)

    def retract(self, session_id: str, run_id: str | None, from_seq: int, *, new: bool) -> None:
        """Take a request's own uncommitted rows back out: its session (``new``), its run,
        the session's events from ``from_seq`` on and the session fields it set."""
        batch = self._batch
        if new:
            batch.new_sessions[:] = [r for r in batch.new_sessions if r.id != session_id]
            batch.session_updates.pop(session_id, None)
        else:
            fields = batch.session_updates.get(session_id)
            if fields is not None:
                for key in ("active_run_id", "last_seq", "updated_at"):
                    fields.pop(key, None)
                if not fields:
                    del batch.session_updates[session_id]
        if run_id is not None:
            batch.new_runs[:] = [
                r for r in batch.new_runs if (r.session_id, r.run_id) != (session_id, run_id)
            ]
            batch.run_updates.pop((session_id, run_id), None)
        batch.events[:] = [
            e for e in batch.events if e.session_id != session_id or e.seq < from_seq
        ]
        self._sessions = {e.session_id for e in batch.events}

    async def wait_committed(self) -> bool:
        """Wait for the next commit attempt of what is recorded now: ``True`` if it is
        durable, ``False`` if that attempt failed (the batch then waits for a retry)."""
        if not self.scheduled:
            return not self.failing
        future: asyncio.Future[bool] = self._loop.create_future()
        self._waiters.append(future)
        return await future

    def flush(self) -> None:
        """Commit the batch, then hand its events to the fan-out; on failure keep it."""
        self.scheduled = False
        batch = self._batch
        pending = batch.events
        waiters, self._waiters = self._waiters, []
        if pending:
            updates = batch.session_updates
            if len(self._sessions) == 1:
                last = {pending[-1].session_id: pending[-1]}
            else:
                last = {row.session_id: row for row in pending}
            for session_id, row in last.items():
                fields = updates.setdefault(session_id, {})
                fields["last_seq"] = row.seq
                fields["updated_at"] = row.ts
        ok = True
        try:
            if not batch.empty:
                self._store.commit(batch)
                self.commits += 1
        except StoreError as exc:
            ok = False
            self._failed(exc)
        else:
            if self.failing_since is not None:
                log.warning(
                    "the event log is written again after %.1fs of failures",
                    time.monotonic() - self.failing_since,
                )
            self.failing_since = None
            self.last_error = None
            self._delay = RETRY_FIRST
            self._batch = WriteBatch()
            self._events = self._batch.events
            single = len(self._sessions) == 1
            self._sessions = set()
            if pending:
                self._on_committed(pending, single)
        finally:
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(ok)

    def _failed(self, exc: StoreError) -> None:
        """Keep the batch (later changes join it) and try again after a back-off."""
        if self.failing_since is None:
            self.failing_since = time.monotonic()
            log.error("the event log could not be written: %s; retrying", exc)
        self.last_error = exc
        self.scheduled = True  # records join the batch without scheduling another flush
        self._loop.call_later(self._delay, self.flush)
        self._delay = min(self._delay * 2, RETRY_MAX)
