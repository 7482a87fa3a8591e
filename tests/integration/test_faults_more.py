"""Issue 9, "tests that could not fail": each guards a behaviour the suite did not check."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable

import pytest

from neocode_gateway.client import GatewayClient, RequestTimeout
from neocode_gateway.dispatch import Dispatcher
from neocode_gateway.protocol import Frame
from neocode_gateway.server import Connection
from tests.conftest import GatewayFactory
from tests.fakes import FakeServer, Handler, late_answers_without_ids
from tests.integration.test_server_inprocess import path, req, run, serving
from tests.support import LineReader, connect

__all__ = ["path", "run"]

Runner = Callable[[Awaitable[None]], None]


def test_oversized_last_line_at_eof_gets_its_error_frame(gateway_factory: GatewayFactory) -> None:
    """``eof_received`` refuses an oversized final line with the contract's error frame."""
    gateway = gateway_factory("--runtime", "none", "--max-frame-bytes", "100")
    with connect(gateway.path) as sock:
        sock.sendall(b'{"type":"request","action":"ping","request_id":"' + b"x" * 200)
        sock.shutdown(socket.SHUT_WR)
        frame = LineReader(sock).frame()
        assert frame["error"] == {
            "code": "invalid_frame",
            "message": "frame exceeds max size 100 bytes",
        }


def test_request_scoped_work_is_cancelled_with_its_connection(run: Runner, path: str) -> None:
    async def scenario() -> None:
        started = asyncio.Event()
        cancelled = asyncio.Event()
        dispatcher = Dispatcher()

        async def forever(frame: Frame, conn: Connection) -> bytes:
            started.set()
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                cancelled.set()
                raise
            return b""  # pragma: no cover

        dispatcher.register("compact", forever)
        async with serving(path, dispatcher) as (server, _reader, writer):
            writer.write(req("compact", "c", session_id="s"))
            await asyncio.wait_for(started.wait(), 5)
            # The connection goes away (here: aborted, as the write deadline does).
            next(iter(server.connections)).abort()
            await asyncio.wait_for(cancelled.wait(), 5)

    run(scenario())


def test_late_answer_without_id_goes_to_its_own_request(
    fake_server: Callable[[Handler], FakeServer],
) -> None:
    server = fake_server(late_answers_without_ids)
    with GatewayClient(server.path) as client:
        with pytest.raises(RequestTimeout):
            client.request({"action": "ping"}, timeout=0.2)
        server.release.set()
        second = client.request({"action": "ping"}, timeout=10)
        assert second.payload == {"n": 2}, "the first request's late answer was mistaken for it"
