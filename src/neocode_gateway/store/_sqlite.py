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

One gateway owns a data directory: ``gateway.lock`` is ``flock``-ed for the
life of the store, so two gateways can never number the same session's events.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import fcntl
import os
import sqlite3
import stat
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any, Final, Self

from neocode_gateway.errors import StoreError, StoreOpenError
from neocode_gateway.store._rows import GrantRow, PermissionRow, RunRow, SessionRow, WriteBatch

DB_NAME: Final = "gateway.db"
LOCK_NAME: Final = "gateway.lock"

#: Forward-only migrations: MIGRATIONS[n] takes a database from version n to n + 1.
MIGRATIONS: Final[tuple[str, ...]] = (
    """
    CREATE TABLE sessions (
        id TEXT PRIMARY KEY,
        title TEXT NOT NULL,
        workdir TEXT NOT NULL,
        agent TEXT NOT NULL,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        last_seq INTEGER NOT NULL DEFAULT 0,
        first_seq INTEGER NOT NULL DEFAULT 1,
        active_run_id TEXT,
        mode TEXT,
        runtime_state TEXT
    ) WITHOUT ROWID;
    CREATE INDEX sessions_by_update ON sessions (updated_at DESC, id DESC);
    CREATE TABLE events (
        session_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        run_id TEXT,
        event_type TEXT NOT NULL,
        ts TEXT NOT NULL,
        frame BLOB NOT NULL,
        PRIMARY KEY (session_id, seq)
    ) WITHOUT ROWID;
    CREATE TABLE runs (
        session_id TEXT NOT NULL,
        run_id TEXT NOT NULL,
        state TEXT NOT NULL,
        started_seq INTEGER NOT NULL,
        ended_seq INTEGER,
        created_at TEXT NOT NULL,
        PRIMARY KEY (session_id, run_id)
    ) WITHOUT ROWID;
    CREATE INDEX runs_by_id ON runs (run_id);
    CREATE INDEX runs_active ON runs (state) WHERE state = 'active';
    CREATE TABLE permissions (
        id TEXT PRIMARY KEY,
        session_id TEXT NOT NULL,
        run_id TEXT NOT NULL,
        state TEXT NOT NULL,
        decision TEXT,
        decided_by TEXT,
        option_id TEXT,
        request TEXT NOT NULL,
        created_at TEXT NOT NULL,
        resolved_at TEXT
    ) WITHOUT ROWID;
    CREATE INDEX permissions_pending ON permissions (state) WHERE state = 'pending';
    """,
    # v1.2: what a session was created with for its agent (MCP servers), as JSON.
    """
    ALTER TABLE sessions ADD COLUMN options TEXT;
    """,
    # v1.2: the audit of permission decisions (who decided, how long the agent waited) and
    # the grants people gave.
    """
    ALTER TABLE permissions ADD COLUMN who TEXT;
    ALTER TABLE permissions ADD COLUMN waited_ms INTEGER;
    CREATE INDEX permissions_by_created ON permissions (created_at);
    CREATE TABLE grants (
        id TEXT PRIMARY KEY,
        session_id TEXT NOT NULL,
        spec TEXT NOT NULL,
        rule TEXT NOT NULL,
        given_by TEXT,
        created_at TEXT NOT NULL,
        expires_at TEXT,
        remaining INTEGER,
        uses INTEGER NOT NULL DEFAULT 0,
        revoked_at TEXT
    ) WITHOUT ROWID;
    CREATE INDEX grants_by_session ON grants (session_id);
    """,
)
SCHEMA_VERSION: Final = len(MIGRATIONS)

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


def _reason(exc: BaseException) -> str:
    """A short reason for a SQLite or OS error, with a hint where there is an obvious fix."""
    text = str(exc) or type(exc).__name__
    code = getattr(exc, "sqlite_errorcode", None)
    if code == sqlite3.SQLITE_FULL or "disk is full" in text:
        return "the disk is full"
    if "readonly" in text or "read-only" in text:
        return "the database is read-only (check the permissions of the file and its directory)"
    if "not a database" in text or "malformed" in text:
        return "the file is not a valid database (corrupt?); move it away to start a new log"
    if isinstance(exc, OSError) and exc.errno is not None:
        return os.strerror(exc.errno).lower()
    return text


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


