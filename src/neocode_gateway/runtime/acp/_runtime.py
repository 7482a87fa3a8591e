"""The bridge: one configured ACP agent behind the runtime port.

One :class:`AcpRuntime` per configured agent. It starts the agent's process
on first use (its own process group, stderr drained, a 64 MiB line limit),
speaks JSON-RPC to it with the SDK's connection (``acp.core.Connection``),
and keeps one *agent session* per gateway session, live in that process:

* a run becomes ``session/prompt``; the agent's ``session/update``s become
  ``run_progress`` events (:mod:`._mapping`), emitted in the order received
  through one lane per run; ``session/request_permission`` goes to the sink
  after every earlier update was emitted, and its outcome back to the agent;
* the agent's own session id is saved with the gateway session; a session
  that is not live (gateway or agent restarted, session evicted) is brought
  back with ``session/load`` where the agent can (the history it replays is
  not logged again), else a new agent session is started and the reset of the
  agent's context is logged;
* an agent that dies ends its runs with ``runtime_unavailable`` and its last
  stderr lines, and is started again by the next run; :meth:`close` stops it
  (stdin closed, SIGTERM, SIGKILL) and everything it started.

Why not the SDK's ``ClientSideConnection``: it validates every
``session/update`` against its schema and drops (with a traceback in the log)
kinds it does not know, which the contract forbids; it also hands each update
to its own task, which the lane here puts back in order. The JSON-RPC engine
underneath is the SDK's; the SDK is imported only when an agent starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import tempfile
import time
import weakref
from collections import deque
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

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
from neocode_gateway.runtime.acp import _client, _mapping
from neocode_gateway.runtime.acp._process import ChildProcess, SpawnError, tree_rss_bytes, which

if TYPE_CHECKING:
    from acp.core import Connection

log = logging.getLogger("neocode_gateway.runtime.acp")

RUNTIME_ERROR: Final = "runtime_error"
RUNTIME_UNAVAILABLE: Final = "runtime_unavailable"

#: ``initialize`` must be answered within this (a real agent answers in about 0.3 s).
DEFAULT_START_TIMEOUT: Final = 60.0
#: ``session/new``, ``session/load`` and ``session/set_mode`` must be answered within this.
DEFAULT_SESSION_TIMEOUT: Final = 120.0
#: How long compact waits for a just-opened session's list of commands.
COMMANDS_WAIT: Final = 3.0
#: Each step of stopping an agent (stdin EOF, SIGTERM, SIGKILL) waits this long.
DEFAULT_STOP_GRACE: Final = 3.0


class _AgentError(Exception):
    """The agent answered a request with a JSON-RPC error."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class _Lane:
    """A run's events, emitted one at a time in the order the agent sent them.

    :meth:`put` never waits (it is called from the SDK's per-message tasks, in
    arrival order); one drain task awaits the sink, which applies the core's
    back-pressure.
    """

    def __init__(self, sink: RunSink | None) -> None:
        self._sink = sink
        self._queue: deque[dict[str, Any]] = deque()
        self._task: asyncio.Task[None] | None = None
        self.error: BaseException | None = None
        self.closed = False

    def put(self, data: dict[str, Any]) -> None:
        if self._sink is None or self.closed or self.error is not None:
            return
        self._queue.append(data)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        assert self._sink is not None
        while self._queue:
            try:
                await self._sink.emit(self._queue[0])
            except Exception as exc:
                self.error = exc
                self._queue.clear()
                return
            if self._queue:
                self._queue.popleft()

    async def flush(self) -> None:
        """Wait until everything put so far was emitted; raise what the sink raised."""
        while self._task is not None and not self._task.done():
            # wait(), not the task itself: a lane closed meanwhile must not cancel the caller.
            await asyncio.wait({self._task})
        if self.error is not None:
            raise self.error

    async def close(self) -> None:
        self.closed = True
        self._queue.clear()
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


