"""ACP <-> contract mapping, as pure functions over the JSON agents send."""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from neocode_gateway.protocol import InputPart
from neocode_gateway.protocol._events import PROGRESS_KINDS
from neocode_gateway.protocol._frames import Media
from neocode_gateway.runtime import CANCELLED, PermissionOutcome, RunInput
from neocode_gateway.runtime.acp import _capabilities as caps
from neocode_gateway.runtime.acp import _mapping as m
from neocode_gateway.runtime.acp import _permissions as perm
from neocode_gateway.runtime.acp import _prompt as p
from neocode_gateway.runtime.acp._process import join_tail

# -- session/update ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("update", "expected"),
    [
        (
            {"sessionUpdate": "agent_message_chunk", "content": {"type": "text", "text": "Hel"}},
            {"kind": "message_chunk", "text": "Hel"},
        ),
        (
            {"sessionUpdate": "agent_thought_chunk", "content": {"type": "text", "text": "hmm"}},
            {"kind": "thought_chunk", "text": "hmm"},
        ),
        (
            {
                "sessionUpdate": "tool_call",
                "toolCallId": "t1",
                "title": "Read a.py",
                "kind": "read",
                "status": "in_progress",
                "locations": [{"path": "/w/a.py", "line": 4}, {"path": "/w/b.py"}, {"x": 1}],
                "rawInput": {"path": "/w/a.py"},
                "content": [{"type": "diff", "path": "/w/a.py", "newText": "x"}],
                "_meta": {"ignored": True},
            },
            {
                "kind": "tool_call",
                "tool_call_id": "t1",
                "title": "Read a.py",
                "tool_kind": "read",
                "status": "in_progress",
                "locations": [{"path": "/w/a.py", "line": 4}, {"path": "/w/b.py"}],
                "raw_input": {"path": "/w/a.py"},
                "content": [{"type": "diff", "path": "/w/a.py", "newText": "x"}],
            },
        ),
        (  # ACP defaults: kind other, status pending; a kind the contract lacks is other
            {"sessionUpdate": "tool_call", "toolCallId": "t2", "kind": "switch_mode"},
            {
                "kind": "tool_call",
                "tool_call_id": "t2",
                "title": "",
                "tool_kind": "other",
                "status": "pending",
            },
        ),
        (
            {
                "sessionUpdate": "tool_call_update",
                "toolCallId": "t1",
                "status": "completed",
                "title": "Read a.py (40 lines)",
                "content": [],
                "locations": [],
                "rawOutput": {"lines": 40},
                "kind": "read",
                "rawInput": {"p": 1},
            },
            {
                "kind": "tool_call_update",
                "tool_call_id": "t1",
                "status": "completed",
                "title": "Read a.py (40 lines)",
                "content": [],
                "locations": [],
                "raw_output": {"lines": 40},
            },
        ),
        (
            {"sessionUpdate": "tool_call_update", "toolCallId": "t1", "status": "weird"},
            {"kind": "tool_call_update", "tool_call_id": "t1"},
        ),
        (
            {
                "sessionUpdate": "plan",
                "entries": [
                    {"content": "a", "priority": "high", "status": "pending"},
                    {"content": "b"},
                ],
            },
            {
                "kind": "plan",
                "entries": [
                    {"content": "a", "priority": "high", "status": "pending"},
                    {"content": "b", "priority": "medium", "status": "pending"},
                ],
            },
        ),
        (
            {
                "sessionUpdate": "available_commands_update",
                "availableCommands": [
                    {"name": "compact", "description": "Compact", "input": {"hint": "x"}},
                    {"name": "init"},
                    {"description": "nameless"},
                ],
            },
            {
                "kind": "commands",
                "commands": [
                    {"name": "compact", "description": "Compact"},
                    {"name": "init", "description": ""},
                ],
            },
        ),
        (
            {
                "sessionUpdate": "usage_update",
                "used": 10,
                "size": 100,
                "cost": {"amount": 0.5, "currency": "EUR"},
            },
            {
                "kind": "usage",
                "context_used": 10,
                "context_size": 100,
                "cost": {"amount": 0.5, "currency": "EUR"},
            },
        ),
        (
            {"sessionUpdate": "usage_update", "used": 10, "size": 100, "cost": {"amount": "x"}},
            {"kind": "usage", "context_used": 10, "context_size": 100},
        ),
        (
            {"sessionUpdate": "session_info_update", "title": "Fix the bug"},
            {"kind": "session_info", "title": "Fix the bug"},
        ),
        (
            {"sessionUpdate": "current_mode_update", "currentModeId": "plan"},
            {"kind": "session_info", "mode": "plan"},
        ),
    ],
)
def test_each_update_kind_maps_to_its_progress_kind(
    update: dict[str, Any], expected: dict[str, Any]
) -> None:
    assert m.update_to_progress(update) == expected


