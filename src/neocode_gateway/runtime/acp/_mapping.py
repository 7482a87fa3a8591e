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

import base64
import binascii
import os
import urllib.parse
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from neocode_gateway.runtime._port import CANCELLED, PermissionOption, PermissionOutcome, RunInput

#: ``tool_kind`` values of the contract; anything else an agent sends becomes ``other``.
TOOL_KINDS: Final = frozenset(
    {"read", "edit", "delete", "move", "search", "execute", "think", "fetch", "other"}
)
TOOL_STATUSES: Final = frozenset({"pending", "in_progress", "completed", "failed"})
PERMISSION_KINDS: Final = frozenset({"allow_once", "allow_always", "reject_once", "reject_always"})
#: Stop reasons that end a run with ``run_done``; ``cancelled`` ends it canceled.
STOP_REASONS: Final = frozenset({"end_turn", "max_tokens", "max_turn_requests", "refusal"})
#: The largest image the gateway reads from a file or data: URI for a prompt.
MAX_IMAGE_BYTES: Final = 20 * 1024 * 1024


class InputError(ValueError):
    """A run's input cannot be turned into ACP content (the message says why)."""


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


# -- permissions ------------------------------------------------------------------------------


def permission_request(params: Mapping[str, Any]) -> tuple[dict[str, Any], list[PermissionOption]]:
    """``session/request_permission`` params -> (the tool call, the options as given).

    The options keep the agent's ids, names and kinds: agents and their
    versions differ (``allow``/``allow_always``/``reject`` with Claude,
    ``approved``/``abort`` with Codex...), and the answer must name one of them.
    """
    raw_tool = params.get("toolCall")
    tool = tool_call_fields(raw_tool if isinstance(raw_tool, Mapping) else {}, complete=False)
    options: list[PermissionOption] = []
    raw_options = params.get("options")
    for option in raw_options if isinstance(raw_options, list) else []:
        if not isinstance(option, Mapping) or not isinstance(option.get("optionId"), str):
            continue
        options.append(
            PermissionOption(
                option_id=option["optionId"],
                name=str(option.get("name", option["optionId"])),
                kind=str(option.get("kind", "")),
            )
        )
    return tool, options


def permission_answer(outcome: PermissionOutcome) -> dict[str, Any]:
    """The ``session/request_permission`` result for an outcome: ``selected`` or ``cancelled``."""
    if outcome.cancelled:
        return {"outcome": {"outcome": "cancelled"}}
    return {"outcome": {"outcome": "selected", "optionId": outcome.option_id}}


CANCELLED_ANSWER: Final = {"outcome": {"outcome": "cancelled"}}


def stop_reason(response: Mapping[str, Any]) -> str:
    """A ``session/prompt`` response -> what :meth:`Runtime.prompt` returns."""
    reason = response.get("stopReason")
    if reason == "cancelled":
        return CANCELLED
    return str(reason) if reason is not None else "end_turn"


# -- the prompt ------------------------------------------------------------------------------


def prompt_blocks(
    run: RunInput, workdir: str, *, images: bool = True, read: Any = None
) -> list[dict[str, Any]]:
    """A run's input -> ACP content blocks: its text, then its parts in order.

    An image part's ``media.uri`` is either a ``data:`` URI (base64 or
    percent-encoded) or a file: an absolute path, a ``file://`` URI, or a path
    relative to the session's workdir. The gateway reads the file (at most
    :data:`MAX_IMAGE_BYTES`) and sends its bytes (ACP images carry their data);
    other schemes (``http``...) cannot be fetched offline and are refused.
    ``images`` is the agent's ``promptCapabilities.image``. ``read`` replaces
    the file reader (tests). Raises :class:`InputError`.
    """
    blocks: list[dict[str, Any]] = []
    if run.text:
        blocks.append({"type": "text", "text": run.text})
    for index, part in enumerate(run.parts):
        if part.type == "text":
            blocks.append({"type": "text", "text": part.text or ""})
        elif part.type == "image":
            if not images:
                raise InputError("this agent does not accept images (promptCapabilities.image)")
            media = part.media
            if media is None or not media.uri or not media.mime_type:
                raise InputError(f"input_parts[{index}]: an image needs media.uri and mime_type")
            data = image_data(media.uri, workdir, read=read)
            block: dict[str, Any] = {"type": "image", "mimeType": media.mime_type, "data": data}
            if not media.uri.startswith("data:"):
                block["uri"] = media.uri
            blocks.append(block)
        else:
            raise InputError(f"input_parts[{index}]: unsupported part type {part.type!r}")
    if not blocks:
        raise InputError("the run has no input")
    return blocks