class _Run:
    """What one prompt (a run, or a compaction) holds while it is in flight."""

    def __init__(self, sink: RunSink | None) -> None:
        self.sink = sink
        self.lane = _Lane(sink)
        self.permissions: set[asyncio.Task[Any]] = set()
        self.cancel_requested = False
        self.ended = False
        self.live: _Live | None = None
        self.agent: _Agent | None = None

    def cancel_permissions(self) -> None:
        """Answer every pending permission request ``cancelled`` (ACP requires it)."""
        for task in list(self.permissions):
            task.cancel()


class _Live:
    """An agent session that is live in the current agent process."""

    def __init__(self, ref: SessionRef, agent_session_id: str, agent: _Agent) -> None:
        self.ref = ref
        self.id = agent_session_id
        self.agent = agent
        self.workdir = ref.workdir
        self.modes = _mapping.Modes()
        self.commands: list[str] = []
        # Set by the agent's first available_commands_update, which agents send just after
        # session/new or session/load answered: compact waits for it a moment.
        self.commands_known = asyncio.Event()
        self.context_used: int | None = None
        # Why the agent lost this session's context (a new agent session replaced the saved
        # one); told to the clients by the next run, then cleared.
        self.context_reset: str | None = None
        self.loading = False
        self.run: _Run | None = None
        self.last_used = time.monotonic()

    def touch(self) -> None:
        self.last_used = time.monotonic()

    def save(self, **changes: Any) -> None:
        state = dict(self.ref.runtime_state)
        if any(state.get(k) != v for k, v in changes.items()):
            state.update(changes)
            self.ref.save_runtime_state(state)


class _Agent:
    """One agent process (a generation: a restart makes a new one)."""

    def __init__(self, name: str, child: ChildProcess) -> None:
        self.name = name
        self.child = child
        self.conn: Connection | None = None
        self.info = _mapping.AgentInfo()
        self.sessions: dict[str, _Live] = {}
        self.terminals = _client.Terminals(f"agent {name}")
        self.dead: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.failure = f"agent {name!r} is not running"
        self.offers_compact = False
        self.started_in: float | None = None
        self.stopping = False
        self.watcher: asyncio.Task[None] | None = None


