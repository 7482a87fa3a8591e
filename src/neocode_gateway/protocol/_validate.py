"""Decoding and validation of one request line, in the order of the contract (section 4).

:func:`parse_frame` is the single entry point: bytes in, a valid :class:`Frame`
out, or a :class:`~neocode_gateway.errors.FrameError` carrying the contract's
code and message. The fast path is one typed msgspec decode plus a few
attribute checks; everything expensive (finding which field has the wrong
type, nesting depth, huge integers) runs only when a cheap test says it might
be needed.
"""

from __future__ import annotations

import re
from typing import Any, Final

import msgspec

from neocode_gateway.errors import FrameError
from neocode_gateway.protocol import _codes as c
from neocode_gateway.protocol._frames import (
    ACTION_SET,
    FRAME_TYPES,
    PERMISSION_DECISIONS,
    Frame,
    InputPart,
)

#: Deepest JSON nesting accepted (objects and arrays, the frame itself is level 1).
MAX_NESTING_DEPTH: Final = 64
#: Integers outside [INT_MIN, UINT_MAX] cannot be represented by 64-bit peers.
INT_MIN: Final = -(2**63)
UINT_MAX: Final = 2**64 - 1


class _Request(Frame, omit_defaults=True, gc=False):
    """A request as read: its payload kept as raw JSON until we know what reads it."""

    payload: msgspec.Raw = msgspec.Raw()


_decoder: Final = msgspec.json.Decoder(_Request)
_fields_decoder: Final = msgspec.json.Decoder(dict[str, msgspec.Raw])
_value_decoder: Final = msgspec.json.Decoder()
#: The payload fields each action reads. Only these are turned into Python objects: a
#: payload no action reads costs a syntax check at C speed, whatever its size or shape.
PAYLOAD_FIELDS: Final[dict[str, frozenset[str]]] = {
    "run": frozenset({"agent", "mode"}),
    "list_sessions": frozenset({"limit", "cursor", "workdir"}),
    "load_session": frozenset({"limit", "cursor"}),
    "bind_stream": frozenset({"after_seq"}),
    "unbind_stream": frozenset(),
    "resolve_permission": frozenset({"request_id", "decision", "option_id", "grant"}),
    "create_session": frozenset({"agent", "mode", "title", "mcp_servers"}),
    "delete_session": frozenset(),
    "set_mode": frozenset({"mode"}),
    "hello": frozenset({"client", "device"}),
    "list_pending": frozenset(),
    "list_grants": frozenset(),
    "revoke_grant": frozenset({"grant_id"}),
    "audit": frozenset({"since", "decided_by", "limit", "cursor"}),
}
#: Stands for a payload that is not a JSON object (each action refuses it in its words).
_NOT_AN_OBJECT: Final[list[Any]] = []
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
#: An integer outside 64 bits has at least 19 digits: only then is the payload walked.
_LONG_DIGITS = re.compile(rb"\d{19}")
_BIG_EXPONENT = re.compile(rb"[eE][+-]?\d{3}")
_DEPTH_GATE: Final = 2 * MAX_NESTING_DEPTH + 1
_MSGSPEC_PATH = re.compile(r"- at `\$(?P<path>[^`]*)`")
_MSGSPEC_EXPECTED = re.compile(r"Expected `(?P<want>[^`]+)`, got `(?P<got>[^`]+)`")
_JSON_KIND = {
    "str": "string",
    "int": "number",
    "float": "number",
    "bool": "boolean",
    "null": "null",
    "array": "array",
    "object": "object",
}


def _blank(value: str | None) -> bool:
    return value is None or not value.strip()


def _invalid_json() -> FrameError:
    return FrameError(c.INVALID_FRAME, c.MSG_INVALID_JSON, fatal=True)


def parse_frame(line: bytes) -> Frame:
    """Decode and validate one frame line (terminator and surrounding blanks allowed).

    Raises :class:`FrameError`; ``fatal`` is set for errors after which the
    stream cannot be trusted (invalid JSON), unset for validation errors.
    """
    try:
        frame = _decoder.decode(line)
    except msgspec.ValidationError as exc:
        raise _explain_type_error(line, str(exc)) from None
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        raise _invalid_json() from None
    # Cheap guards first. msgspec skips unknown fields without checking all of
    # their UTF-8; JSON nesting deeper than 64 needs more than 2 * 64 bytes and
    # 64 opening brackets; an integer outside 64 bits can only be kept in the
    # payload (unknown fields are dropped), so only a payload is walked.
    if not line.isascii():
        try:
            line.decode("utf-8")
        except UnicodeDecodeError:
            raise _invalid_json() from None
    if (
        len(line) > _DEPTH_GATE
        and line.count(b"{") + line.count(b"[") > MAX_NESTING_DEPTH
        and nesting_depth_exceeds(line)
    ):
        raise _invalid_json()
    raw = frame.payload
    if raw:
        if len(raw) > 4 and (
            _LONG_DIGITS.search(line) is not None or _BIG_EXPONENT.search(line) is not None
        ):
            # Only then can the payload hold a number no 64-bit peer reads (a huge
            # integer, a float out of range): decode it whole to find out.
            try:
                if _has_huge_int(_value_decoder.decode(raw)):
                    raise _invalid_json()
            except (msgspec.DecodeError, RecursionError):
                raise _invalid_json() from None
        frame.payload = _read_payload(frame.action, raw)
    else:
        frame.payload = None  # type: ignore[assignment]
    # A request whose action needs no field (a ping) passes every rule of
    # ``validate``: on the pipelined hot path it is not even called.
    if frame.type != "request" or frame.action not in _NOTHING_REQUIRED:
        validate(frame)
    return frame


