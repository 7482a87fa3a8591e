"""The reactor's transports on real Unix sockets, on both event loops.

Each test serves a recording protocol from a listening socket in a temporary
directory and drives it with plain client sockets: the asyncio contract
(pause/resume around the write buffer, EOF kept open or not, connection_lost
on a later turn) and what is ours (hang-ups while reading is paused, a failing
protocol, running out of descriptors).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import shutil
import socket
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
import uvloop

from neocode_gateway.transport import _reactor
from neocode_gateway.transport._reactor import HIGH_WATER, Reactor, SocketTransport
from tests.support import short_tmpdir

pytestmark = pytest.mark.skipif(not hasattr(__import__("select"), "epoll"), reason="needs epoll")

LOOPS = {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}


@pytest.fixture(params=sorted(LOOPS))
def run(request: pytest.FixtureRequest) -> Callable[[Awaitable[None]], None]:
    factory = LOOPS[request.param]

    def runner(coro: Awaitable[None]) -> None:
        async def bounded() -> None:
            await asyncio.wait_for(coro, 20)

        with asyncio.Runner(loop_factory=factory) as r:
            r.run(bounded())

    return runner


@pytest.fixture
def path() -> Iterator[str]:
    d = short_tmpdir("ngw-reactor-")
    yield f"{d}/r.sock"
    shutil.rmtree(d, ignore_errors=True)


class Recorder(asyncio.Protocol):
    """Records every callback; ``eof_keep`` is what ``eof_received`` returns."""

    def __init__(self, eof_keep: bool = True, fail: bool = False) -> None:
        loop = asyncio.get_running_loop()
        self.transport: SocketTransport | None = None
        self.data = bytearray()
        self.events: list[Any] = []
        self.eof_keep = eof_keep
        self.fail = fail
        self.changed = asyncio.Event()
        self.lost: asyncio.Future[BaseException | None] = loop.create_future()

    def _note(self, event: Any) -> None:
        self.events.append(event)
        self.changed.set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, SocketTransport)
        self.transport = transport
        self._note("made")

    def data_received(self, data: bytes) -> None:
        if self.fail:
            raise RuntimeError("boom")
        self.data += data
        self._note("data")

    def eof_received(self) -> bool:
        self._note("eof")
        return self.eof_keep

    def pause_writing(self) -> None:
        self._note("pause")

    def resume_writing(self) -> None:
        self._note("resume")

    def connection_lost(self, exc: BaseException | None) -> None:
        self._note(("lost", exc))
        self.lost.set_result(exc)

    async def until(self, check: Callable[[], bool]) -> None:
        while not check():
            self.changed.clear()
            await asyncio.wait_for(self.changed.wait(), 10)


class Bench:
    """A reactor serving ``path``; each accepted connection's protocol is kept in order."""

    def __init__(
        self, path: str, listening: type[socket.socket] = socket.socket, **protocol: Any
    ) -> None:
        self.loop = asyncio.get_running_loop()
        self.listening = listening(socket.AF_UNIX)
        self.listening.bind(path)
        self.listening.listen(64)
        self.listening.setblocking(False)
        self.path = path
        self.reactor = Reactor(self.loop)
        self.protocols: list[Recorder] = []
        self.accepted = asyncio.Event()

        def factory() -> Recorder:
            recorder = Recorder(**protocol)
            self.protocols.append(recorder)
            self.accepted.set()
            return recorder

        self.reactor.serve(self.listening, factory)

    async def connect(self) -> tuple[socket.socket, Recorder]:
        count = len(self.protocols)
        client = socket.socket(socket.AF_UNIX)
        client.setblocking(False)
        await self.loop.sock_connect(client, self.path)
        while len(self.protocols) <= count:
            self.accepted.clear()
            await asyncio.wait_for(self.accepted.wait(), 10)
        recorder = self.protocols[count]
        await recorder.until(lambda: recorder.transport is not None)
        return client, recorder

    async def read_all(self, client: socket.socket) -> bytes:
        """Read until the server closes."""
        out = bytearray()
        while chunk := await asyncio.wait_for(self.loop.sock_recv(client, 1 << 20), 10):
            out += chunk
        return bytes(out)

    def close(self) -> None:
        self.reactor.close()
        self.listening.close()


