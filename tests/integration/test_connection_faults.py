"""Issue 9: the faults a review found in the connection layer, each against a real server.

Every test here failed on the connection layer before the one ordered outbound
path (or would have, for the transport items); the fault number is the issue's.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import stat
import time
from collections.abc import Awaitable, Callable

import pytest

from neocode_gateway.dispatch import Dispatcher
from neocode_gateway.errors import AddressError
from neocode_gateway.protocol import Frame, encode_frame
from neocode_gateway.server import Connection
from neocode_gateway.transport import UnixListener
from tests.conftest import GatewayFactory
from tests.integration.test_server_inprocess import path, read_frames, req, run, serving
from tests.support import PING, PONG, LineReader, connect

__all__ = ["path", "run"]  # fixtures shared with test_server_inprocess

Runner = Callable[[Awaitable[None]], None]


def _ack(frame: Frame) -> bytes:
    return encode_frame(Frame(type="ack", action=frame.action, request_id=frame.request_id))


def _event(n: int) -> bytes:
    return encode_frame(Frame(type="event", action="run", payload={"n": n}))


# -- events and answers: events never wait for an answer still being computed --------------


def test_push_does_not_wait_behind_an_answer_being_computed(run: Runner, path: str) -> None:
    """Contract section 5: events interleave with answers. A slow answer (a compact) holds
    the answers behind it, never the events; a frame a handler pushes while it runs still
    goes after that handler's own answer."""

    async def scenario() -> None:
        gate = asyncio.Event()
        dispatcher = Dispatcher()

        async def slow(frame: Frame, conn: Connection) -> bytes:
            await gate.wait()
            return _ack(frame)

        def pushes_now(frame: Frame, conn: Connection) -> bytes:
            conn.send(_event(1))  # while it runs: after its own answer
            asyncio.get_running_loop().call_soon(conn.send, _event(2))
            return _ack(frame)

        dispatcher.register("compact", slow)
        dispatcher.register("run", pushes_now)
        async with serving(path, dispatcher) as (_server, reader, writer):
            writer.write(
                req("ping", "p1")
                + req("compact", "slow", session_id="s")
                + req("ping", "p2")
                + req("run", "r", input_text="x")
            )
            first = await read_frames(reader, 2)
            assert first[0]["request_id"] == "p1"
            assert first[1]["type"] == "event"
            assert first[1]["payload"] == {"n": 2}  # not held behind the slow answer
            gate.set()
            frames = await read_frames(reader, 4)
            kinds = [
                (f["type"], f.get("request_id") or f["payload"]["n"])  # type: ignore[index]
                for f in frames
            ]
            assert kinds == [("ack", "slow"), ("ack", "p2"), ("ack", "r"), ("event", 1)]

    run(scenario())


def test_sync_handler_pushing_while_it_runs_gets_its_ack_first(run: Runner, path: str) -> None:
    async def scenario() -> None:
        dispatcher = Dispatcher()

        def pushes(frame: Frame, conn: Connection) -> bytes:
            conn.send(_event(1), mark=("s", 1))
            return _ack(frame)

        dispatcher.register("run", pushes)
        async with serving(path, dispatcher) as (_server, reader, writer):
            writer.write(req("run", "alone", input_text="x"))  # the one-frame fast path
            frames = await read_frames(reader, 2)
            assert [f["type"] for f in frames] == ["ack", "event"]
            writer.write(req("ping", "p") + req("run", "batched", input_text="x"))
            frames = await read_frames(reader, 3)
            assert [f["type"] for f in frames] == ["ack", "ack", "event"]

    run(scenario())


def test_async_handler_orders_its_pushes_with_after_answer(run: Runner, path: str) -> None:
    """An asynchronous handler's pushes are not held (events flow while answers are
    computed); what must follow its answer is registered with ``after_answer`` while the
    handler runs, and runs once the answer has been written."""

    async def scenario() -> None:
        dispatcher = Dispatcher()

        def streams(frame: Frame, conn: Connection) -> Awaitable[bytes]:
            def third() -> None:
                conn.send(_event(3))

            conn.after_answer(third)

            async def body() -> bytes:
                conn.send(_event(1))
                await asyncio.sleep(0)
                conn.send(_event(2))
                return _ack(frame)

            return body()

        dispatcher.register("run", streams)
        async with serving(path, dispatcher) as (_server, reader, writer):
            writer.write(req("ping", "a") + req("ping", "b") + req("run", "r", input_text="x"))
            frames = await read_frames(reader, 6)
            kinds = [
                (f["type"], f.get("request_id") or f["payload"]["n"])  # type: ignore[index]
                for f in frames
            ]
            assert kinds == [
                ("ack", "a"),
                ("ack", "b"),
                ("event", 1),
                ("event", 2),
                ("ack", "r"),
                ("event", 3),
            ]

    run(scenario())


# -- fault 2: resume_writing does not re-arm the read deadline while an answer is owed -------


