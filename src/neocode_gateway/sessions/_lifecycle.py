"""Sessions on their own (contract v1.2): ``create_session``, ``set_mode``, ``delete_session``.

``set_mode`` sets a session's mode without a run (an editor's mode picker).
A front-end that is an agent to its own client (the ACP front door: an editor
asks it for a session before any prompt) needs a session without a run. It is
created with its workdir, agent, mode and the MCP servers to give the agent,
and answered once durable, as a ``run`` is. Deleting removes the session, its
log, runs and permission requests; a session with an active run is refused.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

from neocode_gateway.errors import StoreError
from neocode_gateway.protocol import (
    CONFLICT,
    INTERNAL_ERROR,
    INVALID_ACTION,
    MISSING_REQUIRED_FIELD,
    Frame,
    codes,
)
from neocode_gateway.sessions._cache import session_row
from neocode_gateway.sessions._ids import new_id
from neocode_gateway.sessions._model import Session
from neocode_gateway.sessions._runs import check_idle, check_mode, log_down, workdir_of
from neocode_gateway.sessions._subscriber import Subscriber
from neocode_gateway.sessions._wire import TITLE_MAX, RequestError, ack, opt_str, payload_of

if TYPE_CHECKING:
    from neocode_gateway.sessions._core import SessionCore

log = logging.getLogger("neocode_gateway.sessions")

#: MCP servers one session may be given (each an object, passed to the agent as it is).
MAX_MCP_SERVERS = 64


class Lifecycle:
    """``create_session`` and ``delete_session``."""

    __slots__ = ("_core",)

    def __init__(self, core: SessionCore) -> None:
        self._core = core

    def create_session(self, frame: Frame, sub: Subscriber) -> Awaitable[bytes]:
        """``create_session``: a session without a run; acked once durable."""
        core = self._core
        payload = payload_of(frame)
        agent = opt_str(payload, "agent") or core.runtimes.default
        mode = opt_str(payload, "mode")
        title = opt_str(payload, "title")
        servers = payload.get("mcp_servers")
        if servers is not None and (
            not isinstance(servers, list)
            or len(servers) > MAX_MCP_SERVERS
            or not all(isinstance(s, dict) for s in servers)
        ):
            raise RequestError(INVALID_ACTION, codes.msg_invalid_payload_field("mcp_servers"))
        workdir = workdir_of(frame.workdir) or core.config.default_workdir
        if core.runtimes.get(agent) is None:
            raise RequestError(INVALID_ACTION, codes.MSG_UNKNOWN_AGENT)
        if core.journal.failing:
            raise RequestError(INTERNAL_ERROR, log_down(core))
        session = core.cache.new(
            new_id("s"),
            (title or "untitled").strip()[:TITLE_MAX],
            workdir,
            agent,
            core.log.clock.now(),
        )
        if servers:
            session.options["mcp_servers"] = servers
        return self._create(frame, session, mode)

    async def _create(self, frame: Frame, session: Session, mode: str | None) -> bytes:
        core = self._core
        if mode is not None:
            await check_mode(session, mode)
            session.mode = mode
        core.cache.add(session)
        core.journal.session(session_row(session))
        if not await core.journal.wait_committed():
            core.journal.retract(session.id, None, 1, new=True)
            core.cache.remove(session.id)
            raise RequestError(INTERNAL_ERROR, log_down(core))
        result: dict[str, Any] = session.describe()
        if session.options.get("mcp_servers"):
            result["mcp_servers"] = len(session.options["mcp_servers"])
        return ack(frame, result, session_id=session.id)

    def set_mode(self, frame: Frame, sub: Subscriber) -> Awaitable[bytes]:
        """``set_mode``: the session's mode, checked with its agent now, applied by the
        agent at the session's next run (every run that asks for no other)."""
        session = self._core.cache.require(frame.session_id)
        mode = opt_str(payload_of(frame), "mode")
        if mode is None:
            raise RequestError(MISSING_REQUIRED_FIELD, codes.msg_missing_field("payload.mode"))
        check_idle(session)
        return self._set_mode(frame, session, mode)

    async def _set_mode(self, frame: Frame, session: Session, mode: str) -> bytes:
        await check_mode(session, mode)
        session.mode = mode
        self._core.journal.update_session(session.id, mode=mode)
        return ack(frame, session.describe(), session_id=session.id)

    def delete_session(self, frame: Frame, sub: Subscriber) -> Awaitable[bytes]:
        """``delete_session``: the session, its log, runs and permission requests."""
        session = self._core.cache.require(frame.session_id)
        check_idle(session)
        return self._delete(frame, session)

    async def _delete(self, frame: Frame, session: Session) -> bytes:
        core = self._core
        check_idle(session)  # again, and busy, in the first step (see Runs._accept)
        session.busy = True  # no run starts while it goes
        try:
            await core.journal.wait_committed()  # nothing of it still on its way to the log
            if core.journal.failing:
                raise RequestError(INTERNAL_ERROR, log_down(core))
            try:
                deleted = core.store.delete_session(session.id)
            except StoreError as exc:
                raise RequestError(
                    INTERNAL_ERROR, f"the session could not be deleted: {exc}"
                ) from None
        finally:
            session.busy = False
        if not deleted:
            raise RequestError(CONFLICT, f"session {session.id} was deleted meanwhile")
        for binding in list(session.bindings.values()):
            core.streams.drop(binding)
        core.cache.remove(session.id)
        core.approvals.forget(session.id)
        forget = getattr(session.runtime, "forget", None)
        if callable(forget):
            try:
                await forget(session)
            except Exception:  # the agent's side is best effort: the session is gone
                log.exception("runtime %s: forgetting session %s failed", session.agent, session.id)
        log.info("session %s deleted", session.id)
        return ack(frame, {"deleted": True}, session_id=session.id)