def image_data(uri: str, workdir: str, *, read: Any = None) -> str:
    """The base64 data of the image at ``uri`` (see :func:`prompt_blocks`)."""
    if uri.startswith("data:"):
        header, comma, payload = uri[5:].partition(",")
        if not comma:
            raise InputError("image media.uri: a data: URI needs a comma before its data")
        if header.endswith(";base64"):
            try:
                raw = base64.b64decode(payload, validate=True)
            except (binascii.Error, ValueError):
                raise InputError("image media.uri: the data: URI is not valid base64") from None
        else:
            raw = urllib.parse.unquote_to_bytes(payload)
        if len(raw) > MAX_IMAGE_BYTES:
            raise InputError(f"image larger than {MAX_IMAGE_BYTES} bytes")
        return base64.b64encode(raw).decode("ascii")
    if uri.startswith("file://"):
        parsed = urllib.parse.urlparse(uri)
        if parsed.netloc not in ("", "localhost"):
            raise InputError(f"image media.uri: a file:// URI of another host: {uri!r}")
        path = urllib.parse.unquote(parsed.path)
    elif "://" in uri:
        raise InputError(
            "image media.uri must be a data: URI or a file path (the gateway fetches nothing)"
        )
    else:
        path = uri
    path = os.path.join(workdir, os.path.expanduser(path))
    reader = read or _read_file
    try:
        raw = reader(path)
    except OSError as exc:
        raise InputError(f"image {path}: cannot be read ({exc.strerror or exc})") from None
    return base64.b64encode(raw).decode("ascii")


def _read_file(path: str) -> bytes:
    with open(path, "rb") as handle:
        raw = handle.read(MAX_IMAGE_BYTES + 1)
    if len(raw) > MAX_IMAGE_BYTES:
        raise InputError(f"image {path}: larger than {MAX_IMAGE_BYTES} bytes")
    return raw


# -- initialize and sessions ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AgentInfo:
    """What an agent's ``initialize`` answer says that the bridge uses or reports."""

    protocol_version: int | None = None
    name: str | None = None
    title: str | None = None
    version: str | None = None
    load_session: bool = False
    close_session: bool = False
    image: bool = False
    audio: bool = False
    embedded_context: bool = False
    auth_methods: tuple[str, ...] = ()

    def describe(self) -> dict[str, Any]:
        """The answer as ``agents --check`` shows it."""
        return {
            "protocol_version": self.protocol_version,
            "agent": {"name": self.name, "title": self.title, "version": self.version},
            "load_session": self.load_session,
            "prompt_capabilities": {
                "image": self.image,
                "audio": self.audio,
                "embedded_context": self.embedded_context,
            },
            "auth_methods": list(self.auth_methods),
        }


def parse_initialize(result: Any) -> AgentInfo:
    """An ``initialize`` result -> :class:`AgentInfo` (lenient: missing parts are defaults)."""
    if not isinstance(result, Mapping):
        return AgentInfo()
    caps = _mapping(result.get("agentCapabilities"))
    prompt = _mapping(caps.get("promptCapabilities"))
    session_caps = _mapping(caps.get("sessionCapabilities"))
    info = _mapping(result.get("agentInfo"))
    methods = result.get("authMethods")
    version = result.get("protocolVersion")
    return AgentInfo(
        protocol_version=version if isinstance(version, int) else None,
        name=_str(info.get("name")),
        title=_str(info.get("title")),
        version=_str(info.get("version")),
        load_session=caps.get("loadSession") is True,
        close_session=isinstance(session_caps.get("close"), Mapping),
        image=prompt.get("image") is True,
        audio=prompt.get("audio") is True,
        embedded_context=prompt.get("embeddedContext") is True,
        auth_methods=tuple(
            str(m.get("id"))
            for m in (methods if isinstance(methods, list) else [])
            if isinstance(m, Mapping) and m.get("id") is not None
        ),
    )


@dataclass(slots=True)
class Modes:
    """The session modes an agent session offers, and the current one."""

    current: str | None = None
    available: list[str] = field(default_factory=list)
    names: dict[str, str] = field(default_factory=dict)


def parse_modes(result: Any) -> Modes:
    """The ``modes`` of a ``session/new`` or ``session/load`` result (empty if none)."""
    modes = _mapping(result.get("modes")) if isinstance(result, Mapping) else {}
    available = modes.get("availableModes")
    out = Modes(current=_str(modes.get("currentModeId")))
    for mode in available if isinstance(available, list) else []:
        if isinstance(mode, Mapping) and isinstance(mode.get("id"), str):
            out.available.append(mode["id"])
            out.names[mode["id"]] = str(mode.get("name", mode["id"]))
    return out


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


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def join_tail(lines: Iterable[str], limit: int = 20, max_chars: int = 4000) -> str:
    """The last ``limit`` lines of an agent's stderr for an error message (bounded)."""
    chosen: Sequence[str] = list(lines)[-limit:]
    text = "\n".join(chosen)
    if len(text) > max_chars:
        text = "..." + text[-max_chars:]
    return text
