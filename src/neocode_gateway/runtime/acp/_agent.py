"""The agent handle: one agent process, from spawn to stop, and the requests sent to it.

It starts the agent (under its shepherd, :mod:`._process`), speaks JSON-RPC
through the SDK's ``Connection`` over the bounded pipes of :mod:`._stdio`,
watches for its exit, and stops it. Every wait is bounded:

* a start that is cancelled (a forced cancel, the gateway's shutdown) stops
  the process it started, so nothing is leaked;
* a request abandoned after it was sent (the caller was cancelled, or timed
  out) is followed by ``session/cancel`` when it was a prompt: shielded from
  the caller's cancellation and bounded in time;
* :meth:`Agent.stop` first closes stdin without waiting for unsent bytes (an
  agent that stopped reading cannot hold it), then signals, and kills after
  the grace; the connection is closed last, with a bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from neocode_gateway.config import AgentConfig
from neocode_gateway.errors import RunFailed
from neocode_gateway.runtime.acp import _capabilities
from neocode_gateway.runtime.acp._mapping import error_message
from neocode_gateway.runtime.acp._process import ChildProcess, SpawnError, join_tail
from neocode_gateway.runtime.acp._state import RUNTIME_UNAVAILABLE, AgentError, Live, Settings
from neocode_gateway.runtime.acp._stdio import AgentStdio
from neocode_gateway.runtime.acp._terminals import Terminals

if TYPE_CHECKING:
    from acp.core import Connection

log = logging.getLogger("neocode_gateway.runtime.acp")

Handler = Callable[["Agent", str, Any, bool], Awaitable[Any]]


def agent_env(config: AgentConfig) -> dict[str, str]:
    """The agent's environment: the gateway's, plus its ``env``, minus its ``env_remove``."""
    env = dict(os.environ)
    env.update(config.env)
    for name in config.env_remove:
        env.pop(name, None)
    return env


def _sandbox_hint(config: AgentConfig, env: Mapping[str, str]) -> str:
    """Why Claude Code may refuse to start as root, and the fix (empty if it does not apply)."""
    if "IS_SANDBOX" not in env or not hasattr(os, "geteuid") or os.geteuid() != 0:
        return ""
    return (
        f" (the gateway runs as root with IS_SANDBOX set, which Claude Code refuses: add "
        f'env_remove = ["IS_SANDBOX"] to [agents.{config.name}])'
    )


class Agent:
    """One agent process (a generation: a restart makes a new one)."""

    def __init__(self, name: str, child: ChildProcess, settings: Settings) -> None:
        self.name = name
        self.child = child
        self.settings = settings
        self.conn: Connection | None = None
        self.stdio: AgentStdio | None = None
        self.info = _capabilities.AgentInfo()
        self.sessions: dict[str, Live] = {}
        self.terminals = Terminals(f"agent {name}")
        self.dead: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.failure = f"agent {name!r} is not running"
        self.fatal: str | None = None  # a protocol fault that made the bridge stop the agent
        self.hint = ""
        self.offers_compact = False
        self.started_in: float | None = None
        self.stopping = False
        self.watcher: asyncio.Task[None] | None = None
        self.idle_since = time.monotonic()
        self._background: set[asyncio.Task[Any]] = set()

    # -- start ---------------------------------------------------------------------------

    @classmethod
    async def start(
        cls, config: AgentConfig, cwd: str | None, settings: Settings, handler: Handler
    ) -> Agent:
        """Spawn the agent and ``initialize`` it; ``RunFailed`` (and nothing left) if it fails."""
        from acp import PROTOCOL_VERSION
        from acp.core import Connection

        name = config.name
        env = agent_env(config)
        began = time.monotonic()
        try:
            child = await ChildProcess.spawn(
                config.command, env=env, cwd=cwd, label=f"agent {name}", grace=settings.stop_grace
            )
        except SpawnError as exc:
            raise RunFailed(
                RUNTIME_UNAVAILABLE, f"agent {name!r} cannot be started: {exc}"
            ) from None
        agent = cls(name, child, settings)
        agent.hint = _sandbox_hint(config, env)
        try:
            stdin, stdout = child.process.stdin, child.process.stdout
            assert stdin is not None
            assert stdout is not None
            agent.stdio = AgentStdio(
                stdout,
                stdin,
                label=f"agent {name}",
                max_line=settings.max_line_bytes,
                on_fatal=agent.fail,
                on_sent=agent.sent,
            )

            async def handle(method: str, params: Any, is_notification: bool) -> Any:
                return await handler(agent, method, params, is_notification)

            agent.conn = Connection(handle, agent.stdio)
            agent.watcher = asyncio.get_running_loop().create_task(
                agent.watch(), name=f"agent {name} exit"
            )
            result = await agent.call(
                "initialize",
                {
                    "protocolVersion": PROTOCOL_VERSION,
                    "clientCapabilities": {
                        "fs": {"readTextFile": True, "writeTextFile": True},
                        "terminal": True,
                    },
                    "clientInfo": {"name": "neocode-gateway", "version": _version()},
                },
                timeout=settings.start_timeout,
            )
        except (AgentError, RunFailed) as exc:
            await asyncio.shield(agent.stop())
            raise RunFailed(
                RUNTIME_UNAVAILABLE,
                f"agent {name!r} failed to initialize: {_text(exc)}{agent.hint}",
            ) from None
        except BaseException:  # cancelled while starting: the process must not be leaked
            await asyncio.shield(agent.stop())
            raise
        agent.info = _capabilities.parse_initialize(result)
        agent.started_in = time.monotonic() - began
        log.info(
            "agent %s started: pid %d, %s %s, protocol %s, loadSession %s, in %.2fs",
            name,
            child.pid,
            agent.info.name or "?",
            agent.info.version or "?",
            agent.info.protocol_version,
            agent.info.load_session,
            agent.started_in,
        )
        return agent

    # -- requests ------------------------------------------------------------------------

    async def call(self, method: str, params: dict[str, Any], timeout: float | None = None) -> Any:
        """One request: its result, :class:`AgentError`, or ``RunFailed``.

        A ``session/prompt`` abandoned once sent (cancelled, timed out) is
        followed by a shielded, bounded ``session/cancel``.
        """
        from acp.exceptions import RequestError

        assert self.conn is not None
        try:
            async with asyncio.timeout(timeout):
                return await self.conn.send_request(method, params)
        except RequestError as exc:
            raise AgentError(exc.code, error_message(str(exc), exc.data)) from None
        except ConnectionError:
            raise await self.unavailable() from None
        except TimeoutError:
            if method == "session/prompt":
                self.cancel_soon(params["sessionId"])
            raise RunFailed(
                RUNTIME_UNAVAILABLE,
                f"agent {self.name!r} did not answer {method} within {timeout:g}s",
            ) from None
        except asyncio.CancelledError:
            if method == "session/prompt":
                self.cancel_soon(params["sessionId"])
            raise

    def cancel_soon(self, session_id: str) -> None:
        """``session/cancel`` in the background: never waits, never raises, bounded."""
        self.background(self.notify("session/cancel", {"sessionId": session_id}))

    async def notify(self, method: str, params: dict[str, Any]) -> None:
        """A notification, bounded by ``cancel_timeout``; a closed or stuck pipe is ignored."""
        if self.conn is None or self.dead.done():
            return
        with contextlib.suppress(ConnectionError, RuntimeError, TimeoutError):
            async with asyncio.timeout(self.settings.cancel_timeout):
                await self.conn.send_notification(method, params)

    def background(self, work: Awaitable[Any]) -> None:
        """Run ``work`` in a task kept until it ends (the agent's stop cancels it)."""

        async def run() -> None:
            await work

        task = asyncio.get_running_loop().create_task(run())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def unavailable(self) -> RunFailed:
        """The connection closed: wait (bounded) for the exit, and say why the agent is gone."""
        if not self.dead.done():
            try:
                await asyncio.wait_for(asyncio.shield(self.dead), 5.0)
            except TimeoutError:  # its stdout closed but it lives on: useless, stop it
                self.child.signal_group(9)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(self.dead), 5.0)
        if self.stopping and self.fatal is None:
            return RunFailed(RUNTIME_UNAVAILABLE, f"agent {self.name!r} was stopped")
        return RunFailed(RUNTIME_UNAVAILABLE, self.failure)

    # -- exit and stop -------------------------------------------------------------------

    def sent(self, message: Mapping[str, Any]) -> None:
        """A message reached the agent's stdin: a prompt's run now waits for the model."""
        if message.get("method") != "session/prompt":
            return
        params = message.get("params")
        live = self.sessions.get(params.get("sessionId", "")) if isinstance(params, dict) else None
        if live is not None and live.run is not None:
            live.run.lane.put({"kind": "phase", "phase": "waiting_for_model"})

    def fail(self, why: str) -> None:
        """A fatal protocol fault (an over-long line): the agent is killed; runs say ``why``."""
        self.fatal = why
        self.child.signal_group(9)

    async def watch(self) -> None:
        """The agent exited: fail what waits on it, clean up, forget its sessions."""
        await self.child.wait()
        await self.child.stderr_done()
        tail = join_tail(self.child.stderr_tail)
        if self.fatal is not None:
            self.failure = f"agent {self.name!r} {self.fatal}; it was stopped"
        else:
            self.failure = f"agent {self.name!r} {self.child.exit_text()}{self.hint}"
        if tail:
            self.failure += f"; its last stderr lines:\n{tail}"
        if not self.dead.done():
            self.dead.set_result(None)
        self.child.kill_leftovers()
        if not self.stopping:
            log.warning("%s; it is started again by the next run", self.failure)
        await self._close_conn()
        await self.terminals.close()

    async def stop(self, grace: float | None = None) -> None:
        """Stop the agent and everything it started; at most the grace and a few seconds."""
        grace = self.settings.stop_grace if grace is None else grace
        self.stopping = True
        if self.stdio is not None:
            await self.stdio.close()  # stdin EOF now: unsent bytes are dropped
        await asyncio.gather(self.terminals.close(), self.child.stop(grace))
        await self._close_conn()
        for task in list(self._background):
            task.cancel()
        if self.watcher is not None:
            with contextlib.suppress(Exception, asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(asyncio.shield(self.watcher), 2.0)
        log.info("agent %s stopped (pid %d)", self.name, self.child.pid)

    async def _close_conn(self) -> None:
        if self.conn is not None:
            with contextlib.suppress(Exception, TimeoutError):
                await asyncio.wait_for(self.conn.close(), 2.0)


def _text(exc: AgentError | RunFailed) -> str:
    return exc.message


def _version() -> str:
    from neocode_gateway import __version__

    return __version__
