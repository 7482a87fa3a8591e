"""Stable error codes and the contract's error messages (spec sections 4 and 6).

Codes are never removed or re-purposed; clients branch on them. Messages are
for humans, but they are part of the contract too, so they live here once.
"""

from __future__ import annotations

from typing import Final

INVALID_FRAME: Final = "invalid_frame"
INVALID_ACTION: Final = "invalid_action"
INVALID_MULTIMODAL_PAYLOAD: Final = "invalid_multimodal_payload"
MISSING_REQUIRED_FIELD: Final = "missing_required_field"
UNSUPPORTED_ACTION: Final = "unsupported_action"
INTERNAL_ERROR: Final = "internal_error"

ERROR_CODES: Final = frozenset(
    {
        INVALID_FRAME,
        INVALID_ACTION,
        INVALID_MULTIMODAL_PAYLOAD,
        MISSING_REQUIRED_FIELD,
        UNSUPPORTED_ACTION,
        INTERNAL_ERROR,
    }
)

MSG_INVALID_JSON: Final = "invalid json frame"
MSG_INVALID_FRAME_TYPE: Final = "invalid frame type"
MSG_INVALID_ACTION: Final = "invalid action"
MSG_ONLY_REQUESTS: Final = "only request frames are supported"
MSG_NOT_IMPLEMENTED: Final = "action is not implemented"
MSG_INVALID_PERMISSION_PAYLOAD: Final = "invalid resolve_permission payload"
MSG_INVALID_PERMISSION_DECISION: Final = "invalid resolve_permission decision"
MSG_TEXT_PART_EMPTY: Final = "input_parts[text] requires non-empty text"
MSG_IMAGE_NO_MEDIA: Final = "input_parts[image] requires media"
MSG_IMAGE_NO_URI: Final = "input_parts[image] requires media.uri"
MSG_IMAGE_NO_MIME: Final = "input_parts[image] requires media.mime_type"
MSG_PART_UNSUPPORTED: Final = "input_parts contains unsupported type"
MSG_INTERNAL: Final = "internal gateway error"


def msg_frame_too_large(limit: int) -> str:
    """``frame exceeds max size N bytes``, with the configured limit."""
    return f"frame exceeds max size {limit} bytes"


def msg_missing_field(field: str) -> str:
    """``missing required field: FIELD``."""
    return f"missing required field: {field}"


def msg_wrong_field_type(field: str, expected: str, got: str) -> str:
    """A known field with the wrong JSON type (the message names the field)."""
    return f"invalid field {field}: expected {expected}, got {got}"
