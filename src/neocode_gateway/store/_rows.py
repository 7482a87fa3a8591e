"""The rows of the log and the batch of changes committed in one transaction."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple


class SessionRow(NamedTuple):
    """A session as stored."""

    id: str
    title: str
    workdir: str
    agent: str
    created_at: str
    updated_at: str
    last_seq: int
    first_seq: int
    active_run_id: str | None
    mode: str | None
    runtime_state: str | None  # JSON text, the runtime's own
    options: str | None = None  # JSON text: what the session was created with (mcp_servers)


class EventRow(NamedTuple):
    """One event: its number in the session and its frame, encoded once, as sent."""

    session_id: str
    seq: int
    run_id: str | None
    event_type: str
    ts: str
    frame: bytes


class RunRow(NamedTuple):
    """A run: ``active`` until its terminal event, then ``done`` or ``error``."""

    session_id: str
    run_id: str
    state: str
    started_seq: int
    ended_seq: int | None
    created_at: str


class PermissionRow(NamedTuple):
    """A permission request: ``pending``, ``resolved``, or ``void`` after a restart."""

    id: str
    session_id: str
    run_id: str
    state: str
    decision: str | None
    decided_by: str | None
    option_id: str | None
    request: str  # JSON text: request_id, tool_call, options
    created_at: str
    resolved_at: str | None
    who: str | None = None  # who decided: a rule, a grant, a client (and its device)
    waited_ms: int | None = None  # how long the agent waited for the decision


class GrantRow(NamedTuple):
    """A permission given for a session ("allow for the session", or for a time or a count)."""

    id: str
    session_id: str
    spec: str  # JSON text: the policy Grant's fields (what it matches)
    rule: str  # the grant written as a rule, for people
    given_by: str | None
    created_at: str
    expires_at: str | None
    remaining: int | None
    uses: int = 0
    revoked_at: str | None = None


@dataclass(slots=True)
class WriteBatch:
    """Every change of one loop turn; :meth:`Store.commit` writes it in one transaction."""

    new_sessions: list[SessionRow] = field(default_factory=list)
    session_updates: dict[str, dict[str, Any]] = field(default_factory=dict)
    events: list[EventRow] = field(default_factory=list)
    new_runs: list[RunRow] = field(default_factory=list)
    run_updates: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    new_permissions: list[PermissionRow] = field(default_factory=list)
    permission_updates: dict[str, dict[str, Any]] = field(default_factory=dict)
    new_grants: list[GrantRow] = field(default_factory=list)
    grant_updates: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        """Whether there is nothing to write."""
        return not (
            self.new_sessions
            or self.session_updates
            or self.events
            or self.new_runs
            or self.run_updates
            or self.new_permissions
            or self.permission_updates
            or self.new_grants
            or self.grant_updates
        )
