"""Every row of the contract against a real daemon process."""

from __future__ import annotations

import contextlib
import socket

import msgspec
import pytest

from tests.conftest import GatewayFactory
from tests.support import PING, PONG, Gateway, LineReader, connect, request


@pytest.fixture
def gateway(gateway_factory: GatewayFactory) -> Gateway:
    """The v1 contract exactly: ``--runtime none`` (contract v1.1: "exactly v1")."""
    return gateway_factory("--runtime", "none")


ROWS: list[tuple[bytes, dict[str, object]]] = [
    (
        b'{"type":"request","action":"ping","request_id":"smoke-1"}',
        {"type": "ack", "action": "ping", "request_id": "smoke-1", "payload": {"message": "pong"}},
    ),
    (
        b'{"type":"request","action":"run","request_id":"r-2","input_text":"hi"}',
        {
            "type": "error",
            "action": "run",
            "request_id": "r-2",
            "error": {"code": "unsupported_action", "message": "action is not implemented"},
        },
    ),
    (
        b'{"type":"request","action":"launch","request_id":"r-3"}',
        {
            "type": "error",
            "action": "launch",
            "request_id": "r-3",
            "error": {"code": "invalid_action", "message": "invalid action"},
        },
    ),
    (
        b'{"type":"request","request_id":"r-4"}',
        {
            "type": "error",
            "request_id": "r-4",
            "error": {
                "code": "missing_required_field",
                "message": "missing required field: action",
            },
        },
    ),
    (
        b'{"type":"request","action":"run","request_id":"r-5","input_parts":[{"type":"video"}]}',
        {
            "type": "error",
            "action": "run",
            "request_id": "r-5",
            "error": {
                "code": "invalid_multimodal_payload",
                "message": "input_parts contains unsupported type",
            },
        },
    ),
    (
        b'{"type":"event","request_id":"r-6"}',
        {
            "type": "error",
            "request_id": "r-6",
            "error": {"code": "invalid_frame", "message": "only request frames are supported"},
        },
    ),
    (
        b'{"request_id":"r-7"}',
        {
            "type": "error",
            "request_id": "r-7",
            "error": {"code": "invalid_frame", "message": "invalid frame type"},
        },
    ),
    (
        b'{"type":"request","action":"ping","request_id":"r-8","session_id":3}',
        {
            "type": "error",
            "action": "ping",
            "request_id": "r-8",
            "error": {
                "code": "invalid_frame",
                "message": "invalid field session_id: expected string, got number",
            },
        },
    ),
]
ROWS += [
    (
        f'{{"type":"request","action":"{action}","request_id":"u-{action}"{extra}}}'.encode(),
        {
            "type": "error",
            "action": action,
            "request_id": f"u-{action}",
            "error": {"code": "unsupported_action", "message": "action is not implemented"},
        },
    )
    for action, extra in [
        ("compact", ',"session_id":"s"'),
        ("cancel", ""),
        ("list_sessions", ""),
        ("load_session", ',"session_id":"s"'),
        ("resolve_permission", ',"payload":{"request_id":"p","decision":"reject"}'),
    ]
]


def test_every_row_on_one_connection_in_order(gateway: Gateway) -> None:
    """Validation errors keep the connection open; answers come in request order."""
    data = b"".join(line + b"\n" for line, _ in ROWS)
    assert request(gateway.path, data) == [expected for _, expected in ROWS]


def test_pipelined_requests_answered_in_order(gateway: Gateway) -> None:
    n = 2000
    data = b"".join(
        b'{"type":"request","action":"ping","request_id":"p%d"}\n' % i for i in range(n)
    )
    frames = request(gateway.path, data)
    assert [f["request_id"] for f in frames] == [f"p{i}" for i in range(n)]


def test_crlf_blank_lines_whitespace_and_final_line_without_newline(gateway: Gateway) -> None:
    data = (
        b"\n   \r\n"
        b'  {"type":"request","action":"ping","request_id":"a"}  \r\n'
        b'{"type":"request","action":"ping","request_id":"b"}'
    )
    assert [f["request_id"] for f in request(gateway.path, data)] == ["a", "b"]


def test_request_id_is_escaped_correctly(gateway: Gateway) -> None:
    rid = 'quote" back\\slash \u2028 \u00e9 \U0001f600 \x01'
    line = msgspec.json.encode({"type": "request", "action": "ping", "request_id": rid})
    [frame] = request(gateway.path, line + b"\n")
    assert frame["request_id"] == rid


@pytest.mark.parametrize(
    "bad",
    [b"{not json}", b"[1,2,3]", b'{"a":1} {"b":2}', b'{"type":"request","x":NaN}', b"\xff\xfe"],
)
def test_invalid_json_gets_error_then_close(gateway: Gateway, bad: bytes) -> None:
    with connect(gateway.path) as sock:
        sock.sendall(PING + bad + b"\n" + PING)
        reader = LineReader(sock)
        assert reader.line() == PONG
        assert reader.frame() == {
            "type": "error",
            "error": {"code": "invalid_frame", "message": "invalid json frame"},
        }
        assert reader.at_eof()


def test_oversized_frame_gets_error_then_close(gateway: Gateway) -> None:
    with connect(gateway.path) as sock:
        sock.sendall(PING)
        reader = LineReader(sock)
        assert reader.line() == PONG
        # The server may close before we finish writing.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(b"x" * (1024 * 1024 + 10) + b"\n")
        assert reader.frame() == {
            "type": "error",
            "error": {
                "code": "invalid_frame",
                "message": "frame exceeds max size 1048576 bytes",
            },
        }
        assert reader.at_eof()


def test_frame_of_exactly_the_limit_is_accepted(gateway_factory: object) -> None:
    gw = gateway_factory("--max-frame-bytes", "100")  # type: ignore[operator]
    head = b'{"type":"request","action":"ping","request_id":"'
    tail = b'"}'
    line = head + b"x" * (100 - len(head) - len(tail)) + tail
    assert len(line) == 100
    assert request(gw.path, line + b"\r\n")[0]["type"] == "ack"
    frames = request(gw.path, line[:-2] + b'x"}\n')
    assert frames == [
        {
            "type": "error",
            "error": {"code": "invalid_frame", "message": "frame exceeds max size 100 bytes"},
        }
    ]


def test_daemon_keeps_serving_other_connections_after_bad_input(gateway: Gateway) -> None:
    with connect(gateway.path) as good:
        for bad in [b"\x00\x01\x02\n", b"{" * 10000 + b"\n", b'{"type":"request","action":1}\n']:
            request(gateway.path, bad)
        good.sendall(PING)
        assert LineReader(good).line() == PONG


def test_half_close_still_gets_answers(gateway: Gateway) -> None:
    with connect(gateway.path) as sock:
        sock.sendall(PING + PING)
        sock.shutdown(socket.SHUT_WR)
        reader = LineReader(sock)
        assert reader.line() == PONG
        assert reader.line() == PONG
        assert reader.at_eof()
