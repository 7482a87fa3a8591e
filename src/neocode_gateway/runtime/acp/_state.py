"""The records the bridge keeps: a run in flight, its ordered lane of events, a live session.

No I/O here besides the lane's calls to the sink: these are the shared state
that the agent handle (:mod:`._agent`), the session table (:mod:`._sessions`),
the inbound calls (:mod:`._inbound`) and the facade (:mod:`._runtime`) read and
change.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, Final

from neocode_gateway.runtime._port import RunSink, SessionRef
from neocode_gateway.runtime.acp import _capabilities

if TYPE_CHECKING:
    from neocode_gateway.runtime.acp._agent import Agent

RUNTIME_ERROR: Final = "runtime_error"
RUNTIME_UNAVAILABLE: Final = "runtime_unavailable"


@dataclass(frozen=True, slots=True)
class Settings:
    """The runtime's bounds, in seconds and bytes (``RuntimeOptions.settings`` may set each).

    ``session_idle_timeout``: an agent session without a run for this long is
    closed (its agent process keeps it in memory: 170-200 MB per Claude
    session); ``agent_idle_timeout``: an agent process with no live session
    and no run for this long is stopped. ``0`` disables either.
    """

    start_timeout: float = 60.0  # initialize must be answered within this
    session_timeout: float = 120.0  # session/new, session/load and session/set_mode
    stop_grace: float = 3.0  # stopping an agent takes at most this (and 1 s to reap)
    compact_timeout: float = 600.0  # a /compact prompt
    cancel_timeout: float = 5.0  # sending session/cancel for an abandoned prompt
    max_line_bytes: int = 64 * 1024 * 1024  # the longest stdout line of an agent
    session_idle_timeout: float = 1800.0
    agent_idle_timeout: float = 600.0

    @classmethod
    def read(cls, settings: Mapping[str, Any]) -> Settings:
        defaults = cls()
        names = {f.name for f in fields(cls)}
        return cls(**{k: type(getattr(defaults, k))(v) for k, v in settings.items() if k in names})


class AgentError(Exception):
    """The agent answered a request with a JSON-RPC error."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Lane:
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


class Run:
    """What one prompt (a run, or a compaction) holds while it is in flight."""

    def __init__(self, sink: RunSink | None) -> None:
        self.sink = sink
        self.lane = Lane(sink)
        self.permissions: set[asyncio.Task[Any]] = set()
        self.cancel_requested = False
        self.ended = False
        self.live: Live | None = None
        self.agent: Agent | None = None

    async def phase(self, phase: str) -> None:
        """Tell the clients what the run waits for (``run_progress`` kind ``phase``)."""
        self.lane.put({"kind": "phase", "phase": phase})
        await self.lane.flush()

    def cancel_permissions(self) -> None:
        """Answer every pending permission request ``cancelled`` (ACP requires it)."""
        for task in list(self.permissions):
            task.cancel()


class Live:
    """An agent session that is live in the current agent process."""

    def __init__(self, ref: SessionRef, agent_session_id: str, agent: Agent) -> None:
        self.ref = ref
        self.id = agent_session_id
        self.agent = agent
        self.workdir = ref.workdir
        self.modes = _capabilities.Modes()
        self.commands: list[str] = []
        # Set by the agent's first available_commands_update, which agents send just after
        # session/new or session/load answered: compact waits for it a moment.
        self.commands_known = asyncio.Event()
        self.context_used: int | None = None
        self.loading = False
        self.run: Run | None = None
        self.last_used = time.monotonic()

    def touch(self) -> None:
        self.last_used = time.monotonic()

    def save(self, **changes: Any) -> None:
        """Change the saved state: a value of ``None`` removes its key."""
        state = dict(self.ref.runtime_state)
        new = {k: v for k, v in state.items() if changes.get(k, v) is not None}
        new.update({k: v for k, v in changes.items() if v is not None})
        if new != state:
            self.ref.save_runtime_state(new)
