"""Frame types of the v1 contract as msgspec Structs: the one definition of the wire format.

The Structs are not tracked by the garbage collector (``gc=False``): a frame never
takes part in a reference cycle, and a pipelined client makes many of them, each of
which would otherwise count toward the collector's next pass.

Every optional field defaults to ``None`` and is omitted when encoding, so a
response carries only the fields it has (the contract: empty fields are
omitted). ``null`` in a request is read as "absent", as the reference did.
Field order is the wire order of the contract's examples.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Any, Final

import msgspec

from neocode_gateway.protocol._codes import ERROR_CODES as _ERROR_CODES

FRAME_TYPES: Final = frozenset({"request", "ack", "event", "error"})
ACTIONS: Final = (
    "ping",
    "run",
    "compact",
    "cancel",
    "list_sessions",
    "load_session",
    "resolve_permission",
    # v1.1
    "bind_stream",
    "unbind_stream",
    "status",
    # v1.2
    "create_session",
    "delete_session",
    "set_mode",
    "hello",
    "list_pending",
    "list_grants",
    "revoke_grant",
    "audit",
)
#: The v1 actions (``--runtime none`` answers the others but ``status`` with unsupported_action).
V1_ACTIONS: Final = ACTIONS[:7]
ACTION_SET: Final = frozenset(ACTIONS)
PERMISSION_DECISIONS: Final = frozenset({"allow_once", "allow_session", "reject"})


def _doc(description: str, enum: Iterable[str] = ()) -> msgspec.Meta:
    """Schema-only annotations: a description, and the allowed values where there is a set.

    ``extra_json_schema`` only shapes the published schema; decoding still accepts
    any string, so that a wrong value is reported by the contract's validation
    rules (with the contract's error code and message), not by msgspec.
    """
    extra = {"enum": sorted(enum)} if enum else None
    return msgspec.Meta(description=description, extra_json_schema=extra)


class Media(msgspec.Struct, omit_defaults=True, forbid_unknown_fields=False, gc=False):
    """The media of an image input part."""

    uri: Annotated[str | None, _doc("where the image is; required")] = None
    mime_type: Annotated[str | None, _doc("e.g. image/png; required")] = None
    file_name: Annotated[str | None, _doc("optional file name")] = None


class InputPart(msgspec.Struct, omit_defaults=True, gc=False):
    """One part of a multimodal input: ``text`` or ``image``."""

    type: Annotated[str | None, _doc("the kind of part", ("text", "image"))] = None
    text: Annotated[str | None, _doc("non-blank text of a text part")] = None
    media: Annotated[Media | None, _doc("the image of an image part")] = None


class ErrorBody(msgspec.Struct, gc=False):
    """The ``error`` object of an error frame."""

    code: Annotated[str, _doc("stable error code; branch on this", _ERROR_CODES)] = ""
    message: Annotated[str, _doc("human-readable explanation; do not parse")] = ""


class Frame(msgspec.Struct, omit_defaults=True, gc=False):
    """One v1 frame, request or response. Unknown fields are ignored on decode."""

    type: Annotated[str | None, _doc("kind of frame; required", FRAME_TYPES)] = None
    action: Annotated[str | None, _doc("the action requested or answered", ACTIONS)] = None
    request_id: Annotated[str | None, _doc("chosen by the client, echoed in the answer")] = None
    run_id: Annotated[str | None, _doc("run identifier")] = None
    session_id: Annotated[
        str | None, _doc("session identifier; required by compact and load_session")
    ] = None
    input_text: Annotated[str | None, _doc("text input of run")] = None
    input_parts: Annotated[list[InputPart] | None, _doc("multimodal input of run")] = None
    workdir: Annotated[str | None, _doc("per-request working directory override")] = None
    payload: Annotated[Any, _doc("action payload or event payload: any JSON value")] = None
    error: Annotated[ErrorBody | None, _doc("present on error frames only")] = None


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
    """The JSON Schema of :class:`Frame`, generated from the Structs; ``$defs`` also has
    ``EventFrame`` and ``EventPayload``, the shape of every ``event`` frame (contract v1.1)."""
    from neocode_gateway.protocol._events import EventFrame

    (frame_ref, _), components = msgspec.json.schema_components(
        [Frame, EventFrame], ref_template="#/$defs/{name}"
    )
    return {"$ref": frame_ref["$ref"], "$defs": components}