def _read_payload(action: str | None, raw: msgspec.Raw) -> Any:
    """The payload fields ``action`` reads, decoded; ``None`` when it reads none or none
    was sent; a stand-in for a payload that is not an object."""
    wanted = PAYLOAD_FIELDS.get(action or "")
    if wanted is None or bytes(memoryview(raw)[:4]) == b"null":
        return None
    try:
        fields = _fields_decoder.decode(raw)
    except msgspec.ValidationError:
        return _NOT_AN_OBJECT
    return {key: _value_decoder.decode(value) for key, value in fields.items() if key in wanted}


def _bounded_depth(limit: int) -> re.Pattern[bytes]:
    r"""A regular expression for balanced brackets nested at most ``limit`` deep.

    Brackets of bounded depth are a regular language: level k is
    ``(?:\[ level(k-1) \])*+``. The possessive quantifiers never backtrack, so
    matching is one pass at the regex engine's speed.
    """
    pattern = b""
    for _ in range(limit):
        pattern = rb"(?:\[" + pattern + rb"\])*+"
    return re.compile(pattern)


_DEPTH_OK: Final = _bounded_depth(MAX_NESTING_DEPTH)
_NON_BRACKETS: Final = bytes(range(256)).translate(None, b"[]{}")
_BRACES_AS_BRACKETS: Final = bytes.maketrans(b"{}", b"[]")


def nesting_depth_exceeds(line: bytes, limit: int = MAX_NESTING_DEPTH) -> bool:
    """Whether the JSON text (already known to be valid) nests objects/arrays deeper than
    ``limit``.

    At C speed: strings are blanked out, everything but brackets deleted, braces
    read as brackets, and what remains is matched against the language of brackets
    nested at most ``limit`` deep (about 5 ms for a 1 MiB frame of nested arrays,
    where a running sum in Python took 58 ms and a pass per layer 0.7 s).
    """
    brackets = _STRING.sub(b"", line).translate(_BRACES_AS_BRACKETS, _NON_BRACKETS)
    if len(brackets) <= 2 * limit:
        return False
    pattern = _DEPTH_OK if limit == MAX_NESTING_DEPTH else _bounded_depth(limit)
    return pattern.fullmatch(brackets) is None


def _has_huge_int(value: Any) -> bool:
    """Whether a decoded JSON value holds an integer outside the 64-bit range."""
    kind = type(value)
    if kind is int:
        return not INT_MIN <= value <= UINT_MAX
    if kind is dict:
        return any(_has_huge_int(v) for v in value.values())
    if kind is list:
        return any(_has_huge_int(v) for v in value)
    return False


def _str_or_none(raw: dict[str, Any], key: str) -> str | None:
    value = raw.get(key)
    return value if isinstance(value, str) and value else None


def _explain_type_error(line: bytes, detail: str) -> FrameError:
    """Turn a typed-decode failure into the contract's error, echoing what we can."""
    if "Number out of range" in detail:
        return _invalid_json()
    try:
        raw = msgspec.json.decode(line)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        # The typed decode stopped at the first wrong type: the rest of the line
        # (its syntax, its UTF-8) has not been checked yet.
        return _invalid_json()
    if not isinstance(raw, dict):
        return _invalid_json()
    action = _str_or_none(raw, "action")
    request_id = _str_or_none(raw, "request_id")
    frame_type = raw.get("type")
    if not isinstance(frame_type, str) or frame_type not in FRAME_TYPES:
        return FrameError(
            c.INVALID_FRAME, c.MSG_INVALID_FRAME_TYPE, action=action, request_id=request_id
        )
    path_match = _MSGSPEC_PATH.search(detail)
    path = path_match["path"].lstrip(".") if path_match else "frame"
    kinds = _MSGSPEC_EXPECTED.search(detail)
    if kinds:
        want = " or ".join(
            _JSON_KIND.get(k.strip(), k.strip())
            for k in kinds["want"].split("|")
            if "null" not in k
        )
        got = _JSON_KIND.get(kinds["got"], kinds["got"])
    else:  # pragma: no cover - every msgspec type error names both kinds
        want, got = "another type", "an invalid value"
    return FrameError(
        c.INVALID_FRAME,
        c.msg_wrong_field_type(path, want, got),
        action=action,
        request_id=request_id,
    )


