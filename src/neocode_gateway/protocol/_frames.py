"""Frame types of the v1 contract as msgspec Structs: the one definition of the wire format.

Every optional field defaults to ``None`` and is omitted when encoding, so a
response carries only the fields it has (the contract: empty fields are
omitted). ``null`` in a request is read as "absent", as the reference did.
Field order is the wire order of the contract's examples.
"""

from __future__ import annotations

from typing import Any, Final

import msgspec

FRAME_TYPES: Final = frozenset({"request", "ack", "event", "error"})
ACTIONS: Final = (
    "ping",
    "run",
    "compact",
    "cancel",
    "list_sessions",
    "load_session",
    "resolve_permission",
)
ACTION_SET: Final = frozenset(ACTIONS)
PERMISSION_DECISIONS: Final = frozenset({"allow_once", "allow_session", "reject"})


class Media(msgspec.Struct, omit_defaults=True, forbid_unknown_fields=False):
    """The media of an image input part."""

    uri: str | None = None
    mime_type: str | None = None
    file_name: str | None = None


class InputPart(msgspec.Struct, omit_defaults=True):
    """One part of a multimodal input: ``text`` or ``image``."""

    type: str | None = None
    text: str | None = None
    media: Media | None = None


class ErrorBody(msgspec.Struct):
    """The ``error`` object of an error frame."""

    code: str = ""
    message: str = ""


class Frame(msgspec.Struct, omit_defaults=True):
    """One v1 frame, request or response. Unknown fields are ignored on decode."""

    type: str | None = None
    action: str | None = None
    request_id: str | None = None
    run_id: str | None = None
    session_id: str | None = None
    input_text: str | None = None
    input_parts: list[InputPart] | None = None
    workdir: str | None = None
    payload: Any = None
    error: ErrorBody | None = None


_encoder: Final = msgspec.json.Encoder()


def encode_frame(frame: Frame) -> bytes:
    """One frame as one NDJSON line (with its ``\\n``)."""
    return _encoder.encode(frame) + b"\n"


def error_frame(
    code: str, message: str, *, action: str | None = None, request_id: str | None = None
) -> Frame:
    """An error frame that echoes the request's ``action`` and ``request_id``."""
    return Frame(
        type="error",
        action=action or None,
        request_id=request_id or None,
        error=ErrorBody(code=code, message=message),
    )


def encode_error(
    code: str, message: str, *, action: str | None = None, request_id: str | None = None
) -> bytes:
    """An error frame, encoded as one line."""
    return encode_frame(error_frame(code, message, action=action, request_id=request_id))


def frame_schema() -> dict[str, Any]:
    """The JSON Schema of :class:`Frame`, generated from the Structs above."""
    return msgspec.json.schema(Frame)
