"""The sessions core in-process on a real socket and a real SQLite file: what needs a hand
inside the daemon (a disk that fills up while a run streams)."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from neocode_gateway.errors import StoreError
from neocode_gateway.store import Store, WriteBatch
from tests.inprocess import ended, line, read_until, serve, stop
from tests.integration.test_server_inprocess import run
from tests.support import short_tmpdir

__all__ = ["run"]

Runner = Callable[[Awaitable[None]], None]


@pytest.fixture
def work() -> Iterator[Path]:
    path = Path(short_tmpdir("ngw-core-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_a_full_disk_loses_nothing_and_every_run_ends_in_order(
    run: Runner, work: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 16, fault 2: a commit that fails is retried, not dropped. The client sees
    nothing that is not durable, new runs are refused while the log cannot be written
    (never acked with an id that is not durable), the stuck run ends with run_error after
    the grace, and once there is room every event lands, numbered without a gap, ending
    with that run_error, before the next run's events."""

    async def scenario() -> None:
        store, core, server, listener = await serve(work)
        try:
            reader, writer = await asyncio.open_unix_connection(str(work / "gw.sock"))
            writer.write(line(action="run", request_id="r", input_text="hi"))
            first = await read_until(reader, ended)
            session_id = first[0]["session_id"]
            last_seen = first[-1]["payload"]["seq"]
            writer.write(
                line(action="run", request_id="slow", session_id=session_id, input_text="/slow 200")
            )
            seen = await read_until(reader, lambda f: f.get("request_id") == "slow")
            # The disk "fills up" while the run streams: every commit fails until it has room.
            full = True
            commit = store.commit

            def failing(batch: WriteBatch) -> None:
                if full:
                    raise StoreError(f"{store.path}: the disk is full")
                commit(batch)

            store.commit = failing  # type: ignore[method-assign]
            for _ in range(500):
                await asyncio.sleep(0.01)
                if core.journal.failing:
                    break
            assert core.journal.failing
            # A new run (new session or not) is refused with a clear error, not acked.
            writer.write(line(action="run", request_id="new", input_text="more"))
            refused = await read_until(reader, lambda f: f.get("request_id") == "new")
            seen += refused
            assert refused[-1]["type"] == "error"
            assert "event log cannot be written" in refused[-1]["error"]["message"]
            assert core.store.count_sessions() == 1
            # The run stuck behind the log is ended after the grace (5 s).
            for _ in range(1000):
                await asyncio.sleep(0.01)
                if not core.status()["active_runs"]:
                    break
            assert core.status()["active_runs"] == 0
            # Room again: everything lands, in order, ending with the run's run_error.
            full = False
            frames = seen + await read_until(reader, ended)
            seqs = [f["payload"]["seq"] for f in frames if f.get("type") == "event"]
            assert seqs == list(range(last_seen + 1, last_seen + 1 + len(seqs)))
            assert frames[-1]["payload"]["event_type"] == "run_error"
            assert "event log could not be written" in frames[-1]["payload"]["data"]["message"]
            # And the gateway serves again: a new run streams and ends, numbered on.
            writer.write(
                line(action="run", request_id="after", session_id=session_id, input_text="x")
            )
            after = await read_until(reader, ended)
            numbers = [f["payload"]["seq"] for f in after if f.get("type") == "event"]
            assert numbers[0] == seqs[-1] + 1
            writer.close()
        finally:
            await stop(store, core, server, listener)
        # After a restart, the log is whole: the run's end is there, nothing is active.
        again = Store.open(work / "data")
        try:
            assert again.recover() == []
        finally:
            again.close()

    run(scenario())
    assert "the event log could not be written" in caplog.text
