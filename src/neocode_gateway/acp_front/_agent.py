"""The ACP agent an editor talks to: every method answered with the gateway's contract.

:class:`FrontDoor` implements the SDK's ``Agent`` protocol. It keeps no
conversation of its own: a ``session/new`` is a gateway ``create_session``,
a ``session/prompt`` a ``run``, ``session/load`` a replay of the session's
event log; which sessions this editor follows, and the mode it asked for
until the next run carries it, are all it remembers. Errors of the gateway
become JSON-RPC errors whose message carries the contract's code and message,
so the editor shows the gateway's own words.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import uuid
from collections.abc import AsyncIterator
from typing import Any, cast

from acp import RequestError, run_agent
from acp.interfaces import Agent, Client
from acp.schema import (
    CloseSessionResponse,
    InitializeResponse,
    ListSessionsResponse,
    LoadSessionResponse,
    NewSessionResponse,
    PromptResponse,
    RequestPermissionRequest,
    ResumeSessionResponse,
    SessionInfo,
    SessionModeState,
    SessionNotification,
    SetSessionModeResponse,
)
from pydantic import BaseModel, ValidationError

from neocode_gateway.acp_front import _mapping
from neocode_gateway.acp_front._follow import GatewayWentAway, SessionFollower
from neocode_gateway.acp_front._link import GatewayDown, GatewayLink
from neocode_gateway.client import AsyncGatewayClient, ErrorFrameReceived
from neocode_gateway.errors import ClientError

log = logging.getLogger("neocode_gateway.acp_front")

#: Gateway sessions read per ``session/list`` page before filtering by ``cwd``.
LIST_PAGE = 50
#: Pages read at most for one filtered ``session/list`` answer.


@contextlib.asynccontextmanager
async def gateway_errors(what: str) -> AsyncIterator[None]:
    """Turn the client library's exceptions into JSON-RPC errors that say what happened."""
    try:
        yield
    except ErrorFrameReceived as exc:
        raise RequestError(_mapping.jsonrpc_code(exc.code), f"{exc.code}: {exc.message}") from None
    except GatewayDown as exc:
        raise RequestError(_mapping.JSONRPC_INTERNAL_ERROR, f"gateway unavailable: {exc}") from None
    except ClientError as exc:
        raise RequestError(
            _mapping.JSONRPC_INTERNAL_ERROR,
            f"the gateway went away during {what} ({exc}); the next request reconnects",
        ) from None


class _SdkEditor:
    """The follower's ``Editor``, on the SDK's connection."""

    def __init__(self, conn: Client) -> None:
        self.conn = conn

    async def update(self, session_id: str, update: dict[str, Any]) -> None:
        try:
            notification = SessionNotification.model_validate(
                {"sessionId": session_id, "update": update}
            )
        except ValidationError as exc:
            log.warning("update not sent (not valid ACP): %s", exc.errors()[:1])
            return
        await self.conn.session_update(session_id=session_id, update=notification.update)

    async def ask(self, params: dict[str, Any]) -> str | None:
        request = RequestPermissionRequest.model_validate(params)
        answer = await self.conn.request_permission(
            session_id=request.session_id, tool_call=request.tool_call, options=request.options
        )
        outcome = answer.outcome
        return getattr(outcome, "option_id", None) if outcome.outcome == "selected" else None


class _Attached:
    """A session this editor follows."""

    __slots__ = ("follower", "mode")

    def __init__(self, follower: SessionFollower, mode: str | None) -> None:
        self.follower = follower
        self.mode = mode


def _modes(mode: str | None) -> SessionModeState | None:
    """The modes to offer: the session's current one only (the contract lists no others)."""
    if not mode:
        return None
    return SessionModeState.model_validate(
        {"currentModeId": mode, "availableModes": [{"id": mode, "name": mode}]}
    )


