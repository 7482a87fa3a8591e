"""Reading the log: sessions, events, runs, permission requests (the audit) and grants.

:class:`Reads` is the reading half of :class:`~._sqlite.Store`: every query
that changes nothing. Each raises :class:`~neocode_gateway.errors.StoreError`
(one line) rather than a raw SQLite error.
"""

from __future__ import annotations

import base64
import sqlite3
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any, Final

from neocode_gateway.errors import StoreError
from neocode_gateway.store._open import reason
from neocode_gateway.store._rows import GrantRow, PermissionRow, RunRow, SessionRow

_PERMISSION_SELECT: Final = (
    "SELECT id, session_id, run_id, state, decision, decided_by, option_id, request, "
    "created_at, resolved_at, who, waited_ms FROM permissions"
)
_GRANT_SELECT: Final = (
    "SELECT id, session_id, spec, rule, given_by, created_at, expires_at, remaining, uses, "
    "revoked_at FROM grants"
)
_SESSION_SELECT: Final = (
    "SELECT id, title, workdir, agent, created_at, updated_at, last_seq, first_seq, "
    "active_run_id, mode, runtime_state, options FROM sessions"
)


def _encode_cursor(updated_at: str, session_id: str) -> str:
    raw = f"{updated_at}\x00{session_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[str, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        updated_at, session_id = raw.split("\x00")
    except (ValueError, UnicodeDecodeError):
        raise ValueError(f"invalid cursor {cursor!r}") from None
    return updated_at, session_id