def test_resume_writing_keeps_waiting_for_an_owed_answer(run: Runner, path: str) -> None:
    async def scenario() -> None:
        dispatcher = Dispatcher()

        def pushes_big(frame: Frame, conn: Connection) -> bytes:
            conn.send(encode_frame(Frame(type="event", action="run", payload="x" * (2 << 20))))
            return _ack(frame)

        async def slow(frame: Frame, conn: Connection) -> bytes:
            await asyncio.sleep(0.8)
            return _ack(frame)

        dispatcher.register("run", pushes_big)
        dispatcher.register("compact", slow)
        async with serving(path, dispatcher, read_timeout=0.2) as (_server, reader, writer):
            writer.write(req("run", "r", input_text="x") + req("compact", "c", session_id="s"))
            # The big event fills the socket (pause_writing); reading it resumes writing
            # while the slow answer is still owed: the connection must wait for it.
            frames = await read_frames(reader, 3)
            assert [f["type"] for f in frames] == ["ack", "event", "ack"]
            assert frames[2]["request_id"] == "c"

    run(scenario())


# -- fault 3: a handler cancelled on its own answers internal_error ----------------------------


def test_handler_ending_in_cancelled_error_answers_internal_error(run: Runner, path: str) -> None:
    async def scenario() -> None:
        dispatcher = Dispatcher()

        async def cancelled(frame: Frame, conn: Connection) -> bytes:
            never: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
            never.cancel()
            return await never

        dispatcher.register("run", cancelled)
        async with serving(path, dispatcher) as (server, reader, writer):
            writer.write(req("run", "r", input_text="x") + req("ping", "p"))
            frames = await read_frames(reader, 2)
            assert frames[0]["error"] == {
                "code": "internal_error",
                "message": "internal gateway error",
            }
            assert frames[1]["request_id"] == "p"
            assert server.stats()["handler_failures"] == 1

    run(scenario())


# -- fault 4: reading pauses while too many answers are owed --------------------------------


def test_reading_pauses_above_the_owed_bound(run: Runner, path: str) -> None:
    async def scenario() -> None:
        gate = asyncio.Event()
        dispatcher = Dispatcher()

        async def slow(frame: Frame, conn: Connection) -> bytes:
            await gate.wait()
            return _ack(frame)

        dispatcher.register("compact", slow)
        async with serving(path, dispatcher) as (server, reader, writer):
            writer.write(req("compact", "slow", session_id="s"))
            flood = req("ping", "p") * 20_000
            writer.write(flood)
            # The gateway stops reading: the client's writes back up instead of the
            # gateway's memory growing (it used to queue every request).
            deadline = time.monotonic() + 10
            conn = None
            while time.monotonic() < deadline:
                conn = next(iter(server.connections), None)
                if conn is not None and conn.pending_frames >= 256:
                    break
                await asyncio.sleep(0.01)
            assert conn is not None
            await asyncio.sleep(0.1)
            assert conn.pending_frames < 20_000
            gate.set()
            frames = await read_frames(reader, 20_001)
            assert frames[0]["request_id"] == "slow"
            assert all(f["request_id"] == "p" for f in frames[1:])

    run(scenario())


# -- fault 5: pushing is counted, and refused after close ---------------------------------


def test_send_after_close_is_refused_and_counted(run: Runner, path: str) -> None:
    async def scenario() -> None:
        seen: list[Connection] = []
        dispatcher = Dispatcher()

        def remember(frame: Frame, conn: Connection) -> bytes:
            seen.append(conn)
            return _ack(frame)

        dispatcher.register("run", remember)
        async with serving(path, dispatcher) as (_server, reader, writer):
            writer.write(req("run", "r", input_text="x"))
            await read_frames(reader, 1)
            conn = seen[0]
            assert conn.send(_event(1), mark=("s", 1)) is True
            await read_frames(reader, 1)
            assert conn.frames_out == 2
            assert conn.bytes_out > 0
            assert conn.delivered("s") == 1
            writer.close()
            while not conn.closed:
                await asyncio.sleep(0.01)
            assert conn.send(_event(2)) is False
            assert conn.dropped_frames == 1
            assert await conn.drain() is False

    run(scenario())