@pytest.mark.parametrize(
    "update",
    [
        {"sessionUpdate": "future_kind", "x": [1, {"y": 2}]},
        {"sessionUpdate": "user_message_chunk", "content": {"type": "text", "text": "hi"}},
        {"sessionUpdate": "config_option_update", "configOptions": []},
        {"sessionUpdate": "agent_message_chunk", "content": {"type": "image", "data": "AA=="}},
        {"sessionUpdate": "agent_message_chunk"},
        {"sessionUpdate": "tool_call", "title": "no id"},
        {"sessionUpdate": "tool_call_update"},
        {"sessionUpdate": "plan", "entries": "nope"},
        {"sessionUpdate": "plan", "entries": ["nope"]},
        {"sessionUpdate": "available_commands_update"},
        {"sessionUpdate": "usage_update", "used": -1},
        {"sessionUpdate": "session_info_update", "_meta": {"codex": {"threadStatus": "idle"}}},
        {"sessionUpdate": "session_info_update", "title": "  "},
        {"sessionUpdate": "current_mode_update"},
        {"no": "kind"},
        {"sessionUpdate": 7},
    ],
)
def test_what_the_contract_has_no_place_for_is_kept_as_other(update: dict[str, Any]) -> None:
    assert m.update_to_progress(update) == {"kind": "other", "update": update}


_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-2, 2)
    | st.sampled_from(["", "x", "text", "tool_call", "plan", "usage_update", "read"]),
    lambda inner: (
        st.lists(inner, max_size=2)
        | st.dictionaries(
            st.sampled_from(["type", "text", "path", "line", "name"]), inner, max_size=2
        )
    ),
    max_leaves=4,
)
_KINDS = st.sampled_from(
    [
        "agent_message_chunk",
        "agent_thought_chunk",
        "tool_call",
        "tool_call_update",
        "plan",
        "available_commands_update",
        "usage_update",
        "session_info_update",
        "current_mode_update",
        "future",
    ]
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    _KINDS,
    st.dictionaries(
        st.sampled_from(
            [
                "content",
                "toolCallId",
                "title",
                "kind",
                "status",
                "entries",
                "availableCommands",
                "used",
                "size",
                "cost",
                "currentModeId",
                "locations",
                "rawInput",
                "rawOutput",
            ]
        ),
        _VALUES,
        max_size=5,
    ),
)
def test_any_update_maps_to_a_known_kind_without_raising(kind: str, fields: dict[str, Any]) -> None:
    update = {"sessionUpdate": kind, **fields}
    data = m.update_to_progress(update)
    assert data["kind"] in PROGRESS_KINDS
    if data["kind"] == "other":
        assert data["update"] == update


def test_state_readers_see_only_their_own_kind() -> None:
    commands = {"sessionUpdate": "available_commands_update", "availableCommands": [{"name": "a"}]}
    assert m.command_names(commands) == ["a"]
    assert m.command_names({"sessionUpdate": "plan"}) is None
    assert m.command_names({"sessionUpdate": "available_commands_update"}) is None
    assert m.current_mode({"sessionUpdate": "current_mode_update", "currentModeId": "x"}) == "x"
    assert m.current_mode({"sessionUpdate": "current_mode_update"}) is None
    assert m.current_mode(commands) is None
    assert m.context_used({"sessionUpdate": "usage_update", "used": 5}) == 5
    assert m.context_used({"sessionUpdate": "usage_update", "used": True}) is None
    assert m.context_used(commands) is None