class FrontDoor:
    """The ACP agent (see the module docstring)."""

    def __init__(
        self,
        link: GatewayLink,
        *,
        agent: str | None = None,
        mode: str | None = None,
        version: str = "0",
    ) -> None:
        self.link = link
        self.agent = agent
        self.mode = mode
        self.version = version
        self.client_capabilities: Any = None
        self._conn: Client | None = None
        self._editor: _SdkEditor | None = None
        self._sessions: dict[str, _Attached] = {}

    def on_connect(self, conn: Client) -> None:
        self._conn = conn
        self._editor = _SdkEditor(conn)

    # -- initialize ------------------------------------------------------------------------

    async def initialize(
        self,
        protocol_version: int,
        client_capabilities: Any = None,
        client_info: Any = None,
        **kwargs: Any,
    ) -> InitializeResponse:
        self.client_capabilities = client_capabilities
        return InitializeResponse.model_validate(_mapping.initialize_result(self.version))

    # -- sessions ----------------------------------------------------------------------------

    async def new_session(
        self,
        cwd: str,
        additional_directories: list[str] | None = None,
        mcp_servers: list[Any] | None = None,
        **kwargs: Any,
    ) -> NewSessionResponse:
        if not isinstance(cwd, str) or not os.path.isabs(cwd) or not os.path.isdir(cwd):
            raise RequestError.invalid_params(
                {"cwd": cwd, "message": "cwd must be an absolute path to an existing directory"}
            )
        servers = [_dump(server) for server in mcp_servers or []]
        async with gateway_errors("session/new"):
            client = await self.link.client()
            session = await client.create_session(
                workdir=cwd, agent=self.agent, mode=self.mode, mcp_servers=servers or None
            )
            session_id = str(session["id"])
            await self._attach(client, session_id, session.get("mode"), after_seq=0)
        return NewSessionResponse(session_id=session_id, modes=_modes(session.get("mode")))

    async def load_session(
        self,
        cwd: str,
        session_id: str,
        mcp_servers: list[Any] | None = None,
        additional_directories: list[str] | None = None,
        **kwargs: Any,
    ) -> LoadSessionResponse:
        async with gateway_errors("session/load"):
            client = await self.link.client()
            session = await self._lookup(client, session_id)
            attached = await self._attach(client, session_id, session.get("mode"), after_seq=0)
            await attached.follower.caught_up()
        return LoadSessionResponse(modes=_modes(attached.mode))

    async def resume_session(
        self,
        session_id: str,
        cwd: str,
        additional_directories: list[str] | None = None,
        mcp_servers: list[Any] | None = None,
        **kwargs: Any,
    ) -> ResumeSessionResponse:
        async with gateway_errors("session/resume"):
            client = await self.link.client()
            session = await self._lookup(client, session_id)
            attached = await self._attach(client, session_id, session.get("mode"), after_seq=None)
        return ResumeSessionResponse(modes=_modes(attached.mode))

    async def close_session(self, session_id: str, **kwargs: Any) -> CloseSessionResponse:
        attached = self._sessions.pop(session_id, None)
        if attached is not None:
            await attached.follower.stop()
        return CloseSessionResponse()

    async def list_sessions(
        self, cwd: str | None = None, cursor: str | None = None, **kwargs: Any
    ) -> ListSessionsResponse:
        """The gateway's sessions, newest first, of ``cwd`` when given (the gateway filters)."""
        async with gateway_errors("session/list"):
            client = await self.link.client()
            page = await client.list_sessions(
                limit=LIST_PAGE, cursor=cursor, workdir=os.path.abspath(cwd) if cwd else None
            )
        found = [_session_info(session) for session in page.get("sessions", [])]
        return ListSessionsResponse(sessions=found, next_cursor=page.get("next_cursor") or None)

    async def set_session_mode(
        self, session_id: str, mode_id: str, **kwargs: Any
    ) -> SetSessionModeResponse:
        """The session's mode, set in the gateway (``set_mode``): checked by the agent now,
        applied at the next run, whichever client sends it."""
        async with gateway_errors("session/set_mode"):
            client = await self.link.client()
            await client.set_mode(session_id, mode_id)
        return SetSessionModeResponse()

    # -- runs --------------------------------------------------------------------------------

    async def prompt(self, session_id: str, prompt: list[Any], **kwargs: Any) -> PromptResponse:
        try:
            text, parts = _mapping.prompt_input([_dump(block) for block in prompt])
        except _mapping.PromptError as exc:
            raise RequestError.invalid_params({"message": str(exc)}) from None
        run_id = f"acp-{uuid.uuid4().hex[:16]}"
        async with gateway_errors("session/prompt"):
            client = await self.link.client()
            attached = await self._following(client, session_id)
            follower = attached.follower
            terminal = follower.expect(run_id)
            frame: dict[str, Any] = {"action": "run", "session_id": session_id, "run_id": run_id}
            if text is not None:
                frame["input_text"] = text
            else:
                frame["input_parts"] = parts
            try:
                await client.request(frame)
            except BaseException:
                follower.forget(run_id)
                raise
        try:
            event = await terminal
        except GatewayWentAway as exc:
            raise RequestError(
                _mapping.JSONRPC_INTERNAL_ERROR,
                f"the gateway went away during the prompt ({exc}); the run may go on there, "
                "and the next request reconnects",
            ) from None
        outcome = _mapping.stop_reason(event.event_type, event.data)
        if isinstance(outcome, tuple):
            code, message = outcome
            raise RequestError(_mapping.JSONRPC_INTERNAL_ERROR, f"{code}: {message}")
        return PromptResponse(stop_reason=outcome)  # type: ignore[arg-type]

    async def cancel(self, session_id: str, **kwargs: Any) -> None:
        with contextlib.suppress(ClientError, GatewayDown):
            client = await self.link.client()
            await client.cancel(session_id=session_id)

    # -- following ---------------------------------------------------------------------------

    async def _lookup(self, client: AsyncGatewayClient, session_id: str) -> dict[str, Any]:
        """The session's fields (``resource_not_found`` if the gateway has no such session)."""
        try:
            ack = await client.request(
                {"action": "load_session", "session_id": session_id, "payload": {"limit": 1}}
            )
        except ErrorFrameReceived as exc:
            if exc.code == "resource_not_found":
                raise RequestError.resource_not_found(session_id) from None
            raise
        return ack.payload if isinstance(ack.payload, dict) else {}

    async def _attach(
        self,
        client: AsyncGatewayClient,
        session_id: str,
        mode: Any,
        *,
        after_seq: int | None,
    ) -> _Attached:
        old = self._sessions.pop(session_id, None)
        if old is not None:
            await old.follower.stop()
        assert self._editor is not None, "on_connect sets the editor"
        follower = SessionFollower(session_id, self._editor, self._resolve)
        attached = _Attached(follower, mode if isinstance(mode, str) else None)
        await follower.start(client, self.link.generation, after_seq=after_seq)
        self._sessions[session_id] = attached
        return attached

    async def _following(self, client: AsyncGatewayClient, session_id: str) -> _Attached:
        """The session, followed on the current connection (bound again after a reconnect)."""
        attached = self._sessions.get(session_id)
        if attached is None:
            session = await self._lookup(client, session_id)
            return await self._attach(client, session_id, session.get("mode"), after_seq=None)
        follower = attached.follower
        if not follower.alive or follower.generation != self.link.generation:
            await follower.start(client, self.link.generation, after_seq=follower.last_seq)
            await follower.caught_up()
        return attached

    async def _resolve(self, permission_id: str, decision: str, option_id: str) -> None:
        client = await self.link.client()
        await client.resolve_permission(permission_id, decision, option_id=option_id)

    async def shutdown(self) -> None:
        """The editor is gone: stop following (runs go on in the gateway), close the link."""
        for attached in self._sessions.values():
            with contextlib.suppress(Exception):
                await attached.follower.stop()
        self._sessions.clear()
        await self.link.close()


def _dump(value: Any) -> dict[str, Any]:
    if isinstance(value, BaseModel):
        dumped: dict[str, Any] = value.model_dump(by_alias=True, exclude_none=True, mode="json")
        return dumped
    return dict(value) if isinstance(value, dict) else {}


def _session_info(session: dict[str, Any]) -> SessionInfo:
    return SessionInfo.model_validate(
        {
            "sessionId": str(session.get("id")),
            "cwd": str(session.get("workdir", "")),
            "title": session.get("title"),
            "updatedAt": session.get("updated_at"),
        }
    )


async def run_connection(
    front: FrontDoor, writer: asyncio.StreamWriter, reader: asyncio.StreamReader
) -> None:
    """The SDK's agent connection on the editor's streams, until the editor closes them."""
    # FrontDoor serves a part of the Agent protocol on purpose: the SDK answers the
    # methods it lacks (fork, authenticate, config options) with method-not-found.
    await run_agent(cast(Agent, front), writer, reader, use_unstable_protocol=True)
