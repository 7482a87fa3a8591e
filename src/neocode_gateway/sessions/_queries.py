"""Reading actions: list_sessions, load_session (a paged transcript), compact, status."""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any, Final

import msgspec

from neocode_gateway.errors import CompactUnsupported, RunFailed
from neocode_gateway.protocol import INVALID_ACTION, UNSUPPORTED_ACTION, Frame, codes
from neocode_gateway.sessions._model import Session
from neocode_gateway.sessions._runs import check_idle
from neocode_gateway.sessions._subscriber import Subscriber
from neocode_gateway.sessions._wire import RequestError, ack, opt_int, payload_of
from neocode_gateway.store import SessionRow

if TYPE_CHECKING:
    from collections.abc import Awaitable

    from neocode_gateway.sessions._core import SessionCore

log = logging.getLogger("neocode_gateway.sessions")

LIST_LIMIT_DEFAULT: Final = 50
LIST_LIMIT_MAX: Final = 500
#: A transcript page ends once its text passes this many bytes (or ``limit`` messages).
TRANSCRIPT_PAGE_BYTES: Final = 1 << 20
TRANSCRIPT_LIMIT_DEFAULT: Final = 1000
TRANSCRIPT_LIMIT_MAX: Final = 10_000
_TRANSCRIPT_TYPES: Final = ("run_started", "run_progress")
_decoder: Final = msgspec.json.Decoder()