class Store:
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
            _ensure_dir(data_dir)
        except OSError as exc:
            raise StoreOpenError(
                f"cannot use the data directory {data_dir}: {_reason(exc)}"
            ) from None
        lock_fd = _lock(data_dir)
        try:
            return cls(_connect(db_path), db_path, lock_fd)
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
                    con.executemany("INSERT INTO events VALUES (?,?,?,?,?,?)", batch.events)
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
            raise StoreError(f"{self.path}: {_reason(exc)}") from exc

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
            raise StoreError(f"{self.path}: {_reason(exc)}") from exc

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
            raise StoreError(f"{self.path}: {_reason(exc)}") from exc
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

    # -- reading --------------------------------------------------------------------------

    def get_session(self, session_id: str) -> SessionRow | None:
        """The session, or ``None``."""
        rows = self._read(_SESSION_SELECT + " WHERE id = ?", (session_id,))
        return SessionRow(*rows[0]) if rows else None

    def list_sessions(self, limit: int, cursor: str | None) -> tuple[list[SessionRow], str | None]:
        """A page of sessions, newest ``updated_at`` first; the next page's cursor or ``None``."""
        if cursor:
            updated_at, session_id = _decode_cursor(cursor)
            rows = self._read(
                _SESSION_SELECT + " WHERE (updated_at, id) < (?, ?) "
                "ORDER BY updated_at DESC, id DESC LIMIT ?",
                (updated_at, session_id, limit + 1),
            )
        else:
            rows = self._read(
                _SESSION_SELECT + " ORDER BY updated_at DESC, id DESC LIMIT ?", (limit + 1,)
            )
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
            raise StoreError(f"{self.path}: {_reason(exc)}") from exc
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

    # -- helpers ----------------------------------------------------------------------------

    def _read(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        try:
            return self._con.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: {_reason(exc)}") from exc

    def _write(self, sql: str, params: tuple[Any, ...] = ()) -> int:
        try:
            with self._con_transaction():
                return self._con.execute(sql, params).rowcount
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: {_reason(exc)}") from exc

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


def _ensure_dir(path: Path) -> None:
    """Create the data directory (and missing parents) 0700; check, never chmod, an existing one.

    The log holds every prompt and answer: like the socket's directory, an
    existing data directory must be a real directory (not a symlink another
    user could re-point), owned by us, and closed to group and others.
    """
    if not os.path.lexists(path):
        old = os.umask(0o077)
        try:
            path.mkdir(mode=0o700, parents=True, exist_ok=True)
        finally:
            os.umask(old)
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        raise StoreOpenError(
            f"the data directory {path} is a symlink; use the real directory "
            f"{os.path.realpath(path)} instead"
        )
    if not stat.S_ISDIR(st.st_mode):
        raise OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR))
    me = os.geteuid()
    if st.st_uid != me:
        raise StoreOpenError(
            f"the data directory {path} is owned by uid {st.st_uid}, not by you (uid {me}); "
            "use a directory you own"
        )
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o077:
        raise StoreOpenError(
            f"the data directory {path} has mode {mode:04o}, which lets other users read "
            f"the log; fix it with: chmod 700 {path}"
        )


def _lock(data_dir: Path) -> int:
    path = data_dir / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    except OSError as exc:
        raise StoreOpenError(f"cannot lock {path}: {_reason(exc)}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise StoreOpenError(
            f"the data directory {data_dir} is in use by another gateway "
            "(use another --data-dir, or stop the other gateway)"
        ) from None
    return fd


def _connect(db_path: Path) -> sqlite3.Connection:
    where = f"cannot open the event log {db_path}"
    old = os.umask(0o077)  # the database and its -wal/-shm files: 0600
    try:
        if not db_path.exists():
            os.close(os.open(db_path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600))
        con = sqlite3.connect(db_path, isolation_level=None, check_same_thread=True)
    except (OSError, sqlite3.Error) as exc:
        raise StoreOpenError(f"{where}: {_reason(exc)}") from None
    finally:
        os.umask(old)
    try:
        con.execute("PRAGMA busy_timeout = 5000")
        version = int(con.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise StoreOpenError(
                f"{where}: it was written by a newer neocode-gateway (schema {version}; "
                f"this one knows {SCHEMA_VERSION})"
            )
        mode = con.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StoreOpenError(f"{where}: WAL mode is not available ({mode})")
        con.execute("PRAGMA synchronous = NORMAL")
        for step in range(version, SCHEMA_VERSION):
            con.execute("BEGIN IMMEDIATE")
            for statement in MIGRATIONS[step].split(";"):
                if statement.strip():
                    con.execute(statement)
            con.execute(f"PRAGMA user_version = {step + 1}")
            con.execute("COMMIT")
        con.execute("SELECT count(*) FROM sessions").fetchone()
    except StoreOpenError:
        con.close()
        raise
    except sqlite3.Error as exc:
        con.close()
        raise StoreOpenError(f"{where}: {_reason(exc)}") from None
    return con
