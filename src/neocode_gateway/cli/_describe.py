"""Events in words: a tool call's command, the usage, a run's end (with the next step for
a known agent error), what a ``phase`` says the run waits for.

Shared by both renderers and ``show``; no rich here.
"""

from __future__ import annotations

from typing import Any, Final

from neocode_gateway.protocol import Event

MARKS: Final = {"completed": "✓", "failed": "✗", "in_progress": "…", "pending": "…"}
PLAN_MARKS: Final = {"completed": "[x]", "in_progress": "[~]", "pending": "[ ]"}

#: What a run waits for, by its ``phase`` (contract v1.2), as the spinner says it.
PHASES: Final = {
    "starting_agent": "starting the agent",
    "creating_session": "creating the agent's session",
    "loading_session": "loading the agent's session",
    "waiting_for_model": "waiting for the model",
}
#: ``run_progress`` kinds that are not content: the spinner keeps turning through them.
NOT_CONTENT: Final = frozenset({"phase", "session_info", "usage", "commands", "other"})

#: Agent errors whose next step is known: a piece of the message → what to do.
HINTS: Final = (
    (
        "authentication required",
        "the agent is not logged in: put its key in the agent's env in the configuration "
        "(ANTHROPIC_API_KEY for Claude), or log in once as the gateway's user (claude /login)",
    ),
    (
        "root/sudo",
        "the agent refuses to skip permissions as root: run the gateway as a normal user, or, "
        'in a throw-away container or VM, set IS_SANDBOX = "1" in the agent\'s env',
    ),
    (
        "is_sandbox",
        'in a throw-away container or VM, set IS_SANDBOX = "1" in the agent\'s env; '
        "elsewhere run the gateway as a normal user",
    ),
)


def hint_for(message: str) -> str | None:
    """The next step for an agent's error message, where one is known."""
    lowered = message.lower()
    for fragment, hint in HINTS:
        if fragment in lowered:
            return hint
    return None


def phase_label(data: dict[str, Any]) -> str:
    """``waiting for the model``: what a ``phase`` event says the run waits for."""
    phase = str(data.get("phase", ""))
    return PHASES.get(phase, phase.replace("_", " ") or "working")


def tool_command(tool_call: dict[str, Any]) -> str | None:
    """The command of an ``execute`` tool call, where the agent gave one."""
    raw = tool_call.get("raw_input")
    if isinstance(raw, dict):
        command = raw.get("command") or raw.get("cmd")
        if isinstance(command, list):
            return " ".join(str(c) for c in command)
        if isinstance(command, str):
            return command
    return None


def describe_end(event: Event) -> str:
    """One line for a run's terminal event (with the next step, for a known agent error)."""
    if event.event_type == "run_done":
        return f"done ({event.data.get('stop_reason', 'end_turn')})"
    message = str(event.data.get("message", ""))
    line = f"error {event.data.get('code', '?')}: {message}"
    hint = hint_for(message)
    return f"{line}\n  next step: {hint}" if hint else line


def describe_usage(data: dict[str, Any]) -> str:
    """``input tokens 25, output tokens 12, context 37/1000000, cost 0.0034 USD``."""
    parts = []
    for key, value in data.items():
        if key in ("kind", "context_size"):
            continue
        if key == "context_used" and "context_size" in data:
            parts.append(f"context {value}/{data['context_size']}")
        elif isinstance(value, dict) and "amount" in value:
            amount = value.get("amount")
            shown = f"{amount:.4g}" if isinstance(amount, float) else str(amount)
            parts.append(f"{key.replace('_', ' ')} {shown} {value.get('currency', '')}".rstrip())
        else:
            parts.append(f"{key.replace('_', ' ')} {value}")
    return ", ".join(parts)
