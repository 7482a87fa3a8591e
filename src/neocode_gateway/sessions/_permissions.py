"""Permission requests: asked by a runtime, answered by the first client, the timeout or a cancel.

A decision maps to the agent's option of exactly its kind, never a wider one:
``allow_once`` → ``allow_once``, ``allow_session`` → ``allow_always``,
``reject`` → ``reject_once`` (else ``reject_always``). An ``option_id`` picks an
exact option and must agree with the decision. What is logged is what the
agent is told.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

import msgspec

from neocode_gateway.protocol import CONFLICT, INVALID_ACTION, RESOURCE_NOT_FOUND, Frame, codes
from neocode_gateway.runtime import PermissionOption, PermissionOutcome
from neocode_gateway.sessions._ids import new_id
from neocode_gateway.sessions._model import Permission, Run
from neocode_gateway.sessions._subscriber import Subscriber
from neocode_gateway.sessions._wire import RequestError, ack, opt_str
from neocode_gateway.store import PermissionRow

if TYPE_CHECKING:
    from neocode_gateway.sessions._core import SessionCore

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
        """A runtime asks: log the request, wait for a client, the timeout or a cancel."""
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
        session = run.session
        request = {
            "request_id": permission.id,
            "tool_call": tool_call,
            "options": permission.options,
        }
        core.log.append(session, run.id, "permission_request", request)
        core.journal.permission(
            PermissionRow(
                id=permission.id,
                session_id=session.id,
                run_id=run.id,
                state="pending",
                decision=None,
                decided_by=None,
                option_id=None,
                request=msgspec.json.encode(request).decode(),
                created_at=core.log.clock.now(),
                resolved_at=None,
            )
        )
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
        self, permission: Permission, option_id: str | None, decision: str, decided_by: str
    ) -> None:
        core = self._core
        self.pending.pop(permission.id, None)
        run = permission.run
        run.permissions.pop(permission.id, None)
        if permission.timer is not None:
            permission.timer.cancel()
        core.log.append(
            run.session,
            run.id,
            "permission_resolved",
            {"request_id": permission.id, "decision": decision, "decided_by": decided_by},
        )
        core.journal.update_permission(
            permission.id,
            state="resolved",
            decision=decision,
            decided_by=decided_by,
            option_id=option_id,
            resolved_at=core.log.clock.now(),
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
        self._core.streams.hold_session(sub, run.session.id)
        self.resolve(permission, chosen, decision, "client")
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
