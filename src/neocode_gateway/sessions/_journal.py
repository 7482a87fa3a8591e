"""Group commit: the changes of one loop turn, written in one transaction, then fanned out.

Everything the core changes (events, sessions, runs, permissions) is recorded
here first. :meth:`Journal.flush` runs once per loop turn (``call_soon``) and
commits it all in one SQLite transaction; only then are the turn's events
written to clients. An event is therefore never seen before it is durable, and
a burst of events costs one commit, not one per event.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from neocode_gateway.errors import StoreError
from neocode_gateway.store import EventRow, PermissionRow, RunRow, SessionRow, Store, WriteBatch

log = logging.getLogger("neocode_gateway.sessions")

#: Events waiting for their commit (then fanned out): the rows themselves.
Pending = EventRow


class Journal:
    """Collects one loop turn's changes; commits them together; reports what committed."""

    __slots__ = (
        "_batch",
        "_events",
        "_loop",
        "_on_committed",
        "_on_failed",
        "_scheduled",
        "_store",
        "_waiters",
        "commits",
    )

    def __init__(
        self,
        store: Store,
        loop: asyncio.AbstractEventLoop,
        on_committed: Callable[[list[Pending]], None],
        on_failed: Callable[[list[Pending], WriteBatch, StoreError], None],
    ) -> None:
        self._store = store
        self._loop = loop
        self._on_committed = on_committed
        self._on_failed = on_failed
        self._batch = WriteBatch()
        self._events = self._batch.events
        self._scheduled = False
        self._waiters: list[asyncio.Future[None]] = []
        self.commits = 0

    @property
    def batch(self) -> WriteBatch:
        """The batch being filled this loop turn (schedules its commit)."""
        if not self._scheduled:
            self._scheduled = True
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
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self.flush)
        events = self._events
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

    async def wait_committed(self) -> None:
        """Wait until what is recorded now has been committed (or failed)."""
        if not self._scheduled:
            return
        future = self._loop.create_future()
        self._waiters.append(future)
        await future

    def flush(self) -> None:
        """Commit this turn's batch, then hand its events to the fan-out."""
        self._scheduled = False
        batch, self._batch = self._batch, WriteBatch()
        self._events = self._batch.events
        pending = batch.events
        waiters, self._waiters = self._waiters, []
        if pending:
            updates = batch.session_updates
            for session_id, row in {row.session_id: row for row in pending}.items():
                fields = updates.setdefault(session_id, {})
                fields["last_seq"] = row.seq
                fields["updated_at"] = row.ts
        try:
            if not batch.empty:
                self._store.commit(batch)
                self.commits += 1
        except StoreError as exc:
            log.error("the event log could not be written: %s", exc)  # noqa: TRY400
            self._on_failed(pending, batch, exc)
        else:
            if pending:
                self._on_committed(pending)
        finally:
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)
