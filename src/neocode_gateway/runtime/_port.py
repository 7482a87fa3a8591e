"""The runtime port: what the sessions core asks of an agent, and what it hands the agent.

A runtime knows no sockets, frames or clients. The core calls it with a
:class:`SessionRef` (which session, where, and the runtime's own saved state)
and, for a run, a :class:`RunInput` and a :class:`RunSink`. The runtime reports
what the agent does through the sink; the core numbers, logs, commits and fans
out every event, and turns the outcome of :meth:`Runtime.prompt` into the run's
one terminal event:

* returns a stop reason (``end_turn``, ``max_tokens``, ``max_turn_requests``,
  ``refusal``) -> ``run_done``;
* returns ``cancelled`` (after :meth:`Runtime.cancel`) -> ``run_error`` ``canceled``;
* raises :class:`~neocode_gateway.errors.RunFailed` -> ``run_error`` with its code
  (``runtime_error`` or ``runtime_unavailable``) and message;
* raises anything else -> ``run_error`` ``runtime_error`` (logged with its traceback).

If a canceled run does not end within the core's grace period, the core
cancels the :meth:`prompt` task itself (``asyncio.CancelledError``): a runtime
must release what the run holds in ``finally`` blocks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Protocol, TypedDict, runtime_checkable

from neocode_gateway.protocol import InputPart

#: What :meth:`Runtime.prompt` returns for a run that was canceled.
CANCELLED: Final = "cancelled"


class PermissionOption(TypedDict):
    """One choice offered with a permission request (ids and names as the agent gave them)."""

    option_id: str
    name: str
    kind: str  # allow_once | allow_always | reject_once | reject_always


@dataclass(frozen=True, slots=True)
class PermissionOutcome:
    """How a permission request ended.

    ``option_id`` is the option chosen (by a client, or the reject option on
    timeout); ``None`` means the request was cancelled (the run was canceled),
    which an ACP agent must be told as the ``cancelled`` outcome.
    """

    option_id: str | None
    decision: str | None  # allow_once | allow_session | reject; None when cancelled
    decided_by: str  # client | timeout | cancel

    @property
    def cancelled(self) -> bool:
        """Whether no option was chosen (the run was canceled)."""
        return self.option_id is None

    @property
    def allowed(self) -> bool:
        """Whether the chosen option allows the tool call."""
        return self.decision in ("allow_once", "allow_session")


@dataclass(frozen=True, slots=True)
class RunInput:
    """One run's input, as the client sent it."""

    run_id: str
    text: str | None = None
    parts: tuple[InputPart, ...] = ()
    mode: str | None = None  # switch the agent's session mode before the input is sent


@dataclass(frozen=True, slots=True)
class CompactResult:
    """What a compaction did (the core adds ``saved_ratio`` and ``trigger_mode``)."""

    applied: bool
    before_chars: int
    after_chars: int
    #: The agent's context in tokens before and after, where the agent reports it (ACP's
    #: ``usage_update``) and cannot say characters.
    before_tokens: int | None = None
    after_tokens: int | None = None


class SessionRef(Protocol):
    """The session a runtime works on, as the core shows it."""

    @property
    def id(self) -> str:
        """The gateway's session id."""

    @property
    def workdir(self) -> str:
        """Absolute, resolved working directory of the session."""

    @property
    def runtime_state(self) -> Mapping[str, Any]:
        """What the runtime saved for this session (e.g. the agent's own session id)."""

    def save_runtime_state(self, state: Mapping[str, Any]) -> None:
        """Replace the saved state (JSON-able); it is written with the next commit."""


class RunSink(Protocol):
    """Where a runtime reports what happens during one run."""

    async def emit(self, data: dict[str, Any]) -> None:
        """Log one ``run_progress`` event: ``data["kind"]`` and that kind's fields.

        Returns once the gateway can take more (back-pressure on the run, never
        on a slow client). A ``session_info`` title or mode also updates the
        session's row. Kinds the contract lacks go as ``kind: other`` with the
        raw update under ``update``.
        """

    async def request_permission(
        self, tool_call: dict[str, Any], options: Sequence[PermissionOption]
    ) -> PermissionOutcome:
        """Ask the clients; wait for an answer, the timeout (reject) or a cancel."""


@runtime_checkable
class Runtime(Protocol):
    """An agent behind the gateway. One instance serves every session of its name."""

    name: str

    async def start(self) -> None:
        """Called once when the gateway starts (agents themselves start lazily)."""

    async def close(self) -> None:
        """Called once at shutdown: stop every process, leave no orphan."""

    async def check_mode(self, session: SessionRef, mode: str) -> None:
        """Raise :class:`~neocode_gateway.errors.ModeUnknown` if ``mode`` is not offered."""

    async def prompt(self, session: SessionRef, run: RunInput, sink: RunSink) -> str:
        """Run one turn; return its stop reason (see the module docstring)."""

    async def cancel(self, session: SessionRef) -> None:
        """Ask the session's active :meth:`prompt` to end soon with :data:`CANCELLED`."""

    async def compact(self, session: SessionRef) -> CompactResult:
        """Compact the session's context, or raise ``CompactUnsupported``."""


@dataclass(frozen=True, slots=True)
class RuntimeOptions:
    """What the gateway tells a runtime factory about itself."""

    data_dir: Path
    default_workdir: str
    settings: Mapping[str, Any] = field(default_factory=dict)
