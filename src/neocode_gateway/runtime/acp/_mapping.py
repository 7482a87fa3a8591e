"""ACP messages <-> the gateway's contract, as pure functions over JSON values.

Everything here works on the raw JSON the agent sent (camelCase keys, as on
the wire), not on the SDK's models: an update of a kind or shape the SDK does
not know yet must still reach the log (as ``kind: other`` with the raw
update), never be dropped because it failed a schema. No I/O, no SDK import:
each function is tested with literal messages.

The ``run_progress`` kinds and their fields are those of the v1.1 contract,
section 3, exactly; where ACP has more (``_meta``, a tool call's ``kind`` in
an update), it is left out rather than invented into the contract.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from neocode_gateway.runtime._port import CANCELLED

#: ``tool_kind`` values of the contract; anything else an agent sends becomes ``other``.
TOOL_KINDS: Final = frozenset(
    {"read", "edit", "delete", "move", "search", "execute", "think", "fetch", "other"}
)
TOOL_STATUSES: Final = frozenset({"pending", "in_progress", "completed", "failed"})
#: Stop reasons that end a run with ``run_done``; ``cancelled`` ends it canceled.
STOP_REASONS: Final = frozenset({"end_turn", "max_tokens", "max_turn_requests", "refusal"})
# -- session/update -> run_progress ---------------------------------------------------------


def update_to_progress(update: Mapping[str, Any]) -> dict[str, Any]:
    """One ACP ``session/update`` ``update`` object -> the ``data`` of a ``run_progress``.

    Kinds and shapes the contract has no place for become
    ``{"kind": "other", "update": <the raw update>}``.
    """
    kind = update.get("sessionUpdate")
    mapper = _UPDATE_MAPPERS.get(kind) if isinstance(kind, str) else None
    data = mapper(update) if mapper is not None else None
    return data if data is not None else other(update)


@dataclass(frozen=True, slots=True)
class UpdateFacts:
    """One ``session/update`` read once: its event, and what it says about the session."""

    progress: dict[str, Any]
    commands: list[str] | None = None  # the names of an available_commands_update
    mode: str | None = None  # the mode a current_mode_update switches to
    context_used: int | None = None  # the tokens a usage_update reports


def read_update(update: Mapping[str, Any]) -> UpdateFacts:
    """The event of ``update`` and the session facts it carries (commands, mode, usage)."""
    progress = update_to_progress(update)
    kind = progress["kind"]
    commands = mode = used = None
    if kind == "commands" and update.get("sessionUpdate") == "available_commands_update":
        commands = [c["name"] for c in progress["commands"]]
    elif kind == "session_info" and "mode" in progress:
        mode = progress["mode"]
    elif kind == "usage" and update.get("sessionUpdate") == "usage_update":
        used = progress.get("context_used")
    return UpdateFacts(progress, commands, mode, used)


def context_reset(reason: str) -> dict[str, Any]:
    """The ``session_info`` event that tells the clients the agent lost the session's context."""
    return {
        "kind": "session_info",
        "context_reset": True,
        "message": f"{reason}: it starts this session afresh, without the earlier conversation",
    }


def other(update: Mapping[str, Any]) -> dict[str, Any]:
    """The ``other`` kind: the raw update, kept so that nothing is dropped silently."""
    return {"kind": "other", "update": dict(update)}


def _chunk(kind: str) -> Any:
    def mapper(update: Mapping[str, Any]) -> dict[str, Any] | None:
        content = update.get("content")
        if isinstance(content, Mapping) and content.get("type") == "text":
            text = content.get("text")
            if isinstance(text, str):
                return {"kind": kind, "text": text}
        return None

    return mapper


def tool_call(update: Mapping[str, Any]) -> dict[str, Any] | None:
    """``tool_call`` (a new tool call): id, title, kind and status always; the rest if given."""
    tool_call_id = update.get("toolCallId")
    if not isinstance(tool_call_id, str):
        return None
    data: dict[str, Any] = {"kind": "tool_call"}
    data.update(tool_call_fields(update, complete=True))
    return data


def tool_call_update(update: Mapping[str, Any]) -> dict[str, Any] | None:
    """``tool_call_update``: the id and any of status, title, content, locations, raw_output."""
    tool_call_id = update.get("toolCallId")
    if not isinstance(tool_call_id, str):
        return None
    data: dict[str, Any] = {"kind": "tool_call_update", "tool_call_id": tool_call_id}
    status = update.get("status")
    if isinstance(status, str) and status in TOOL_STATUSES:
        data["status"] = status
    title = update.get("title")
    if isinstance(title, str):
        data["title"] = title
    if isinstance(update.get("content"), list):
        data["content"] = update["content"]
    locations = _locations(update.get("locations"))
    if locations is not None:
        data["locations"] = locations
    if "rawOutput" in update and update["rawOutput"] is not None:
        data["raw_output"] = update["rawOutput"]
    return data


def tool_call_fields(update: Mapping[str, Any], *, complete: bool) -> dict[str, Any]:
    """A tool call's fields in the contract's names.

    ``complete`` (a ``tool_call`` event) fills ``title``, ``tool_kind`` and
    ``status`` with their ACP defaults when absent; otherwise (the tool call
    of a permission request, an ACP ``ToolCallUpdate``) only what was given.
    """
    data: dict[str, Any] = {"tool_call_id": str(update.get("toolCallId", ""))}
    title = update.get("title")
    if isinstance(title, str):
        data["title"] = title
    elif complete:
        data["title"] = ""
    kind = update.get("kind")
    if isinstance(kind, str):
        data["tool_kind"] = kind if kind in TOOL_KINDS else "other"
    elif complete:
        data["tool_kind"] = "other"
    status = update.get("status")
    if isinstance(status, str) and status in TOOL_STATUSES:
        data["status"] = status
    elif complete:
        data["status"] = "pending"
    locations = _locations(update.get("locations"))
    if locations is not None:
        data["locations"] = locations
    if "rawInput" in update and update["rawInput"] is not None:
        data["raw_input"] = update["rawInput"]
    if isinstance(update.get("content"), list):
        data["content"] = update["content"]
    return data


