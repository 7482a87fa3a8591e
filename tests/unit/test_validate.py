"""Every validation rule and message of the contract (section 4), without sockets."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from neocode_gateway.errors import FrameError
from neocode_gateway.protocol import (
    ERROR_CODES,
    MAX_NESTING_DEPTH,
    Frame,
    encode_error,
    encode_frame,
    frame_schema,
    nesting_depth_exceeds,
    parse_frame,
)

BAD_JSON = ("invalid_frame", "invalid json frame")


def err(line: bytes | str) -> tuple[str, str, bool, str | None, str | None]:
    data = line.encode() if isinstance(line, str) else line
    with pytest.raises(FrameError) as info:
        parse_frame(data)
    e = info.value
    return e.code, e.message, e.fatal, e.action, e.request_id


CASES: list[tuple[str, str, str]] = [
    # rule 1
    ('{"action":"ping"}', "invalid_frame", "invalid frame type"),
    ('{"type":"bogus","action":"ping"}', "invalid_frame", "invalid frame type"),
    ('{"type":"","action":"ping"}', "invalid_frame", "invalid frame type"),
    ('{"type":"REQUEST","action":"ping"}', "invalid_frame", "invalid frame type"),
    ('{"type":5,"action":"ping"}', "invalid_frame", "invalid frame type"),
    # rule 2 (for any type)
    ('{"type":"request","action":"bogus"}', "invalid_action", "invalid action"),
    ('{"type":"event","action":"bogus"}', "invalid_action", "invalid action"),
    ('{"type":"request","action":" ping "}', "invalid_action", "invalid action"),
    # rule 3
    ('{"type":"request"}', "missing_required_field", "missing required field: action"),
    ('{"type":"request","action":""}', "missing_required_field", "missing required field: action"),
    (
        '{"type":"request","action":"   "}',
        "missing_required_field",
        "missing required field: action",
    ),
    (
        '{"type":"request","action":"run"}',
        "missing_required_field",
        "missing required field: input_text_or_input_parts",
    ),
    (
        '{"type":"request","action":"run","input_text":"  ","input_parts":[]}',
        "missing_required_field",
        "missing required field: input_text_or_input_parts",
    ),
    (
        '{"type":"request","action":"compact"}',
        "missing_required_field",
        "missing required field: session_id",
    ),
    (
        '{"type":"request","action":"load_session","session_id":" "}',
        "missing_required_field",
        "missing required field: session_id",
    ),
    (
        '{"type":"request","action":"resolve_permission"}',
        "missing_required_field",
        "missing required field: payload",
    ),
    (
        '{"type":"request","action":"resolve_permission","payload":null}',
        "missing_required_field",
        "missing required field: payload",
    ),
    (
        '{"type":"request","action":"resolve_permission","payload":[1]}',
        "invalid_action",
        "invalid resolve_permission payload",
    ),
    (
        '{"type":"request","action":"resolve_permission","payload":"x"}',
        "invalid_action",
        "invalid resolve_permission payload",
    ),
    (
        '{"type":"request","action":"resolve_permission","payload":{"request_id":5}}',
        "invalid_action",
        "invalid resolve_permission payload",
    ),
    (
        '{"type":"request","action":"resolve_permission","payload":{"decision":"reject"}}',
        "missing_required_field",
        "missing required field: payload.request_id",
    ),
    (
        '{"type":"request","action":"resolve_permission","payload":{"request_id":" "}}',
        "missing_required_field",
        "missing required field: payload.request_id",
    ),
    (
        '{"type":"request","action":"resolve_permission","payload":{"request_id":"p"}}',
        "invalid_action",
        "invalid resolve_permission decision",
    ),
    (
        '{"type":"request","action":"resolve_permission",'
        '"payload":{"request_id":"p","decision":"maybe"}}',
        "invalid_action",
        "invalid resolve_permission decision",
    ),
    # rule 4
    (
        '{"type":"request","action":"run","input_parts":[{"type":"text","text":" "}]}',
        "invalid_multimodal_payload",
        "input_parts[text] requires non-empty text",
    ),
    (
        '{"type":"request","action":"run","input_parts":[{"type":"image"}]}',
        "invalid_multimodal_payload",
        "input_parts[image] requires media",
    ),
    (
        '{"type":"request","action":"run","input_parts":[{"type":"image","media":{}}]}',
        "invalid_multimodal_payload",
        "input_parts[image] requires media.uri",
    ),
    (
        '{"type":"request","action":"run","input_parts":'
        '[{"type":"image","media":{"uri":"file:///a.png"}}]}',
        "invalid_multimodal_payload",
        "input_parts[image] requires media.mime_type",
    ),
    (
        '{"type":"request","action":"run","input_parts":[{"type":"audio"}]}',
        "invalid_multimodal_payload",
        "input_parts contains unsupported type",
    ),
    (
        '{"type":"request","action":"run","input_parts":[{}]}',
        "invalid_multimodal_payload",
        "input_parts contains unsupported type",
    ),
    (
        '{"type":"request","action":"compact","session_id":"s","input_parts":[{"type":"x"}]}',
        "invalid_multimodal_payload",
        "input_parts contains unsupported type",
    ),
    (
        '{"type":"request","action":"run","input_text":"hi",'
        '"input_parts":[{"type":"text","text":"ok"},{"type":"text"}]}',
        "invalid_multimodal_payload",
        "input_parts[text] requires non-empty text",
    ),
    # rule 5
    ('{"type":"event"}', "invalid_frame", "only request frames are supported"),
    ('{"type":"ack","action":"ping"}', "invalid_frame", "only request frames are supported"),
    ('{"type":"error","action":""}', "invalid_frame", "only request frames are supported"),
    (
        '{"type":"event","action":"run","input_parts":[{"type":"x"}]}',
        "invalid_frame",
        "only request frames are supported",
    ),
    # wrong JSON types of known fields (Improvement: answered, not closed)
    (
        '{"type":"request","action":"ping","request_id":5}',
        "invalid_frame",
        "invalid field request_id: expected string, got number",
    ),
    (
        '{"type":"request","action":7}',
        "invalid_frame",
        "invalid field action: expected string, got number",
    ),
    (
        '{"type":"request","action":"run","input_parts":"x"}',
        "invalid_frame",
        "invalid field input_parts: expected array, got string",
    ),
    (
        '{"type":"request","action":"run","input_parts":[{"type":"text","text":true}]}',
        "invalid_frame",
        "invalid field input_parts[0].text: expected string, got boolean",
    ),
    (
        '{"type":"request","action":"run","input_parts":[{"type":"image","media":[]}]}',
        "invalid_frame",
        "invalid field input_parts[0].media: expected object, got array",
    ),
    (
        '{"type":"request","action":"ping","workdir":{}}',
        "invalid_frame",
        "invalid field workdir: expected string, got object",
    ),
]


@pytest.mark.parametrize(("line", "code", "message"), CASES)
def test_rule(line: str, code: str, message: str) -> None:
    got_code, got_message, fatal, _, _ = err(line)
    assert (got_code, got_message) == (code, message)
    assert not fatal
    assert code in ERROR_CODES


@pytest.mark.parametrize(
    "line",
    [
        b"not json",
        b"{",
        b"[1,2]",
        b'"string"',
        b"42",
        b"null",
        b'{"type":"request"} {"type":"request"}',
        b'{"type":"request"}{"type":"request"}',
        b'{"type":"request","action":"ping","payload":NaN}',
        b'{"type":"request","action":"ping","payload":Infinity}',
        b'{"type":"request","action":"ping","payload":-Infinity}',
        b'{"type":"request","action":"ping","payload":1e999}',
        b'{"type":"request","action":"ping","request_id":"\xff"}',
        b'{"type":"request","action":"ping","zzz":"\xc3\x28"}',
        b'{"type":"request","action":"ping","payload":"\xed\xa0\x80"}',
        b'{"type":"request","action":"ping","request_id":1,"x":"\xff"}',
        b'{"type":"request","action":"ping","payload":123456789012345678901234567890}',
        b'{"type":"request","action":"ping","payload":[-9223372036854775809]}',
        b'{"type":"request","action":"ping","payload":{"a":18446744073709551616}}',
        b'{"type":"request","action":"ping","payload":' + b"[" * 65 + b"]" * 65 + b"}",
        b'{"type":"request","action":"ping","unknown":' + b"[" * 5000 + b"]" * 5000 + b"}",
        b'{"type":"request","action":"ping","payload":' + b"[" * 200000,
    ],
)
def test_invalid_json_is_fatal(line: bytes) -> None:
    code, message, fatal, _, _ = err(line)
    assert (code, message) == BAD_JSON
    assert fatal


def test_depth_64_is_accepted_and_65_is_not() -> None:
    # The frame object itself is level 1.
    ok = b'{"type":"request","action":"ping","payload":' + b"[" * 63 + b"]" * 63 + b"}"
    assert parse_frame(ok).action == "ping"
    too_deep = b'{"type":"request","action":"ping","payload":' + b"[" * 64 + b"]" * 64 + b"}"
    assert err(too_deep)[:2] == BAD_JSON


def test_many_shallow_brackets_and_brackets_in_strings_are_fine() -> None:
    wide = b'{"type":"request","action":"ping","payload":[' + b",".join([b"{}"] * 500) + b"]}"
    assert parse_frame(wide).payload is None  # valid; ping reads no payload
    text = '{"type":"request","action":"ping","request_id":"' + "[{" * 100 + '\\"x"}'
    assert parse_frame(text.encode()).request_id == "[{" * 100 + '"x'


def test_nesting_depth_helper() -> None:
    assert not nesting_depth_exceeds(b"[[]]", 2)
    assert nesting_depth_exceeds(b"[[[]]]", 2)
    assert not nesting_depth_exceeds(b'["[[[[" , {}]', 2)
    assert MAX_NESTING_DEPTH == 64


def test_integer_limits() -> None:
    edge = (
        b'{"type":"request","action":"run","input_text":"x",'
        b'"payload":{"agent":[-9223372036854775808,18446744073709551615,true,"1234567890123456789"]}}'
    )
    assert parse_frame(edge).payload == {
        "agent": [-9223372036854775808, 18446744073709551615, True, "1234567890123456789"]
    }


def test_payload_fields_no_action_reads_are_not_built() -> None:
    """Issue 16, fault 13: only the fields an action reads become Python objects."""
    junk = b"[" * 60 + b"1" + b"]" * 60
    line = (
        b'{"type":"request","action":"bind_stream","session_id":"s",'
        b'"payload":{"after_seq":3,"junk":' + junk + b"}}"
    )
    assert parse_frame(line).payload == {"after_seq": 3}
    ping = b'{"type":"request","action":"ping","payload":{"junk":' + junk + b"}}"
    assert parse_frame(ping).payload is None
    not_object = b'{"type":"request","action":"list_sessions","payload":[1]}'
    assert parse_frame(not_object).payload == []  # refused by the action in its words
    # What no action reads is still checked for what the contract rules invalid.
    for bad in (b"123456789012345678901", b"1e999"):
        line = b'{"type":"request","action":"ping","payload":{"a":' + bad + b"}}"
        assert err(line)[:2] == BAD_JSON


def test_echo_of_action_and_request_id() -> None:
    assert err('{"type":"request","action":"bogus","request_id":"r1"}')[3:] == ("bogus", "r1")
    assert err('{"type":"nope","action":"ping","request_id":"r2"}')[3:] == ("ping", "r2")
    assert err('{"type":"request","action":"ping","request_id":"r3","workdir":1}')[3:] == (
        "ping",
        "r3",
    )
    assert err('{"type":"request","action":"ping","request_id":4}')[3:] == ("ping", None)
    assert err('{"type":"request","action":"run","request_id":"r5"}')[3:] == ("run", "r5")
    assert err(b"not json")[3:] == (None, None)


def test_valid_frames() -> None:
    frame = parse_frame(
        b'  {"type":"request","action":"run","request_id":"r","input_text":"hi",'
        b'"input_parts":[{"type":"text","text":"a"},{"type":"image","media":'
        b'{"uri":"u","mime_type":"image/png"}}],"workdir":"/w","run_id":"x","session_id":"s",'
        b'"unknown":{"deep":[1,2]},"payload":{"k":1}}\r\n'
    )
    assert frame.action == "run"
    assert frame.input_parts is not None
    assert frame.input_parts[1].media is not None
    assert frame.input_parts[1].media.mime_type == "image/png"
    for line in [
        b'{"type":"request","action":"ping"}',
        b'{"type":"request","action":"cancel"}',
        b'{"type":"request","action":"list_sessions","request_id":null}',
        b'{"type":"request","action":"run","input_parts":[{"type":"text","text":"x"}]}',
        b'{"type":"request","action":"compact","session_id":"s"}',
        b'{"type":"request","action":"load_session","session_id":"s"}',
        b'{"type":"request","action":"resolve_permission",'
        b'"payload":{"request_id":"p","decision":"allow_session"}}',
    ]:
        assert parse_frame(line).type == "request"


def test_encoding_omits_empty_fields_and_matches_the_contract() -> None:
    assert encode_frame(
        Frame(type="ack", action="ping", request_id="smoke-1", payload={"message": "pong"})
    ) == (b'{"type":"ack","action":"ping","request_id":"smoke-1","payload":{"message":"pong"}}\n')
    assert encode_error(
        "unsupported_action", "action is not implemented", action="run", request_id="r-2"
    ) == (
        b'{"type":"error","action":"run","request_id":"r-2",'
        b'"error":{"code":"unsupported_action","message":"action is not implemented"}}\n'
    )
    assert encode_error("invalid_frame", "invalid json frame", action="", request_id="") == (
        b'{"type":"error","error":{"code":"invalid_frame","message":"invalid json frame"}}\n'
    )


def test_schema_describes_every_field() -> None:
    schema = frame_schema()
    props = schema["$defs"]["Frame"]["properties"]
    assert set(props) == {
        "type",
        "action",
        "request_id",
        "run_id",
        "session_id",
        "input_text",
        "input_parts",
        "workdir",
        "payload",
        "error",
    }


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4)
    ),
    max_leaves=20,
)


@given(payload=json_values, request_id=st.text(max_size=20))
def test_any_json_payload_round_trips(payload: object, request_id: str) -> None:
    line = msgspec.json.encode(
        {
            "type": "request",
            "action": "run",
            "input_text": "x",
            "request_id": request_id,
            "payload": {"agent": payload},
        }
    )
    frame = parse_frame(line)
    assert frame.payload == {"agent": payload}
    assert frame.request_id == request_id
    ping = msgspec.json.encode({"type": "request", "action": "ping", "payload": payload})
    assert parse_frame(ping).action == "ping"


@given(data=st.binary(max_size=200))
def test_arbitrary_bytes_never_escape_as_other_exceptions(data: bytes) -> None:
    try:
        parse_frame(data)
    except FrameError as e:
        code = e.code
    else:
        code = "invalid_frame"
    assert code in ERROR_CODES