#: Actions whose fields the contract's validation does not check (their handlers do).
_NOTHING_REQUIRED: Final = frozenset(
    {
        "ping",
        "cancel",
        "list_sessions",
        "status",
        "create_session",
        "hello",
        "list_pending",
        "list_grants",
        "revoke_grant",
        "audit",
    }
)


def validate(frame: Frame) -> None:
    """Apply the contract's validation rules, in order (spec section 4)."""
    frame_type = frame.type
    action = frame.action
    if frame_type not in FRAME_TYPES:
        raise FrameError(
            c.INVALID_FRAME, c.MSG_INVALID_FRAME_TYPE, action=action, request_id=frame.request_id
        )
    if action is not None and action not in ACTION_SET and action.strip():
        raise FrameError(
            c.INVALID_ACTION, c.MSG_INVALID_ACTION, action=action, request_id=frame.request_id
        )
    if frame_type != "request":
        raise FrameError(
            c.INVALID_FRAME, c.MSG_ONLY_REQUESTS, action=action, request_id=frame.request_id
        )
    if action is None or action in _NOTHING_REQUIRED:
        if action is None:
            raise _missing(frame, "action")
        return
    if not action.strip():
        raise _missing(frame, "action")
    if action == "run":
        if _blank(frame.input_text) and not frame.input_parts:
            raise _missing(frame, "input_text_or_input_parts")
    elif action in ("compact", "load_session", "delete_session", "set_mode"):
        if _blank(frame.session_id):
            raise _missing(frame, "session_id")
    elif action in ("bind_stream", "unbind_stream"):
        _validate_stream(frame)
        return
    else:  # resolve_permission: the only action left
        _validate_permission(frame)
        return
    if frame.input_parts:
        for part in frame.input_parts:
            _validate_part(frame, part)


def _missing(frame: Frame, field: str) -> FrameError:
    return FrameError(
        c.MISSING_REQUIRED_FIELD,
        c.msg_missing_field(field),
        action=frame.action,
        request_id=frame.request_id,
    )


def _validate_stream(frame: Frame) -> None:
    """``bind_stream`` / ``unbind_stream`` (v1.1 section 2): session_id, payload, after_seq."""
    if _blank(frame.session_id):
        raise _missing(frame, "session_id")
    payload = frame.payload
    if payload is None:
        return
    if type(payload) is not dict:
        raise FrameError(
            c.INVALID_ACTION,
            c.msg_invalid_payload(frame.action or ""),
            action=frame.action,
            request_id=frame.request_id,
        )
    after_seq = payload.get("after_seq")
    if after_seq is not None and (type(after_seq) is not int or after_seq < 0):
        raise FrameError(
            c.INVALID_ACTION,
            c.MSG_INVALID_AFTER_SEQ,
            action=frame.action,
            request_id=frame.request_id,
        )


def _validate_permission(frame: Frame) -> None:
    payload = frame.payload
    if payload is None:
        raise _missing(frame, "payload")
    if not isinstance(payload, dict):
        raise FrameError(
            c.INVALID_ACTION,
            c.MSG_INVALID_PERMISSION_PAYLOAD,
            action=frame.action,
            request_id=frame.request_id,
        )
    permission_id = payload.get("request_id")
    decision = payload.get("decision")
    if not isinstance(permission_id, str | None) or not isinstance(decision, str | None):
        raise FrameError(
            c.INVALID_ACTION,
            c.MSG_INVALID_PERMISSION_PAYLOAD,
            action=frame.action,
            request_id=frame.request_id,
        )
    if _blank(permission_id):
        raise _missing(frame, "payload.request_id")
    if decision not in PERMISSION_DECISIONS:
        raise FrameError(
            c.INVALID_ACTION,
            c.MSG_INVALID_PERMISSION_DECISION,
            action=frame.action,
            request_id=frame.request_id,
        )


def _validate_part(frame: Frame, part: InputPart) -> None:
    message: str | None = None
    if part.type == "text":
        if _blank(part.text):
            message = c.MSG_TEXT_PART_EMPTY
    elif part.type == "image":
        media = part.media
        if media is None:
            message = c.MSG_IMAGE_NO_MEDIA
        elif _blank(media.uri):
            message = c.MSG_IMAGE_NO_URI
        elif _blank(media.mime_type):
            message = c.MSG_IMAGE_NO_MIME
    else:
        message = c.MSG_PART_UNSUPPORTED
    if message is not None:
        raise FrameError(
            c.INVALID_MULTIMODAL_PAYLOAD, message, action=frame.action, request_id=frame.request_id
        )
