"""The server and dispatch layers in-process, on real sockets, on both event loops.

These use handlers that answer asynchronously (as ``run`` will), which the
daemon's built-in actions never do: ordering behind a slow answer, a handler
that fails, a request in flight at shutdown, frames pushed at any time.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import msgspec
import pytest
import uvloop

from neocode_gateway.dispatch import Dispatcher
from neocode_gateway.protocol import Frame, encode_frame
from neocode_gateway.server import Connection, Server, ServerConfig
from neocode_gateway.transport import UnixListener
from tests.support import short_tmpdir

LOOPS = {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}
#: Accepted connections served by our epoll reactor (the default on Linux), or by the
#: event loop's own transports (where there is no epoll).
REACTOR = {"reactor": True, "loop-transports": False}
#: Whether ``serving`` uses the reactor, as the ``run`` fixture's parameter says.
_use_reactor = True


@pytest.fixture(params=["asyncio-reactor", "uvloop-reactor", "uvloop-loop-transports"])
def run(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Callable[[Awaitable[None]], None]:
    loop_name, _, transports = request.param.partition("-")
    factory = LOOPS[loop_name]
    monkeypatch.setitem(globals(), "_use_reactor", REACTOR[transports])

    def runner(coro: Awaitable[None]) -> None:
        async def bounded() -> None:
            await asyncio.wait_for(coro, 20)

        with asyncio.Runner(loop_factory=factory) as r:
            r.run(bounded())

    return runner


@pytest.fixture
def path() -> Iterator[str]:
    d = short_tmpdir()
    yield f"{d}/gw.sock"
    shutil.rmtree(d, ignore_errors=True)


def req(action: str, rid: str, **extra: object) -> bytes:
    return (
        msgspec.json.encode({"type": "request", "action": action, "request_id": rid, **extra})
        + b"\n"
    )


@contextlib.asynccontextmanager
async def serving(
    path: str, dispatcher: Dispatcher, **cfg: float
) -> AsyncIterator[tuple[Server, asyncio.StreamReader, asyncio.StreamWriter]]:
    """A server on ``path`` and one client connected to it; both are cleaned up after."""
    listener = UnixListener(path, reactor=_use_reactor)
    listener.open()
    # As the daemon does: the bound method (the dispatcher itself is callable too).
    server = Server(listener, dispatcher.dispatch, ServerConfig(**cfg))  # type: ignore[arg-type]
    await server.start()
    try:
        reader, writer = await asyncio.open_unix_connection(path, limit=64 << 20)
        try:
            yield server, reader, writer
        finally:
            writer.close()
    finally:
        await server.shutdown()
        listener.release()


async def read_frames(reader: asyncio.StreamReader, n: int) -> list[dict[str, object]]:
    return [msgspec.json.decode(await reader.readline()) for _ in range(n)]


def slow_dispatcher(gate: asyncio.Event) -> Dispatcher:
    dispatcher = Dispatcher()

    async def slow_run(frame: Frame, conn: Connection) -> bytes:
        await gate.wait()
        return encode_frame(Frame(type="ack", action="run", request_id=frame.request_id))

    def failing(frame: Frame, conn: Connection) -> bytes:
        raise RuntimeError("boom")

    async def failing_later(frame: Frame, conn: Connection) -> bytes:
        raise RuntimeError("boom later")

    dispatcher.register("run", slow_run)
    dispatcher.register("cancel", failing)
    dispatcher.register("list_sessions", failing_later)
    return dispatcher


def test_responses_stay_in_order_behind_a_slow_answer(
    run: Callable[[Awaitable[None]], None], path: str
) -> None:
    async def scenario() -> None:
        gate = asyncio.Event()
        async with serving(path, slow_dispatcher(gate)) as (_server, reader, writer):
            writer.write(
                req("ping", "a") + req("run", "b", input_text="x") + req("ping", "c") + b"garbage\n"
            )
            await writer.drain()
            first = await read_frames(reader, 1)
            assert first[0]["request_id"] == "a"
            # c and the error wait behind b.
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(reader.readline(), 0.2)
            gate.set()
            rest = await read_frames(reader, 3)
            assert [f.get("request_id") for f in rest] == ["b", "c", None]
            assert rest[2]["error"] == {"code": "invalid_frame", "message": "invalid json frame"}
            assert await reader.read() == b""  # closed after the fatal error, once flushed

    run(scenario())


def test_failing_handlers_answer_internal_error(
    run: Callable[[Awaitable[None]], None], path: str
) -> None:
    async def scenario() -> None:
        async with serving(path, slow_dispatcher(asyncio.Event())) as (_server, reader, writer):
            writer.write(req("cancel", "x") + req("list_sessions", "y") + req("ping", "z"))
            frames = await read_frames(reader, 3)
            assert frames[0] == {
                "type": "error",
                "action": "cancel",
                "request_id": "x",
                "error": {"code": "internal_error", "message": "internal gateway error"},
            }
            assert frames[1]["error"] == {
                "code": "internal_error",
                "message": "internal gateway error",
            }
            assert frames[1]["request_id"] == "y"
            assert frames[2]["request_id"] == "z"

    run(scenario())


def test_shutdown_waits_for_a_request_in_flight(
    run: Callable[[Awaitable[None]], None], path: str
) -> None:
    async def scenario() -> None:
        gate = asyncio.Event()
        async with serving(path, slow_dispatcher(gate)) as (server, reader, writer):
            idle_reader, idle_writer = await asyncio.open_unix_connection(path)
            writer.write(req("run", "r1", input_text="x"))
            await writer.drain()
            while not any(c.busy for c in server.connections):
                await asyncio.sleep(0.001)
            stopping = asyncio.ensure_future(server.shutdown())
            assert await idle_reader.read() == b""  # the idle client is closed at once
            assert not stopping.done()
            gate.set()
            [frame] = await read_frames(reader, 1)
            assert frame == {"type": "ack", "action": "run", "request_id": "r1"}
            assert await reader.read() == b""
            await stopping
            assert not server.connections
            idle_writer.close()
        assert not os.path.exists(path)

    run(scenario())


def test_shutdown_grace_aborts_what_does_not_finish(
    run: Callable[[Awaitable[None]], None], path: str
) -> None:
    async def scenario() -> None:
        async with serving(path, slow_dispatcher(asyncio.Event()), shutdown_grace=0.2) as (
            server,
            reader,
            writer,
        ):
            writer.write(req("run", "never", input_text="x"))
            await writer.drain()
            while not server.connections or not any(c.busy for c in server.connections):
                await asyncio.sleep(0.001)
            await server.shutdown()
            assert await reader.read() == b""
            assert server.stats()["connections"] == 0

    run(scenario())


def test_server_can_push_frames_at_any_time(
    run: Callable[[Awaitable[None]], None], path: str
) -> None:
    async def scenario() -> None:
        dispatcher = Dispatcher()

        def run_action(frame: Frame, conn: Connection) -> bytes:
            loop = asyncio.get_running_loop()
            event = encode_frame(Frame(type="event", action="run", payload={"n": 1}))
            loop.call_soon(conn.send, event)
            return encode_frame(Frame(type="ack", action="run", request_id=frame.request_id))

        dispatcher.register("run", run_action)
        async with serving(path, dispatcher) as (_server, reader, writer):
            writer.write(req("run", "r", input_text="go"))
            frames = await read_frames(reader, 2)
            assert [f["type"] for f in frames] == ["ack", "event"]

    run(scenario())


def test_builtin_actions_cannot_be_overridden() -> None:
    dispatcher = Dispatcher()
    with pytest.raises(ValueError, match="cannot be overridden"):
        dispatcher.register("ping", lambda f, c: b"")
    with pytest.raises(ValueError, match="not an action"):
        dispatcher.register("launch", lambda f, c: b"")
    assert dispatcher.handler_for("ping") is not None
    assert dispatcher.handler_for("run") is None
    # The dispatcher is a handler itself, or through its bound method (the daemon's).
    ping = Frame(type="request", action="ping", request_id="p")
    assert dispatcher(ping, None) == dispatcher.dispatch(ping, None)  # type: ignore[arg-type]
    assert b"pong" in dispatcher.dispatch(ping, None)  # type: ignore[arg-type,operator]


def test_a_connection_taken_before_the_server_started_is_served(
    run: Callable[[Awaitable[None]], None], path: str
) -> None:
    """``Server.adopt`` (the daemon's early pings): the bytes read before are answered,
    then the connection is served like any other, whatever serves the listener."""

    async def main() -> None:
        async with serving(path, Dispatcher()) as (server, _reader, _writer):
            ours, theirs = socket.socketpair(socket.AF_UNIX)
            await server.adopt(ours, req("ping", "early"))
            reader, writer = await asyncio.open_unix_connection(sock=theirs)
            writer.write(req("ping", "later"))
            frames = await read_frames(reader, 2)
            assert [f["request_id"] for f in frames] == ["early", "later"]
            writer.close()

    run(main())
