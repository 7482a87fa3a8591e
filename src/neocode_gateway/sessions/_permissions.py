"""Permission requests: asked by a runtime, answered by the first client, the timeout or a cancel.

A decision maps to the agent's option of exactly its kind, never a wider one:
``allow_once`` → ``allow_once``, ``allow_session`` → ``allow_always``,
``reject`` → ``reject_once`` (else ``reject_always``). An ``option_id`` picks an
exact option and must agree with the decision. What is logged is what the
agent is told.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

import msgspec

from neocode_gateway.protocol import CONFLICT, INVALID_ACTION, RESOURCE_NOT_FOUND, Frame, codes
from neocode_gateway.runtime import PermissionOption, PermissionOutcome
from neocode_gateway.sessions._clients import ClientInfo
from neocode_gateway.sessions._ids import new_id
from neocode_gateway.sessions._model import Permission, Run
from neocode_gateway.sessions._subscriber import Subscriber
from neocode_gateway.sessions._wire import RequestError, ack, opt_str
from neocode_gateway.store import PermissionRow

if TYPE_CHECKING:
    from neocode_gateway.sessions._core import SessionCore

log = logging.getLogger("neocode_gateway.sessions")

#: Permission decisions -> the option kinds that carry them, in order of preference.
DECISION_KINDS: Final[Mapping[str, tuple[str, ...]]] = {
    "allow_once": ("allow_once",),
    "allow_session": ("allow_always",),
    "reject": ("reject_once", "reject_always"),
}


class Permissions:
    """The pending permission requests of every run."""

    __slots__ = ("_core", "pending")

    def __init__(self, core: SessionCore) -> None:
        self._core = core
        self.pending: dict[str, Permission] = {}

    async def request(
        self, run: Run, tool_call: dict[str, Any], options: Sequence[PermissionOption]
    ) -> PermissionOutcome:
        """A runtime asks: the rules and grants answer, or a client, the timeout, a cancel."""
        if run.ended or run.cancel_requested:
            return PermissionOutcome(None, None, "cancel")
        core = self._core
        loop = asyncio.get_running_loop()
        permission = Permission(
            new_id("p"),
            run,
            tool_call,
            [dict(o) for o in options],  # type: ignore[misc]
            loop.create_future(),
        )
        permission.created = time.monotonic()
        permission.created_at = core.now()
        session = run.session
        request = {
            "request_id": permission.id,
            "tool_call": tool_call,
            "options": permission.options,
        }
        decided = self._by_policy(permission, request)
        if decided is not None:
            return decided
        core.log.append(session, run.id, "permission_request", request)
        core.journal.permission(self._row(permission, request))
        self.pending[permission.id] = permission
        run.permissions[permission.id] = permission
        permission.timer = loop.call_later(
            core.config.permission_timeout, self._timed_out, permission
        )
        try:
            return await asyncio.shield(permission.future)
        except asyncio.CancelledError:
            if permission.id in self.pending and not core.stopping:
                self.resolve(permission, None, "reject", "cancel")
            raise

    def _by_policy(
        self, permission: Permission, request: dict[str, Any]
    ) -> PermissionOutcome | None:
        """Answer at once what a rule or a grant decides (with the agent's option of exactly
        that kind); ``None`` when a person is to be asked."""
        core = self._core
        run = permission.run
        decision, grant_id = core.approvals.decide(run.session, permission.tool_call)
        if decision.verdict == "ask":
            return None
        verdict = "allow_once" if decision.verdict == "allow" else "reject"
        option = self._option_for(permission, verdict)
        if option is None:
            return None  # the agent offers no option of that kind: a person decides
        decided_by = "grant" if grant_id is not None else "policy"
        who = grant_id if grant_id is not None else f"{decision.rule} ({decision.source})"
        data: dict[str, Any] = {
            "request_id": permission.id,
            "decision": verdict,
            "decided_by": decided_by,
            "tool_call": permission.tool_call,
        }
        if grant_id is not None:
            data["grant_id"] = grant_id
        if decision.rule is not None:
            data["rule"] = decision.rule
        core.log.append(run.session, run.id, "permission_resolved", data)
        row = self._row(permission, request)._replace(
            state="resolved",
            decision=verdict,
            decided_by=decided_by,
            option_id=option,
            resolved_at=core.now(),
            who=who,
            waited_ms=0,
        )
        core.journal.permission(row)
        log.info(
            "permission %s (%s) decided %s by %s",
            permission.id,
            permission.tool_call.get("title", ""),
            verdict,
            who,
        )
        return PermissionOutcome(option, verdict, decided_by)

    def _row(self, permission: Permission, request: dict[str, Any]) -> PermissionRow:
        run = permission.run
        return PermissionRow(
            id=permission.id,
            session_id=run.session.id,
            run_id=run.id,
            state="pending",
            decision=None,
            decided_by=None,
            option_id=None,
            request=msgspec.json.encode(request).decode(),
            created_at=permission.created_at,
            resolved_at=None,
        )

    def _timed_out(self, permission: Permission) -> None:
        if permission.id in self.pending:
            option = self._option_for(permission, "reject")
            self.resolve(permission, option, "reject", "timeout")

    @staticmethod
    def _option_for(permission: Permission, decision: str) -> str | None:
        for kind in DECISION_KINDS[decision]:
            for option in permission.options:
                if option.get("kind") == kind:
                    return str(option["option_id"])
        return None

    def cancel_all(self, run: Run) -> None:
        """The run ends or is canceled: its pending requests are resolved ``cancel``."""
        for permission in list(run.permissions.values()):
            self.resolve(permission, None, "reject", "cancel")

    def resolve(
        self,
        permission: Permission,
        option_id: str | None,
        decision: str,
        decided_by: str,
        who: str | None = None,
        *,
        client: ClientInfo | None = None,
    ) -> None:
        core = self._core
        self.pending.pop(permission.id, None)
        run = permission.run
        run.permissions.pop(permission.id, None)
        if permission.timer is not None:
            permission.timer.cancel()
        data: dict[str, Any] = {
            "request_id": permission.id,
            "decision": decision,
            "decided_by": decided_by,
        }
        if client is not None:  # a client that named itself (hello)
            data["client"] = client.name
            if client.device:
                data["device"] = client.device
        core.log.append(run.session, run.id, "permission_resolved", data)
        core.journal.update_permission(
            permission.id,
            state="resolved",
            decision=decision,
            decided_by=decided_by,
            option_id=option_id,
            resolved_at=core.now(),
            who=who or decided_by,
            waited_ms=round((time.monotonic() - permission.created) * 1000),
        )
        if not permission.future.done():
            if decided_by == "cancel":
                outcome = PermissionOutcome(None, None, "cancel")
            else:
                outcome = PermissionOutcome(option_id, decision, decided_by)
            permission.future.set_result(outcome)

    def resolve_permission(self, frame: Frame, sub: Subscriber) -> bytes:
        """``resolve_permission``: the first answer wins; later ones are a ``conflict``."""
        payload = frame.payload
        assert isinstance(payload, dict)  # validated by the protocol layer
        permission_id = payload["request_id"]
        decision = payload["decision"]
        option_id = opt_str(payload, "option_id")
        permission = self.pending.get(permission_id)
        if permission is None:
            if self._core.store.get_permission(permission_id) is not None:
                raise RequestError(CONFLICT, codes.MSG_PERMISSION_RESOLVED)
            raise RequestError(
                RESOURCE_NOT_FOUND, codes.msg_not_found("permission request", permission_id)
            )
        kinds = DECISION_KINDS[decision]
        if option_id is not None:
            option = next((o for o in permission.options if o.get("option_id") == option_id), None)
            if option is None:
                raise RequestError(INVALID_ACTION, codes.MSG_UNKNOWN_OPTION)
            if option.get("kind") not in kinds:
                raise RequestError(
                    INVALID_ACTION,
                    f"option_id {option_id} is of kind {option.get('kind')}, "
                    f"which does not carry the decision {decision}",
                )
            chosen: str | None = option_id
        else:
            chosen = self._option_for(permission, decision)
            if chosen is None:
                offered = ", ".join(str(o.get("kind")) for o in permission.options)
                raise RequestError(
                    INVALID_ACTION,
                    f"the agent offers no option for {decision} (offered: {offered})",
                )
        run = permission.run
        for_seconds, uses = _grant_terms(payload, decision)
        self._core.streams.hold_session(sub, run.session.id)
        who = self._core.clients.label(sub)
        self.resolve(
            permission, chosen, decision, "client", who, client=self._core.clients.info(sub)
        )
        if decision == "allow_session" or for_seconds is not None or uses is not None:
            self._core.approvals.give(
                run.session, permission.tool_call, who, for_seconds=for_seconds, uses=uses
            )
        return ack(
            frame,
            {
                "request_id": permission_id,
                "decision": decision,
                "message": codes.MSG_PERMISSION_OK,
            },
            session_id=run.session.id,
            run_id=run.id,
        )


def _grant_terms(payload: dict[str, Any], decision: str) -> tuple[float | None, int | None]:
    """``payload.grant``: ``{"for_s": SECONDS}`` or ``{"next": COUNT}`` (contract v1.2), a
    grant that ends by time or by count, given with an allow."""
    terms = payload.get("grant")
    if terms is None:
        return None, None
    if not isinstance(terms, dict) or decision == "reject":
        raise RequestError(INVALID_ACTION, codes.msg_invalid_payload_field("grant"))
    for_s = terms.get("for_s")
    count = terms.get("next")
    if (for_s is None) == (count is None):
        raise RequestError(INVALID_ACTION, codes.msg_invalid_payload_field("grant"))
    if for_s is not None and (type(for_s) not in (int, float) or not 0 < for_s <= 366 * 86400):
        raise RequestError(INVALID_ACTION, codes.msg_invalid_payload_field("grant.for_s"))
    if count is not None and (type(count) is not int or not 0 < count <= 1_000_000):
        raise RequestError(INVALID_ACTION, codes.msg_invalid_payload_field("grant.next"))
    return (float(for_s) if for_s is not None else None), count