class Queries:
    """The actions that read the log and the sessions."""

    __slots__ = ("_core",)

    def __init__(self, core: SessionCore) -> None:
        self._core = core

    def list_sessions(self, frame: Frame, sub: Subscriber) -> bytes:
        """``list_sessions``: newest first, paged by ``limit`` and ``cursor``."""
        payload = payload_of(frame)
        limit = opt_int(payload, "limit", LIST_LIMIT_DEFAULT, 1, LIST_LIMIT_MAX)
        cursor = payload.get("cursor")
        if cursor is not None and not isinstance(cursor, str):
            raise RequestError(INVALID_ACTION, codes.msg_invalid_payload_field("cursor"))
        workdir = payload.get("workdir")
        if workdir is not None:
            if not isinstance(workdir, str) or not os.path.isabs(workdir):
                raise RequestError(INVALID_ACTION, codes.msg_invalid_payload_field("workdir"))
            workdir = os.path.realpath(workdir)  # sessions keep their workdir resolved
        try:
            rows, next_cursor = self._core.store.list_sessions(limit, cursor or None, workdir)
        except ValueError:
            raise RequestError(INVALID_ACTION, codes.msg_invalid_payload_field("cursor")) from None
        result: dict[str, Any] = {"sessions": [self._describe_row(row) for row in rows]}
        if next_cursor:
            result["next_cursor"] = next_cursor
        return ack(frame, result)

    def _describe_row(self, row: SessionRow) -> dict[str, Any]:
        live = self._core.cache.peek(row.id)
        if live is not None:
            return live.describe()
        out: dict[str, Any] = {
            "id": row.id,
            "title": row.title,
            "workdir": row.workdir,
            "agent": row.agent,
            "created_at": row.created_at,
            "updated_at": row.updated_at,
            "last_seq": row.last_seq,
            "state": "idle",
        }
        if row.mode:
            out["mode"] = row.mode
        return out

    def load_session(self, frame: Frame, sub: Subscriber) -> bytes:
        """``load_session``: the session and a page of its transcript.

        A page ends after about 1 MiB of text or ``limit`` messages; ``next_cursor``
        then continues it. An agent message cut by a page boundary goes on in the
        next page's first message, marked ``continued``.
        """
        session = self._core.cache.require(frame.session_id)
        payload = payload_of(frame)
        limit = opt_int(payload, "limit", TRANSCRIPT_LIMIT_DEFAULT, 1, TRANSCRIPT_LIMIT_MAX)
        after, open_run = _read_cursor(payload.get("cursor"))
        result = session.describe()
        messages, next_cursor = self._transcript(session, after, open_run, limit)
        result["messages"] = messages
        if next_cursor is not None:
            result["next_cursor"] = next_cursor
        return ack(frame, result, session_id=session.id)

    def _transcript(
        self, session: Session, after: int, open_run: str | None, limit: int
    ) -> tuple[list[dict[str, Any]], str | None]:
        messages: list[dict[str, Any]] = []
        agent: dict[str, Any] | None = None
        chunks: list[str] = []
        calls: dict[str, dict[str, Any]] = {}
        size = 0

        def close_agent() -> None:
            nonlocal agent
            if agent is not None:
                agent["text"] = "".join(chunks)
                if calls:
                    agent["tool_calls"] = list(calls.values())
                messages.append(agent)
            agent = None
            chunks.clear()
            calls.clear()

        seq = after
        for seq, run_id, event_type, frame_bytes in self._core.store.iter_events(
            session.id, _TRANSCRIPT_TYPES, after
        ):
            if size >= TRANSCRIPT_PAGE_BYTES or len(messages) >= limit:
                cut = agent["run_id"] if agent is not None else None
                close_agent()
                return messages, _cursor(seq - 1, cut)
            data = _decoder.decode(frame_bytes)["payload"]
            body = data.get("data") or {}
            size += len(frame_bytes)
            if event_type == "run_started":
                close_agent()
                open_run = None
                text = body.get("input_text")
                if text is None:
                    text = "\n".join(
                        p.get("text", "")
                        for p in body.get("input_parts") or ()
                        if p.get("type") == "text"
                    )
                messages.append({"role": "user", "run_id": run_id, "text": text, "ts": data["ts"]})
                continue
            kind = body.get("kind")
            if kind not in ("message_chunk", "tool_call", "tool_call_update"):
                continue
            if agent is None or agent["run_id"] != run_id:
                close_agent()
                agent = {"role": "agent", "run_id": run_id, "text": "", "ts": data["ts"]}
                if open_run is not None and open_run == run_id:
                    agent["continued"] = True
                open_run = None
            if kind == "message_chunk":
                chunks.append(str(body.get("text", "")))
            else:
                call_id = str(body.get("tool_call_id", ""))
                call = calls.setdefault(call_id, {"tool_call_id": call_id})
                for key in ("title", "tool_kind", "status"):
                    if key in body:
                        call[key] = body[key]
        close_agent()
        return messages, None

    def compact(self, frame: Frame, sub: Subscriber) -> Awaitable[bytes]:
        """``compact``: ask the session's runtime to compact its context."""
        session = self._core.cache.require(frame.session_id)
        check_idle(session)
        return self._compact(frame, session)

    async def _compact(self, frame: Frame, session: Session) -> bytes:
        check_idle(session)  # again, and busy, in the first step (see Runs._accept)
        session.busy = True
        try:
            result = await session.runtime.compact(session)
        except CompactUnsupported:
            raise RequestError(UNSUPPORTED_ACTION, codes.MSG_COMPACT_UNSUPPORTED) from None
        except RunFailed as exc:
            raise RequestError(exc.code, exc.message) from None
        finally:
            session.busy = False
            self._core.cache.evict()
        before, after = result.before_chars, result.after_chars
        if not before and result.before_tokens and result.after_tokens is not None:
            before, after = result.before_tokens, result.after_tokens  # the ratio in tokens
        saved = (before - after) / before if before else 0.0
        payload: dict[str, Any] = {
            "applied": result.applied,
            "before_chars": result.before_chars,
            "after_chars": result.after_chars,
            "saved_ratio": round(saved, 4),
            "trigger_mode": "manual",
        }
        if result.before_tokens is not None:
            payload["before_tokens"] = result.before_tokens
        if result.after_tokens is not None:
            payload["after_tokens"] = result.after_tokens
        return ack(frame, payload, session_id=session.id)

    def status(self) -> dict[str, Any]:
        """The core's part of the ``status`` ack."""
        core = self._core
        return {
            "default_runtime": core.runtimes.default,
            "runtimes": core.runtimes.names(),
            "data_dir": str(core.config.data_dir),
            "bindings": core.streams.count,
            "sessions": core.store.count_sessions(),
            "active_runs": len(core.runs.active),
            "pending_permissions": len(core.permissions.pending),
            "agents": self._agent_stats(),
        }

    def _agent_stats(self) -> dict[str, Any]:
        """Each runtime that reports on itself (an ACP agent: running, pid, live sessions,
        memory); the port does not require it."""
        stats: dict[str, Any] = {}
        for name in self._core.runtimes.names():
            report = getattr(self._core.runtimes.get(name), "stats", None)
            if callable(report):
                try:
                    stats[name] = report()
                except Exception:  # a report must never fail status
                    log.exception("runtime %s: stats failed", name)
        return stats


def _cursor(seq: int, open_run: str | None) -> str:
    return f"{seq}:{open_run}" if open_run else str(seq)


def _read_cursor(cursor: object) -> tuple[int, str | None]:
    """``(after_seq, run_id of an agent message cut at the page end)``."""
    if cursor is None:
        return 0, None
    if isinstance(cursor, str):
        seq, _, open_run = cursor.partition(":")
        if seq.isdigit() and len(seq) < 19:
            return int(seq), open_run or None
    raise RequestError(INVALID_ACTION, codes.msg_invalid_payload_field("cursor"))
