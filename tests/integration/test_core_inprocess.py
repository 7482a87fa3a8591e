"""The sessions core in-process on a real socket and a real SQLite file: what needs a hand
inside the daemon (a disk that fills up while a run streams)."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from neocode_gateway.dispatch import Dispatcher, install
from neocode_gateway.runtime import EchoRuntime, RuntimeSet
from neocode_gateway.server import Server, ServerConfig
from neocode_gateway.sessions import CoreConfig, SessionCore
from neocode_gateway.store import Store
from neocode_gateway.transport import UnixListener
from tests.integration.test_server_inprocess import run
from tests.support import short_tmpdir

__all__ = ["run"]

Runner = Callable[[Awaitable[None]], None]


@pytest.fixture
def work() -> Iterator[Path]:
    path = Path(short_tmpdir("ngw-core-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_disk_full_ends_the_run_and_the_gateway_keeps_serving(
    run: Runner, work: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> None:
        store = Store.open(work / "data")
        runtimes = RuntimeSet(default="echo")
        runtimes.add("echo", EchoRuntime())
        core = SessionCore(store, runtimes, CoreConfig(data_dir=work / "data", default_workdir="/"))
        dispatcher = Dispatcher()
        listener = UnixListener(str(work / "gw.sock"))
        listener.open()
        server = Server(listener, dispatcher, ServerConfig())
        await core.start()
        install(dispatcher, core, lambda: len(server.connections))
        await server.start()
        try:
            reader, writer = await asyncio.open_unix_connection(str(work / "gw.sock"))
            request = {"type": "request", "action": "run", "request_id": "r", "input_text": "hi"}
            writer.write(msgspec.json.encode(request) + b"\n")
            frames: list[dict[str, Any]] = []
            while not frames or frames[-1].get("payload", {}).get("event_type") != "run_done":
                frames.append(msgspec.json.decode(await reader.readline()))
            session_id = frames[0]["session_id"]
            # The disk "fills up": the database may not grow by more than a few pages.
            pages = store._con.execute("PRAGMA page_count").fetchone()[0]
            store._con.execute(f"PRAGMA max_page_count = {pages + 2}")
            request = {
                "type": "request",
                "action": "run",
                "request_id": "big",
                "session_id": session_id,
                "input_text": "/burst 50000",
            }
            writer.write(msgspec.json.encode(request) + b"\n")
            ack = msgspec.json.decode(await reader.readline())
            assert ack["type"] == "ack"
            # Nothing of the failed batches reaches the client; the run ends in memory
            # (its run_error cannot be logged either: the disk is still full).
            status = {"type": "request", "action": "status", "request_id": "s"}
            for _ in range(200):
                await asyncio.sleep(0.02)
                if not core.status()["active_runs"]:
                    break
            assert core.status()["active_runs"] == 0
            # The disk has room again: the gateway serves, and a new run streams and ends.
            store._con.execute("PRAGMA max_page_count = 1073741823")
            writer.write(msgspec.json.encode(status) + b"\n")
            while True:
                frame = msgspec.json.decode(await reader.readline())
                if frame.get("request_id") == "s":
                    break
            assert frame["type"] == "ack"
            request = {
                "type": "request",
                "action": "run",
                "request_id": "after",
                "session_id": session_id,
                "input_text": "again",
            }
            writer.write(msgspec.json.encode(request) + b"\n")
            seen: list[int] = []
            while True:
                frame = msgspec.json.decode(await reader.readline())
                if frame.get("type") == "event":
                    seen.append(frame["payload"]["seq"])
                    if frame["payload"]["event_type"] in ("run_done", "run_error"):
                        break
            # Numbering stays gapless: the failed events were never numbered for good.
            assert seen == list(range(seen[0], seen[0] + len(seen)))
            writer.close()
        finally:
            await server.shutdown()
            await core.shutdown()
            listener.release()
            store.close()

    run(scenario())
    assert "the event log could not be written" in caplog.text
    assert "disk is full" in caplog.text
