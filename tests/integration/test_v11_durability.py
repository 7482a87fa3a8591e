"""Contract v1.1 sections 4 (bindings), 7 (slow consumers) and 8 (durability, restart).

Real daemons, real SQLite files, kill -9; a hypothesis property over bind /
unbind / reconnect interleavings while a run streams.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import shutil
import signal
import socket
import time
from collections.abc import Iterator
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import GatewayFactory
from tests.support import Gateway, LineReader, connect, short_tmpdir
from tests.v11 import Peer, data, etype, seqs


@pytest.fixture
def data_dir() -> Iterator[str]:
    path = short_tmpdir("ngw-data-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _replay_all(path: str, session_id: str) -> list[dict[str, Any]]:
    """Every logged event of a session, replayed from seq 0 up to its terminal state."""
    with Peer(path) as peer:
        ack = peer.ack("bind_stream", session_id=session_id, payload={"after_seq": 0})
        count = int(ack["payload"]["replayed"])
        return [peer.read() for _ in range(count)]


def test_kill_9_mid_burst_keeps_every_seen_event(
    gateway_factory: GatewayFactory, data_dir: str
) -> None:
    gateway = gateway_factory("--data-dir", data_dir)
    seen: list[bytes] = []
    with connect(gateway.path) as sock:
        sock.sendall(
            b'{"type":"request","action":"run","request_id":"b1","input_text":"/burst 100000"}\n'
        )
        reader = LineReader(sock)
        ack = msgspec.json.decode(reader.line())
        session_id = ack["session_id"]
        while len(seen) < 5000:
            line = reader.line()
            assert line
            seen.append(line)
        os.kill(gateway.pid, signal.SIGKILL)
        gateway.wait(10)
    restarted = gateway_factory("--data-dir", data_dir, path=gateway.path)
    log = _replay_all(restarted.path, session_id)
    numbers = seqs(log)
    assert numbers == list(range(1, len(numbers) + 1)), "the log has a gap"
    by_seq = {int(f["payload"]["seq"]): f for f in log}
    for line in seen:
        event = msgspec.json.decode(line)
        assert by_seq[event["payload"]["seq"]] == event, "an event a client saw was lost"
    last = log[-1]
    assert etype(last) == "run_error"
    assert data(last)["code"] == "gateway_restarted"
    assert [etype(e) for e in log].count("run_error") == 1
    assert restarted.wait_log("recovered: 1 interrupted runs")
    # The session is idle again and takes a new run.
    with Peer(restarted.path) as peer:
        run = peer.ack("run", input_text="after", session_id=session_id)
        assert etype(peer.wait_terminal(str(run["run_id"]))) == "run_done"


def test_restart_voids_pending_permissions(gateway_factory: GatewayFactory, data_dir: str) -> None:
    gateway = gateway_factory("--data-dir", data_dir)
    with Peer(gateway.path) as peer:
        ack = peer.ack("run", input_text="/ask")
        request = peer.wait_event(lambda f: etype(f) == "permission_request")
        permission_id = data(request)["request_id"]
    assert gateway.stop() == 0
    restarted = gateway_factory("--data-dir", data_dir, path=gateway.path)
    with Peer(restarted.path) as peer:
        late = peer.request(
            "resolve_permission", payload={"request_id": permission_id, "decision": "allow_once"}
        )
        assert late["error"]["code"] == "conflict"
        log = _replay_all(restarted.path, str(ack["session_id"]))
        assert data(log[-1])["code"] == "gateway_restarted"
        sessions = peer.ack("list_sessions")["payload"]["sessions"]
        assert sessions[0]["state"] == "idle"


def test_unusable_database_is_one_clear_line(
    gateway_factory: GatewayFactory, data_dir: str
) -> None:
    with open(os.path.join(data_dir, "gateway.db"), "wb") as db:
        db.write(b"this is not a database at all, just some bytes" * 100)
    gateway = gateway_factory("--data-dir", data_dir, wait=False)
    assert gateway.wait(10) == 1
    lines = [line for line in gateway.log().splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert "gateway.db" in lines[0]
    assert "Traceback" not in gateway.log()


def test_slow_consumer_is_cut_while_others_get_everything(gateway: Gateway) -> None:
    with Peer(gateway.path) as runner:
        ack = runner.ack("run", input_text="warm up")
        session_id = str(ack["session_id"])
        runner.wait_terminal(str(ack["run_id"]))
        readers = [connect(gateway.path) for _ in range(15)]
        lazy = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        lazy.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        lazy.connect(gateway.path)
        bind = msgspec.json.encode(
            {"type": "request", "action": "bind_stream", "session_id": session_id}
        )
        try:
            for sock in [*readers, lazy]:
                sock.sendall(bind + b"\n")
            for sock in readers:
                assert msgspec.json.decode(LineReader(sock).line())["type"] == "ack"
            # The first reader starts the run (its ack is among its frames); the runner
            # unbinds so that only the lazy client fails to read.
            runner.ack("unbind_stream", session_id=session_id)
            run = {
                "type": "request",
                "action": "run",
                "session_id": session_id,
                "input_text": "/burst 50000",
            }
            readers[0].sendall(msgspec.json.encode(run) + b"\n")
            received = _read_all_until_terminal(readers, timeout=120)
            streams = [
                [
                    frame
                    for frame in (msgspec.json.decode(line) for line in data.splitlines() if line)
                    if frame["type"] == "event"
                ]
                for data in received
            ]
            for frames in streams:
                numbers = seqs(frames)
                assert etype(frames[-1]) == "run_done"
                assert numbers == list(range(numbers[0], numbers[-1] + 1))
                assert len(frames) >= 50000
            assert len({seqs(frames)[-1] for frames in streams}) == 1
            # The lazy client: what it was sent, then one slow_consumer error, then EOF.
            lazy.settimeout(60)
            frames = _drain(lazy)
            assert frames[0]["type"] == "ack"
            error = frames[-1]
            assert error["type"] == "error", error
            assert error["error"]["code"] == "slow_consumer"
            assert error["session_id"] == session_id
            events = [f for f in frames if f.get("type") == "event"]
            last = seqs(events)[-1] if events else 0
            assert error["payload"] == {"last_seq": last}
            assert error["error"]["message"].endswith(f"last delivered seq {last}")
            assert last < seqs(streams[0])[-1]
            # The gateway still serves.
            assert runner.ack("ping")["payload"] == {"message": "pong"}
        finally:
            lazy.close()
            for sock in readers:
                sock.close()


def _read_all_until_terminal(socks: list[socket.socket], timeout: float) -> list[bytes]:
    """Read every socket (one thread, select) until each has seen a terminal event."""
    buffers = {sock: bytearray() for sock in socks}
    open_socks = set(socks)
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        for sock in socks:
            sock.setblocking(False)
            selector.register(sock, selectors.EVENT_READ)
        while open_socks:
            assert time.monotonic() < deadline, "the readers did not receive the whole run"
            for key, _ in selector.select(1.0):
                ready = key.fileobj
                assert isinstance(ready, socket.socket)
                chunk = ready.recv(1 << 20)
                assert chunk, "a reading client was closed"
                buf = buffers[ready]
                buf += chunk
                if b'"event_type":"run_done"' in buf[-(len(chunk) + 64) :]:
                    open_socks.discard(ready)
                    selector.unregister(ready)
    for sock in socks:
        sock.setblocking(True)
    return [bytes(buffers[sock]) for sock in socks]


def _drain(sock: socket.socket) -> list[dict[str, Any]]:
    chunks = []
    while True:
        try:
            chunk = sock.recv(1 << 20)
        except ConnectionResetError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return [msgspec.json.decode(line) for line in b"".join(chunks).splitlines() if line]


# -- hypothesis: every view is gapless and duplicate-free ------------------------------


@contextlib.contextmanager
def _one_gateway() -> Iterator[Gateway]:
    directory = short_tmpdir()
    gw = Gateway(f"{directory}/gw.sock")
    try:
        yield gw.start()
    finally:
        with contextlib.suppress(Exception):
            gw.stop(8)
        gw.cleanup()
        shutil.rmtree(directory, ignore_errors=True)


_OPS = st.lists(
    st.one_of(
        st.tuples(st.just("read"), st.integers(1, 400)),
        st.tuples(st.just("unbind"), st.just(0)),
        st.tuples(st.just("rebind"), st.just(0)),
        st.tuples(st.just("reconnect"), st.just(0)),
    ),
    min_size=1,
    max_size=12,
)


@pytest.mark.timeout(300)
def test_views_are_gapless_under_random_interleavings() -> None:
    with _one_gateway() as gateway:

        @settings(
            max_examples=10,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
        )
        @given(ops=_OPS, burst=st.integers(200, 5000))
        def check(ops: list[tuple[str, int]], burst: int) -> None:
            _interleave(gateway.path, ops, burst)

        check()


def _interleave(path: str, ops: list[tuple[str, int]], burst: int) -> None:
    """Bind, unbind, bind again and reconnect at random while a run streams.

    Every binding's events, from its ack to the next ack or the end, must be
    ``cursor + 1, cursor + 2, ...`` without a gap or a duplicate, and a client
    that always rebinds from the last seq it received sees every event.
    """
    with Peer(path) as runner:
        ack = runner.ack("run", input_text="start")
        session_id = str(ack["session_id"])
        runner.wait_terminal(str(ack["run_id"]))
        runner.ack("unbind_stream", session_id=session_id)
        cursors: dict[str, int] = {}
        segments: list[tuple[int, list[int]]] = []
        seen: set[int] = set()
        peers: list[Peer] = []
        last = 0

        def bind(peer: Peer) -> None:
            request_id = peer.send(
                "bind_stream", session_id=session_id, payload={"after_seq": last}
            )
            cursors[request_id] = last
            peer.response(request_id)

        def account(peer: Peer) -> None:
            nonlocal last
            for frame in peer.frames:
                if frame["type"] == "ack" and frame.get("action") == "bind_stream":
                    segments.append((cursors[frame["request_id"]], []))
                elif frame["type"] == "ack" and frame.get("action") == "unbind_stream":
                    segments.append((-1, []))
                elif frame["type"] == "event" and frame.get("session_id") == session_id:
                    seq = int(frame["payload"]["seq"])
                    assert segments, "an event before any binding"
                    assert segments[-1][0] >= 0, "an event after unbind_stream was acked"
                    segments[-1][1].append(seq)
                    seen.add(seq)
                    last = max(last, seq)
            peer.frames.clear()
            peer.events.clear()

        watcher = Peer(path)
        peers.append(watcher)
        bind(watcher)
        bound = True
        run = runner.ack("run", input_text=f"/burst {burst}", session_id=session_id)
        run_id = str(run["run_id"])
        end = _terminal_seq(runner, run_id)
        try:
            for op, count in ops:
                if op == "read" and bound:
                    watcher.sock.settimeout(0.2)
                    with contextlib.suppress(TimeoutError):
                        for _ in range(count):
                            watcher.read()
                    watcher.sock.settimeout(None)
                elif op == "unbind" and bound:
                    watcher.ack("unbind_stream", session_id=session_id)
                    bound = False
                elif op == "rebind":
                    account(watcher)
                    bind(watcher)
                    bound = True
                elif op == "reconnect":
                    account(watcher)
                    watcher.close()
                    watcher = Peer(path)
                    peers.append(watcher)
                    bind(watcher)
                    bound = True
                account(watcher)
            if not bound or last < end:
                account(watcher)
                bind(watcher)
            while last < end:
                watcher.read()
                account(watcher)
        finally:
            for peer in peers:
                peer.close()
        for cursor, numbers in segments:
            if cursor >= 0 and numbers:
                assert numbers == list(range(cursor + 1, cursor + 1 + len(numbers))), (
                    "a binding's events have a gap or a duplicate"
                )
        assert seen == set(range(1, end + 1)), "an event was never delivered"


def _terminal_seq(runner: Peer, run_id: str) -> int:
    return seqs([runner.wait_terminal(run_id, timeout=60)])[0]