def test_data_both_ways_and_the_socket_as_extra_info(run: Any, path: str) -> None:
    async def main() -> None:
        bench = Bench(path, eof_keep=False)
        client, server = await bench.connect()
        transport = server.transport
        assert transport is not None
        await bench.loop.sock_sendall(client, b"hello\n")
        await server.until(lambda: server.data == b"hello\n")
        transport.write(b"back\n")
        assert await bench.loop.sock_recv(client, 100) == b"back\n"
        sock = transport.get_extra_info("socket")
        assert isinstance(sock, socket.socket)
        assert sock.family == socket.AF_UNIX
        assert transport.get_extra_info("peername", "none") == "none"
        assert transport.get_protocol() is server
        assert transport.is_reading()
        assert not transport.is_closing()
        assert not transport.can_write_eof()
        assert transport.get_write_buffer_limits() == (_reactor.LOW_WATER, HIGH_WATER)
        client.close()
        assert await server.lost is None
        assert server.events == ["made", "data", "eof", ("lost", None)]
        bench.close()

    run(main())


def test_a_full_socket_pauses_the_writer_and_every_byte_arrives_in_order(
    run: Any, path: str
) -> None:
    async def main() -> None:
        bench = Bench(path)
        client, server = await bench.connect()
        transport = server.transport
        assert transport is not None
        blob = bytes(range(256)) * 4096  # 1 MiB: more than the socket buffers hold
        for start in range(0, len(blob), 65536):
            transport.write(blob[start : start + 65536])
        assert "pause" in server.events
        assert transport.get_write_buffer_size() > HIGH_WATER
        transport.close()  # closes once everything written has been sent
        assert transport.is_closing()
        transport.pause_reading()  # no effect on a closing transport's writing
        assert await bench.read_all(client) == blob
        assert await server.lost is None
        assert server.events.index("pause") < server.events.index("resume")
        client.close()
        bench.close()

    run(main())


def test_abort_discards_what_was_not_sent(run: Any, path: str) -> None:
    async def main() -> None:
        bench = Bench(path)
        client, server = await bench.connect()
        transport = server.transport
        assert transport is not None
        transport.write(b"x" * (4 << 20))
        transport.abort()
        transport.write(b"after")  # ignored: the connection is gone
        assert transport.get_write_buffer_size() == 0
        assert await server.lost is None
        received = await bench.read_all(client)
        assert 0 < len(received) < 4 << 20
        client.close()
        bench.close()

    run(main())


def test_eof_kept_open_lets_the_protocol_answer_then_close(run: Any, path: str) -> None:
    async def main() -> None:
        bench = Bench(path)
        client, server = await bench.connect()
        await bench.loop.sock_sendall(client, b"last words")
        client.shutdown(socket.SHUT_WR)
        await server.until(lambda: "eof" in server.events)
        transport = server.transport
        assert transport is not None
        assert not transport.is_reading()
        transport.write(b"answer")
        transport.close()
        assert await bench.read_all(client) == b"answer"
        assert server.data == b"last words"
        client.close()
        bench.close()

    run(main())


def test_eof_not_kept_closes_the_transport(run: Any, path: str) -> None:
    async def main() -> None:
        bench = Bench(path, eof_keep=False)
        client, server = await bench.connect()
        client.shutdown(socket.SHUT_WR)
        assert await server.lost is None
        assert server.events == ["made", "eof", ("lost", None)]
        client.close()
        bench.close()

    run(main())


