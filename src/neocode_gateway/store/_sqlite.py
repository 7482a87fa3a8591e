"""The event log and the sessions, in one SQLite database (WAL mode).

What a commit promises: the database runs in WAL mode with
``synchronous=NORMAL``. A transaction is durable against the *process* dying
(SIGKILL, a crash) as soon as :meth:`Store.commit` returns: its pages are in
the WAL file, written with ``write()``, and the next open replays them. It is
not forced to the disk platter on every commit (that is ``synchronous=FULL``,
an fsync per commit): a power loss or a kernel crash may lose the last
transactions, never corrupt the database. That is the promise of the contract
("a gateway killed with SIGKILL loses no event that any client saw") at a
fraction of the cost.

The WAL is copied back into the database file (a checkpoint, the only fsync)
every ``WAL_CHECKPOINT_PAGES`` pages, about 16 MiB: at most that much is
replayed by the next open after a kill.

One gateway owns a data directory: ``gateway.lock`` is ``flock``-ed for the
life of the store, so two gateways can never number the same session's events.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final, Self

from neocode_gateway.errors import StoreError, StoreOpenError
from neocode_gateway.store._open import (
    DB_NAME,
    connect,
    ensure_dir,
    lock,
    reason,
)
from neocode_gateway.store._reads import Reads
from neocode_gateway.store._rows import EventRow, RunRow, WriteBatch

_SESSION_COLUMNS: Final = frozenset(
    {
        "title",
        "updated_at",
        "last_seq",
        "first_seq",
        "active_run_id",
        "mode",
        "runtime_state",
        "options",
    }
)
_RUN_COLUMNS: Final = frozenset({"state", "ended_seq"})
_PERMISSION_COLUMNS: Final = frozenset(
    {"state", "decision", "decided_by", "option_id", "resolved_at", "who", "waited_ms"}
)
_GRANT_COLUMNS: Final = frozenset({"remaining", "uses", "revoked_at"})


class Store(Reads):
    """The gateway's SQLite database: sessions, events, runs, permission requests."""

    def __init__(self, con: sqlite3.Connection, path: Path, lock_fd: int) -> None:
        self._con = con
        self.path = path
        self._lock_fd = lock_fd

    # -- opening --------------------------------------------------------------------------

    @classmethod
    def open(cls, data_dir: Path) -> Store:
        """Open (or create) the log in ``data_dir``; ``StoreOpenError`` with one clear line."""
        data_dir = Path(data_dir)
        db_path = data_dir / DB_NAME
        try:
            ensure_dir(data_dir)
        except OSError as exc:
            raise StoreOpenError(
                f"cannot use the data directory {data_dir}: {reason(exc)}"
            ) from None
        lock_fd = lock(data_dir)
        try:
            return cls(connect(db_path), db_path, lock_fd)
        except BaseException:
            os.close(lock_fd)
            raise

    def close(self) -> None:
        """Close the database (a checkpoint folds the WAL back) and release the directory."""
        with contextlib.suppress(sqlite3.Error):
            self._con.close()
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writing --------------------------------------------------------------------------

    def commit(self, batch: WriteBatch) -> None:
        """Write ``batch`` in one transaction: all of it or, on ``StoreError``, none of it."""
        con = self._con
        try:
            con.execute("BEGIN IMMEDIATE")
            try:
                if batch.new_sessions:
                    con.executemany(
                        "INSERT INTO sessions VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", batch.new_sessions
                    )
                if batch.new_runs:
                    con.executemany("INSERT INTO runs VALUES (?,?,?,?,?,?)", batch.new_runs)
                if batch.events:
                    insert_events(con, batch.events)
                if batch.new_permissions:
                    con.executemany(
                        "INSERT INTO permissions VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                        batch.new_permissions,
                    )
                if batch.new_grants:
                    con.executemany(
                        "INSERT INTO grants VALUES (?,?,?,?,?,?,?,?,?,?)", batch.new_grants
                    )
                for session_id, fields in batch.session_updates.items():
                    _update(con, "sessions", _SESSION_COLUMNS, fields, "id = ?", (session_id,))
                for (session_id, run_id), fields in batch.run_updates.items():
                    _update(
                        con,
                        "runs",
                        _RUN_COLUMNS,
                        fields,
                        "session_id = ? AND run_id = ?",
                        (session_id, run_id),
                    )
                for permission_id, fields in batch.permission_updates.items():
                    _update(
                        con, "permissions", _PERMISSION_COLUMNS, fields, "id = ?", (permission_id,)
                    )
                for grant_id, fields in batch.grant_updates.items():
                    _update(con, "grants", _GRANT_COLUMNS, fields, "id = ?", (grant_id,))
                con.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    con.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: {reason(exc)}") from exc

    def recover(self) -> list[RunRow]:
        """The runs a previous gateway left ``active`` (it died during them)."""
        return [
            RunRow(*row)
            for row in self._read(
                "SELECT session_id, run_id, state, started_seq, ended_seq, created_at "
                "FROM runs WHERE state = 'active' ORDER BY created_at"
            )
        ]

    def void_pending_permissions(self) -> int:
        """Mark every ``pending`` permission request ``void``; return how many."""
        return self._write("UPDATE permissions SET state = 'void' WHERE state = 'pending'")

    def delete_session(self, session_id: str) -> bool:
        """Delete a session with its events, runs and permission requests, in one
        transaction; ``False`` if there was no such session."""
        try:
            with self._con_transaction():
                con = self._con
                for table in ("events", "runs", "permissions", "grants"):
                    con.execute(f"DELETE FROM {table} WHERE session_id = ?", (session_id,))
                return con.execute("DELETE FROM sessions WHERE id = ?", (session_id,)).rowcount > 0
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: {reason(exc)}") from exc

    def sessions_with_events_before(self, ts: str) -> list[str]:
        """The sessions whose oldest kept event was logged before ``ts`` (one query: each
        session's oldest event is found by the primary key, no scan of the events)."""
        return [
            row[0]
            for row in self._read(
                "SELECT id FROM sessions WHERE (SELECT ts FROM events "
                "WHERE events.session_id = sessions.id ORDER BY seq LIMIT 1) < ?",
                (ts,),
            )
        ]

    def delete_session_events_before(self, session_id: str, ts: str, chunk: int) -> tuple[int, int]:
        """Delete up to ``chunk`` of a session's oldest events logged before ``ts``, in one
        transaction with its ``first_seq``; return how many and the new ``first_seq``."""
        rows = self._read(
            "SELECT seq FROM events WHERE session_id = ? AND ts < ? ORDER BY seq LIMIT ?",
            (session_id, ts, chunk),
        )
        if not rows:
            return 0, self.first_seq(session_id)
        upto = int(rows[-1][0])
        try:
            with self._con_transaction():
                count = self._con.execute(
                    "DELETE FROM events WHERE session_id = ? AND seq <= ?", (session_id, upto)
                ).rowcount
                self._con.execute(
                    "UPDATE sessions SET first_seq = ? WHERE id = ? AND first_seq <= ?",
                    (upto + 1, session_id, upto),
                )
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: {reason(exc)}") from exc
        return count, upto + 1

    def delete_decisions_before(self, ts: str) -> int:
        """Forget permission requests (the audit) older than ``ts``, as their events go."""
        return self._write(
            "DELETE FROM permissions WHERE created_at < ? AND state != 'pending'", (ts,)
        )

    def delete_events_before(self, ts: str, chunk: int = 10_000) -> int:
        """Delete every event logged before ``ts``; sessions and ``last_seq`` stay."""
        deleted = 0
        for session_id in self.sessions_with_events_before(ts):
            while True:
                count, _ = self.delete_session_events_before(session_id, ts, chunk)
                deleted += count
                if count < chunk:
                    break
        return deleted

    # -- helpers ----------------------------------------------------------------------------

    def _write(self, sql: str, params: tuple[Any, ...] = ()) -> int:
        try:
            with self._con_transaction():
                return self._con.execute(sql, params).rowcount
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: {reason(exc)}") from exc

    @contextlib.contextmanager
    def _con_transaction(self) -> Iterator[None]:
        con = self._con
        con.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            con.execute("ROLLBACK")
            raise
        con.execute("COMMIT")


