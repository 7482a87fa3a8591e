"""The client library against a real daemon process, and against small misbehaving servers."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from neocode_gateway.client import (
    AsyncGatewayClient,
    ConnectionClosed,
    ErrorFrameReceived,
    Frame,
    GatewayClient,
    GatewayUnreachable,
    ProtocolViolation,
    RequestTimeout,
)
from tests.fakes import (
    FakeServer,
    Handler,
    garbage,
    hang_up_after_first_line,
    internal_error,
    late_answers,
    reversed_pair_with_event,
    silent,
)
from tests.support import Gateway, short_tmpdir, wait_for


@pytest.fixture(scope="module")
def shared_gateway() -> Iterator[Gateway]:
    """One daemon for the tests that only talk to it (starting one costs ~0.3 s)."""
    directory = short_tmpdir()
    gateway = Gateway(f"{directory}/gw.sock").start()
    yield gateway
    gateway.kill()
    gateway.log_path.unlink(missing_ok=True)
    shutil.rmtree(directory, ignore_errors=True)


# -- against the real daemon -----------------------------------------------------------------


def test_sync_ping_and_request(shared_gateway: Gateway) -> None:
    with GatewayClient(shared_gateway.path) as client:
        assert client.connected
        rtt = client.ping()
        assert 0 < rtt < 5
        reply = client.request({"action": "ping", "request_id": "mine"})
        assert reply == Frame(
            type="ack", action="ping", request_id="mine", payload={"message": "pong"}
        )
        generated = client.request(Frame(action="ping"))
        assert generated.request_id is not None
        assert generated.request_id.startswith(f"c{os.getpid()}-")
        assert repr(client).endswith("connected>")
    assert not client.connected


def test_peer_credentials_name_the_daemon(shared_gateway: Gateway) -> None:
    with GatewayClient(shared_gateway.path) as client:
        peer = client.peer
    assert peer is not None
    assert peer.pid == shared_gateway.pid
    assert peer.uid == os.getuid()


def test_peer_is_none_where_credentials_cannot_be_read(
    shared_gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    from neocode_gateway.client import _link as client_async
    from neocode_gateway.errors import PeerCredentialsUnavailable

    def unavailable(sock: object) -> None:
        raise PeerCredentialsUnavailable("not on this platform")

    monkeypatch.setattr(client_async, "read_peer_credentials", unavailable)
    with GatewayClient(shared_gateway.path) as client:
        assert client.peer is None
        assert client.ping() > 0


@pytest.mark.parametrize(
    ("frame", "code", "message"),
    [
        ({"type": "bogus", "action": "ping"}, "invalid_frame", "invalid frame type"),
        ({"action": "fly"}, "invalid_action", "invalid action"),
        (
            {"action": "run"},
            "missing_required_field",
            "missing required field: input_text_or_input_parts",
        ),
        (
            {"action": "run", "input_parts": [{"type": "image"}]},
            "invalid_multimodal_payload",
            "input_parts[image] requires media",
        ),
        ({"action": "cancel"}, "missing_required_field", "missing required field: run_id"),
        (
            {"action": "load_session", "session_id": "s_x"},
            "resource_not_found",
            "unknown session: s_x",
        ),
        ({"type": "event", "action": "ping"}, "invalid_frame", "only request frames are supported"),
    ],
)
def test_every_error_code_is_a_typed_error(
    shared_gateway: Gateway, frame: dict[str, Any], code: str, message: str
) -> None:
    with GatewayClient(shared_gateway.path) as client:
        with pytest.raises(ErrorFrameReceived) as info:
            client.request({**frame, "request_id": "e-1"})
        assert (info.value.code, info.value.message) == (code, message)
        assert info.value.request_id == "e-1"
        # Not fatal: the connection still serves.
        raw = client.request({**frame, "request_id": "e-2"}, raise_on_error=False)
        assert raw.type == "error"
        assert raw.error is not None
        assert raw.error.code == code
        assert client.ping() > 0


def test_internal_error_is_a_typed_error(fake_server: Callable[[Handler], FakeServer]) -> None:
    server = fake_server(internal_error)
    with GatewayClient(server.path) as client, pytest.raises(ErrorFrameReceived) as info:
        client.request({"action": "run", "input_text": "x"})
    assert info.value.code == "internal_error"
    assert info.value.action == "run"


def test_raw_invalid_line_gets_its_error_then_the_connection_closes(
    shared_gateway: Gateway,
) -> None:
    async def main() -> None:
        async with AsyncGatewayClient(shared_gateway.path) as client:
            ok = await client.request_line('{"type":"request","action":"ping","request_id":"r"}\n')
            assert ok.line == (
                b'{"type":"ack","action":"ping","request_id":"r","payload":{"message":"pong"}}'
            )
            bad = await client.request_line(b"{not json")
            assert bad.is_error
            assert bad.frame.error is not None
            assert bad.frame.error.message == "invalid json frame"
            with pytest.raises(ConnectionClosed, match="closed the connection"):
                await client.ping()
            assert not client.connected
            with pytest.raises(ConnectionClosed):
                await client.ping()  # refused at once now

    asyncio.run(main())


def test_200_concurrent_requests_on_one_async_client(shared_gateway: Gateway) -> None:
    async def main() -> None:
        async with AsyncGatewayClient(shared_gateway.path) as client:

            async def one(i: int) -> None:
                if i % 4 == 3:
                    with pytest.raises(ErrorFrameReceived) as info:
                        await client.request({"action": "cancel", "request_id": f"q{i}"})
                    assert info.value.request_id == f"q{i}"
                    return
                reply = await client.request({"action": "ping", "request_id": f"q{i}"})
                assert reply.request_id == f"q{i}"
                assert reply.type == "ack"

            await asyncio.gather(*(one(i) for i in range(200)))
            generated = await asyncio.gather(
                *(client.request({"action": "ping"}) for _ in range(50))
            )
            assert len({reply.request_id for reply in generated}) == 50
            assert await client.ping() > 0

    asyncio.run(main())


def test_responses_are_matched_by_id_not_position(
    fake_server: Callable[[Handler], FakeServer],
) -> None:
    server = fake_server(reversed_pair_with_event)

    async def main() -> None:
        async with AsyncGatewayClient(server.path) as client:
            first = asyncio.ensure_future(client.request({"action": "ping", "request_id": "1"}))
            second = asyncio.ensure_future(client.request({"action": "ping", "request_id": "2"}))
            assert (await first).request_id == "1"
            assert (await second).request_id == "2"
            events = client.events()
            event = await asyncio.wait_for(anext(events), 5)
            assert event.payload == {"progress": 1}

    asyncio.run(main())


def test_a_late_answer_after_a_timeout_is_not_given_to_the_next_request(
    fake_server: Callable[[Handler], FakeServer],
) -> None:
    server = fake_server(late_answers)

    async def main() -> None:
        async with AsyncGatewayClient(server.path, request_timeout=0.05) as client:
            with pytest.raises(RequestTimeout, match="to request 'slow'"):
                await client.request({"action": "ping", "request_id": "slow"})
            server.release.set()
            reply = await client.request({"action": "ping", "request_id": "next"}, timeout=5)
            assert reply.request_id == "next"

    asyncio.run(main())


def test_server_stopping_fails_waiting_requests(gateway: Gateway) -> None:
    async def main() -> None:
        async with AsyncGatewayClient(gateway.path) as client:
            assert await client.ping() > 0
            ended = asyncio.ensure_future(_drain_events(client))
            gateway.signal(signal.SIGTERM)
            await asyncio.wait_for(ended, 10)
            with pytest.raises(ConnectionClosed):
                await client.ping()

    asyncio.run(main())
    assert gateway.wait() == 0


async def _drain_events(client: AsyncGatewayClient) -> None:
    async for _ in client.events():
        pass


# -- failures ------------------------------------------------------------------------------


def test_no_such_socket_is_unreachable(sock_dir: str) -> None:
    path = f"{sock_dir}/absent.sock"
    with pytest.raises(GatewayUnreachable) as info:
        GatewayClient(path).connect()
    assert info.value.address == path
    assert info.value.reason == "no such file or directory"
    assert str(info.value) == (
        f"no gateway is listening at {path} (no such file or directory); "
        f"start one with: neocode-gateway"
    )


def test_connection_refused_is_unreachable(sock_dir: str) -> None:
    path = f"{sock_dir}/stale.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(path)  # bound, never listening: connect() is refused
    try:

        async def main() -> None:
            with pytest.raises(GatewayUnreachable, match=r"\(connection refused\)"):
                async with AsyncGatewayClient(path):
                    pass  # pragma: no cover

        asyncio.run(main())
    finally:
        stale.close()


def test_silent_server_times_out(fake_server: Callable[[Handler], FakeServer]) -> None:
    server = fake_server(silent)
    with GatewayClient(server.path, request_timeout=0.05) as client:
        with pytest.raises(RequestTimeout, match=r"within 0\.05 s") as info:
            client.ping()
        assert isinstance(info.value, TimeoutError)
        with pytest.raises(RequestTimeout, match=r"within 0\.02 s"):
            client.request_line(b'{"type":"request","action":"ping"}', timeout=0.02)
        assert client.connected  # a timeout does not close the connection
    wait_for(lambda: len(server.received) == 2, what="both requests at the server")


def test_server_closing_mid_request(fake_server: Callable[[Handler], FakeServer]) -> None:
    server = fake_server(hang_up_after_first_line)

    async def main() -> None:
        async with AsyncGatewayClient(server.path) as client:
            pending = [asyncio.ensure_future(client.ping()) for _ in range(3)]
            for task in pending:
                with pytest.raises(ConnectionClosed, match="the gateway closed the connection"):
                    await task

    asyncio.run(main())


def test_protocol_violation_closes_the_connection(
    fake_server: Callable[[Handler], FakeServer],
) -> None:
    server = fake_server(garbage)

    async def main() -> None:
        async with AsyncGatewayClient(server.path) as client:
            with pytest.raises(ProtocolViolation, match="this is not a frame"):
                await client.ping()
            with pytest.raises(ConnectionClosed, match="protocol violation"):
                await client.ping()

    asyncio.run(main())


def test_reconnect_after_close(shared_gateway: Gateway) -> None:
    async def main() -> None:
        client = AsyncGatewayClient(shared_gateway.path)
        await client.connect()
        assert await client.connect() is client  # already connected: no-op
        await client.close()
        with pytest.raises(ConnectionClosed, match="the client closed the connection"):
            await client.ping()
        await client.connect()
        assert await client.ping() > 0
        await client.close()

    asyncio.run(main())
