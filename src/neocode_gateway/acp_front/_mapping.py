"""Contract <-> ACP for the front door, as pure functions over JSON values.

The reverse of :mod:`neocode_gateway.runtime.acp._mapping`: there an agent's ACP
updates become contract events; here a session's contract events become ACP
``session/update``\\ s for an editor, and the editor's prompt becomes a run's
input. Everything works on plain dicts in ACP's wire spelling (camelCase), so
each function is tested with literal values and no I/O; the caller validates
the result with the SDK's models before it is sent.

What the contract cannot say is dropped here on purpose and documented:
``phase`` (what a run waits for) has no ACP update; audio has no input part.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

#: ACP's stop reasons that a ``run_done`` carries as they are.
STOP_REASONS: Final = frozenset({"end_turn", "max_tokens", "max_turn_requests", "refusal"})
#: The contract's decision for each ACP permission option kind.
DECISIONS: Final = {
    "allow_once": "allow_once",
    "allow_always": "allow_session",
    "reject_once": "reject",
    "reject_always": "reject",
}
#: Contract error codes that are the caller's mistake (JSON-RPC invalid params).
_INVALID_PARAMS_CODES: Final = frozenset(
    {"invalid_action", "missing_required_field", "invalid_frame", "invalid_multimodal_payload"}
)
JSONRPC_INVALID_PARAMS: Final = -32602
JSONRPC_INTERNAL_ERROR: Final = -32603
JSONRPC_RESOURCE_NOT_FOUND: Final = -32002


class PromptError(ValueError):
    """An ACP prompt that cannot become a run's input (the message says why)."""


# -- contract events -> session/update --------------------------------------------------------


def progress_update(data: Mapping[str, Any]) -> dict[str, Any] | None:
    """The ``data`` of a ``run_progress`` event -> one ACP ``update`` object, or ``None``.

    ``None`` for what an editor has no update for (``phase``, a ``usage`` without
    the context sizes ACP requires, a ``context_reset`` notice, unknown kinds).
    ``other`` carries an agent's raw ACP update: it is passed on as it came.
    """
    kind = data.get("kind")
    mapper = _MAPPERS.get(kind) if isinstance(kind, str) else None
    return mapper(data) if mapper is not None else None


def _chunk(update_kind: str) -> Any:
    def mapper(data: Mapping[str, Any]) -> dict[str, Any] | None:
        text = data.get("text")
        if not isinstance(text, str):
            return None
        return {"sessionUpdate": update_kind, "content": {"type": "text", "text": text}}

    return mapper


def _tool_fields(data: Mapping[str, Any], out: dict[str, Any]) -> dict[str, Any]:
    for source, target in (
        ("title", "title"),
        ("tool_kind", "kind"),
        ("status", "status"),
        ("content", "content"),
        ("raw_input", "rawInput"),
        ("raw_output", "rawOutput"),
    ):
        value = data.get(source)
        if value is not None:
            out[target] = value
    locations = data.get("locations")
    if isinstance(locations, list):
        out["locations"] = [dict(item) for item in locations if isinstance(item, Mapping)]
    return out


def _tool_call(data: Mapping[str, Any]) -> dict[str, Any] | None:
    tool_call_id = data.get("tool_call_id")
    if not isinstance(tool_call_id, str):
        return None
    out = {"sessionUpdate": "tool_call", "toolCallId": tool_call_id, "title": ""}
    return _tool_fields(data, out)


def _tool_call_update(data: Mapping[str, Any]) -> dict[str, Any] | None:
    tool_call_id = data.get("tool_call_id")
    if not isinstance(tool_call_id, str):
        return None
    return _tool_fields(data, {"sessionUpdate": "tool_call_update", "toolCallId": tool_call_id})


def _plan(data: Mapping[str, Any]) -> dict[str, Any] | None:
    entries = data.get("entries")
    if not isinstance(entries, list):
        return None
    return {
        "sessionUpdate": "plan",
        "entries": [
            {
                "content": str(e.get("content", "")),
                "priority": str(e.get("priority", "medium")),
                "status": str(e.get("status", "pending")),
            }
            for e in entries
            if isinstance(e, Mapping)
        ],
    }


