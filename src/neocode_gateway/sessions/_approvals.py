"""One approval layer for every agent: rules, grants, and what they answer (contract v1.2).

Before a person is asked, the configured policy (:mod:`neocode_gateway.policy`)
and the session's grants look at the tool call: deny rules first, then grants,
then ask and allow rules, then a person by default. What a rule or a grant
decides is answered at once with the agent's own option of exactly that kind.

Grants are what people gave: "allow for the session" (or for a time, or for a
number of uses). They are kept in the store, listed and revoked by clients, and
counted as they are used. The actions that read all this (``list_pending``,
``list_grants``, ``revoke_grant``, ``audit``) live here too.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import TYPE_CHECKING, Any, Final

import msgspec

from neocode_gateway.protocol import (
    DECIDED_BY,
    INVALID_ACTION,
    MISSING_REQUIRED_FIELD,
    RESOURCE_NOT_FOUND,
    Frame,
    codes,
    utc_timestamp,
)
from neocode_gateway.sessions._ids import new_id
from neocode_gateway.sessions._model import Session
from neocode_gateway.sessions._subscriber import Subscriber
from neocode_gateway.sessions._wire import RequestError, ack, opt_int, opt_str, payload_of
from neocode_gateway.store import GrantRow, PermissionRow

if TYPE_CHECKING:
    from neocode_gateway.policy import Decision, Grant, Policy
    from neocode_gateway.sessions._core import SessionCore

log = logging.getLogger("neocode_gateway.sessions")

AUDIT_LIMIT_DEFAULT: Final = 100
AUDIT_LIMIT_MAX: Final = 1000


class _Held:
    """A live grant in memory: its row (for listing) and its matcher."""

    __slots__ = ("grant", "row")

    def __init__(self, row: GrantRow, grant: Grant) -> None:
        self.row = row
        self.grant = grant


class Approvals:
    """The policy, the grants of every session, and the actions that show them."""

    __slots__ = ("_core", "_grants", "_policy")

    def __init__(self, core: SessionCore, policy: Policy | None) -> None:
        self._core = core
        self._policy = policy
        #: Live grants by session, loaded from the store on first use.
        self._grants: dict[str, dict[str, _Held]] = {}

    # -- deciding ---------------------------------------------------------------------

    @property
    def policy(self) -> Policy:
        """The rules (none configured: an empty policy, under which a person decides).

        The policy package is imported at the first permission request, not at start:
        the daemon answers its first ping sooner."""
        if self._policy is None:
            from neocode_gateway.policy import Policy

            self._policy = Policy.from_tables([], source="none")
        return self._policy

    def decide(self, session: Session, tool_call: dict[str, Any]) -> tuple[Decision, str | None]:
        """What the rules and grants say of a tool call; the grant used, if one decided."""
        from neocode_gateway.policy import decide_with_grants, request_from_tool_call

        request = request_from_tool_call(tool_call)
        held = self._held(session.id)
        now = time.time()
        decision, grant = decide_with_grants(
            self.policy,
            request,
            agent=session.agent,
            workdir=session.workdir,
            session_id=session.id,
            grants=[h.grant for h in held.values()],
            now=now,
        )
        if grant is None:
            return decision, None
        grant_id = next(gid for gid, h in held.items() if h.grant is grant)
        self._use(session.id, grant_id, now)
        return decision, grant_id

    def _held(self, session_id: str) -> dict[str, _Held]:
        held = self._grants.get(session_id)
        if held is None:
            from neocode_gateway.policy import Grant

            held = {}
            for row in self._core.store.grants(session_id):
                try:
                    spec = msgspec.json.decode(row.spec)
                    spec["paths"] = tuple(spec.get("paths") or ())
                    held[row.id] = _Held(row, Grant(**spec))
                except (msgspec.DecodeError, TypeError):
                    log.warning("grant %s cannot be read; ignored", row.id)
            self._grants[session_id] = held
        return held

    def _use(self, session_id: str, grant_id: str, now: float) -> None:
        held = self._grants[session_id][grant_id]
        held.grant = held.grant.used()
        held.row = held.row._replace(uses=held.row.uses + 1, remaining=held.grant.remaining)
        self._core.journal.update_grant(grant_id, uses=held.row.uses, remaining=held.row.remaining)
        if not held.grant.live(now):
            del self._grants[session_id][grant_id]

    def give(
        self,
        session: Session,
        tool_call: dict[str, Any],
        given_by: str,
        *,
        for_seconds: float | None = None,
        uses: int | None = None,
    ) -> str:
        """A grant for what ``tool_call`` asked, in its session; its id."""
        from neocode_gateway.policy import grant_from_request, request_from_tool_call

        request = request_from_tool_call(tool_call)
        expires = time.time() + for_seconds if for_seconds is not None else None
        grant = grant_from_request(
            request, session.id, workdir=session.workdir, expires_at=expires, remaining=uses
        )
        row = GrantRow(
            id=new_id("g"),
            session_id=session.id,
            spec=msgspec.json.encode(dataclasses.asdict(grant)).decode(),
            rule=grant.rule,
            given_by=given_by,
            created_at=self._core.now(),
            expires_at=utc_timestamp(expires) if expires is not None else None,
            remaining=uses,
        )
        self._core.journal.grant(row)
        self._held(session.id)[row.id] = _Held(row, grant)
        log.info("grant %s given by %s in session %s: %s", row.id, given_by, session.id, row.rule)
        return row.id

    def forget(self, session_id: str) -> None:
        """The session is gone: so are its grants (the store deletes their rows)."""
        self._grants.pop(session_id, None)

    # -- actions ----------------------------------------------------------------------

    def list_pending(self, frame: Frame, sub: Subscriber) -> bytes:
        """``list_pending``: every unanswered permission request, oldest first."""
        now = time.monotonic()
        pending = sorted(self._core.permissions.pending.values(), key=lambda p: p.created)
        requests = [
            {
                "request_id": p.id,
                "session_id": p.run.session.id,
                "run_id": p.run.id,
                "tool_call": p.tool_call,
                "options": p.options,
                "created_at": p.created_at,
                "waiting_s": round(now - p.created, 3),
            }
            for p in pending
            if frame.session_id in (None, p.run.session.id)
        ]
        return ack(frame, {"requests": requests})

    def list_grants(self, frame: Frame, sub: Subscriber) -> bytes:
        """``list_grants``: the live grants (of ``session_id`` if given)."""
        now = time.time()
        rows = self._core.store.grants(frame.session_id or None)
        grants = []
        for row in rows:
            held = self._held(row.session_id).get(row.id)
            if held is None or not held.grant.live(now):
                continue
            grants.append(_grant_out(held.row))
        return ack(frame, {"grants": grants})

    def revoke_grant(self, frame: Frame, sub: Subscriber) -> bytes:
        """``revoke_grant``: end a grant now; the next request is decided without it."""
        grant_id = opt_str(payload_of(frame), "grant_id")
        if grant_id is None:
            raise RequestError(MISSING_REQUIRED_FIELD, codes.msg_missing_field("payload.grant_id"))
        rows = [r for r in self._core.store.grants() if r.id == grant_id]
        pending = [
            h.row for held in self._grants.values() for gid, h in held.items() if gid == grant_id
        ]  # given this turn, not yet in the store
        if not rows and not pending:
            raise RequestError(RESOURCE_NOT_FOUND, codes.msg_not_found("grant", grant_id))
        session_id = (rows or pending)[0].session_id
        self._grants.get(session_id, {}).pop(grant_id, None)
        self._core.journal.update_grant(grant_id, revoked_at=self._core.now())
        log.info("grant %s revoked by %s", grant_id, self._core.clients.label(sub))
        return ack(frame, {"grant_id": grant_id, "revoked": True}, session_id=session_id)

    def audit(self, frame: Frame, sub: Subscriber) -> bytes:
        """``audit``: permission decisions, newest first, filtered, paged by ``cursor``."""
        payload = payload_of(frame)
        limit = opt_int(payload, "limit", AUDIT_LIMIT_DEFAULT, 1, AUDIT_LIMIT_MAX)
        since = opt_str(payload, "since")
        decided_by = opt_str(payload, "decided_by")
        cursor = opt_str(payload, "cursor")
        if decided_by is not None and decided_by not in DECIDED_BY:
            raise RequestError(INVALID_ACTION, codes.msg_invalid_payload_field("decided_by"))
        rows = self._core.store.audit(
            session_id=frame.session_id or None,
            since=since,
            decided_by=decided_by,
            limit=limit + 1,
            before=cursor,
        )
        result: dict[str, Any] = {"decisions": [_decision_out(r) for r in rows[:limit]]}
        if len(rows) > limit:
            result["next_cursor"] = rows[limit - 1].created_at
        return ack(frame, result)


def _grant_out(row: GrantRow) -> dict[str, Any]:
    out: dict[str, Any] = {
        "grant_id": row.id,
        "session_id": row.session_id,
        "rule": row.rule,
        "given_by": row.given_by,
        "created_at": row.created_at,
        "uses": row.uses,
    }
    if row.expires_at is not None:
        out["expires_at"] = row.expires_at
    if row.remaining is not None:
        out["remaining"] = row.remaining
    return out


def _decision_out(row: PermissionRow) -> dict[str, Any]:
    from neocode_gateway.policy import request_from_tool_call

    try:
        request = msgspec.json.decode(row.request)
    except msgspec.DecodeError:
        request = {}
    tool_call = request.get("tool_call") or {}
    tool = request_from_tool_call(tool_call)
    out: dict[str, Any] = {
        "request_id": row.id,
        "session_id": row.session_id,
        "run_id": row.run_id,
        "state": row.state,
        "tool": {"kind": tool.kind, "title": tool.title, "paths": list(tool.paths)},
        "options": [o.get("kind") for o in request.get("options") or ()],
        "decision": row.decision,
        "decided_by": row.decided_by if row.state != "void" else "void",
        "who": row.who,
        "waited_ms": row.waited_ms,
        "created_at": row.created_at,
        "resolved_at": row.resolved_at,
    }
    if tool.command is not None:
        out["tool"]["command"] = tool.command
    return out