class AcpRuntime:
    """A configured ACP agent as a gateway runtime (see the module docstring).

    ``options.settings`` may set ``start_timeout``, ``session_timeout`` and
    ``stop_grace`` (seconds). Creating one is cheap: nothing starts, and the
    ACP SDK is not imported, until the first run (or :meth:`probe`).
    """

    def __init__(
        self, name: str, agent: AgentConfig, options: RuntimeOptions | None = None
    ) -> None:
        self.name = name
        self.config = agent
        settings: Mapping[str, Any] = options.settings if options is not None else {}
        self.start_timeout = float(settings.get("start_timeout", DEFAULT_START_TIMEOUT))
        self.session_timeout = float(settings.get("session_timeout", DEFAULT_SESSION_TIMEOUT))
        self.stop_grace = float(settings.get("stop_grace", DEFAULT_STOP_GRACE))
        workdir = options.default_workdir if options is not None else None
        self._cwd = workdir if workdir and os.path.isdir(workdir) else None
        self._agent_now: _Agent | None = None
        self._start_lock: asyncio.Lock | None = None
        self._live: dict[str, _Live] = {}
        self._runs: dict[str, _Run] = {}
        # One lock per gateway session being opened; gone once nobody holds it.
        self._session_locks: weakref.WeakValueDictionary[str, asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )
        self._closed = False

    # -- the port ------------------------------------------------------------------------

    async def start(self) -> None:
        """The agent starts with its first run; a command not on PATH is said now, in the log."""
        env = dict(os.environ)
        env.update(self.config.env)
        if which(self.config.command[0], env) is None:
            log.warning(
                "agent %s: %r not found on PATH; its runs will fail until it is installed",
                self.name,
                self.config.command[0],
            )

    async def close(self) -> None:
        """Stop the agent and everything it started; runs still active end unavailable."""
        self._closed = True
        agent = self._agent_now
        if agent is not None:
            await self._stop_agent(agent)
        self._live.clear()

    async def check_mode(self, session: SessionRef, mode: str) -> None:
        """Whether the session's agent session offers ``mode`` (starts it if need be)."""
        agent = await self._agent()
        live = await self._session(session, agent)
        if mode not in live.modes.available:
            offered = ", ".join(live.modes.available) or "none"
            raise ModeUnknown(f"agent {self.name!r} has no mode {mode!r} (its modes: {offered})")

    async def prompt(self, session: SessionRef, run: RunInput, sink: RunSink) -> str:
        """One run as one ``session/prompt`` (see the module docstring)."""
        if session.id in self._runs:
            raise RunFailed(RUNTIME_ERROR, "the session already has an active run")
        current = _Run(sink)
        self._runs[session.id] = current
        try:
            return await self._prompt(session, run, current)
        finally:
            self._runs.pop(session.id, None)
            await self._end_run(current)

    async def cancel(self, session: SessionRef) -> None:
        """``session/cancel``; pending permission requests are answered ``cancelled``."""
        current = self._runs.get(session.id)
        if current is None:
            return
        current.cancel_requested = True
        current.cancel_permissions()
        agent, live = current.agent, current.live
        if agent is not None and live is not None and agent.conn is not None:
            with contextlib.suppress(ConnectionError, RuntimeError):
                await agent.conn.send_notification("session/cancel", {"sessionId": live.id})

    async def compact(self, session: SessionRef) -> CompactResult:
        """The agent's ``/compact`` command, where its available commands offer one."""
        agent = await self._agent()
        live = await self._session(session, agent)
        if not live.commands_known.is_set() and not agent.offers_compact:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(COMMANDS_WAIT):
                    await live.commands_known.wait()
        if "compact" not in live.commands and not agent.offers_compact:
            raise CompactUnsupported(f"agent {self.name!r} offers no /compact command")
        if live.run is not None:
            raise RunFailed(RUNTIME_ERROR, "the session has an active run")
        current = _Run(None)
        current.agent, current.live = agent, live
        live.run = current
        before = live.context_used
        try:
            result = await self._call(
                agent,
                "session/prompt",
                {"sessionId": live.id, "prompt": [{"type": "text", "text": "/compact"}]},
            )
        except _AgentError as exc:
            raise RunFailed(RUNTIME_ERROR, exc.message) from None
        finally:
            live.run = None
            live.touch()
            await self._end_run(current)
        after = live.context_used
        applied = _mapping.stop_reason(result if isinstance(result, Mapping) else {}) == "end_turn"
        # ACP says how many tokens the context holds (if the agent reports usage), never
        # characters: the character fields stay 0 and the tokens go beside them.
        return CompactResult(
            applied=applied, before_chars=0, after_chars=0, before_tokens=before, after_tokens=after
        )

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
            live = await self._session(ref, agent, configure=False)
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

    async def _prompt(self, session: SessionRef, run: RunInput, current: _Run) -> str:
        agent = await self._agent()
        if current.cancel_requested:
            return CANCELLED
        live = await self._session(session, agent)
        if current.cancel_requested:
            return CANCELLED
        if live.run is not None:
            raise RunFailed(RUNTIME_ERROR, "the agent session is busy")
        current.agent, current.live = agent, live
        live.run = current
        try:
            if live.context_reset is not None:  # the clients learn that the agent forgot
                current.lane.put(
                    {
                        "kind": "session_info",
                        "context_reset": True,
                        "message": f"{live.context_reset}: it starts this session afresh, "
                        "without the earlier conversation",
                    }
                )
                live.context_reset = None
            if run.mode and run.mode != live.modes.current:
                await self._set_mode(live, run.mode)
            try:
                blocks = _mapping.prompt_blocks(run, session.workdir, images=agent.info.image)
            except _mapping.InputError as exc:
                raise RunFailed(RUNTIME_ERROR, str(exc)) from None
            if current.cancel_requested:
                return CANCELLED
            try:
                result = await self._call(
                    agent, "session/prompt", {"sessionId": live.id, "prompt": blocks}
                )
            except _AgentError as exc:
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
            return _mapping.stop_reason(response)
        finally:
            live.run = None
            live.touch()

    async def _end_run(self, current: _Run) -> None:
        """Release what a prompt held: its lane, pending permissions, its terminals."""
        current.ended = True
        current.cancel_permissions()
        await current.lane.close()
        if current.agent is not None:
            await current.agent.terminals.release_owned_by(current)

    # -- the agent process ---------------------------------------------------------------

    async def _agent(self) -> _Agent:
        """The live agent process, started if need be; ``RunFailed`` if it cannot be."""
        if self._closed:
            raise RunFailed(RUNTIME_UNAVAILABLE, f"agent {self.name!r}: the gateway is stopping")
        agent = self._agent_now
        if agent is not None and not agent.dead.done():
            return agent
        if self._start_lock is None:
            self._start_lock = asyncio.Lock()
        async with self._start_lock:
            agent = self._agent_now
            if agent is None or agent.dead.done():
                agent = await self._start_agent()
                self._agent_now = agent
            return agent

    async def _start_agent(self) -> _Agent:
        from acp import PROTOCOL_VERSION
        from acp.core import Connection

        env = dict(os.environ)
        env.update(self.config.env)
        began = time.monotonic()
        try:
            child = await ChildProcess.spawn(
                self.config.command, env=env, cwd=self._cwd, label=f"agent {self.name}"
            )
        except SpawnError as exc:
            raise RunFailed(
                RUNTIME_UNAVAILABLE, f"agent {self.name!r} cannot be started: {exc}"
            ) from None
        agent = _Agent(self.name, child)
        stdin, stdout = child.process.stdin, child.process.stdout
        assert stdin is not None
        assert stdout is not None

        async def handle(method: str, params: Any, is_notification: bool) -> Any:
            return await self._handle(agent, method, params, is_notification)

        agent.conn = Connection(handle, stdin, stdout)
        agent.watcher = asyncio.get_running_loop().create_task(
            self._watch(agent), name=f"agent {self.name} exit"
        )
        try:
            result = await self._call(
                agent,
                "initialize",
                {
                    "protocolVersion": PROTOCOL_VERSION,
                    "clientCapabilities": {
                        "fs": {"readTextFile": True, "writeTextFile": True},
                        "terminal": True,
                    },
                    "clientInfo": {"name": "neocode-gateway", "version": _version()},
                },
                timeout=self.start_timeout,
            )
        except (_AgentError, RunFailed) as exc:
            await self._stop_agent(agent)
            raise RunFailed(
                RUNTIME_UNAVAILABLE, f"agent {self.name!r} failed to initialize: {exc.message}"
            ) from None
        agent.info = _mapping.parse_initialize(result)
        agent.started_in = time.monotonic() - began
        log.info(
            "agent %s started: pid %d, %s %s, protocol %s, loadSession %s, in %.2fs",
            self.name,
            child.pid,
            agent.info.name or "?",
            agent.info.version or "?",
            agent.info.protocol_version,
            agent.info.load_session,
            agent.started_in,
        )
        return agent

    async def _watch(self, agent: _Agent) -> None:
        """The agent exited: fail what waits on it, clean up, forget its sessions."""
        await agent.child.wait()
        await agent.child.stderr_done()
        tail = _mapping.join_tail(agent.child.stderr_tail)
        agent.failure = f"agent {self.name!r} {agent.child.exit_text()}"
        if tail:
            agent.failure += f"; its last stderr lines:\n{tail}"
        if not agent.dead.done():
            agent.dead.set_result(None)
        agent.child.kill_leftovers()
        for live in agent.sessions.values():
            if self._live.get(live.ref.id) is live:
                del self._live[live.ref.id]
        agent.sessions.clear()
        if not agent.stopping:
            log.warning("%s; it is started again by the next run", agent.failure)
        if agent.conn is not None:
            await agent.conn.close()
        await agent.terminals.close()

    async def _stop_agent(self, agent: _Agent) -> None:
        agent.stopping = True
        await agent.terminals.close()
        if agent.conn is not None:
            with contextlib.suppress(Exception):
                await agent.conn.close()
        await agent.child.stop(self.stop_grace)
        if agent.watcher is not None:
            with contextlib.suppress(Exception):
                await agent.watcher
        log.info("agent %s stopped (pid %d)", self.name, agent.child.pid)

    async def _call(
        self, agent: _Agent, method: str, params: dict[str, Any], timeout: float | None = None
    ) -> Any:
        """One request to the agent: its result, :class:`_AgentError`, or ``RunFailed``."""
        from acp.exceptions import RequestError

        assert agent.conn is not None
        try:
            async with asyncio.timeout(timeout):
                return await agent.conn.send_request(method, params)
        except RequestError as exc:
            raise _AgentError(exc.code, _mapping.error_message(str(exc), exc.data)) from None
        except ConnectionError:
            raise await self._unavailable(agent) from None
        except TimeoutError:
            raise RunFailed(
                RUNTIME_UNAVAILABLE,
                f"agent {self.name!r} did not answer {method} within {timeout:g}s",
            ) from None

    async def _unavailable(self, agent: _Agent) -> RunFailed:
        """The connection closed: wait for the exit, and say why the agent is gone."""
        if not agent.dead.done():
            try:
                await asyncio.wait_for(asyncio.shield(agent.dead), 5.0)
            except TimeoutError:  # its stdout closed but it lives on: useless, stop it
                agent.child.signal_group(9)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(agent.dead), 5.0)
        if agent.stopping or self._closed:
            return RunFailed(RUNTIME_UNAVAILABLE, f"agent {self.name!r} was stopped")
        return RunFailed(RUNTIME_UNAVAILABLE, agent.failure)

    # -- agent sessions ------------------------------------------------------------------

    async def _session(self, ref: SessionRef, agent: _Agent, *, configure: bool = True) -> _Live:
        """The live agent session of gateway session ``ref``: kept, loaded, or new.

        ``configure``: set the configured mode on a new agent session.
        """
        lock = self._session_locks.get(ref.id)
        if lock is None:
            lock = self._session_locks[ref.id] = asyncio.Lock()
        async with lock:
            live = self._live.get(ref.id)
            if live is not None and live.agent is agent and live.id in agent.sessions:
                live.ref = ref
                live.touch()
                return live
            self._live.pop(ref.id, None)
            await self._make_room(agent)
            live = await self._open(ref, agent, configure)
            self._live[ref.id] = live
            return live

    async def _open(self, ref: SessionRef, agent: _Agent, configure: bool) -> _Live:
        state = ref.runtime_state
        saved = state.get("agent_session_id")
        reset: str | None = None
        if isinstance(saved, str) and saved:
            if agent.info.load_session:
                live = await self._load(ref, agent, saved)
                if live is not None:
                    return live
                reset = f"agent {self.name!r} could not load its session {saved}"
            else:
                reset = f"agent {self.name!r} cannot load sessions"
                log.warning(
                    "agent %s cannot load sessions: gateway session %s gets a new agent "
                    "session; the agent's context was reset",
                    self.name,
                    ref.id,
                )
        try:
            result = await self._call(
                agent,
                "session/new",
                {"cwd": ref.workdir, "mcpServers": []},
                timeout=self.session_timeout,
            )
        except _AgentError as exc:
            raise RunFailed(
                RUNTIME_UNAVAILABLE, f"agent {self.name!r} cannot start a session: {exc.message}"
            ) from None
        session_id = result.get("sessionId") if isinstance(result, Mapping) else None
        if not isinstance(session_id, str) or not session_id:
            raise RunFailed(RUNTIME_ERROR, f"agent {self.name!r} answered session/new without id")
        live = _Live(ref, session_id, agent)
        live.context_reset = reset
        agent.sessions[session_id] = live
        live.modes = _mapping.parse_modes(result)
        live.save(agent_session_id=session_id, mode=live.modes.current)
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
            await self._set_mode(live, self.config.mode)
        return live

    async def _load(self, ref: SessionRef, agent: _Agent, session_id: str) -> _Live | None:
        """``session/load``; ``None`` (and the reset logged) if the agent cannot load it."""
        live = _Live(ref, session_id, agent)
        live.loading = True
        agent.sessions[session_id] = live
        try:
            result = await self._call(
                agent,
                "session/load",
                {"sessionId": session_id, "cwd": ref.workdir, "mcpServers": []},
                timeout=self.session_timeout,
            )
        except _AgentError as exc:
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
        modes = _mapping.parse_modes(result)
        if modes.available:
            live.modes = modes
        log.info(
            "agent %s: session %s loaded for gateway session %s", self.name, session_id, ref.id
        )
        wanted = ref.runtime_state.get("mode")
        if (
            isinstance(wanted, str)
            and wanted != live.modes.current
            and wanted in live.modes.available
        ):
            await self._set_mode(live, wanted)
        return live

    async def _set_mode(self, live: _Live, mode: str) -> None:
        if live.modes.available and mode not in live.modes.available:
            raise RunFailed(RUNTIME_ERROR, f"agent {self.name!r} has no mode {mode!r}")
        try:
            await self._call(
                live.agent,
                "session/set_mode",
                {"sessionId": live.id, "modeId": mode},
                timeout=self.session_timeout,
            )
        except _AgentError as exc:
            raise RunFailed(
                RUNTIME_ERROR, f"agent {self.name!r} cannot switch to mode {mode!r}: {exc.message}"
            ) from None
        live.modes.current = mode
        live.save(mode=mode)

    async def _make_room(self, agent: _Agent) -> None:
        """Close least recently used idle agent sessions beyond ``max_live_sessions``."""
        limit = self.config.max_live_sessions
        while True:
            live = [s for s in agent.sessions.values() if not s.loading]
            if len(live) < limit:
                return
            idle = [s for s in live if s.run is None]
            if not idle:
                log.warning(
                    "agent %s: %d live sessions, all busy (max_live_sessions %d): one more",
                    self.name,
                    len(live),
                    limit,
                )
                return
            victim = min(idle, key=lambda s: s.last_used)
            agent.sessions.pop(victim.id, None)
            if self._live.get(victim.ref.id) is victim:
                del self._live[victim.ref.id]
            log.info(
                "agent %s: closing idle session %s of gateway session %s (max_live_sessions %d)",
                self.name,
                victim.id,
                victim.ref.id,
                limit,
            )
            if agent.info.close_session:
                try:
                    await self._call(agent, "session/close", {"sessionId": victim.id}, timeout=30.0)
                except (_AgentError, RunFailed) as exc:
                    log.warning("agent %s: session/close failed: %s", self.name, exc)

    # -- what the agent asks of us -------------------------------------------------------

    async def _handle(self, agent: _Agent, method: str, params: Any, notification: bool) -> Any:
        """Every request and notification from the agent (one SDK task each, in order)."""
        from acp.exceptions import RequestError

        if method == "session/update":
            self._on_update(agent, params if isinstance(params, dict) else {})
            return None
        if method == "session/request_permission":
            return await self._on_permission(agent, params if isinstance(params, dict) else {})
        if method.startswith("_"):
            log.debug("agent %s: extension %s %s", self.name, method, params)
            if notification:
                return None
            raise RequestError.method_not_found(method)
        serve = _CLIENT_METHODS.get(method)
        if serve is None:
            if notification:
                log.debug("agent %s: unknown notification %s", self.name, method)
                return None
            raise RequestError.method_not_found(method)
        params = params if isinstance(params, dict) else {}
        live = agent.sessions.get(params.get("sessionId", ""))
        if live is None:
            raise RequestError(-32602, "unknown session", {"sessionId": params.get("sessionId")})
        try:
            return await serve(self, agent, live, params)
        except _client.Refused as exc:
            log.info("agent %s: %s refused: %s", self.name, method, exc.message)
            raise RequestError(exc.code, exc.message) from None
        except (TypeError, ValueError, KeyError) as exc:
            raise RequestError(-32602, f"invalid params: {exc}") from None

    def _on_update(self, agent: _Agent, params: dict[str, Any]) -> None:
        update = params.get("update")
        live = agent.sessions.get(params.get("sessionId", ""))
        if not isinstance(update, dict) or live is None:
            log.debug("agent %s: update for no live session: %s", self.name, params)
            return
        names = _mapping.command_names(update)
        if names is not None:
            live.commands = names
            live.commands_known.set()
            if "compact" in names:
                agent.offers_compact = True
        mode = _mapping.current_mode(update)
        if mode is not None:
            live.modes.current = mode
            if not live.loading:
                live.save(mode=mode)
        used = _mapping.context_used(update)
        if used is not None:
            live.context_used = used
        if live.loading:  # the history of a loaded session: not new events
            return
        if live.run is None:
            log.debug("agent %s: update outside a run: %s", self.name, update.get("sessionUpdate"))
            return
        live.run.lane.put(_mapping.update_to_progress(update))

    async def _on_permission(self, agent: _Agent, params: dict[str, Any]) -> dict[str, Any]:
        live = agent.sessions.get(params.get("sessionId", ""))
        current = live.run if live is not None else None
        if current is None or current.sink is None or current.cancel_requested or current.ended:
            return dict(_mapping.CANCELLED_ANSWER)
        tool, options = _mapping.permission_request(params)
        with contextlib.suppress(Exception):  # a failing sink fails the run, not this answer
            await current.lane.flush()  # the tool call's events go first
        if current.cancel_requested or current.ended:
            return dict(_mapping.CANCELLED_ANSWER)
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
            return dict(_mapping.CANCELLED_ANSWER)
        error = ask.exception()
        if error is not None:
            log.error("agent %s: permission request failed: %r", self.name, error)
            return dict(_mapping.CANCELLED_ANSWER)
        return _mapping.permission_answer(ask.result())

    # The client methods: params are validated with the SDK's models.

    async def _read_text_file(self, agent: _Agent, live: _Live, params: dict[str, Any]) -> Any:
        from acp.schema import ReadTextFileRequest

        request = ReadTextFileRequest.model_validate(params)
        content = await asyncio.to_thread(
            _client.read_text, live.workdir, request.path, request.line, request.limit
        )
        return {"content": content}

    async def _write_text_file(self, agent: _Agent, live: _Live, params: dict[str, Any]) -> Any:
        from acp.schema import WriteTextFileRequest

        request = WriteTextFileRequest.model_validate(params)
        await asyncio.to_thread(_client.write_text, live.workdir, request.path, request.content)
        return {}

    async def _create_terminal(self, agent: _Agent, live: _Live, params: dict[str, Any]) -> Any:
        from acp.schema import CreateTerminalRequest

        request = CreateTerminalRequest.model_validate(params)
        if live.run is None:
            raise _client.Refused("terminals are only served during a run")
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

    async def _terminal_output(self, agent: _Agent, live: _Live, params: dict[str, Any]) -> Any:
        return agent.terminals.output(_terminal_id(params))

    async def _wait_for_terminal_exit(
        self, agent: _Agent, live: _Live, params: dict[str, Any]
    ) -> Any:
        return await agent.terminals.wait(_terminal_id(params))

    async def _kill_terminal(self, agent: _Agent, live: _Live, params: dict[str, Any]) -> Any:
        await agent.terminals.kill(_terminal_id(params))
        return {}

    async def _release_terminal(self, agent: _Agent, live: _Live, params: dict[str, Any]) -> Any:
        await agent.terminals.release(_terminal_id(params))
        return {}


_CLIENT_METHODS: Final[dict[str, Any]] = {
    "fs/read_text_file": AcpRuntime._read_text_file,
    "fs/write_text_file": AcpRuntime._write_text_file,
    "terminal/create": AcpRuntime._create_terminal,
    "terminal/output": AcpRuntime._terminal_output,
    "terminal/wait_for_exit": AcpRuntime._wait_for_terminal_exit,
    "terminal/kill": AcpRuntime._kill_terminal,
    "terminal/release": AcpRuntime._release_terminal,
}


def _terminal_id(params: Mapping[str, Any]) -> str:
    terminal_id = params.get("terminalId")
    if not isinstance(terminal_id, str):
        raise _client.Refused("terminalId: expected a string")
    return terminal_id


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


def _version() -> str:
    from neocode_gateway import __version__

    return __version__


__all__ = ["AcpRuntime"]
