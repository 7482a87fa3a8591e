"""The session core's faults found in review (issue 16), each against a real socket and a
real SQLite file: in-process where a hand inside the runtime is needed, else the daemon."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from neocode_gateway.runtime import (
    CompactResult,
    EchoRuntime,
    RunInput,
    RunSink,
    SessionRef,
)
from neocode_gateway.store import Store
from tests.conftest import GatewayFactory
from tests.inprocess import ended, line, read_until, serve, stop
from tests.integration.test_server_inprocess import run
from tests.support import Gateway, run_cli, short_tmpdir
from tests.v11 import Peer, data, etype, seqs

__all__ = ["run"]

Runner = Callable[[Awaitable[None]], None]


@pytest.fixture
def work() -> Iterator[Path]:
    path = Path(short_tmpdir("ngw-faults-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


class _Hand(EchoRuntime):
    """Echo, with a hand in ``check_mode`` (it waits for a gate) and in ``prompt``."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.checking = asyncio.Event()
        self.bad_event = False

    async def check_mode(self, session: SessionRef, mode: str) -> None:
        self.checking.set()
        await self.gate.wait()

    async def compact(self, session: SessionRef) -> CompactResult:
        await self.gate.wait()
        return await super().compact(session)

    async def prompt(self, session: SessionRef, run: RunInput, sink: RunSink) -> str:
        if self.bad_event:
            await sink.emit({"kind": "message_chunk", "text": "before"})
            await sink.emit({"kind": "message_chunk", "text": object()})  # cannot be encoded
        return await super().prompt(session, run, sink)


# -- fault 1: a reservation is always released ---------------------------------------------


def test_a_client_gone_during_the_mode_check_leaves_the_session_idle(
    run: Runner, work: Path
) -> None:
    async def scenario() -> None:
        hand = _Hand()
        store, core, server, listener = await serve(work, hand)
        try:
            reader, writer = await asyncio.open_unix_connection(str(work / "gw.sock"))
            writer.write(line(action="run", request_id="a", input_text="hi"))
            session_id = (await read_until(reader, ended))[0]["session_id"]
            writer.write(
                line(
                    action="run",
                    request_id="b",
                    session_id=session_id,
                    input_text="x",
                    payload={"mode": "plan"},
                )
            )
            await asyncio.wait_for(hand.checking.wait(), 5)
            # The connection is lost (a reset, a write timeout) while the agent checks the
            # mode: the request's work is cancelled with it.
            (conn,) = server.connections
            conn.abort()
            writer.close()
            session = core.cache.peek(session_id)
            for _ in range(200):
                if session is not None and session.active_run is None:
                    break
                await asyncio.sleep(0.01)
            assert session is not None
            assert session.active_run is None
            hand.gate.set()
            # The session takes a run again, and cancel/list agree that nothing runs.
            reader, writer = await asyncio.open_unix_connection(str(work / "gw.sock"))
            writer.write(line(action="run", request_id="c", session_id=session_id, input_text="y"))
            frames = await read_until(reader, ended)
            assert frames[0]["type"] == "ack"
            assert frames[-1]["payload"]["event_type"] == "run_done"
            assert core.status()["active_runs"] == 0
            writer.close()
        finally:
            await stop(store, core, server, listener)

    run(scenario())


# -- fault 5: events do not wait behind a slow answer ----------------------------------------


def test_events_flow_while_another_sessions_compact_is_answered(run: Runner, work: Path) -> None:
    async def scenario() -> None:
        hand = _Hand()
        hand.slow_interval = 0.02
        store, core, server, listener = await serve(work, hand, slow_consumer_seconds=1.0)
        try:
            reader, writer = await asyncio.open_unix_connection(str(work / "gw.sock"))
            writer.write(line(action="run", request_id="other", input_text="hi"))
            other = (await read_until(reader, ended))[0]["session_id"]
            writer.write(line(action="run", request_id="live", input_text="/slow 150"))
            await read_until(reader, lambda f: f.get("request_id") == "live")
            writer.write(line(action="compact", request_id="c", session_id=other))
            # The compact takes 2 s (longer than the slow-consumer age of 1 s here):
            # the live run's events keep coming meanwhile, and nobody is cut.
            loop = asyncio.get_running_loop()
            gate_at = loop.time() + 2.0
            loop.call_later(2.0, hand.gate.set)
            frames = await read_until(reader, lambda f: f.get("request_id") == "c")
            early = [f for f in frames if f["type"] == "event"]
            assert len(early) > 50, "events waited behind the compact answer"
            assert frames[-1]["type"] == "ack"
            assert loop.time() >= gate_at - 0.05
            rest = await read_until(reader, ended)
            assert not [f for f in frames + rest if f["type"] == "error"]
            writer.close()
        finally:
            await stop(store, core, server, listener)

    run(scenario())