def _locations(value: Any) -> list[dict[str, Any]] | None:
    if not isinstance(value, list):
        return None
    out: list[dict[str, Any]] = []
    for item in value:
        if isinstance(item, Mapping) and isinstance(item.get("path"), str):
            location: dict[str, Any] = {"path": item["path"]}
            line = item.get("line")
            if isinstance(line, int) and not isinstance(line, bool):
                location["line"] = line
            out.append(location)
    return out


def _plan(update: Mapping[str, Any]) -> dict[str, Any] | None:
    entries = update.get("entries")
    if not isinstance(entries, list):
        return None
    out = []
    for entry in entries:
        if not isinstance(entry, Mapping):
            return None
        out.append(
            {
                "content": str(entry.get("content", "")),
                "priority": str(entry.get("priority", "medium")),
                "status": str(entry.get("status", "pending")),
            }
        )
    return {"kind": "plan", "entries": out}


def _commands(update: Mapping[str, Any]) -> dict[str, Any] | None:
    commands = update.get("availableCommands")
    if not isinstance(commands, list):
        return None
    out = [
        {"name": str(c["name"]), "description": str(c.get("description", ""))}
        for c in commands
        if isinstance(c, Mapping) and isinstance(c.get("name"), str)
    ]
    return {"kind": "commands", "commands": out}


def command_names(update: Mapping[str, Any]) -> list[str] | None:
    """The names in an ``available_commands_update`` (``None`` for any other update)."""
    if update.get("sessionUpdate") != "available_commands_update":
        return None
    data = _commands(update)
    return [c["name"] for c in data["commands"]] if data is not None else None


def _usage(update: Mapping[str, Any]) -> dict[str, Any] | None:
    data: dict[str, Any] = {"kind": "usage"}
    used = update.get("used")
    if _is_count(used):
        data["context_used"] = used
    size = update.get("size")
    if _is_count(size):
        data["context_size"] = size
    cost = _cost(update.get("cost"))
    if cost is not None:
        data["cost"] = cost
    return data if len(data) > 1 else None


def _cost(value: Any) -> dict[str, Any] | None:
    if not isinstance(value, Mapping):
        return None
    amount = value.get("amount")
    currency = value.get("currency")
    if (
        isinstance(amount, int | float)
        and not isinstance(amount, bool)
        and isinstance(currency, str)
    ):
        return {"amount": amount, "currency": currency}
    return None


def prompt_usage(response: Mapping[str, Any]) -> dict[str, Any] | None:
    """A ``usage`` event from a ``session/prompt`` response's ``usage`` (tokens of the turn)."""
    usage = response.get("usage")
    if not isinstance(usage, Mapping):
        return None
    data: dict[str, Any] = {"kind": "usage"}
    for source, target in (("inputTokens", "input_tokens"), ("outputTokens", "output_tokens")):
        value = usage.get(source)
        if _is_count(value):
            data[target] = value
    return data if len(data) > 1 else None


def _session_info(update: Mapping[str, Any]) -> dict[str, Any] | None:
    title = update.get("title")
    if isinstance(title, str) and title.strip():
        return {"kind": "session_info", "title": title}
    return None


def _mode(update: Mapping[str, Any]) -> dict[str, Any] | None:
    mode = update.get("currentModeId")
    if isinstance(mode, str) and mode:
        return {"kind": "session_info", "mode": mode}
    return None


def current_mode(update: Mapping[str, Any]) -> str | None:
    """The mode a ``current_mode_update`` switches to (``None`` for any other update)."""
    if update.get("sessionUpdate") != "current_mode_update":
        return None
    data = _mode(update)
    return data["mode"] if data is not None else None


def context_used(update: Mapping[str, Any]) -> int | None:
    """The context tokens a ``usage_update`` reports (``None`` for any other update)."""
    if update.get("sessionUpdate") != "usage_update":
        return None
    used = update.get("used")
    return used if _is_count(used) else None


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


_UPDATE_MAPPERS: Final[dict[str, Any]] = {
    "agent_message_chunk": _chunk("message_chunk"),
    "agent_thought_chunk": _chunk("thought_chunk"),
    "tool_call": tool_call,
    "tool_call_update": tool_call_update,
    "plan": _plan,
    "available_commands_update": _commands,
    "usage_update": _usage,
    "session_info_update": _session_info,
    "current_mode_update": _mode,
}


def stop_reason(response: Mapping[str, Any]) -> str:
    """A ``session/prompt`` response -> what :meth:`Runtime.prompt` returns."""
    reason = response.get("stopReason")
    if reason == "cancelled":
        return CANCELLED
    return str(reason) if reason is not None else "end_turn"


# -- errors ---------------------------------------------------------------------------------


def error_message(message: str, data: Any) -> str:
    """A JSON-RPC error -> one message: the agent's text, with its details if it gave any."""
    details: Any = None
    if isinstance(data, Mapping):
        details = data.get("details") or data.get("message")
    elif isinstance(data, str):
        details = data
    text = message or "the agent failed"
    if details and str(details) not in text:
        text = f"{text}: {details}"
    return text
