"""The daemon's early pings (``cli/_early.py``): byte for byte the full gateway's answer,
and only for the plain ping frame."""

from __future__ import annotations

import pytest

from neocode_gateway.cli._early import pong_for
from neocode_gateway.dispatch import ping
from neocode_gateway.protocol import parse_frame


@pytest.mark.parametrize(
    "line",
    [
        b'{"type":"request","action":"ping","request_id":"lg123-1-7"}',
        b'{"type":"request","action":"ping"}',
        b'{ "type" : "request", "action": "ping", "request_id": "a.b:c_d-9" }\r',
    ],
)
def test_the_plain_ping_gets_the_full_gateways_bytes(line: bytes) -> None:
    assert pong_for(line) == ping(parse_frame(line), None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "line",
    [
        b'{"type":"request","action":"status","request_id":"s"}',
        b'{"action":"ping","type":"request"}',  # another order: the full parser answers
        b'{"type":"request","action":"ping","request_id":"a\\"b"}',
        b'{"type":"request","action":"ping","request_id":"x","payload":{}}',
        b'{"type":"request","action":"ping","request_id":""}',
        b"not json",
        b"",
    ],
)
def test_anything_else_is_left_to_the_full_gateway(line: bytes) -> None:
    assert pong_for(line) is None