# -- fault 9: the session cache shrinks -----------------------------------------------------


def test_idle_unbound_sessions_are_evicted_beyond_the_cap(run: Runner, work: Path) -> None:
    async def scenario() -> None:
        store, core, server, listener = await serve(work, EchoRuntime(), max_cached_sessions=8)
        try:
            reader, writer = await asyncio.open_unix_connection(str(work / "gw.sock"))
            made: list[str] = []
            ends: list[int] = []
            for index in range(40):
                writer.write(line(action="run", request_id=f"r{index}", input_text="hi"))
                frames = await read_until(reader, ended)
                made.append(frames[0]["session_id"])
                ends.append(frames[-1]["payload"]["seq"])
                writer.write(line(action="unbind_stream", request_id="u", session_id=made[-1]))
                await read_until(reader, lambda f: f.get("request_id") == "u")
            assert len(core.cache) <= 8
            # An evicted session is loaded again on use, with its numbering.
            writer.write(line(action="bind_stream", request_id="b", session_id=made[0]))
            ack = (await read_until(reader, lambda f: f.get("request_id") == "b"))[-1]
            assert ack["payload"]["last_seq"] == ends[0]
            writer.close()
        finally:
            await stop(store, core, server, listener)

    run(scenario())


# -- fault 10: an event that cannot be encoded leaves no gap ----------------------------------


def test_an_event_that_cannot_be_encoded_leaves_no_gap(run: Runner, work: Path) -> None:
    async def scenario() -> None:
        hand = _Hand()
        hand.bad_event = True
        store, core, server, listener = await serve(work, hand)
        try:
            reader, writer = await asyncio.open_unix_connection(str(work / "gw.sock"))
            writer.write(line(action="run", request_id="a", input_text="hi"))
            frames = await read_until(reader, ended)
            numbers = [f["payload"]["seq"] for f in frames if f["type"] == "event"]
            assert numbers == list(range(1, len(numbers) + 1))
            assert frames[-1]["payload"]["event_type"] == "run_error"
            writer.close()
        finally:
            await stop(store, core, server, listener)

    run(scenario())


# -- fault 3: a run sent during a replay does not cancel it ----------------------------------


def _burst(peer: Peer, count: int, session_id: str | None = None) -> tuple[str, str]:
    fields: dict[str, Any] = {"input_text": f"/burst {count}"}
    if session_id:
        fields["session_id"] = session_id
    ack = peer.ack("run", **fields)
    peer.wait_terminal(str(ack["run_id"]))
    return str(ack["session_id"]), str(ack["run_id"])


def test_a_run_during_a_replay_lets_the_replay_complete(gateway: Gateway) -> None:
    with Peer(gateway.path) as maker:
        session_id, _ = _burst(maker, 5000)
    with Peer(gateway.path) as peer:
        peer.send("bind_stream", session_id=session_id, payload={"after_seq": 0})
        ack = peer.send("run", session_id=session_id, input_text="more words")
        run_ack = peer.response(ack)
        assert run_ack["type"] == "ack"
        peer.wait_terminal(str(run_ack["run_id"]))
        numbers = seqs([f for f in peer.events if f["session_id"] == session_id])
        assert numbers == list(range(1, numbers[-1] + 1)), "replay and live joined exactly"
        assert numbers[-1] > 5000


# -- fault 4: replay never counts toward the slow-consumer limit ----------------------------