# -- permissions, stop reasons, usage --------------------------------------------------------


def test_a_permission_request_keeps_the_agents_options_as_given() -> None:
    params = {
        "sessionId": "a1",
        "toolCall": {
            "toolCallId": "t9",
            "title": "`touch f`",
            "kind": "execute",
            "rawInput": {"command": "touch f"},
        },
        "options": [
            {"optionId": "allow", "name": "Allow", "kind": "allow_once"},
            {"optionId": "approved-for-session", "name": "Always", "kind": "allow_always"},
            {"optionId": "abort", "kind": "reject_once"},
            {"name": "no id"},
            "junk",
        ],
    }
    tool, options = perm.permission_request(params)
    assert tool == {
        "tool_call_id": "t9",
        "title": "`touch f`",
        "tool_kind": "execute",
        "raw_input": {"command": "touch f"},
    }
    assert options == [
        {"option_id": "allow", "name": "Allow", "kind": "allow_once"},
        {"option_id": "approved-for-session", "name": "Always", "kind": "allow_always"},
        {"option_id": "abort", "name": "abort", "kind": "reject_once"},
    ]
    assert perm.permission_request({}) == ({"tool_call_id": ""}, [])


def test_permission_outcomes_become_acp_answers() -> None:
    assert perm.permission_answer(PermissionOutcome("allow", "allow_once", "client")) == {
        "outcome": {"outcome": "selected", "optionId": "allow"}
    }
    assert perm.permission_answer(PermissionOutcome("abort", "reject", "timeout")) == {
        "outcome": {"outcome": "selected", "optionId": "abort"}
    }
    assert perm.permission_answer(PermissionOutcome(None, None, "cancel")) == {
        "outcome": {"outcome": "cancelled"}
    }


@pytest.mark.parametrize(
    ("response", "reason"),
    [
        ({"stopReason": "end_turn"}, "end_turn"),
        ({"stopReason": "max_tokens"}, "max_tokens"),
        ({"stopReason": "max_turn_requests"}, "max_turn_requests"),
        ({"stopReason": "refusal"}, "refusal"),
        ({"stopReason": "cancelled"}, CANCELLED),
        ({"stopReason": "new_reason"}, "new_reason"),
        ({}, "end_turn"),
    ],
)
def test_stop_reasons(response: dict[str, Any], reason: str) -> None:
    assert m.stop_reason(response) == reason


def test_prompt_usage() -> None:
    response = {"usage": {"inputTokens": 5, "outputTokens": 7, "totalTokens": 12}}
    assert m.prompt_usage(response) == {"kind": "usage", "input_tokens": 5, "output_tokens": 7}
    assert m.prompt_usage({"usage": {"totalTokens": 3}}) is None
    assert m.prompt_usage({"usage": "x"}) is None
    assert m.prompt_usage({}) is None


# -- the prompt -----------------------------------------------------------------------------


def _image(uri: str, mime: str | None = "image/png") -> InputPart:
    return InputPart(type="image", media=Media(uri=uri, mime_type=mime))


def test_text_then_parts_in_order(tmp_path: Path) -> None:
    png = b"\x89PNG fake"
    (tmp_path / "a.png").write_bytes(png)
    encoded = base64.b64encode(png).decode()
    run = RunInput(
        "r1",
        text="look",
        parts=(
            InputPart(type="text", text="at these"),
            _image("a.png"),
            _image(f"data:image/png;base64,{encoded}"),
            _image(f"file://{tmp_path}/a.png"),
            _image(str(tmp_path / "a.png")),
        ),
    )
    blocks = p.prompt_blocks(run, str(tmp_path))
    assert blocks[:2] == [{"type": "text", "text": "look"}, {"type": "text", "text": "at these"}]
    assert blocks[2] == {"type": "image", "mimeType": "image/png", "data": encoded, "uri": "a.png"}
    assert blocks[3] == {"type": "image", "mimeType": "image/png", "data": encoded}
    assert [b["data"] for b in blocks[4:]] == [encoded, encoded]


def test_a_percent_encoded_data_uri() -> None:
    assert p.image_data("data:image/svg+xml,%3Csvg%3E", "/") == base64.b64encode(b"<svg>").decode()


