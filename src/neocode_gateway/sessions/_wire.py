"""What the handlers share on the wire: the refusal exception, acks, errors, payload readers.

A handler raises :class:`RequestError` for a request the core refuses; the
facade turns it into the error frame that echoes the request's ``action`` and
``request_id``. Payload readers check one field each and name it in their
error, so that every refusal says exactly what was wrong.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from neocode_gateway.protocol import INVALID_ACTION, Frame, codes, encode_error, encode_frame

TITLE_MAX: Final = 80


class RequestError(Exception):
    """A request the core refuses: answered with an error frame of ``code``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def ack(
    frame: Frame,
    payload: Any,
    *,
    session_id: str | None = None,
    run_id: str | None = None,
) -> bytes:
    """The ``ack`` of ``frame`` with ``payload``, encoded as one line."""
    return encode_frame(
        Frame(
            type="ack",
            action=frame.action,
            request_id=frame.request_id,
            session_id=session_id,
            run_id=run_id,
            payload=payload,
        )
    )


def error(frame: Frame, exc: RequestError) -> bytes:
    """The error frame answering ``frame``."""
    return encode_error(exc.code, exc.message, action=frame.action, request_id=frame.request_id)


def payload_of(frame: Frame) -> dict[str, Any]:
    """The request's payload object (``{}`` when absent); any other JSON value is refused."""
    payload = frame.payload
    if payload is None:
        return {}
    if type(payload) is not dict:
        raise RequestError(INVALID_ACTION, codes.msg_invalid_payload(frame.action or ""))
    return payload


def opt_str(payload: Mapping[str, Any], key: str) -> str | None:
    """An optional non-blank string field of the payload."""
    value = payload.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise RequestError(INVALID_ACTION, codes.msg_invalid_payload_field(key))
    return value


def opt_int(payload: Mapping[str, Any], key: str, default: int, low: int, high: int) -> int:
    """An optional integer field within ``[low, high]``."""
    value = payload.get(key)
    if value is None:
        return default
    if type(value) is not int or not low <= value <= high:
        raise RequestError(INVALID_ACTION, codes.msg_invalid_payload_field(key))
    return value


def title_of(frame: Frame) -> str:
    """A new session's title: the first line of the input (or an image's name)."""
    text = frame.input_text
    if not text or not text.strip():
        for part in frame.input_parts or ():
            if part.type == "text" and part.text and part.text.strip():
                text = part.text
                break
            if part.type == "image" and part.media is not None:
                text = part.media.file_name or "image"
    stripped = (text or "").strip()
    line = stripped.splitlines()[0] if stripped else "untitled"
    return line[:TITLE_MAX]