def test_replay_of_large_events_does_not_cut_a_fast_reader(
    gateway_factory: GatewayFactory,
) -> None:
    gateway = gateway_factory("--max-frame-bytes", str(2 << 20))
    # About 900 KiB: one run_started of that size, then nine message chunks of 100 KiB.
    big = " ".join(["x" * 100_000] * 9)
    with Peer(gateway.path) as maker:
        ack = maker.ack("run", input_text=big)
        session_id = str(ack["session_id"])
        maker.wait_terminal(str(ack["run_id"]))
        for _ in range(100):  # over 1,000 events of 100 KiB: the old replay's one page
            again = maker.ack("run", session_id=session_id, input_text=big)
            maker.wait_terminal(str(again["run_id"]))
        live = maker.ack("run", input_text="/tick 1000")  # an event every 10 ms
        live_session = str(live["session_id"])
    with Peer(gateway.path) as peer:
        peer.ack("bind_stream", session_id=live_session)
        bound = peer.ack("bind_stream", session_id=session_id, payload={"after_seq": 0})
        last = int(bound["payload"]["last_seq"])
        peer.wait_event(lambda f: f["session_id"] == session_id and f["payload"]["seq"] == last)
        assert not [f for f in peer.frames if f["type"] == "error"]
        numbers = seqs([f for f in peer.events if f["session_id"] == session_id])
        assert numbers == list(range(1, last + 1))


# -- fault 6: one replaying client holds a page, not the log ----------------------------------


def _rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs /proc")
def test_a_replay_that_is_not_read_holds_little_memory(gateway_factory: GatewayFactory) -> None:
    gateway = gateway_factory("--max-frame-bytes", str(2 << 20))
    big = " ".join(["y" * 100_000] * 9)  # events of 100 KiB
    with Peer(gateway.path) as maker:
        ack = maker.ack("run", input_text=big)
        session_id = str(ack["session_id"])
        maker.wait_terminal(str(ack["run_id"]))
        for _ in range(40):  # a log of about 70 MiB (each run: its input, then its words)
            again = maker.ack("run", session_id=session_id, input_text=big)
            maker.wait_terminal(str(again["run_id"]))
    before = _rss_kb(gateway.pid)
    idle = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    idle.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    idle.connect(gateway.path)
    try:
        request: dict[str, Any] = {"type": "request", "action": "bind_stream"}
        request.update(request_id="b", session_id=session_id, payload={"after_seq": 0})
        idle.sendall(msgspec.json.encode(request) + b"\n")
        with Peer(gateway.path) as other:  # the gateway still answers others meanwhile
            for _ in range(20):
                other.ack("status")
        after = _rss_kb(gateway.pid)
        assert after - before < 16 * 1024, f"RSS grew by {(after - before) // 1024} MiB"
    finally:
        idle.close()


# -- fault 7: a bare run_id never cancels another session's run -------------------------------


def test_a_bare_run_id_active_in_two_sessions_is_not_guessed(gateway: Gateway) -> None:
    with Peer(gateway.path) as alice, Peer(gateway.path) as bob, Peer(gateway.path) as third:
        a = alice.ack("run", request_id="job", input_text="/slow 50")
        b = bob.ack("run", request_id="job", input_text="/slow 50")
        assert a["run_id"] == b["run_id"] == "job"
        refused = third.request("cancel", run_id="job")
        assert refused["error"]["code"] == "conflict"
        assert "give its session_id" in refused["error"]["message"]
        mine = alice.ack("cancel", run_id="job")  # alice follows her own session
        assert mine["session_id"] == a["session_id"]
        assert etype(alice.wait_terminal("job")) == "run_error"
        end = bob.wait_terminal("job", timeout=20)
        assert etype(end) == "run_done", "bob's run was not canceled"


# -- fault 8: load_session pages a long transcript ------------------------------------------


