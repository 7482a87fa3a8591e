"""The in-memory state of the core: sessions, runs, permission requests, bindings.

Plain objects with slots; the rules that change them live in the modules named
for them (:mod:`._runs`, :mod:`._permissions`, :mod:`._streams`, ...).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from neocode_gateway.runtime import PermissionOption, PermissionOutcome, RunInput, Runtime

if TYPE_CHECKING:
    from neocode_gateway.sessions._subscriber import Subscriber


class Session:
    """One session: its row, its numbering, its active run and its live bindings.

    ``last_seq`` is the last number handed out; ``committed_seq`` the last one
    known durable, which is what clients may see.
    """

    __slots__ = (
        "_on_state",
        "active_run",
        "agent",
        "bindings",
        "busy",
        "committed_seq",
        "created_at",
        "first_seq",
        "head",
        "head_run",
        "id",
        "last_seq",
        "mode",
        "options",
        "runtime",
        "state",
        "title",
        "updated_at",
        "workdir",
    )

    def __init__(  # noqa: PLR0917 - the row's fields
        self,
        session_id: str,
        title: str,
        workdir: str,
        agent: str,
        runtime: Runtime,
        created_at: str,
        updated_at: str,
        last_seq: int = 0,
        first_seq: int = 1,
        mode: str | None = None,
        state: Mapping[str, Any] | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> None:
        self.id = session_id
        self.title = title
        self.workdir = workdir
        self.agent = agent
        self.runtime = runtime
        self.created_at = created_at
        self.updated_at = updated_at
        self.last_seq = last_seq
        self.committed_seq = last_seq
        self.first_seq = first_seq
        self.mode = mode
        self.state: dict[str, Any] = dict(state or {})
        #: What the session was created with for its agent (``mcp_servers``): contract v1.2.
        self.options: dict[str, Any] = dict(options or {})
        self.active_run: Run | None = None
        self.busy = False  # compacting
        self.bindings: dict[Subscriber, Binding] = {}
        #: The encoded start of this session's event frames for run ``head_run``.
        self.head = b""
        self.head_run: str | None = ""
        self._on_state: Any = None

    # -- SessionRef (what a runtime sees) ---------------------------------------------

    @property
    def evictable(self) -> bool:
        """Whether nothing holds the session in memory: no run, compaction or binding, and
        no event still on its way to the log (a session loaded again takes its numbering
        from the store, which must then have every number given out)."""
        return (
            self.active_run is None
            and not self.busy
            and not self.bindings
            and self.committed_seq == self.last_seq
        )

    @property
    def mcp_servers(self) -> list[dict[str, Any]]:
        """The MCP servers to give the agent (``create_session``'s ``mcp_servers``)."""
        servers = self.options.get("mcp_servers")
        return list(servers) if isinstance(servers, list) else []

    @property
    def runtime_state(self) -> Mapping[str, Any]:
        return self.state

    def save_runtime_state(self, state: Mapping[str, Any]) -> None:
        self.state = dict(state)
        if self._on_state is not None:
            self._on_state(self)

    def describe(self) -> dict[str, Any]:
        """The session as ``list_sessions`` shows it (committed state)."""
        out: dict[str, Any] = {
            "id": self.id,
            "title": self.title,
            "workdir": self.workdir,
            "agent": self.agent,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "last_seq": self.committed_seq,
            "state": "running" if self.active_run is not None else "idle",
        }
        if self.active_run is not None:
            out["active_run_id"] = self.active_run.id
        if self.mode:
            out["mode"] = self.mode
        return out


class Run:
    """One active run: the task driving the runtime and what it waits on."""

    __slots__ = (
        "cancel_requested",
        "cancel_timer",
        "ended",
        "explicit_mode",
        "failure",
        "id",
        "input",
        "permissions",
        "session",
        "task",
    )

    def __init__(self, session: Session, run_input: RunInput) -> None:
        self.id = run_input.run_id
        self.session = session
        self.input = run_input
        self.task: asyncio.Task[None] | None = None
        self.cancel_requested = False
        #: Whether the client asked for ``input.mode`` (else it is the session's own).
        self.explicit_mode = False
        self.cancel_timer: asyncio.TimerHandle | None = None
        self.ended = False
        #: Set when the run must end with runtime_error for a reason of the gateway's.
        self.failure: str | None = None
        self.permissions: dict[str, Permission] = {}


class Permission:
    """A permission request waiting for its answer."""

    __slots__ = ("created", "created_at", "future", "id", "options", "run", "timer", "tool_call")

    def __init__(
        self,
        permission_id: str,
        run: Run,
        tool_call: dict[str, Any],
        options: list[PermissionOption],
        future: asyncio.Future[PermissionOutcome],
    ) -> None:
        self.id = permission_id
        self.run = run
        self.tool_call = tool_call
        self.options = options
        self.future = future
        self.timer: asyncio.TimerHandle | None = None
        #: When it was asked: ``time.monotonic()`` (the wait) and the log's timestamp.
        self.created = 0.0
        self.created_at = ""


class Binding:
    """A subscriber receiving a session's events: replaying from the log, then live.

    ``cursor`` is the last ``seq`` handed to the subscriber for this binding. A
    binding is *live* when committed events go straight to it; otherwise it is
    held (its request's answer is not written yet) or replaying, and catches up
    from the log from ``cursor`` when it may.
    """

    __slots__ = ("cursor", "held", "live", "replay", "run_id", "session", "sub")

    def __init__(self, sub: Subscriber, session: Session, run_id: str | None, cursor: int) -> None:
        self.sub = sub
        self.session = session
        self.run_id = run_id
        self.cursor = cursor
        self.live = False
        #: Answers not yet written that this binding's events must follow.
        self.held = 0
        self.replay: asyncio.Task[None] | None = None
