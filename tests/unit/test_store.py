"""The SQLite store on real files in temporary directories."""

from __future__ import annotations

import os
import shutil
import sqlite3
import stat
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from neocode_gateway.errors import StoreError, StoreOpenError
from neocode_gateway.store import (
    SCHEMA_VERSION,
    EventRow,
    PermissionRow,
    RunRow,
    SessionRow,
    Store,
    WriteBatch,
)
from tests.support import short_tmpdir


@pytest.fixture
def data_dir() -> Iterator[Path]:
    base = short_tmpdir("ngw-store-")
    yield Path(base) / "data"
    shutil.rmtree(base, ignore_errors=True)


def session(sid: str, updated: str = "2026-01-01T00:00:00.000Z") -> SessionRow:
    return SessionRow(sid, "title", "/w", "echo", updated, updated, 0, 1, None, None, None)


def event(sid: str, seq: int, run: str = "r1", ts: str = "2026-01-01T00:00:00.000Z") -> EventRow:
    return EventRow(sid, seq, run, "run_progress", ts, b'{"seq":%d}\n' % seq)


def test_open_creates_private_files_and_reopens(data_dir: Path) -> None:
    with Store.open(data_dir) as store:
        batch = WriteBatch()
        batch.new_sessions.append(session("s1"))
        batch.events.extend(event("s1", n) for n in (1, 2, 3))
        batch.session_updates["s1"] = {"last_seq": 3}
        store.commit(batch)
    assert stat.S_IMODE(os.stat(data_dir).st_mode) == 0o700
    for name in os.listdir(data_dir):
        assert stat.S_IMODE(os.stat(data_dir / name).st_mode) == 0o600, name
    with Store.open(data_dir) as store:
        row = store.get_session("s1")
        assert row is not None
        assert row.last_seq == 3
        assert [seq for seq, _ in store.read_events("s1", 0, 3, 10)] == [1, 2, 3]
        assert store.count_events("s1", 1, 3) == 2
        assert store.count_events("s1", 0, 3, "r1") == 3


def test_second_store_on_one_directory_is_refused(data_dir: Path) -> None:
    with Store.open(data_dir), pytest.raises(StoreOpenError, match="in use by another gateway"):
        Store.open(data_dir)


def test_open_errors_are_one_line(data_dir: Path) -> None:
    data_dir.parent.mkdir(exist_ok=True)
    data_dir.write_text("a file")
    with pytest.raises(StoreOpenError, match="not a directory") as info:
        Store.open(data_dir)
    assert "\n" not in str(info.value)
    data_dir.unlink()
    data_dir.mkdir(mode=0o700)
    (data_dir / "gateway.db").write_bytes(b"garbage" * 1000)
    with pytest.raises(StoreOpenError, match="not a valid database"):
        Store.open(data_dir)


def test_newer_schema_is_refused(data_dir: Path) -> None:
    Store.open(data_dir).close()
    con = sqlite3.connect(data_dir / "gateway.db")
    con.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    con.close()
    with pytest.raises(StoreOpenError, match="newer neocode-gateway"):
        Store.open(data_dir)


def test_failed_batch_writes_nothing(data_dir: Path) -> None:
    with Store.open(data_dir) as store:
        first = WriteBatch()
        first.new_sessions.append(session("s1"))
        first.events.append(event("s1", 1))
        store.commit(first)
        bad = WriteBatch()
        bad.new_sessions.append(session("s2"))
        bad.events.extend([event("s1", 2), event("s1", 1)])  # seq 1 again
        with pytest.raises(StoreError):
            store.commit(bad)
        assert store.get_session("s2") is None
        assert [s for s, _ in store.read_events("s1", 0, 10, 10)] == [1]
        again = WriteBatch()
        again.events.append(event("s1", 2))
        store.commit(again)  # still usable
        assert store.count_events("s1", 0, 10) == 2
        with pytest.raises(ValueError, match="cannot update"):
            store.commit(WriteBatch(session_updates={"s1": {"id": "x"}}))


def test_runs_permissions_recovery(data_dir: Path) -> None:
    with Store.open(data_dir) as store:
        batch = WriteBatch()
        batch.new_sessions.append(session("s1"))
        batch.new_runs.append(RunRow("s1", "r1", "active", 1, None, "t1"))
        batch.new_runs.append(RunRow("s1", "r0", "active", 1, None, "t0"))
        batch.run_updates[("s1", "r0")] = {"state": "done", "ended_seq": 2}
        batch.new_permissions.append(
            PermissionRow("p1", "s1", "r1", "pending", None, None, None, "{}", "t", None)
        )
        store.commit(batch)
        assert [r.run_id for r in store.recover()] == ["r1"]
        assert store.find_run("r0") is not None
        assert store.get_run("s1", "zz") is None
        assert store.void_pending_permissions() == 1
        permission = store.get_permission("p1")
        assert permission is not None
        assert permission.state == "void"