def test_paused_reading_holds_data_until_resumed(run: Any, path: str) -> None:
    async def main() -> None:
        bench = Bench(path)
        client, server = await bench.connect()
        other, witness = await bench.connect()
        transport = server.transport
        assert transport is not None
        transport.pause_reading()
        transport.pause_reading()  # idempotent
        await bench.loop.sock_sendall(client, b"held")
        # Another connection's data passing through proves the reactor had its turns.
        await bench.loop.sock_sendall(other, b"ping")
        await witness.until(lambda: witness.data == b"ping")
        assert server.data == b""
        transport.resume_reading()
        transport.resume_reading()
        await server.until(lambda: server.data == b"held")
        for sock in (client, other):
            sock.close()
        bench.close()

    run(main())


def test_a_hang_up_while_reading_is_paused_leaves_the_set(run: Any, path: str) -> None:
    """Level-triggered epoll reports a hang-up on every turn: the socket must leave the
    set until reading resumes, or the loop would spin."""

    async def main() -> None:
        bench = Bench(path, eof_keep=False)
        client, server = await bench.connect()
        transport = server.transport
        assert transport is not None
        transport.pause_reading()
        client.close()
        deadline = bench.loop.time() + 10
        while transport.registered and bench.loop.time() < deadline:
            # Nothing else wakes this test: the hang-up is seen on the reactor's next turn.
            await asyncio.sleep(0.005)
        assert transport.registered == 0
        assert not server.lost.done()
        transport.resume_reading()
        assert await server.lost is None
        assert "eof" in server.events
        bench.close()

    run(main())


def test_a_failing_protocol_closes_only_its_own_connection(
    run: Any, path: str, caplog: pytest.LogCaptureFixture
) -> None:
    async def main() -> None:
        bench = Bench(path)
        client, server = await bench.connect()
        other, witness = await bench.connect()
        server.fail = True
        await bench.loop.sock_sendall(client, b"boom")
        assert isinstance(await server.lost, RuntimeError)
        assert await bench.read_all(client) == b""
        await bench.loop.sock_sendall(other, b"fine")
        await witness.until(lambda: witness.data == b"fine")
        for sock in (client, other):
            sock.close()
        bench.close()

    with caplog.at_level(logging.ERROR, logger="neocode_gateway.transport"):
        run(main())
    assert "a connection failed; closing it" in caplog.text


def test_running_out_of_descriptors_pauses_accepting_then_accepts(
    run: Any, path: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(_reactor, "ACCEPT_RETRY_DELAY", 0.01)

    failures = [OSError(errno.EMFILE, "Too many open files")]

    class Exhausted(socket.socket):
        """A listening socket whose first accept finds the process out of descriptors."""

        def accept(self) -> tuple[socket.socket, Any]:
            if failures:
                raise failures.pop()
            return super().accept()

    async def main() -> None:
        bench = Bench(path, listening=Exhausted)
        client, server = await bench.connect()
        await bench.loop.sock_sendall(client, b"late")
        await server.until(lambda: server.data == b"late")
        assert not failures
        client.close()
        bench.close()

    with caplog.at_level(logging.WARNING, logger="neocode_gateway.transport"):
        run(main())
    assert "retrying every" in caplog.text
    assert "accepting connections again after" in caplog.text


def test_closing_the_reactor_closes_the_connections_left(run: Any, path: str) -> None:
    async def main() -> None:
        bench = Bench(path)
        client, server = await bench.connect()
        bench.close()
        assert await bench.read_all(client) == b""
        assert server.transport is not None
        server.transport.write(b"ignored")
        client.close()

    run(main())


def test_writer_callbacks_that_fail_are_logged(
    run: Any, path: str, caplog: pytest.LogCaptureFixture
) -> None:
    async def main() -> None:
        bench = Bench(path)
        client, server = await bench.connect()

        def broken() -> None:
            raise RuntimeError("pause failed")

        server.pause_writing = broken  # type: ignore[method-assign]
        transport = server.transport
        assert transport is not None
        transport.write(b"y" * (2 << 20))
        transport.close()
        assert len(await bench.read_all(client)) == 2 << 20
        client.close()
        bench.close()

    with caplog.at_level(logging.ERROR, logger="neocode_gateway.transport"):
        run(main())
    assert "protocol.pause_writing() failed" in caplog.text
