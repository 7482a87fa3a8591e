"""Event frames of contract v1.1 (section 3): their types, kinds and encoding, pure.

An event is one entry of a session's log. The gateway encodes it once, when it
is logged; the same bytes are stored, fanned out to live bindings and written
again on replay, so the wire form of an event lives here only.

The typed :class:`Event` is for clients: ``decode_event(frame)`` turns an
``event`` frame into it; ``data`` stays a plain dict (its fields depend on the
type and kind, and unknown ones must be kept, not dropped).
"""

from __future__ import annotations

import datetime as _dt
from typing import Annotated, Any, Final

import msgspec

from neocode_gateway.protocol._frames import Frame

RUN_STARTED: Final = "run_started"
RUN_PROGRESS: Final = "run_progress"
PERMISSION_REQUEST: Final = "permission_request"
PERMISSION_RESOLVED: Final = "permission_resolved"
RUN_DONE: Final = "run_done"
RUN_ERROR: Final = "run_error"

EVENT_TYPES: Final = (
    RUN_STARTED,
    RUN_PROGRESS,
    PERMISSION_REQUEST,
    PERMISSION_RESOLVED,
    RUN_DONE,
    RUN_ERROR,
)
#: A run's last event is one of these, exactly once.
TERMINAL_EVENT_TYPES: Final = frozenset({RUN_DONE, RUN_ERROR})

#: ``run_progress`` kinds (the ACP ``session/update`` kinds, flattened); ``other``
#: keeps an update the contract has no kind for, raw, instead of dropping it; ``phase``
#: (contract v1.2) says what the run waits for, so every front-end can show it.
PROGRESS_KINDS: Final = frozenset(
    {
        "phase",
        "message_chunk",
        "thought_chunk",
        "tool_call",
        "tool_call_update",
        "plan",
        "commands",
        "usage",
        "session_info",
        "other",
    }
)
TOOL_KINDS: Final = frozenset(
    {"read", "edit", "delete", "move", "search", "execute", "think", "fetch", "other"}
)
TOOL_STATUSES: Final = frozenset({"pending", "in_progress", "completed", "failed"})
STOP_REASONS: Final = frozenset({"end_turn", "max_tokens", "max_turn_requests", "refusal"})
PERMISSION_OPTION_KINDS: Final = ("allow_once", "allow_always", "reject_once", "reject_always")
#: Who decides a permission: a client, the timeout, a cancel; and (v1.2) a rule or a grant.
DECIDED_BY: Final = frozenset({"client", "timeout", "cancel", "policy", "grant"})
#: ``phase`` values of a ``run_progress`` ``phase`` event (contract v1.2), in their usual order.
RUN_PHASES: Final = ("starting_agent", "creating_session", "loading_session", "waiting_for_model")


class EventPayload(msgspec.Struct):
    """``payload`` of an event frame."""

    seq: Annotated[int, msgspec.Meta(description="number in the session's log: 1, 2, 3, ...")]
    event_type: Annotated[
        str,
        msgspec.Meta(
            description="clients ignore types they do not know",
            extra_json_schema={"enum": list(EVENT_TYPES)},
        ),
    ]
    ts: Annotated[str, msgspec.Meta(description="UTC time it was logged, RFC 3339, milliseconds")]
    data: Annotated[
        dict[str, Any],
        msgspec.Meta(description="by event_type; run_progress data has a kind (see protocol.md)"),
    ] = msgspec.field(default_factory=dict)


class EventFrame(msgspec.Struct, omit_defaults=True):
    """An ``event`` frame, as the gateway pushes it (contract v1.1 section 3)."""

    type: Annotated[str, msgspec.Meta(extra_json_schema={"const": "event"})]
    action: Annotated[str, msgspec.Meta(extra_json_schema={"const": "run"})]
    session_id: str
    run_id: str | None = None
    payload: EventPayload | None = None


class Event(msgspec.Struct, frozen=True):
    """An event as a client sees it: its session, run, number, type, time and data."""

    session_id: str
    run_id: str | None
    seq: int
    event_type: str
    ts: str
    data: dict[str, Any]

    @property
    def terminal(self) -> bool:
        """Whether this is the run's last event (``run_done`` or ``run_error``)."""
        return self.event_type in TERMINAL_EVENT_TYPES

    @property
    def kind(self) -> str | None:
        """``data.kind`` of a ``run_progress`` event, else ``None``."""
        kind = self.data.get("kind")
        return kind if isinstance(kind, str) else None


_encoder: Final = msgspec.json.Encoder()
_encode: Final = _encoder.encode
#: ``,"event_type":"T","ts":"`` for each event type (the middle of every event frame).
_TYPE_PARTS: dict[str, bytes] = {}


def event_head(session_id: str, run_id: str | None) -> bytes:
    """The bytes every event frame of one session and run starts with, up to its ``seq``.

    The core keeps it while a run streams, so that an event costs one join of a few
    byte strings and the encoding of its data (half the time of a struct encode).
    """
    head = b'{"type":"event","action":"run","session_id":' + _encode(session_id)
    if run_id:
        head += b',"run_id":' + _encode(run_id)
    return head + b',"payload":{"seq":'


def event_middle(event_type: str, ts: str) -> bytes:
    """The bytes between an event's ``seq`` and its data: ``,"event_type":"T","ts":"TS","data":``.

    Events of one batch share their timestamp: the core keeps this per event type
    for the batch, so that an event costs the encoding of its data and one join.
    """
    part = _TYPE_PARTS.get(event_type)
    if part is None:
        part = _TYPE_PARTS[event_type] = b',"event_type":' + _encode(event_type) + b',"ts":"'
    return part + ts.encode() + b'","data":'


def encode_event_data(head: bytes, seq: int, middle: bytes, data: Any) -> bytes:
    """One event frame as one NDJSON line, from its :func:`event_head` and :func:`event_middle`."""
    return b"".join((head, b"%d" % seq, middle, _encode(data), b"}}\n"))


def encode_event_after(head: bytes, seq: int, event_type: str, ts: str, data: Any) -> bytes:
    """One event frame as one NDJSON line, from its :func:`event_head`."""
    return encode_event_data(head, seq, event_middle(event_type, ts), data)


def encode_event(  # noqa: PLR0917 - the event's fields, in wire order
    session_id: str,
    run_id: str | None,
    seq: int,
    event_type: str,
    ts: str,
    data: dict[str, Any],
) -> bytes:
    """One event frame as one NDJSON line (with its ``\\n``): the bytes of :class:`EventFrame`."""
    return encode_event_after(event_head(session_id, run_id), seq, event_type, ts, data)


def decode_event(frame: Frame) -> Event:
    """The typed :class:`Event` of an ``event`` frame; ``ValueError`` if it is not one."""
    if frame.type != "event" or not frame.session_id:
        raise ValueError("not an event frame (type event with a session_id)")
    try:
        payload = msgspec.convert(frame.payload, EventPayload)
    except msgspec.ValidationError as exc:
        raise ValueError(f"invalid event payload: {exc}") from None
    return Event(
        session_id=frame.session_id,
        run_id=frame.run_id,
        seq=payload.seq,
        event_type=payload.event_type,
        ts=payload.ts,
        data=payload.data,
    )


def utc_timestamp(epoch_seconds: float) -> str:
    """RFC 3339 UTC with milliseconds, as events carry it: ``2026-11-24T10:00:00.123Z``."""
    moment = _dt.datetime.fromtimestamp(epoch_seconds, _dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