def test_retention_keeps_sessions_and_numbers(data_dir: Path) -> None:
    with Store.open(data_dir) as store:
        batch = WriteBatch()
        batch.new_sessions.append(session("s1"))
        batch.events.extend(
            event("s1", n, ts=f"2026-01-{n:02d}T00:00:00.000Z") for n in range(1, 11)
        )
        store.commit(batch)
        assert store.delete_events_before("2026-01-06T00:00:00.000Z", chunk=2) == 5
        assert store.first_seq("s1") == 6
        assert [s for s, _ in store.read_events("s1", 0, 100, 100)] == list(range(6, 11))
        assert store.delete_events_before("2026-01-01T00:00:00.000Z") == 0


def test_iter_events_pages(data_dir: Path) -> None:
    with Store.open(data_dir) as store:
        batch = WriteBatch()
        batch.new_sessions.append(session("s1"))
        batch.events.extend(event("s1", n) for n in range(1, 2501))
        store.commit(batch)
        got = [seq for seq, *_ in store.iter_events("s1", ("run_progress",))]
        assert got == list(range(1, 2501))


@settings(max_examples=25, deadline=None)
@given(
    stamps=st.lists(st.integers(0, 50), min_size=0, max_size=40),
    limit=st.integers(1, 7),
)
def test_pagination_visits_every_session_once_in_order(stamps: list[int], limit: int) -> None:
    base = short_tmpdir("ngw-page-")
    try:
        with Store.open(Path(base) / "d") as store:
            batch = WriteBatch()
            for index, stamp in enumerate(stamps):
                batch.new_sessions.append(
                    session(f"s{index:03d}", f"2026-01-01T00:00:{stamp:02d}Z")
                )
            store.commit(batch)
            seen: list[str] = []
            cursor = None
            while True:
                rows, cursor = store.list_sessions(limit, cursor)
                seen += [r.id for r in rows]
                if cursor is None:
                    break
            expected = sorted(
                (f"s{i:03d}" for i in range(len(stamps))),
                key=lambda sid: (stamps[int(sid[1:])], sid),
                reverse=True,
            )
            assert seen == expected
            assert store.count_sessions() == len(stamps)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_invalid_cursor(data_dir: Path) -> None:
    with Store.open(data_dir) as store, pytest.raises(ValueError, match="invalid cursor"):
        store.list_sessions(5, "!!!not-a-cursor")


def test_kill_9_mid_commit_loop_leaves_whole_batches(data_dir: Path) -> None:
    """A child commits batches of 100 events in a loop; SIGKILL; every batch is whole."""
    script = textwrap.dedent(
        f"""
        import sys
        from pathlib import Path
        from neocode_gateway.store import Store, WriteBatch, SessionRow, EventRow
        store = Store.open(Path({str(data_dir)!r}))
        batch = WriteBatch()
        row = SessionRow("s", "t", "/", "echo", "a", "a", 0, 1, None, None, None)
        batch.new_sessions.append(row)
        store.commit(batch)
        seq = 0
        while True:
            batch = WriteBatch()
            for _ in range(100):
                seq += 1
                batch.events.append(EventRow("s", seq, "r", "run_progress", "t", b"x" * 200))
            batch.session_updates["s"] = {{"last_seq": seq}}
            store.commit(batch)
            if seq == 2000:
                print("ready", flush=True)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == b"ready"
    finally:
        proc.kill()
        proc.wait(10)
    with Store.open(data_dir) as store:
        row = store.get_session("s")
        assert row is not None
        count = store.count_events("s", 0, 10**9)
        assert count >= 2000
        assert count % 100 == 0
        assert row.last_seq == count
        con = sqlite3.connect(data_dir / "gateway.db")
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        con.close()


@settings(max_examples=20, deadline=None)
@given(sizes=st.lists(st.integers(0, 700), min_size=1, max_size=4))
def test_events_of_any_batch_size_land_whole_and_in_order(sizes: list[int]) -> None:
    """Batches are cut into multi-row inserts of 256, 32, 4 and 1: every size lands whole."""
    base = short_tmpdir("ngw-rows-")
    try:
        with Store.open(Path(base) / "data") as store:
            store.commit(WriteBatch(new_sessions=[session("s1")]))
            seq = 0
            for size in sizes:
                rows = [event("s1", seq + n, run=f"r{n % 3}") for n in range(1, size + 1)]
                store.commit(WriteBatch(events=rows))
                seq += size
            got = store.read_events("s1", 0, seq, seq + 1)
            assert [s for s, _ in got] == list(range(1, seq + 1))
            assert all(frame == b'{"seq":%d}\n' % s for s, frame in got)
            assert store.count_events("s1", 0, seq, "r1") == len(
                [n for size in sizes for n in range(1, size + 1) if n % 3 == 1]
            )
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_the_wal_is_checkpointed_by_the_page_count_set(data_dir: Path) -> None:
    from neocode_gateway.store._open import WAL_CHECKPOINT_PAGES, WAL_SIZE_LIMIT, connect

    data_dir.mkdir(mode=0o700)
    con = connect(data_dir / "gateway.db")
    try:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert con.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == WAL_CHECKPOINT_PAGES
        assert con.execute("PRAGMA journal_size_limit").fetchone()[0] == WAL_SIZE_LIMIT
    finally:
        con.close()