def test_load_session_pages_a_long_transcript(gateway_factory: GatewayFactory) -> None:
    gateway = gateway_factory("--max-frame-bytes", str(2 << 20))
    big = " ".join(["z" * 1000] * 900)
    with Peer(gateway.path) as peer:
        ack = peer.ack("run", input_text=big)
        session_id = str(ack["session_id"])
        peer.wait_terminal(str(ack["run_id"]))
        for _ in range(3):
            again = peer.ack("run", session_id=session_id, input_text=big)
            peer.wait_terminal(str(again["run_id"]))
        pages = []
        cursor = None
        while True:
            payload: dict[str, Any] = {"cursor": cursor} if cursor else {}
            page = peer.ack("load_session", session_id=session_id, payload=payload)["payload"]
            pages.append(page)
            cursor = page.get("next_cursor")
            if not cursor:
                break
        assert len(pages) > 2
        messages = [m for p in pages for m in p["messages"]]
        text = "".join(m["text"] for m in messages if m["role"] == "agent")
        assert text.replace(" ", "") == ("z" * 1000 * 900) * 4
        assert [m["role"] for m in messages if not m.get("continued")] == ["user", "agent"] * 4
        bad = peer.request("load_session", session_id=session_id, payload={"cursor": "x"})
        assert bad["error"]["code"] == "invalid_action"
    # show works on any session (the client library follows the pages).
    result = run_cli("show", session_id, "--json", "--listen", gateway.path, timeout=60)
    assert result.returncode == 0, result.stderr
    shown = msgspec.json.decode(result.stdout)
    agent = "".join(m["text"] for m in shown["messages"] if m["role"] == "agent")
    assert agent.replace(" ", "") == ("z" * 1000 * 900) * 4


# -- fault 15: a cursor from the future, one rule for pending permissions, the data dir -------


def test_a_cursor_past_the_end_says_reset(gateway: Gateway) -> None:
    with Peer(gateway.path) as peer:
        session_id, _ = _burst(peer, 3)
        ack = peer.ack("bind_stream", session_id=session_id, payload={"after_seq": 10_000})
        assert ack["payload"]["reset"] is True
        assert ack["payload"]["replayed"] == 0
        follow = peer.ack("run", session_id=session_id, input_text="one")
        peer.wait_terminal(str(follow["run_id"]))
        started = [f for f in peer.events if etype(f) == "run_started"][-1]
        assert started["payload"]["seq"] == ack["payload"]["last_seq"] + 1


def test_a_permission_pending_at_a_graceful_stop_is_void_as_after_kill(
    gateway_factory: GatewayFactory,
) -> None:
    data_dir = short_tmpdir("ngw-data-")
    try:
        gateway = gateway_factory("--data-dir", data_dir)
        with Peer(gateway.path) as peer:
            ack = peer.ack("run", input_text="/ask")
            session_id = str(ack["session_id"])
            peer.wait_event(lambda f: etype(f) == "permission_request")
        gateway.signal(signal.SIGTERM)
        assert gateway.wait(10) == 0
        again = gateway_factory("--data-dir", data_dir)
        with Peer(again.path) as peer:
            peer.ack("bind_stream", session_id=session_id, payload={"after_seq": 0})
            end = peer.wait_event(lambda f: etype(f) == "run_error")
            assert data(end)["code"] == "gateway_restarted"
            assert not [f for f in peer.events if etype(f) == "permission_resolved"]
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.mark.parametrize("problem", ["symlink", "open"])
def test_a_data_directory_that_is_a_symlink_or_open_is_refused(problem: str) -> None:
    base = Path(short_tmpdir("ngw-dd-"))
    try:
        real = base / "real"
        real.mkdir(mode=0o700)
        target = real
        if problem == "symlink":
            target = base / "link"
            target.symlink_to(real)
        else:
            real.chmod(0o755)
        result = run_cli("--listen", str(base / "gw.sock"), "--data-dir", str(target))
        assert result.returncode != 0
        assert "Traceback" not in result.stderr
        expected = "is a symlink" if problem == "symlink" else "chmod 700"
        assert expected in result.stderr
    finally:
        shutil.rmtree(base, ignore_errors=True)


# -- fault 12: retention, off the hot path -----------------------------------------------------


