"""The client's pieces without a gateway: matching, decoding, the protocol fed by hand."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Coroutine
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
    RawResponse,
    RequestTimeout,
    new_request_id,
    raise_for_error,
)
from neocode_gateway.client import _link as client_async
from neocode_gateway.client import _local as client_local
from neocode_gateway.client._protocol import (
    ClientProtocol,
    PendingTable,
    decode_response,
    quote,
)
from neocode_gateway.errors import ClientError, GatewayError
from neocode_gateway.protocol import ErrorBody

ACK = b'{"type":"ack","action":"ping","request_id":"a","payload":{"message":"pong"}}'


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    return asyncio.run(coro)


class FakeTransport(asyncio.Transport):
    """Records writes and closes; calls ``connection_lost`` like a real transport would."""

    def __init__(self, protocol: asyncio.Protocol | None = None) -> None:
        super().__init__()
        self.protocol = protocol
        self.written: list[bytes] = []
        self.closing = False
        self.aborted = False
        self.lose_on_close = True

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True
        if self.lose_on_close and self.protocol is not None:
            asyncio.get_running_loop().call_soon(self.protocol.connection_lost, None)

    def abort(self) -> None:
        self.closing = True
        self.aborted = True
        if self.protocol is not None:
            asyncio.get_running_loop().call_soon(self.protocol.connection_lost, None)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default


def make_protocol(
    sink: list[Frame] | None = None, *, max_frame_bytes: int = 1 << 20
) -> tuple[ClientProtocol, FakeTransport, list[Frame], list[str]]:
    frames: list[Frame] = [] if sink is None else sink
    closed: list[str] = []
    protocol = ClientProtocol(
        "/tmp/gw.sock",
        frames.append,
        on_closed=lambda: closed.append("closed"),
        max_frame_bytes=max_frame_bytes,
    )
    transport = FakeTransport(protocol)
    protocol.connection_made(transport)
    return protocol, transport, frames, closed


def future() -> asyncio.Future[RawResponse]:
    return asyncio.get_running_loop().create_future()


# -- PendingTable ------------------------------------------------------------------------


def test_pending_matches_by_id_then_by_age() -> None:
    async def main() -> None:
        table = PendingTable()
        first, second, anon = future(), future(), future()
        table.add("a", first)
        table.add("b", second)
        table.add(None, anon)
        assert len(table) == 3
        entry = table.match(Frame(type="ack", request_id="b"))
        assert entry is not None
        assert entry.future is second
        entry = table.match(Frame(type="error"))  # no id: the oldest unanswered
        assert entry is not None
        assert entry.future is first
        entry = table.match(Frame(type="error"))
        assert entry is not None
        assert entry.future is anon
        assert len(table) == 0
        assert table.match(Frame(type="error")) is None

    run(main())


def test_pending_duplicate_ids_are_first_in_first_out() -> None:
    async def main() -> None:
        table = PendingTable()
        one, two = future(), future()
        table.add("x", one)
        table.add("x", two)
        first = table.match(Frame(type="ack", request_id="x"))
        second = table.match(Frame(type="ack", request_id="x"))
        assert first is not None
        assert second is not None
        assert (first.future, second.future) == (one, two)
        assert table.match(Frame(type="ack", request_id="x")) is None

    run(main())


def test_pending_events_and_unknown_ids_answer_nothing() -> None:
    async def main() -> None:
        table = PendingTable()
        table.add("a", future())
        assert table.match(Frame(type="event")) is None
        assert table.match(Frame(type="ack", request_id="zzz")) is None
        assert table.match(Frame(type="event", request_id="zzz")) is None
        entry = table.match(Frame(type="event", request_id="a"))  # an event can answer by id
        assert entry is not None
        assert len(table) == 0

    run(main())


def test_pending_by_id_answer_is_skipped_by_position() -> None:
    async def main() -> None:
        table = PendingTable()
        a, b = future(), future()
        table.add("a", a)
        table.add("b", b)
        assert table.match(Frame(type="ack", request_id="a")) is not None
        entry = table.match(Frame(type="error"))
        assert entry is not None
        assert entry.future is b
        # "b" was answered by position: its id no longer matches.
        assert table.match(Frame(type="ack", request_id="b")) is None

    run(main())


def test_pending_fail_all_sets_fresh_errors_and_skips_done() -> None:
    async def main() -> None:
        table = PendingTable()
        waiting, cancelled = future(), future()
        cancelled.cancel()
        table.add("a", waiting)
        table.add("b", cancelled)
        table.fail_all(lambda: ConnectionClosed("gone"))
        assert len(table) == 0
        with pytest.raises(ConnectionClosed, match="gone"):
            waiting.result()
        assert table.match(Frame(type="ack", request_id="a")) is None

    run(main())


# -- decoding ------------------------------------------------------------------------------


def test_decode_response_accepts_every_frame_type() -> None:
    assert decode_response(ACK).payload == {"message": "pong"}
    assert decode_response(b' {"type":"event","payload":1}\r').type == "event"
    error = decode_response(b'{"type":"error","error":{"code":"c","message":"m"},"x":1}')
    assert error.error == ErrorBody("c", "m")


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        (b"not json", "not a valid frame"),
        (b"[1,2]", "not a valid frame"),
        (b'{"type":"ack","request_id":5}', "not a valid frame"),
        (b'{"type":"ack"} {"type":"ack"}', "not a valid frame"),
        (b'{"action":"ping"}', "type None"),
        (b'{"type":"pong"}', "type 'pong'"),
        (b'{"type":"error"}', "error frame without error"),
        (b"\xff\xfe", "not a valid frame"),
    ],
)
def test_decode_response_rejects_what_is_no_frame(line: bytes, fragment: str) -> None:
    with pytest.raises(ProtocolViolation, match=fragment):
        decode_response(line)


def test_quote_is_short_and_printable() -> None:
    assert quote(b"abc") == "'abc'"
    long = quote(b"x" * 500)
    assert long.endswith("...'")
    assert len(long) < 100
    assert quote(b"\xff") == repr("\ufffd")


# -- ClientProtocol --------------------------------------------------------------------------


def test_protocol_resolves_across_chunks_and_routes_events() -> None:
    async def main() -> None:
        protocol, _, events, _ = make_protocol()
        waiting = future()
        protocol.pending.add("a", waiting)
        protocol.data_received(b'{"type":"event","payload":{"n":1}}\n' + ACK[:10])
        assert not waiting.done()
        protocol.data_received(ACK[10:] + b"\r\n")
        response = waiting.result()
        assert response.line == ACK
        assert not response.is_error
        assert [e.payload for e in events] == [{"n": 1}]

    run(main())


def test_protocol_discards_the_late_answer_of_an_abandoned_request() -> None:
    async def main() -> None:
        protocol, _, events, _ = make_protocol()
        abandoned, current = future(), future()
        protocol.pending.add("old", abandoned)
        protocol.pending.add(None, current)
        abandoned.cancel()  # the caller timed out
        protocol.data_received(b'{"type":"ack","request_id":"old"}\n{"type":"error","error":{}}\n')
        assert current.result().is_error
        assert events == []

    run(main())


def test_protocol_violation_fails_everything_and_aborts() -> None:
    async def main() -> None:
        protocol, transport, _, closed = make_protocol()
        waiting = future()
        protocol.pending.add("a", waiting)
        protocol.data_received(b"garbage\n" + ACK + b"\n")
        with pytest.raises(ProtocolViolation, match="garbage"):
            waiting.result()
        assert transport.aborted
        assert not protocol.is_open
        await protocol.wait_lost(1.0)
        assert closed == ["closed"]
        assert protocol.close_reason is not None
        assert "protocol violation" in protocol.close_reason

    run(main())


def test_protocol_overlong_line_is_a_violation() -> None:
    async def main() -> None:
        protocol, transport, _, _ = make_protocol(max_frame_bytes=16)
        waiting = future()
        protocol.pending.add("a", waiting)
        protocol.data_received(b"x" * 40)
        with pytest.raises(ProtocolViolation, match="longer than 16 bytes"):
            waiting.result()
        assert transport.aborted

    run(main())


def test_protocol_overlong_final_line_at_eof_is_a_violation() -> None:
    async def main() -> None:
        protocol, transport, _, _ = make_protocol(max_frame_bytes=16)
        waiting = future()
        protocol.pending.add("a", waiting)
        protocol.data_received(b"y" * 17)
        assert not waiting.done()
        assert protocol.eof_received() is False
        with pytest.raises(ProtocolViolation, match="longer than 16 bytes"):
            waiting.result()
        assert transport.aborted

    run(main())


def test_protocol_final_line_without_newline_still_answers() -> None:
    async def main() -> None:
        protocol, _, _, _ = make_protocol()
        waiting, orphan = future(), future()
        protocol.pending.add("a", waiting)
        protocol.pending.add("b", orphan)
        protocol.data_received(ACK)
        assert protocol.eof_received() is False
        assert waiting.result().frame.request_id == "a"
        assert not protocol.is_open  # no more requests once the gateway said EOF
        protocol.connection_lost(None)
        with pytest.raises(ConnectionClosed, match="the gateway closed the connection"):
            orphan.result()

    run(main())


def test_protocol_connection_lost_with_error_names_it() -> None:
    async def main() -> None:
        protocol, _, _, closed = make_protocol()
        waiting = future()
        protocol.pending.add("a", waiting)
        protocol.connection_lost(OSError("no route"))
        with pytest.raises(ConnectionClosed, match="the connection was lost: no route"):
            waiting.result()
        assert closed == ["closed"]
        protocol.connection_lost(None)  # a second call changes nothing
        assert closed == ["closed", "closed"]

    run(main())


def test_protocol_reset_by_the_gateway_is_a_hang_up() -> None:
    async def main() -> None:
        protocol, _, _, _ = make_protocol()
        waiting = future()
        protocol.pending.add("a", waiting)
        protocol.connection_lost(BrokenPipeError(32, "Broken pipe"))
        with pytest.raises(ConnectionClosed, match="the gateway closed the connection"):
            waiting.result()

    run(main())


def test_protocol_drain_waits_for_resume_and_close() -> None:
    async def main() -> None:
        protocol, _, _, _ = make_protocol()
        await protocol.drain()  # not paused: returns at once
        protocol.pause_writing()
        first = asyncio.ensure_future(protocol.drain())
        await asyncio.sleep(0)
        assert not first.done()
        protocol.resume_writing()
        await first
        protocol.pause_writing()
        second = asyncio.ensure_future(protocol.drain())
        third = asyncio.ensure_future(protocol.drain())
        await asyncio.sleep(0)
        third.cancel()
        await asyncio.sleep(0)
        protocol.connection_lost(None)
        await second  # woken (the request's own future reports the close)

    run(main())


def test_protocol_close_fails_waiting_requests_and_aborts_a_stuck_flush() -> None:
    async def main() -> None:
        protocol, transport, _, _ = make_protocol()
        transport.lose_on_close = False  # as if the write buffer never drained
        waiting = future()
        protocol.pending.add("a", waiting)
        protocol.close("the client closed the connection")
        with pytest.raises(ConnectionClosed, match="the client closed"):
            waiting.result()
        await protocol.wait_lost(0.01)
        assert transport.aborted
        await protocol.wait_lost(0.01)  # already lost: returns at once
        protocol.close("again")  # idempotent
        assert protocol.close_reason == "the client closed the connection"

    run(main())


# -- AsyncGatewayClient without a gateway -------------------------------------------------


def test_request_ids_are_unique_and_name_the_process() -> None:
    ids = {new_request_id() for _ in range(100)}
    assert len(ids) == 100
    assert all(i.startswith(f"c{os.getpid()}-") for i in ids)


def test_prepare_fills_type_and_request_id_without_touching_the_input() -> None:
    client = AsyncGatewayClient("/tmp/nowhere.sock")
    original = Frame(action="ping")
    prepared = client.prepare(original)
    assert prepared.type == "request"
    assert prepared.request_id
    assert original.type is None
    assert original.request_id is None
    kept = Frame(type="event", action="ping", request_id="mine")
    assert client.prepare(kept) is kept
    from_dict = client.prepare(
        {"action": "run", "input_parts": [{"type": "text", "text": "hi"}], "request_id": ""}
    )
    assert from_dict.input_parts is not None
    assert from_dict.input_parts[0].text == "hi"
    assert from_dict.request_id


def test_prepare_rejects_what_is_no_frame() -> None:
    client = AsyncGatewayClient("/tmp/nowhere.sock")
    with pytest.raises(ValueError, match=r"not a valid frame.*\$\.action"):
        client.prepare({"action": 5})
    with pytest.raises(TypeError, match="not list"):
        client.prepare([("action", "ping")])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"connect_timeout": 0}, "connect_timeout"),
        ({"request_timeout": -1.0}, "request_timeout"),
        ({"max_queued_events": 0}, "max_queued_events"),
    ],
)
def test_constructor_checks_its_limits(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        AsyncGatewayClient("/tmp/x.sock", **kwargs)


def test_default_address_and_repr() -> None:
    from neocode_gateway.transport import default_address

    client = AsyncGatewayClient(request_timeout=None)
    assert client.address == default_address()
    assert repr(client) == f"<AsyncGatewayClient {default_address()} not connected>"
    assert client.peer is None
    assert not client.connected


def test_requests_need_a_connection() -> None:
    async def main() -> None:
        client = AsyncGatewayClient("/tmp/x.sock")
        with pytest.raises(RuntimeError, match="not connected"):
            await client.ping()
        await client.close()  # closing what never opened is fine

    run(main())


def test_request_line_refuses_blank_and_multi_line_input() -> None:
    async def main() -> None:
        client = AsyncGatewayClient("/tmp/x.sock")
        with pytest.raises(ValueError, match="blank"):
            await client.request_line(" \r\n")
        with pytest.raises(ValueError, match="newline"):
            await client.request_line('{"a":1}\n{"b":2}')

    run(main())


@pytest.mark.parametrize(
    ("line", "key"),
    [
        (b'{"type":"request","request_id":"r1"}', "r1"),
        (b'{"request_id":""}', None),
        (b'{"request_id":7}', None),
        (b"[1]", None),
        (b"{bad", None),
        (b"[" * 100_000, None),
    ],
)
def test_line_key_is_the_id_the_gateway_will_echo(line: bytes, key: str | None) -> None:
    assert client_async._line_key(line) == key


def test_os_reason_is_the_lowercase_strerror() -> None:
    import errno

    assert client_local.os_reason(ConnectionRefusedError(errno.ECONNREFUSED, "x")) == (
        "connection refused"
    )
    assert client_local.os_reason(OSError("AF_UNIX path too long")) == "AF_UNIX path too long"
    assert client_local.os_reason(OSError()) == "OSError"


def test_raise_for_error_builds_the_typed_error() -> None:
    ok = Frame(type="ack")
    assert raise_for_error(ok) is ok
    bad = Frame(type="error", action="run", request_id="r", error=ErrorBody("invalid_action", "m"))
    with pytest.raises(ErrorFrameReceived) as info:
        raise_for_error(bad)
    assert (info.value.code, info.value.message) == ("invalid_action", "m")
    assert (info.value.action, info.value.request_id) == ("run", "r")
    assert isinstance(info.value, ClientError)
    assert isinstance(info.value, GatewayError)


def test_pipe_address_outside_windows_is_unreachable() -> None:
    async def main() -> None:
        client = AsyncGatewayClient(r"\\.\pipe\neocode-gateway")
        with pytest.raises(GatewayUnreachable, match="only on Windows") as info:
            await client.connect()
        assert info.value.address == r"\\.\pipe\neocode-gateway"

    run(main())


def test_connect_timeout_is_a_request_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    async def never(*args: Any, **kwargs: Any) -> Any:
        await asyncio.Event().wait()

    monkeypatch.setattr(client_async, "_dial", never)

    async def main() -> None:
        client = AsyncGatewayClient("/tmp/x.sock", connect_timeout=0.01)
        with pytest.raises(RequestTimeout, match=r"could not connect .* within 0\.01 s"):
            await client.connect()

    run(main())
    assert issubclass(RequestTimeout, TimeoutError)


def test_connect_oserror_without_errno(monkeypatch: pytest.MonkeyPatch) -> None:
    async def too_long(*args: Any, **kwargs: Any) -> Any:
        raise OSError("AF_UNIX path too long")

    monkeypatch.setattr(client_async, "_dial", too_long)

    async def main() -> None:
        with pytest.raises(GatewayUnreachable, match=r"\(AF_UNIX path too long\)"):
            await AsyncGatewayClient("/tmp/x.sock").connect()

    run(main())


def fed_client(**kwargs: Any) -> tuple[AsyncGatewayClient, ClientProtocol]:
    """A client wired to a protocol on a fake transport (call inside a running loop)."""
    client = AsyncGatewayClient("/tmp/fake.sock", **kwargs)
    protocol = ClientProtocol(client.address, client._unsolicited, on_closed=client._stream_ended)
    protocol.connection_made(FakeTransport(protocol))
    client._protocol = protocol
    return client, protocol


def test_events_are_queued_bounded_and_end_with_the_connection() -> None:
    async def main() -> None:
        client, protocol = fed_client(max_queued_events=2)
        for n in range(3):
            protocol.data_received(b'{"type":"event","payload":%d}\n' % n)
        assert client.dropped_events == 1
        received: list[Any] = []

        async def consume() -> None:
            async for frame in client.events():
                received.append(frame.payload)

        consumer = asyncio.ensure_future(consume())
        other = asyncio.ensure_future(consume())
        await asyncio.sleep(0)
        protocol.connection_lost(None)
        await asyncio.wait_for(asyncio.gather(consumer, other), 1.0)
        assert sorted(received) == [1, 2]
        assert client.take_events() == []

    run(main())


def test_take_events_without_waiting() -> None:
    async def main() -> None:
        client, protocol = fed_client()
        protocol.data_received(b'{"type":"event","payload":"a"}\n{"type":"event"}\n')
        assert [f.payload for f in client.take_events()] == ["a", None]
        protocol.connection_lost(None)
        assert client.take_events() == []
        assert [f async for f in client.events()] == []  # the end mark was kept

    run(main())


def test_on_event_callback_failures_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    seen: list[Frame] = []

    def callback(frame: Frame) -> None:
        seen.append(frame)
        raise RuntimeError("boom")

    async def main() -> None:
        client, protocol = fed_client(on_event=callback)
        with caplog.at_level(logging.ERROR, logger="neocode_gateway.client"):
            protocol.data_received(b'{"type":"event"}\n')
        assert client.take_events() == []

    run(main())
    assert len(seen) == 1
    assert "on_event callback failed" in caplog.text


def test_ping_that_is_not_acked_is_a_protocol_violation() -> None:
    async def main() -> None:
        client, protocol = fed_client()
        task = asyncio.ensure_future(client.ping())
        await asyncio.sleep(0)
        protocol.data_received(b'{"type":"event"}\n')  # no id: an event, not the answer
        protocol.data_received(b'{"type":"request"}\n')  # no id: answers the ping
        with pytest.raises(ProtocolViolation, match="answered ping with a request frame"):
            await task

    run(main())


def test_timeout_argument_is_checked() -> None:
    async def main() -> None:
        client, _ = fed_client()
        with pytest.raises(ValueError, match="timeout"):
            await client.request({"action": "ping"}, timeout=0)

    run(main())


# -- GatewayClient without a gateway -------------------------------------------------------


def test_sync_client_needs_a_connection() -> None:
    client = GatewayClient("/tmp/x.sock", connect_timeout=1, request_timeout=2)
    with pytest.raises(RuntimeError, match="not connected"):
        client.ping()
    client.close()  # idempotent before connect
    assert not client.connected
    assert repr(client) == "<GatewayClient /tmp/x.sock not connected>"


def test_sync_client_timeouts_are_settable() -> None:
    client = GatewayClient("/tmp/x.sock")
    assert (client.connect_timeout, client.request_timeout) == (3.0, 30.0)
    client.connect_timeout = 0.5
    client.request_timeout = None
    assert (client.connect_timeout, client.request_timeout) == (0.5, None)
    assert client.peer is None
    assert client.prepare({"action": "ping"}).type == "request"
    assert client.take_events() == []


def test_sync_client_failed_connect_leaves_nothing_open(sock_dir: str) -> None:
    client = GatewayClient(f"{sock_dir}/absent.sock")
    with pytest.raises(GatewayUnreachable, match="no such file or directory"):
        client.connect()
    assert not client.connected
    assert client._loop is None
    assert client._thread is None


def test_exceptions_are_reexported_under_one_root() -> None:
    import neocode_gateway.client as api

    for name in api.__all__:
        assert hasattr(api, name), name
    for exc in (
        api.GatewayUnreachable,
        api.ErrorFrameReceived,
        api.ProtocolViolation,
        api.RequestTimeout,
        api.ConnectionClosed,
    ):
        assert issubclass(exc, api.ClientError)


def test_the_stdlib_client_shares_the_transport_defaults() -> None:
    from neocode_gateway.transport import DEFAULT_PIPE_ADDRESS, default_address

    assert client_local.default_address() == default_address()
    assert client_local.DEFAULT_PIPE_ADDRESS == DEFAULT_PIPE_ADDRESS
    assert client_local.is_pipe_address(r"\\.\PIPE\x")


def test_the_trust_check_refuses_another_user() -> None:
    from neocode_gateway.errors import UntrustedGateway

    me = os.geteuid()
    client_local.check_trusted("/x", me, False)
    client_local.check_trusted("/x", 0, False)
    client_local.check_trusted("/x", me + 1, True)
    client_local.check_trusted("/x", None, False)
    with pytest.raises(UntrustedGateway, match="--trust-any-uid"):
        client_local.check_trusted("/x", me + 1, False)
