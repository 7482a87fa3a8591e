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
# v1.1 (frame-contract-v1.1.md section 2)
RESOURCE_NOT_FOUND: Final = "resource_not_found"
CONFLICT: Final = "conflict"
RUNTIME_UNAVAILABLE: Final = "runtime_unavailable"
SLOW_CONSUMER: Final = "slow_consumer"

ERROR_CODES: Final = frozenset(
    {
        INVALID_FRAME,
        INVALID_ACTION,
        INVALID_MULTIMODAL_PAYLOAD,
        MISSING_REQUIRED_FIELD,
        UNSUPPORTED_ACTION,
        INTERNAL_ERROR,
        RESOURCE_NOT_FOUND,
        CONFLICT,
        RUNTIME_UNAVAILABLE,
        SLOW_CONSUMER,
    }
)

#: Codes that appear only inside ``run_error`` events (besides ``runtime_unavailable``).
CANCELED: Final = "canceled"
RUNTIME_ERROR: Final = "runtime_error"
GATEWAY_RESTARTED: Final = "gateway_restarted"
RUN_ERROR_CODES: Final = frozenset(
    {CANCELED, RUNTIME_ERROR, RUNTIME_UNAVAILABLE, GATEWAY_RESTARTED}
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
# v1.1 messages
MSG_INVALID_AFTER_SEQ: Final = "invalid after_seq"
MSG_INVALID_WORKDIR: Final = "invalid workdir"
MSG_UNKNOWN_AGENT: Final = "unknown agent"
MSG_UNKNOWN_MODE: Final = "unknown mode"
MSG_WORKDIR_CHANGE: Final = "workdir cannot change within a session"
MSG_RUN_ACTIVE: Final = "session already has an active run"
MSG_RUN_ID_USED: Final = "run_id already used"
MSG_PERMISSION_RESOLVED: Final = "permission already resolved"
MSG_UNKNOWN_OPTION: Final = "unknown option_id"
MSG_TOO_MANY_BINDINGS: Final = "too many stream bindings"
MSG_COMPACT_UNSUPPORTED: Final = "compact is not supported by this agent"
MSG_RUN_ACCEPTED: Final = "run accepted"
MSG_STREAM_UNBOUND: Final = "stream unbound"
MSG_PERMISSION_OK: Final = "permission resolved"


def msg_invalid_payload(action: str) -> str:
    """``invalid ACTION payload``: a payload that is not an object where one is required."""
    return f"invalid {action} payload"


def msg_invalid_payload_field(field: str) -> str:
    """``invalid FIELD``: a payload field with a value the action cannot use."""
    return f"invalid {field}"


def msg_not_found(kind: str, ident: str) -> str:
    """``unknown KIND ID`` for ``resource_not_found``."""
    return f"unknown {kind}: {ident}"


def msg_slow_consumer(last_seq: int) -> str:
    """The ``slow_consumer`` message (spec v1.1 section 7)."""
    return f"connection closed: client is too slow; last delivered seq {last_seq}"


def msg_frame_too_large(limit: int) -> str:
    """``frame exceeds max size N bytes``, with the configured limit."""
    return f"frame exceeds max size {limit} bytes"


def msg_missing_field(field: str) -> str:
    """``missing required field: FIELD``."""
    return f"missing required field: {field}"


def msg_wrong_field_type(field: str, expected: str, got: str) -> str:
    """A known field with the wrong JSON type (the message names the field)."""
    return f"invalid field {field}: expected {expected}, got {got}"