def test_retention_deletes_old_events_and_decisions_a_few_sessions_a_turn(
    run: Runner, work: Path
) -> None:
    from neocode_gateway.store import EventRow, PermissionRow, SessionRow, WriteBatch

    old = "2020-01-01T00:00:00.000Z"
    store = Store.open(work / "data")
    batch = WriteBatch()
    for index in range(100):
        sid = f"s_old{index:03d}"
        batch.new_sessions.append(
            SessionRow(sid, "t", "/", "echo", old, old, 3, 1, None, None, None)
        )
        batch.events.extend(EventRow(sid, seq, "r", "run_progress", old, b"{}\n") for seq in (1, 2))
        batch.events.append(EventRow(sid, 3, "r", "run_done", "2999-01-01T00:00:00.000Z", b"{}\n"))
    batch.new_permissions.append(
        PermissionRow(
            "p_old", "s_old000", "r", "resolved", "reject", "client", None, "{}", old, old
        )
    )
    store.commit(batch)
    store.close()

    async def scenario() -> None:
        store, core, server, listener = await serve(work, EchoRuntime(), event_retention_days=1)
        try:
            for _ in range(500):
                if store.sessions_with_events_before("2021-01-01T00:00:00.000Z") == []:
                    break
                await asyncio.sleep(0.01)
            assert store.sessions_with_events_before("2021-01-01T00:00:00.000Z") == []
            assert store.first_seq("s_old042") == 3
            assert store.count_events("s_old042", 0, 3) == 1
            assert store.get_permission("p_old") is None
        finally:
            await stop(store, core, server, listener)

    run(scenario())


# -- recovery and a first commit that fails ------------------------------------------------------


def test_recovery_ends_interrupted_runs_and_voids_their_permissions(
    run: Runner, work: Path
) -> None:
    from neocode_gateway.store import PermissionRow, RunRow, SessionRow, WriteBatch

    ts = "2026-12-04T10:00:00.000Z"
    store = Store.open(work / "data")
    batch = WriteBatch()
    batch.new_sessions.append(SessionRow("s_int", "t", "/", "echo", ts, ts, 0, 1, "r1", None, None))
    batch.new_runs.append(RunRow("s_int", "r1", "active", 1, None, ts))
    batch.new_permissions.append(
        PermissionRow("p_int", "s_int", "r1", "pending", None, None, None, "{}", ts, None)
    )
    store.commit(batch)
    store.close()

    async def scenario() -> None:
        store, core, server, listener = await serve(work)
        try:
            rows = store.read_events("s_int", 0, 10, 10)
            assert len(rows) == 1
            event = msgspec.json.decode(rows[0][1])["payload"]
            assert (event["event_type"], event["data"]["code"]) == (
                "run_error",
                "gateway_restarted",
            )
            permission = store.get_permission("p_int")
            assert permission is not None
            assert permission.state == "void"
            assert store.recover() == []
        finally:
            await stop(store, core, server, listener)

    run(scenario())


def test_a_new_session_whose_first_commit_fails_is_taken_back(run: Runner, work: Path) -> None:
    from neocode_gateway.errors import StoreError
    from neocode_gateway.store import WriteBatch

    async def scenario() -> None:
        store, core, server, listener = await serve(work)
        commit = store.commit
        failures = [1]

        def fail_once(batch: WriteBatch) -> None:
            if failures[0]:
                failures[0] -= 1
                raise StoreError(f"{store.path}: an I/O error")
            commit(batch)

        store.commit = fail_once  # type: ignore[method-assign]
        try:
            reader, writer = await asyncio.open_unix_connection(str(work / "gw.sock"))
            writer.write(line(action="run", request_id="a", input_text="hello"))
            refused = (await read_until(reader, lambda f: f.get("request_id") == "a"))[-1]
            assert refused["type"] == "error"
            assert refused["error"]["code"] == "internal_error"
            assert "event log cannot be written" in refused["error"]["message"]
            for _ in range(300):  # the retry lands what was not taken back (nothing)
                if not core.journal.failing:
                    break
                await asyncio.sleep(0.01)
            assert store.count_sessions() == 0
            assert core.status()["bindings"] == 0
            writer.write(line(action="create_session", request_id="c"))
            made = (await read_until(reader, lambda f: f.get("request_id") == "c"))[-1]
            assert made["type"] == "ack"
            assert store.count_sessions() == 1
            writer.close()
        finally:
            await stop(store, core, server, listener)

    run(scenario())