def _commands(data: Mapping[str, Any]) -> dict[str, Any] | None:
    commands = data.get("commands")
    if not isinstance(commands, list):
        return None
    return {
        "sessionUpdate": "available_commands_update",
        "availableCommands": [
            {"name": str(c["name"]), "description": str(c.get("description", ""))}
            for c in commands
            if isinstance(c, Mapping) and isinstance(c.get("name"), str)
        ],
    }


def _session_info(data: Mapping[str, Any]) -> dict[str, Any] | None:
    mode = data.get("mode")
    if isinstance(mode, str) and mode:
        return {"sessionUpdate": "current_mode_update", "currentModeId": mode}
    title = data.get("title")
    if isinstance(title, str) and title:
        return {"sessionUpdate": "session_info_update", "title": title}
    return None


def _usage(data: Mapping[str, Any]) -> dict[str, Any] | None:
    used, size = data.get("context_used"), data.get("context_size")
    if not (_is_count(used) and _is_count(size)):
        return None  # ACP's usage_update needs both; per-turn token counts have no update
    out: dict[str, Any] = {"sessionUpdate": "usage_update", "used": used, "size": size}
    cost = data.get("cost")
    if isinstance(cost, Mapping):
        out["cost"] = dict(cost)
    return out


def _other(data: Mapping[str, Any]) -> dict[str, Any] | None:
    update = data.get("update")
    if isinstance(update, Mapping) and isinstance(update.get("sessionUpdate"), str):
        return dict(update)
    return None


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


_MAPPERS: Final[dict[str, Any]] = {
    "message_chunk": _chunk("agent_message_chunk"),
    "thought_chunk": _chunk("agent_thought_chunk"),
    "tool_call": _tool_call,
    "tool_call_update": _tool_call_update,
    "plan": _plan,
    "commands": _commands,
    "session_info": _session_info,
    "usage": _usage,
    "other": _other,
}