class Reads:
    """Every read of the log (the store's connection is :attr:`_con`)."""

    __slots__ = ()

    _con: sqlite3.Connection
    path: Path

    # -- reading --------------------------------------------------------------------------

    def get_session(self, session_id: str) -> SessionRow | None:
        """The session, or ``None``."""
        rows = self._read(_SESSION_SELECT + " WHERE id = ?", (session_id,))
        return SessionRow(*rows[0]) if rows else None

    def list_sessions(
        self, limit: int, cursor: str | None, workdir: str | None = None
    ) -> tuple[list[SessionRow], str | None]:
        """A page of sessions, newest ``updated_at`` first (of one ``workdir`` if given); the
        next page's cursor or ``None``."""
        where: list[str] = []
        params: list[Any] = []
        if cursor:
            updated_at, session_id = _decode_cursor(cursor)
            where.append("(updated_at, id) < (?, ?)")
            params += [updated_at, session_id]
        if workdir is not None:
            where.append("workdir = ?")
            params.append(workdir)
        sql = _SESSION_SELECT + (" WHERE " + " AND ".join(where) if where else "")
        rows = self._read(sql + " ORDER BY updated_at DESC, id DESC LIMIT ?", (*params, limit + 1))
        sessions = [SessionRow(*row) for row in rows[:limit]]
        if len(rows) > limit:
            last = sessions[-1]
            return sessions, _encode_cursor(last.updated_at, last.id)
        return sessions, None

    def count_sessions(self) -> int:
        """How many sessions there are."""
        return int(self._read("SELECT count(*) FROM sessions")[0][0])

    def first_seq(self, session_id: str) -> int:
        """The oldest ``seq`` still kept for a session (1 unless retention deleted some)."""
        rows = self._read("SELECT first_seq FROM sessions WHERE id = ?", (session_id,))
        return int(rows[0][0]) if rows else 1

    def read_events(
        self,
        session_id: str,
        after_seq: int,
        up_to_seq: int,
        limit: int,
        *,
        run_id: str | None = None,
    ) -> list[tuple[int, bytes]]:
        """``(seq, frame)`` of events with ``after_seq < seq <= up_to_seq``, in order."""
        if run_id is None:
            return self._read(
                "SELECT seq, frame FROM events WHERE session_id = ? AND seq > ? AND seq <= ? "
                "ORDER BY seq LIMIT ?",
                (session_id, after_seq, up_to_seq, limit),
            )
        return self._read(
            "SELECT seq, frame FROM events WHERE session_id = ? AND seq > ? AND seq <= ? "
            "AND run_id = ? ORDER BY seq LIMIT ?",
            (session_id, after_seq, up_to_seq, run_id, limit),
        )

    def read_events_bytes(
        self,
        session_id: str,
        after_seq: int,
        up_to_seq: int,
        max_bytes: int,
        *,
        run_id: str | None = None,
    ) -> list[tuple[int, bytes]]:
        """Like :meth:`read_events`, but a page of about ``max_bytes`` (at least one event):
        rows are fetched a few at a time, so memory follows the page, not the log."""
        sql = "SELECT seq, frame FROM events WHERE session_id = ? AND seq > ? AND seq <= ?"
        params: tuple[Any, ...] = (session_id, after_seq, up_to_seq)
        if run_id is not None:
            sql += " AND run_id = ?"
            params += (run_id,)
        out: list[tuple[int, bytes]] = []
        size = 0
        try:
            cursor = self._con.execute(sql + " ORDER BY seq", params)
            try:
                while size < max_bytes:
                    rows = cursor.fetchmany(16)
                    if not rows:
                        break
                    for row in rows:
                        out.append(row)
                        size += len(row[1])
                        if size >= max_bytes:
                            break
            finally:
                cursor.close()
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: {reason(exc)}") from exc
        return out

    def count_events(
        self, session_id: str, after_seq: int, up_to_seq: int, run_id: str | None = None
    ) -> int:
        """How many events :meth:`read_events` would return without a limit."""
        sql = "SELECT count(*) FROM events WHERE session_id = ? AND seq > ? AND seq <= ?"
        params: tuple[Any, ...] = (session_id, after_seq, up_to_seq)
        if run_id is not None:
            sql += " AND run_id = ?"
            params += (run_id,)
        return int(self._read(sql, params)[0][0])

    def iter_events(
        self, session_id: str, types: Collection[str], after_seq: int = 0
    ) -> Iterator[tuple[int, str | None, str, bytes]]:
        """``(seq, run_id, event_type, frame)`` of a session's events of ``types`` after
        ``after_seq``, in order, read a thousand at a time."""
        marks = ",".join("?" * len(types))
        cursor = after_seq
        while True:
            rows = self._read(
                "SELECT seq, run_id, event_type, frame FROM events WHERE session_id = ? "
                f"AND seq > ? AND event_type IN ({marks}) ORDER BY seq LIMIT 1000",
                (session_id, cursor, *types),
            )
            yield from rows
            if len(rows) < 1000:
                return
            cursor = rows[-1][0]

    def get_run(self, session_id: str, run_id: str) -> RunRow | None:
        """A run of a session, or ``None``."""
        rows = self._read(
            "SELECT session_id, run_id, state, started_seq, ended_seq, created_at FROM runs "
            "WHERE session_id = ? AND run_id = ?",
            (session_id, run_id),
        )
        return RunRow(*rows[0]) if rows else None

    def find_run(self, run_id: str) -> RunRow | None:
        """The most recent run with this id in any session, or ``None``."""
        rows = self._read(
            "SELECT session_id, run_id, state, started_seq, ended_seq, created_at FROM runs "
            "WHERE run_id = ? ORDER BY created_at DESC LIMIT 1",
            (run_id,),
        )
        return RunRow(*rows[0]) if rows else None

    def get_permission(self, permission_id: str) -> PermissionRow | None:
        """A permission request, or ``None``."""
        rows = self._read(_PERMISSION_SELECT + " WHERE id = ?", (permission_id,))
        return PermissionRow(*rows[0]) if rows else None

    def audit(
        self,
        *,
        session_id: str | None = None,
        since: str | None = None,
        decided_by: str | None = None,
        limit: int = 100,
        before: str | None = None,
    ) -> list[PermissionRow]:
        """Permission requests, newest first, filtered; ``before`` pages (a ``created_at``)."""
        where: list[str] = []
        params: list[Any] = []
        for clause, value in (
            ("session_id = ?", session_id),
            ("created_at >= ?", since),
            ("decided_by = ?", decided_by),
            ("created_at < ?", before),
        ):
            if value is not None:
                where.append(clause)
                params.append(value)
        sql = _PERMISSION_SELECT
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY created_at DESC, id DESC LIMIT ?"
        return [PermissionRow(*row) for row in self._read(sql, (*params, limit))]

    def grants(self, session_id: str | None = None, *, live_only: bool = True) -> list[GrantRow]:
        """Grants, oldest first; of one session, and not revoked unless ``live_only`` is off."""
        where: list[str] = []
        params: tuple[Any, ...] = ()
        if session_id is not None:
            where.append("session_id = ?")
            params += (session_id,)
        if live_only:
            where.append("revoked_at IS NULL")
        sql = _GRANT_SELECT + (" WHERE " + " AND ".join(where) if where else "")
        return [GrantRow(*row) for row in self._read(sql + " ORDER BY created_at", params)]

    def _read(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        try:
            return self._con.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: {reason(exc)}") from exc
