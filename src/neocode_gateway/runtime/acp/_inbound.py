"""What an agent asks of the gateway: updates, permission requests, files and terminals.

Every request and notification from the agent comes here (one SDK task each,
in arrival order). Updates become events through the run's lane; permission
requests go to the sink after every earlier update was emitted, and their
answer is never wider than the decision (:func:`._permissions.permission_choice`).
File and terminal calls are served only during a run of the session that
asks: files on an executor of the runtime's own (bounded: a slow disk cannot
take the event loop's default pool, nor keep the gateway from exiting), and
terminals only to the run that created them.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
from collections.abc import Callable, Mapping
from typing import Any, Final

from neocode_gateway.runtime.acp import _files, _mapping, _permissions
from neocode_gateway.runtime.acp._agent import Agent
from neocode_gateway.runtime.acp._files import Refused
from neocode_gateway.runtime.acp._state import Live

log = logging.getLogger("neocode_gateway.runtime.acp")

#: Threads for file calls, per runtime.
FILE_THREADS: Final = 4


class Inbound:
    """The agent's side of the conversation, for one runtime."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None

    def close(self) -> None:
        """Drop queued file calls; a thread stuck in one is not waited for."""
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    async def handle(self, agent: Agent, method: str, params: Any, notification: bool) -> Any:
        from acp.exceptions import RequestError

        params = params if isinstance(params, dict) else {}
        if method == "session/update":
            self.on_update(agent, params)
            return None
        if method == "session/request_permission":
            return await self.on_permission(agent, params)
        serve = _CLIENT_METHODS.get(method)
        if serve is None:
            if notification:
                log.debug("agent %s: notification %s ignored", self.name, method)
                return None
            raise RequestError.method_not_found(method)
        live = agent.sessions.get(params.get("sessionId", ""))
        if live is None:
            raise RequestError(-32602, "unknown session", {"sessionId": params.get("sessionId")})
        try:
            if live.run is None or live.run.ended:
                raise Refused(f"{method} is only served during a run of the session")
            return await serve(self, agent, live, params)
        except Refused as exc:
            log.info("agent %s: %s refused: %s", self.name, method, exc.message)
            raise RequestError(exc.code, exc.message) from None
        except (TypeError, ValueError, KeyError, OSError) as exc:
            raise RequestError(-32602, f"invalid params: {exc}") from None

    def on_update(self, agent: Agent, params: Mapping[str, Any]) -> None:
        update = params.get("update")
        live = agent.sessions.get(params.get("sessionId", ""))
        if not isinstance(update, dict) or live is None:
            log.debug("agent %s: update for no live session: %s", self.name, params)
            return
        facts = _mapping.read_update(update)
        if facts.commands is not None:
            live.commands = facts.commands
            live.commands_known.set()
            if "compact" in facts.commands:
                agent.offers_compact = True
        if facts.mode is not None:
            live.modes.current = facts.mode
            if not live.loading:
                live.save(mode=facts.mode)
        if facts.context_used is not None:
            live.context_used = facts.context_used
        if live.loading:  # the history of a loaded session: not new events
            return
        if live.run is None:
            log.debug("agent %s: update outside a run: %s", self.name, update.get("sessionUpdate"))
            return
        live.run.lane.put(facts.progress)

    async def on_permission(self, agent: Agent, params: Mapping[str, Any]) -> dict[str, Any]:
        live = agent.sessions.get(params.get("sessionId", ""))
        current = live.run if live is not None else None
        if current is None or current.sink is None or current.cancel_requested or current.ended:
            return dict(_permissions.CANCELLED_ANSWER)
        tool, options = _permissions.permission_request(params)
        with contextlib.suppress(Exception):  # a failing sink fails the run, not this answer
            await current.lane.flush()  # the tool call's events go first
        if current.cancel_requested or current.ended:
            return dict(_permissions.CANCELLED_ANSWER)
        ask = asyncio.get_running_loop().create_task(current.sink.request_permission(tool, options))
        current.permissions.add(ask)
        try:
            await asyncio.wait({ask})
        except asyncio.CancelledError:
            ask.cancel()
            raise
        finally:
            current.permissions.discard(ask)
        if ask.cancelled():
            return dict(_permissions.CANCELLED_ANSWER)
        error = ask.exception()
        if error is not None:
            log.error("agent %s: permission request failed: %r", self.name, error)
            return dict(_permissions.CANCELLED_ANSWER)
        outcome = ask.result()
        choice = _permissions.permission_choice(outcome, options)
        log.info(
            "agent %s: permission for %s answered %s (decision %s by %s)%s",
            self.name,
            tool.get("tool_call_id"),
            choice.kind or "cancelled",
            outcome.decision,
            outcome.decided_by,
            f": {choice.note}" if choice.note else "",
        )
        if choice.end_turn and live is not None:  # "cancelled" means the turn ends: it must
            current.cancel_requested = True
            agent.cancel_soon(live.id)
        return choice.answer

    # -- the client methods (params validated with the SDK's models) ----------------------

    async def _in_thread(self, work: Callable[[], Any]) -> Any:
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(
                FILE_THREADS, thread_name_prefix=f"acp-{self.name}-fs"
            )
        return await asyncio.get_running_loop().run_in_executor(self._executor, work)

    async def _read_text_file(self, agent: Agent, live: Live, params: dict[str, Any]) -> Any:
        from acp.schema import ReadTextFileRequest

        request = ReadTextFileRequest.model_validate(params)
        content = await self._in_thread(
            lambda: _files.read_text(live.workdir, request.path, request.line, request.limit)
        )
        return {"content": content}

    async def _write_text_file(self, agent: Agent, live: Live, params: dict[str, Any]) -> Any:
        from acp.schema import WriteTextFileRequest

        request = WriteTextFileRequest.model_validate(params)
        await self._in_thread(
            lambda: _files.write_text(live.workdir, request.path, request.content)
        )
        return {}

    async def _create_terminal(self, agent: Agent, live: Live, params: dict[str, Any]) -> Any:
        from acp.schema import CreateTerminalRequest

        request = CreateTerminalRequest.model_validate(params)
        env = {variable.name: variable.value for variable in request.env or []}
        terminal_id = await agent.terminals.create(
            live.run,
            live.workdir,
            request.command,
            list(request.args or []),
            env=env,
            cwd=request.cwd,
            limit=request.output_byte_limit,
        )
        return {"terminalId": terminal_id}

    async def _terminal_output(self, agent: Agent, live: Live, params: dict[str, Any]) -> Any:
        return agent.terminals.output(_terminal_id(params), live.run)

    async def _wait_for_terminal_exit(
        self, agent: Agent, live: Live, params: dict[str, Any]
    ) -> Any:
        return await agent.terminals.wait(_terminal_id(params), live.run)

    async def _kill_terminal(self, agent: Agent, live: Live, params: dict[str, Any]) -> Any:
        await agent.terminals.kill(_terminal_id(params), live.run)
        return {}

    async def _release_terminal(self, agent: Agent, live: Live, params: dict[str, Any]) -> Any:
        await agent.terminals.release(_terminal_id(params), live.run)
        return {}


_CLIENT_METHODS: Final[dict[str, Any]] = {
    "fs/read_text_file": Inbound._read_text_file,
    "fs/write_text_file": Inbound._write_text_file,
    "terminal/create": Inbound._create_terminal,
    "terminal/output": Inbound._terminal_output,
    "terminal/wait_for_exit": Inbound._wait_for_terminal_exit,
    "terminal/kill": Inbound._kill_terminal,
    "terminal/release": Inbound._release_terminal,
}


def _terminal_id(params: Mapping[str, Any]) -> str:
    terminal_id = params.get("terminalId")
    if not isinstance(terminal_id, str):
        raise Refused("terminalId: expected a string")
    return terminal_id
