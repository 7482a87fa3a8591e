"""The session table: which agent session is live for which gateway session, and for how long.

One agent session per gateway session, live in the current agent process:
kept, loaded (``session/load``, where the agent can) or new (and the reset of
the agent's context is saved with the session, until a run has told the
clients). Opening is serialized per gateway session; the table stays within
``max_live_sessions`` when a session opens and when a run ends (least
recently used idle sessions are closed), and idle sessions are closed after
``session_idle_timeout``. A ``session/new`` or ``session/load`` answered after
its caller gave up (a forced cancel) is closed, not left live and unknown.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Coroutine, Mapping
from typing import Any

from neocode_gateway.config import AgentConfig
from neocode_gateway.errors import RunFailed
from neocode_gateway.runtime._port import SessionRef
from neocode_gateway.runtime.acp import _capabilities
from neocode_gateway.runtime.acp._agent import Agent
from neocode_gateway.runtime.acp._state import (
    RUNTIME_ERROR,
    RUNTIME_UNAVAILABLE,
    AgentError,
    Live,
    Run,
    Settings,
)

log = logging.getLogger("neocode_gateway.runtime.acp")


class SessionTable:
    """The live agent sessions of one runtime, by gateway session id."""

    def __init__(self, config: AgentConfig, settings: Settings) -> None:
        self.name = config.name
        self.config = config
        self.settings = settings
        self.live: dict[str, Live] = {}
        # One lock per gateway session being opened; gone once nobody holds it.
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    async def get(
        self, ref: SessionRef, agent: Agent, *, configure: bool = True, run: Run | None = None
    ) -> Live:
        """The live agent session of ``ref``: kept, loaded, or new.

        ``configure``: set the configured mode on a new agent session; ``run``
        is told the phase (``loading_session``, ``creating_session``).
        """
        lock = self._locks.get(ref.id)
        if lock is None:
            lock = self._locks[ref.id] = asyncio.Lock()
        async with lock:
            live = self.live.get(ref.id)
            if live is not None and live.agent is agent and live.id in agent.sessions:
                live.ref = ref
                live.touch()
                return live
            self.live.pop(ref.id, None)
            await self.make_room(agent, spare=1)
            live = await self._open(ref, agent, configure, run)
            self.live[ref.id] = live
            return live

    def forget_agent(self, agent: Agent) -> None:
        """The agent is gone: none of its sessions is live any more."""
        for live in agent.sessions.values():
            if self.live.get(live.ref.id) is live:
                del self.live[live.ref.id]
        agent.sessions.clear()

    async def _open(self, ref: SessionRef, agent: Agent, configure: bool, run: Run | None) -> Live:
        saved = ref.runtime_state.get("agent_session_id")
        reset: str | None = None
        if isinstance(saved, str) and saved:
            if agent.info.load_session:
                if run is not None:
                    await run.phase("loading_session")
                loaded = await self._load(ref, agent, saved)
                if loaded is not None:
                    return loaded
                reset = f"agent {self.name!r} could not load its session {saved}"
            else:
                reset = f"agent {self.name!r} cannot load sessions"
                log.warning(
                    "agent %s cannot load sessions: gateway session %s gets a new agent "
                    "session; the agent's context was reset",
                    self.name,
                    ref.id,
                )
        if run is not None:
            await run.phase("creating_session")
        try:
            live: Live = await self._shielded(agent, self._new(ref, agent))
        except AgentError as exc:
            raise RunFailed(
                RUNTIME_UNAVAILABLE, f"agent {self.name!r} cannot start a session: {exc.message}"
            ) from None
        session_id = live.id
        # The reset is kept with the session until a run has told the clients.
        live.save(agent_session_id=session_id, mode=live.modes.current, context_reset=reset)
        log.info(
            "agent %s: new session %s for gateway session %s in %s",
            self.name,
            session_id,
            ref.id,
            ref.workdir,
        )
        if configure and self.config.mode and self.config.mode != live.modes.current:
            if self.config.mode not in live.modes.available:
                offered = ", ".join(live.modes.available) or "none"
                raise RunFailed(
                    RUNTIME_ERROR,
                    f"agent {self.name!r} has no mode {self.config.mode!r} (its modes: "
                    f"{offered}); fix the mode of agents.{self.name} in the configuration",
                )
            await self.set_mode(live, self.config.mode)
        return live

    async def _load(self, ref: SessionRef, agent: Agent, session_id: str) -> Live | None:
        """``session/load``; ``None`` (and the reset logged) if the agent cannot load it."""
        live = Live(ref, session_id, agent)
        live.loading = True
        agent.sessions[session_id] = live
        try:
            await self._shielded(agent, self._load_request(agent, live))
        except AgentError as exc:
            agent.sessions.pop(session_id, None)
            log.warning(
                "agent %s could not load session %s of gateway session %s (%s): a new agent "
                "session starts; the agent's context was reset",
                self.name,
                session_id,
                ref.id,
                exc.message,
            )
            return None
        except BaseException:
            agent.sessions.pop(session_id, None)
            raise
        finally:
            live.loading = False
        log.info(
            "agent %s: session %s loaded for gateway session %s", self.name, session_id, ref.id
        )
        wanted = ref.runtime_state.get("mode")
        if (
            isinstance(wanted, str)
            and wanted != live.modes.current
            and wanted in live.modes.available
        ):
            await self.set_mode(live, wanted)
        return live

    async def _new(self, ref: SessionRef, agent: Agent) -> Live:
        """``session/new``; the session is in the agent's table before any update of it is read."""
        result = await agent.call(
            "session/new",
            {"cwd": ref.workdir, "mcpServers": _mcp_servers(ref)},
            timeout=self.settings.session_timeout,
        )
        session_id = result.get("sessionId") if isinstance(result, Mapping) else None
        if not isinstance(session_id, str) or not session_id:
            raise RunFailed(RUNTIME_ERROR, f"agent {self.name!r} answered session/new without id")
        live = Live(ref, session_id, agent)
        agent.sessions[session_id] = live
        live.modes = _capabilities.parse_modes(result)
        return live

    async def _load_request(self, agent: Agent, live: Live) -> Live:
        result = await agent.call(
            "session/load",
            {"sessionId": live.id, "cwd": live.workdir, "mcpServers": _mcp_servers(live.ref)},
            timeout=self.settings.session_timeout,
        )
        modes = _capabilities.parse_modes(result)
        if modes.available:
            live.modes = modes
        return live

    async def _shielded(self, agent: Agent, work: Coroutine[Any, Any, Any]) -> Any:
        """``work`` (a ``session/new`` or ``session/load``) in a task of its own: if the caller
        gives up, a late answer's agent session is closed (else it stays live, unknown)."""
        task = asyncio.get_running_loop().create_task(work)
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            task.add_done_callback(lambda t: self._close_late(agent, t))
            raise

    def _close_late(self, agent: Agent, task: asyncio.Task[Any]) -> None:
        if task.cancelled() or task.exception() is not None:
            return
        live = task.result()
        if not isinstance(live, Live) or agent.sessions.get(live.id) is not live:
            return
        agent.sessions.pop(live.id, None)
        log.info("agent %s: session %s answered after its run ended: closed", self.name, live.id)
        agent.background(self._close_session(agent, live.id))

    async def set_mode(self, live: Live, mode: str) -> None:
        if live.modes.available and mode not in live.modes.available:
            raise RunFailed(RUNTIME_ERROR, f"agent {self.name!r} has no mode {mode!r}")
        try:
            await live.agent.call(
                "session/set_mode",
                {"sessionId": live.id, "modeId": mode},
                timeout=self.settings.session_timeout,
            )
        except AgentError as exc:
            raise RunFailed(
                RUNTIME_ERROR, f"agent {self.name!r} cannot switch to mode {mode!r}: {exc.message}"
            ) from None
        live.modes.current = mode
        live.save(mode=mode)

    async def make_room(self, agent: Agent, spare: int = 0) -> None:
        """Close least recently used idle sessions until ``max_live_sessions - spare`` remain."""
        limit = self.config.max_live_sessions - spare
        while True:
            live = [s for s in agent.sessions.values() if not s.loading]
            if len(live) <= limit:
                return
            idle = [s for s in live if s.run is None and not self._opening(s)]
            if not idle:
                log.warning(
                    "agent %s: %d live sessions, all busy (max_live_sessions %d): one more",
                    self.name,
                    len(live),
                    self.config.max_live_sessions,
                )
                return
            await self.close(min(idle, key=lambda s: s.last_used), "max_live_sessions")

    async def reap_idle(self, agent: Agent) -> None:
        """Close the sessions idle for longer than ``session_idle_timeout``."""
        timeout = self.settings.session_idle_timeout
        if timeout <= 0:
            return
        now = time.monotonic()
        for live in list(agent.sessions.values()):
            idle = live.run is None and not live.loading and not self._opening(live)
            if idle and now - live.last_used >= timeout:
                await self.close(live, f"idle for {timeout:g}s")

    def _opening(self, live: Live) -> bool:
        lock = self._locks.get(live.ref.id)
        return lock is not None and lock.locked()

    async def close(self, victim: Live, why: str) -> None:
        agent = victim.agent
        agent.sessions.pop(victim.id, None)
        if self.live.get(victim.ref.id) is victim:
            del self.live[victim.ref.id]
        log.info(
            "agent %s: closing idle session %s of gateway session %s (%s)",
            self.name,
            victim.id,
            victim.ref.id,
            why,
        )
        await self._close_session(agent, victim.id)

    async def _close_session(self, agent: Agent, session_id: str) -> None:
        if not agent.info.close_session or agent.dead.done():
            return
        try:
            await agent.call("session/close", {"sessionId": session_id}, timeout=30.0)
        except (AgentError, RunFailed) as exc:
            log.warning("agent %s: session/close failed: %s", self.name, exc)


def _mcp_servers(ref: SessionRef) -> list[Any]:
    """The MCP servers the session was created with (contract v1.2 ``create_session``), as
    the agent is to get them; a session reference that has none gives none."""
    servers = getattr(ref, "mcp_servers", None)
    return list(servers) if isinstance(servers, list) else []
