"""Opening the log: the data directory, the lock, the database file and its migrations.

One gateway owns a data directory: ``gateway.lock`` is ``flock``-ed for the
life of the store, so two gateways can never number the same session's events.
The data directory holds every prompt and answer: an existing one must be a
real directory of ours, closed to group and others.
"""

from __future__ import annotations

import errno
import fcntl
import os
import sqlite3
import stat
from pathlib import Path
from typing import Final

from neocode_gateway.errors import StoreOpenError

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
#: The WAL is copied back into the database (a checkpoint, with its fsync) once it
#: holds this many pages (16 MiB of 4 KiB pages), not SQLite's default 1,000: a
#: checkpoint's cost is mostly its fsync, and a burst of events pays it 4x less often.
WAL_CHECKPOINT_PAGES: Final = 4096
#: After a checkpoint, a WAL file larger than this is truncated back to it (bytes).
WAL_SIZE_LIMIT: Final = 32 << 20


def reason(exc: BaseException) -> str:
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


def ensure_dir(path: Path) -> None:
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


def lock(data_dir: Path) -> int:
    path = data_dir / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    except OSError as exc:
        raise StoreOpenError(f"cannot lock {path}: {reason(exc)}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise StoreOpenError(
            f"the data directory {data_dir} is in use by another gateway "
            "(use another --data-dir, or stop the other gateway)"
        ) from None
    return fd


def connect(db_path: Path) -> sqlite3.Connection:
    where = f"cannot open the event log {db_path}"
    old = os.umask(0o077)  # the database and its -wal/-shm files: 0600
    try:
        if not db_path.exists():
            os.close(os.open(db_path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600))
        con = sqlite3.connect(db_path, isolation_level=None, check_same_thread=True)
    except (OSError, sqlite3.Error) as exc:
        raise StoreOpenError(f"{where}: {reason(exc)}") from None
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
        con.execute(f"PRAGMA wal_autocheckpoint = {WAL_CHECKPOINT_PAGES}")
        con.execute(f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT}")
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
        raise StoreOpenError(f"{where}: {reason(exc)}") from None
    return con