def user_message_updates(data: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A ``run_started``'s input -> ``user_message_chunk`` updates (text, then each part).

    An image kept as a ``data:`` URI goes back as an image block; one kept as a
    path or URI becomes a ``resource_link`` (the front door reads no files).
    """
    blocks: list[dict[str, Any]] = []
    text = data.get("input_text")
    if isinstance(text, str) and text:
        blocks.append({"type": "text", "text": text})
    parts = data.get("input_parts")
    for part in parts if isinstance(parts, list) else []:
        if not isinstance(part, Mapping):
            continue
        if part.get("type") == "text" and isinstance(part.get("text"), str):
            blocks.append({"type": "text", "text": part["text"]})
        elif part.get("type") == "image" and isinstance(part.get("media"), Mapping):
            blocks.append(_image_block(part["media"]))
    return [{"sessionUpdate": "user_message_chunk", "content": block} for block in blocks]


def _image_block(media: Mapping[str, Any]) -> dict[str, Any]:
    uri = str(media.get("uri", ""))
    mime = str(media.get("mime_type", ""))
    header, comma, payload = uri.partition(",")
    if uri.startswith("data:") and comma and header.endswith(";base64"):
        return {"type": "image", "mimeType": mime, "data": payload}
    name = str(media.get("file_name") or uri.rsplit("/", 1)[-1] or "image")
    return {"type": "resource_link", "uri": uri, "name": name, "mimeType": mime}


def permission_params(session_id: str, data: Mapping[str, Any]) -> dict[str, Any]:
    """A ``permission_request`` event -> ``session/request_permission`` params (same options)."""
    tool = data.get("tool_call")
    tool_call = _tool_fields(tool if isinstance(tool, Mapping) else {}, {})
    tool_call["toolCallId"] = str(tool.get("tool_call_id", "")) if isinstance(tool, Mapping) else ""
    options = data.get("options")
    return {
        "sessionId": session_id,
        "toolCall": tool_call,
        "options": [
            {"optionId": str(o["option_id"]), "name": str(o.get("name", "")), "kind": o["kind"]}
            for o in (options if isinstance(options, list) else [])
            if isinstance(o, Mapping) and isinstance(o.get("option_id"), str)
            if o.get("kind") in DECISIONS
        ],
    }


def decision_for(option_id: str, data: Mapping[str, Any]) -> str | None:
    """The contract decision of the option the editor chose (``None``: not one offered)."""
    options = data.get("options")
    for option in options if isinstance(options, list) else []:
        if isinstance(option, Mapping) and option.get("option_id") == option_id:
            return DECISIONS.get(str(option.get("kind")))
    return None


def stop_reason(event_type: str, data: Mapping[str, Any]) -> str | tuple[str, str]:
    """A run's terminal event -> the ACP ``stopReason``, or ``(code, message)`` of its error."""
    if event_type == "run_done":
        reason = data.get("stop_reason")
        return reason if isinstance(reason, str) and reason in STOP_REASONS else "end_turn"
    code = str(data.get("code") or "runtime_error")
    if code == "canceled":
        return "cancelled"
    return code, str(data.get("message") or "the run failed")


def jsonrpc_code(contract_code: str) -> int:
    """The JSON-RPC error code an ACP client should see for a contract error code."""
    if contract_code == "resource_not_found":
        return JSONRPC_RESOURCE_NOT_FOUND
    if contract_code in _INVALID_PARAMS_CODES:
        return JSONRPC_INVALID_PARAMS
    return JSONRPC_INTERNAL_ERROR


# -- session/prompt -> run input ----------------------------------------------------------------


def prompt_input(blocks: Sequence[Mapping[str, Any]]) -> tuple[str | None, list[dict[str, Any]]]:
    """ACP prompt content blocks -> ``(input_text, input_parts)`` of a run.

    One text block is ``input_text``; anything else becomes parts in order:
    text as text, an image as an image with a ``data:`` URI (ACP images carry
    their bytes), an embedded text resource as text headed by its URI, an
    embedded image blob as an image, a resource link as a line naming it.
    Audio and other binary resources raise :class:`PromptError` (the contract
    has no part for them, and ``initialize`` does not offer them).
    """
    parts: list[dict[str, Any]] = []
    for index, block in enumerate(blocks):
        kind = block.get("type")
        if kind == "text":
            text = block.get("text")
            if isinstance(text, str) and text.strip():
                parts.append({"type": "text", "text": text})
        elif kind == "image":
            parts.append(_image_part(index, block.get("mimeType"), block.get("data")))
        elif kind == "resource":
            parts.append(_resource_part(index, block.get("resource")))
        elif kind == "resource_link":
            name = block.get("name") or block.get("uri")
            parts.append({"type": "text", "text": f"[resource link: {name} {block.get('uri')}]"})
        else:
            raise PromptError(f"prompt[{index}]: {kind!r} content is not supported by the gateway")
    if not parts:
        raise PromptError("the prompt is empty")
    if len(parts) == 1 and parts[0]["type"] == "text":
        return parts[0]["text"], []
    return None, parts


def _image_part(index: int, mime: Any, data: Any) -> dict[str, Any]:
    if not isinstance(mime, str) or not mime or not isinstance(data, str) or not data:
        raise PromptError(f"prompt[{index}]: an image needs mimeType and data")
    return {"type": "image", "media": {"uri": f"data:{mime};base64,{data}", "mime_type": mime}}


def _resource_part(index: int, resource: Any) -> dict[str, Any]:
    if not isinstance(resource, Mapping):
        raise PromptError(f"prompt[{index}]: an embedded resource needs its contents")
    uri = str(resource.get("uri", ""))
    text = resource.get("text")
    if isinstance(text, str):
        return {"type": "text", "text": f"[resource: {uri}]\n{text}"}
    mime = resource.get("mimeType")
    if isinstance(mime, str) and mime.startswith("image/"):
        return _image_part(index, mime, resource.get("blob"))
    raise PromptError(f"prompt[{index}]: binary resource {uri} is not supported by the gateway")


# -- initialize ----------------------------------------------------------------------------------


def initialize_result(version: str) -> dict[str, Any]:
    """The ``initialize`` answer, as JSON: what the front door serves, whatever the agent.

    Images (as ``data:`` URIs) and embedded text resources fit the contract's
    input parts; audio does not. Which of them the backing agent takes is not
    told by the contract, so a part it cannot take fails the run with the
    agent's own message. ``resume`` and ``close`` are routed by the SDK only
    with its unstable protocol switched on (the front door does).
    """
    return {
        "protocolVersion": 1,
        "agentCapabilities": {
            "loadSession": True,
            "promptCapabilities": {"image": True, "audio": False, "embeddedContext": True},
            "sessionCapabilities": {"list": {}, "resume": {}, "close": {}},
        },
        "agentInfo": {"name": "neocode-gateway", "title": "NeoCode Gateway", "version": version},
        "authMethods": [],
    }
