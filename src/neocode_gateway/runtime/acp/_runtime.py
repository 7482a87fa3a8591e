"""The bridge: one configured ACP agent behind the runtime port (the facade).

One :class:`AcpRuntime` per configured agent. The parts, each in its module:

* :mod:`._agent`: the agent process (spawn under a shepherd, ``initialize``,
  watch, stop; requests with bounded waits; ``session/cancel`` for an
  abandoned prompt) over the bounded pipes of :mod:`._stdio`;
* :mod:`._sessions`: the agent session of each gateway session (kept,
  loaded, new; ``max_live_sessions``; idle timeouts);
* :mod:`._inbound`: what the agent asks (updates -> events through
  :mod:`._mapping`, permissions, files of :mod:`._files`, terminals of
  :mod:`._terminals`);
* :mod:`._state`: the records they share.

Here: runs and compactions, one shared start of the agent (runs waiting on a
start share its outcome; a failed start is not tried again by each of them in
turn), the idle reaper, and :meth:`close`.

Why not the SDK's ``ClientSideConnection``: it validates every
``session/update`` against its schema and drops kinds it does not know, which
the contract forbids, and hands each update to its own task, which the lane
here puts back in order. The JSON-RPC engine underneath is the SDK's; the SDK
is imported only when an agent starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import tempfile
import time
from collections.abc import Mapping
from typing import Any, Final

from neocode_gateway.config import AgentConfig
from neocode_gateway.errors import CompactUnsupported, ModeUnknown, RunFailed
from neocode_gateway.runtime._port import (
    CANCELLED,
    CompactResult,
    RunInput,
    RunSink,
    RuntimeOptions,
    SessionRef,
)
from neocode_gateway.runtime.acp import _mapping, _prompt
from neocode_gateway.runtime.acp._agent import Agent, agent_env
from neocode_gateway.runtime.acp._inbound import Inbound
from neocode_gateway.runtime.acp._process import tree_rss_bytes, which
from neocode_gateway.runtime.acp._sessions import SessionTable
from neocode_gateway.runtime.acp._state import (
    RUNTIME_ERROR,
    RUNTIME_UNAVAILABLE,
    AgentError,
    Run,
    Settings,
)

log = logging.getLogger("neocode_gateway.runtime.acp")

#: How long compact waits for a just-opened session's list of commands.
COMMANDS_WAIT: Final = 3.0


class AcpRuntime:
    """A configured ACP agent as a gateway runtime (see the module docstring).

    ``options.settings`` may set any field of :class:`._state.Settings`
    (timeouts in seconds, ``max_line_bytes``). Creating one is cheap: nothing
    starts, and the ACP SDK is not imported, until the first run (or :meth:`probe`).
    """

    def __init__(
        self, name: str, agent: AgentConfig, options: RuntimeOptions | None = None
    ) -> None:
        self.name = name
        self.config = agent
        settings = dict(options.settings) if options is not None else {}
        if agent.session_idle_timeout is not None:
            settings["session_idle_timeout"] = agent.session_idle_timeout
        if agent.idle_timeout is not None:
            settings["agent_idle_timeout"] = agent.idle_timeout
        self.settings = Settings.read(settings)
        workdir = options.default_workdir if options is not None else None
        self._cwd = workdir if workdir and os.path.isdir(workdir) else None
        self._agent_now: Agent | None = None
        self._starting: asyncio.Task[Agent] | None = None
        self._runs: dict[str, Run] = {}
        self._table = SessionTable(agent, self.settings)
        self._inbound = Inbound(name)
        self._reaper: asyncio.Task[None] | None = None
        self._closed = False

    # -- the port ------------------------------------------------------------------------

    async def start(self) -> None:
        """The agent starts with its first run; a command not on PATH is said now, in the log."""
        if which(self.config.command[0], agent_env(self.config)) is None:
            log.warning(
                "agent %s: %r not found on PATH; its runs will fail until it is installed",
                self.name,
                self.config.command[0],
            )

    async def close(self) -> None:
        """Stop the agent (or its start) and everything it started; active runs end unavailable."""
        self._closed = True
        if self._reaper is not None:
            self._reaper.cancel()
        starting = self._starting
        if starting is not None and not starting.done():
            starting.cancel()  # the start stops what it spawned
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(asyncio.shield(starting), self.settings.stop_grace + 5)
        agent = self._agent_now
        if agent is not None:
            await agent.stop()
        self._table.live.clear()
        self._inbound.close()

    async def check_mode(self, session: SessionRef, mode: str) -> None:
        """Whether the session's agent session offers ``mode`` (starts it if need be)."""
        live = await self._table.get(session, await self._agent())
        if mode not in live.modes.available:
            offered = ", ".join(live.modes.available) or "none"
            raise ModeUnknown(f"agent {self.name!r} has no mode {mode!r} (its modes: {offered})")

    async def prompt(self, session: SessionRef, run: RunInput, sink: RunSink) -> str:
        """One run as one ``session/prompt``."""
        if session.id in self._runs:
            raise RunFailed(RUNTIME_ERROR, "the session already has an active run")
        current = self._runs[session.id] = Run(sink)
        try:
            return await self._prompt(session, run, current)
        finally:
            self._runs.pop(session.id, None)
            await self._end_run(current)

    async def cancel(self, session: SessionRef) -> None:
        """``session/cancel`` (of a run or a compaction); pending permissions end ``cancelled``."""
        current = self._runs.get(session.id)
        if current is None:
            return
        current.cancel_requested = True
        current.cancel_permissions()
        if current.agent is not None and current.live is not None:
            await current.agent.notify("session/cancel", {"sessionId": current.live.id})

    async def compact(self, session: SessionRef) -> CompactResult:
        """The agent's ``/compact`` command, where its commands offer one; cancellable, bounded."""
        if session.id in self._runs:
            raise RunFailed(RUNTIME_ERROR, "the session has an active run")
        current = self._runs[session.id] = Run(None)
        try:
            return await self._compact(session, current)
        finally:
            self._runs.pop(session.id, None)
            await self._end_run(current)

    # -- beyond the port -----------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """The agent process as ``status`` or a benchmark may show it."""
        agent = self._agent_now
        if agent is None or agent.dead.done():
            return {"running": False, "live_sessions": 0}
        return {
            "running": True,
            "pid": agent.child.pid,
            "started_in_s": agent.started_in,
            "live_sessions": len(agent.sessions),
            "rss_bytes": tree_rss_bytes(agent.child.pid),
        }

    async def probe(self, workdir: str | None = None) -> dict[str, Any]:
        """Start the agent, create one session in ``workdir`` (a temporary one if ``None``).

        Returns what ``agents --check`` reports: the ``initialize`` answer, the
        time it took (``start_s``), the time ``session/new`` took (``session_s``),
        the session's modes (the configured mode is not applied) and the memory
        of the agent's process tree (``rss_bytes``). Raises :class:`RunFailed` with why
        the agent could not be started. The caller closes the runtime.
        """
        agent = await self._agent()
        began = time.monotonic()
        report: dict[str, Any] = agent.info.describe()
        report["pid"] = agent.child.pid
        report["start_s"] = agent.started_in
        with contextlib.ExitStack() as stack:
            where = workdir or stack.enter_context(tempfile.TemporaryDirectory(prefix="ngw-"))
            ref = _ProbeSession(os.path.realpath(where))
            live = await self._table.get(ref, agent, configure=False)
            report["session_s"] = time.monotonic() - began
            report["modes"] = {
                "current": live.modes.current,
                "available": [
                    {"id": m, "name": live.modes.names.get(m, m)} for m in live.modes.available
                ],
            }
            report["rss_bytes"] = tree_rss_bytes(agent.child.pid)
            await self.close()
        return report

    # -- runs ----------------------------------------------------------------------------

    async def _prompt(self, session: SessionRef, run: RunInput, current: Run) -> str:
        agent = await self._agent(current)
        if current.cancel_requested:
            return CANCELLED
        live = await self._table.get(session, agent, run=current)
        if current.cancel_requested:
            return CANCELLED
        if live.run is not None:
            raise RunFailed(RUNTIME_ERROR, "the agent session is busy")
        current.agent, current.live = agent, live
        live.run = current
        try:
            reset = session.runtime_state.get("context_reset")
            if isinstance(reset, str):  # the clients learn that the agent forgot
                current.lane.put(_mapping.context_reset(reset))
                await current.lane.flush()
                live.save(context_reset=None)  # only once the event is in the log
            if run.mode and run.mode != live.modes.current:
                await self._table.set_mode(live, run.mode)
            try:
                blocks = _prompt.prompt_blocks(run, session.workdir, images=agent.info.image)
            except _prompt.InputError as exc:
                raise RunFailed(RUNTIME_ERROR, str(exc)) from None
            if current.cancel_requested:
                return CANCELLED
            try:
                result = await agent.call(
                    "session/prompt", {"sessionId": live.id, "prompt": blocks}
                )
            except AgentError as exc:
                await current.lane.flush()
                if current.cancel_requested:
                    return CANCELLED
                raise RunFailed(RUNTIME_ERROR, exc.message) from None
            except RunFailed:  # the agent died: what it said before still goes first
                with contextlib.suppress(Exception):
                    await current.lane.flush()
                raise
            response = result if isinstance(result, Mapping) else {}
            usage = _mapping.prompt_usage(response)
            if usage is not None:
                current.lane.put(usage)
            await current.lane.flush()
            reason = _mapping.stop_reason(response)
            return CANCELLED if current.cancel_requested and reason == "end_turn" else reason
        finally:
            live.run = None
            live.touch()

    async def _compact(self, session: SessionRef, current: Run) -> CompactResult:
        agent = await self._agent()
        live = await self._table.get(session, agent)
        if not live.commands_known.is_set() and not agent.offers_compact:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(COMMANDS_WAIT):
                    await live.commands_known.wait()
        if "compact" not in live.commands and not agent.offers_compact:
            raise CompactUnsupported(f"agent {self.name!r} offers no /compact command")
        if live.run is not None:
            raise RunFailed(RUNTIME_ERROR, "the session has an active run")
        current.agent, current.live = agent, live
        live.run = current
        before = live.context_used
        try:
            result = await agent.call(
                "session/prompt",
                {"sessionId": live.id, "prompt": [{"type": "text", "text": "/compact"}]},
                timeout=self.settings.compact_timeout,
            )
        except AgentError as exc:
            if current.cancel_requested:
                result = {"stopReason": "cancelled"}
            else:
                raise RunFailed(RUNTIME_ERROR, exc.message) from None
        finally:
            live.run = None
            live.touch()
        after = live.context_used
        response = result if isinstance(result, Mapping) else {}
        applied = _mapping.stop_reason(response) == "end_turn" and not current.cancel_requested
        # ACP says how many tokens the context holds (if the agent reports usage), never
        # characters: the character fields stay 0 and the tokens go beside them.
        return CompactResult(
            applied=applied, before_chars=0, after_chars=0, before_tokens=before, after_tokens=after
        )

    async def _end_run(self, current: Run) -> None:
        """Release what a prompt held; keep the table within its cap now that it is idle."""
        current.ended = True
        current.cancel_permissions()
        await current.lane.close()
        agent = current.agent
        if agent is not None:
            agent.idle_since = time.monotonic()
            await agent.terminals.release_owned_by(current)
            if not agent.dead.done() and not self._closed:
                with contextlib.suppress(Exception):
                    await self._table.make_room(agent)

    # -- the agent process ---------------------------------------------------------------

    async def _agent(self, run: Run | None = None) -> Agent:
        """The live agent, started if need be (one start, shared); ``RunFailed`` if it cannot be."""
        if self._closed:
            raise RunFailed(RUNTIME_UNAVAILABLE, f"agent {self.name!r}: the gateway is stopping")
        agent = self._agent_now
        if agent is not None and not agent.dead.done():
            return agent
        if self._starting is None or self._starting.done():
            self._starting = asyncio.get_running_loop().create_task(
                self._start_agent(), name=f"agent {self.name} start"
            )
            # Its waiters may all have been cancelled: the outcome is still retrieved.
            self._starting.add_done_callback(lambda t: t.cancelled() or t.exception())
        if run is not None:
            await run.phase("starting_agent")
        return await asyncio.shield(self._starting)

    async def _start_agent(self) -> Agent:
        agent = await Agent.start(self.config, self._cwd, self.settings, self._inbound.handle)
        if self._closed:  # closed while it started: not to be kept
            await agent.stop()
            raise RunFailed(RUNTIME_UNAVAILABLE, f"agent {self.name!r}: the gateway is stopping")
        agent.dead.add_done_callback(lambda _: self._table.forget_agent(agent))
        self._agent_now = agent
        if self._reaper is None or self._reaper.done():
            self._reaper = asyncio.get_running_loop().create_task(
                self._reap(), name=f"agent {self.name} idle reaper"
            )
        return agent

    async def _reap(self) -> None:
        """Close idle sessions, then stop an agent that has none and no run, when idle too long."""
        timeouts = [
            t
            for t in (self.settings.session_idle_timeout, self.settings.agent_idle_timeout)
            if t > 0
        ]
        if not timeouts:
            return
        period = min(max(min(timeouts) / 4, 0.05), 30.0)
        while not self._closed:
            await asyncio.sleep(period)
            agent = self._agent_now
            if agent is None or agent.dead.done():
                continue
            await self._table.reap_idle(agent)
            limit = self.settings.agent_idle_timeout
            busy = bool(self._runs) or bool(agent.sessions)
            if busy:
                agent.idle_since = time.monotonic()
            elif limit > 0 and time.monotonic() - agent.idle_since >= limit:
                log.info("agent %s: idle for %gs, stopped", self.name, limit)
                self._agent_now = None
                await agent.stop()


class _ProbeSession:
    """A throwaway gateway session for :meth:`AcpRuntime.probe`."""

    def __init__(self, workdir: str) -> None:
        self.id = "probe"
        self.workdir = workdir
        self._state: dict[str, Any] = {}

    @property
    def runtime_state(self) -> Mapping[str, Any]:
        return self._state

    def save_runtime_state(self, state: Mapping[str, Any]) -> None:
        self._state = dict(state)


__all__ = ["AcpRuntime"]