@pytest.mark.parametrize(
    ("part", "message"),
    [
        (_image("https://example.invalid/a.png"), "fetches nothing"),
        (_image("data:image/png;base64,!!!"), "not valid base64"),
        (_image("data:image/png;base64"), "needs a comma"),
        (_image("file://otherhost/a.png"), "another host"),
        (_image("missing.png"), "cannot be read"),
        (_image("a.png", None), "needs media.uri and mime_type"),
        (InputPart(type="image"), "needs media.uri and mime_type"),
        (InputPart(type="audio"), "unsupported part type"),
    ],
)
def test_bad_image_parts_are_input_errors(tmp_path: Path, part: InputPart, message: str) -> None:
    with pytest.raises(p.InputError, match=message):
        p.prompt_blocks(RunInput("r1", parts=(part,)), str(tmp_path))


def test_images_refused_when_the_agent_takes_none_and_empty_input(tmp_path: Path) -> None:
    with pytest.raises(p.InputError, match="does not accept images"):
        p.prompt_blocks(RunInput("r1", parts=(_image("a.png"),)), str(tmp_path), images=False)
    with pytest.raises(p.InputError, match="no input"):
        p.prompt_blocks(RunInput("r1"), str(tmp_path))


def test_images_are_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(p, "MAX_IMAGE_BYTES", 4)
    (tmp_path / "big.png").write_bytes(b"12345")
    with pytest.raises(p.InputError, match="larger than 4 bytes"):
        p.image_data("big.png", str(tmp_path))
    with pytest.raises(p.InputError, match="larger than 4 bytes"):
        p.image_data("data:image/png;base64," + base64.b64encode(b"12345").decode(), "/")
    assert p.image_data("x.png", "/", read=lambda path: b"abc") == "YWJj"
    assert os.path.isabs(str(tmp_path))


# -- initialize and sessions ------------------------------------------------------------------


def test_parse_initialize() -> None:
    info = caps.parse_initialize(
        {
            "protocolVersion": 1,
            "agentCapabilities": {
                "loadSession": True,
                "promptCapabilities": {"image": True, "embeddedContext": True},
                "sessionCapabilities": {"close": {}},
            },
            "agentInfo": {"name": "claude-agent-acp", "title": "Claude", "version": "0.101.0"},
            "authMethods": [{"id": "api-key", "name": "API key"}, {"name": "no id"}],
        }
    )
    assert info.describe() == {
        "protocol_version": 1,
        "agent": {"name": "claude-agent-acp", "title": "Claude", "version": "0.101.0"},
        "load_session": True,
        "prompt_capabilities": {"image": True, "audio": False, "embedded_context": True},
        "auth_methods": ["api-key"],
    }
    assert info.close_session
    assert caps.parse_initialize("garbage") == caps.AgentInfo()
    assert (
        caps.parse_initialize({"agentCapabilities": {"loadSession": "yes"}}).load_session is False
    )


def test_parse_modes() -> None:
    modes = caps.parse_modes(
        {
            "sessionId": "x",
            "modes": {
                "currentModeId": "default",
                "availableModes": [
                    {"id": "default", "name": "Manual"},
                    {"id": "plan"},
                    {"name": "no id"},
                ],
            },
        }
    )
    assert (modes.current, modes.available) == ("default", ["default", "plan"])
    assert modes.names == {"default": "Manual", "plan": "plan"}
    assert caps.parse_modes({"sessionId": "x"}) == caps.Modes()
    assert caps.parse_modes(None) == caps.Modes()


def test_error_messages_and_stderr_tails() -> None:
    assert m.error_message("Internal error", {"details": "boom"}) == "Internal error: boom"
    assert m.error_message("Internal error: boom", {"details": "boom"}) == "Internal error: boom"
    assert m.error_message("Bad", "why") == "Bad: why"
    assert m.error_message("", None) == "the agent failed"
    assert join_tail([str(n) for n in range(100)]) == "\n".join(str(n) for n in range(80, 100))
    assert join_tail(["x" * 5000], max_chars=10) == "..." + "x" * 10