#: Rows per multi-row ``INSERT`` of events, largest first: a batch is cut greedily into
#: these sizes, so at most a few statements (each prepared once) cover any batch.
_EVENT_CHUNKS: Final = (256, 32, 4, 1)
_EVENT_INSERTS: Final = {
    size: "INSERT INTO events VALUES " + ",".join(["(?,?,?,?,?,?)"] * size)
    for size in _EVENT_CHUNKS
}
_flatten: Final = itertools.chain.from_iterable


def insert_events(con: sqlite3.Connection, rows: list[EventRow]) -> None:
    """Insert ``rows`` in order, 256 to a statement where there are that many.

    One ``INSERT ... VALUES (...),(...)`` of 256 rows costs SQLite about three
    quarters of 256 steps of ``executemany`` (one statement run, not one per row):
    the event log's write path is mostly SQLite, so this is its largest saving.
    """
    start = 0
    count = len(rows)
    for size in _EVENT_CHUNKS:
        sql = _EVENT_INSERTS[size]
        while count - start >= size:
            con.execute(sql, list(_flatten(rows[start : start + size])))
            start += size


def _update(  # noqa: PLR0917 - the statement's parts
    con: sqlite3.Connection,
    table: str,
    allowed: frozenset[str],
    fields: dict[str, Any],
    where: str,
    key: tuple[Any, ...],
) -> None:
    unknown = set(fields) - allowed
    if unknown:
        raise ValueError(f"cannot update {table}.{', '.join(sorted(unknown))}")
    assignments = ", ".join(f"{name} = ?" for name in fields)
    con.execute(f"UPDATE {table} SET {assignments} WHERE {where}", (*fields.values(), *key))