def test_pushed_frames_wait_in_the_gateway_and_are_measured(run: Runner, path: str) -> None:
    async def scenario() -> None:
        seen: list[Connection] = []
        dispatcher = Dispatcher()

        def remember(frame: Frame, conn: Connection) -> bytes:
            seen.append(conn)
            return _ack(frame)

        dispatcher.register("run", remember)
        async with serving(path, dispatcher) as (server, _reader, _writer):
            # A client whose reader holds little: the gateway sees back-pressure.
            reader, writer = await asyncio.open_unix_connection(path, limit=4096)
            writer.write(req("run", "r", input_text="x"))
            await reader.readline()
            conn = seen[0]
            chunk = encode_frame(Frame(type="event", action="run", payload="y" * 65536))
            for n in range(200):  # ~13 MB: far past the socket's buffers
                conn.send(chunk, mark=("s", n))
            assert conn.pending_bytes > 8 << 20
            assert conn.pending_frames > 0
            assert conn.oldest_pending_age(server.loop_time() + 1) >= 1
            # A client with a backlog of events can still be read from.
            writer.write(req("ping", "still"))
            drained = asyncio.ensure_future(conn.drain())
            await asyncio.sleep(0.05)
            assert not drained.done()
            data = b""
            while b'"still"' not in data[-200:]:
                chunk_in = await reader.read(1 << 16)
                assert chunk_in
                data += chunk_in
            assert data.count(b"\n") == 201  # the ping answer waits behind the events
            assert await asyncio.wait_for(drained, 10) is True
            assert conn.delivered("s") == 199
            writer.close()

    run(scenario())


# -- fault 6: close() answers what was already read ----------------------------------------


def test_close_answers_what_was_read(run: Runner, path: str) -> None:
    async def scenario() -> None:
        dispatcher = Dispatcher()

        def closes(frame: Frame, conn: Connection) -> bytes:
            conn.close()
            return _ack(frame)

        dispatcher.register("run", closes)
        async with serving(path, dispatcher) as (_server, reader, writer):
            writer.write(req("ping", "a") + req("run", "r", input_text="x") + req("ping", "b"))
            frames = await read_frames(reader, 3)
            assert [f["request_id"] for f in frames] == ["a", "r", "b"]
            assert await reader.read() == b""

    run(scenario())


# -- fault 7: one client's valid frames do not stall the others --------------------------------


def test_deep_frame_does_not_stall_other_clients(gateway_factory: GatewayFactory) -> None:
    gateway = gateway_factory("--runtime", "none")
    unit = b"[" * 62 + b"]" * 62
    payload = b"[" + b",".join([unit] * ((1 << 20) // (len(unit) + 1) - 10)) + b"]"
    heavy = b'{"type":"request","action":"ping","request_id":"h","payload":' + payload + b"}\n"
    with connect(gateway.path) as hog, connect(gateway.path) as other:
        reader = LineReader(other)
        hog.sendall(heavy * 3)
        worst = 0.0
        for _ in range(20):
            start = time.perf_counter()
            other.sendall(PING)
            assert reader.line() == PONG
            worst = max(worst, time.perf_counter() - start)
        hog_reader = LineReader(hog)
        for _ in range(3):
            assert hog_reader.frame()["request_id"] == "h"
    # Generous for a loaded CI machine; it was 0.64 s per heavy frame, and three queued.
    assert worst < 1.0, worst


# -- fault 8: the peer check fails closed ----------------------------------------------------


def test_peer_check_failing_unexpectedly_refuses(
    run: Runner, path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(self: UnixListener, transport: object) -> object:
        raise RuntimeError("unexpected")

    monkeypatch.setattr(UnixListener, "peer_credentials", broken)

    async def scenario() -> None:
        async with serving(path, Dispatcher()) as (server, reader, _writer):
            with contextlib.suppress(ConnectionResetError):  # aborted: a refusal too
                assert await reader.read() == b""
            assert server.rejected_peer == 1
            assert not server.connections

    run(scenario())


# -- fault 9: the lock file must be ours ------------------------------------------------------


def test_lock_file_hard_link_is_refused(sock_dir: str) -> None:
    victim = f"{sock_dir}/victim.txt"
    with open(victim, "w") as out:
        out.write("precious")
    os.link(victim, f"{sock_dir}/gw.sock.lock")
    listener = UnixListener(f"{sock_dir}/gw.sock")
    with pytest.raises(AddressError, match="2 hard links"):
        listener.open()
    with open(victim) as back:
        assert back.read() == "precious"
    assert not os.path.exists(f"{sock_dir}/gw.sock")


def test_lock_file_that_is_not_a_file_is_refused(sock_dir: str) -> None:
    os.mkfifo(f"{sock_dir}/gw.sock.lock")
    listener = UnixListener(f"{sock_dir}/gw.sock")
    with pytest.raises(AddressError, match="not a regular file"):
        listener.open()


# -- fault 11: an unremovable stale socket is one clear error ---------------------------------


def test_unremovable_stale_socket_is_a_clear_error(
    sock_dir: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = f"{sock_dir}/gw.sock"
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(path)
    stale.close()  # bound, never listened: nothing answers
    assert stat.S_ISSOCK(os.lstat(path).st_mode)
    real_unlink = os.unlink

    def denied(target: str, *args: object, **kwargs: object) -> None:
        if target == path:
            raise PermissionError(1, "Operation not permitted")
        real_unlink(target)

    monkeypatch.setattr(os, "unlink", denied)
    listener = UnixListener(path)
    with pytest.raises(AddressError, match="cannot be removed: operation not permitted"):
        listener.open()
