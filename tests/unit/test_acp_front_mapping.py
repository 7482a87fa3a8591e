"""The front door's mapping (contract -> ACP), pure: each result is valid for the SDK's models."""

from __future__ import annotations

from typing import Any

import pytest
from acp.schema import (
    InitializeResponse,
    PromptRequest,
    RequestPermissionRequest,
    SessionNotification,
)

from neocode_gateway.acp_front import _mapping as m
from neocode_gateway.runtime.acp import _mapping as reverse


def _valid(update: dict[str, Any] | None) -> dict[str, Any]:
    assert update is not None
    SessionNotification.model_validate({"sessionId": "s", "update": update})
    return update


@pytest.mark.timeout(10)
@pytest.mark.parametrize(
    ("data", "kind"),
    [
        ({"kind": "message_chunk", "text": "hi"}, "agent_message_chunk"),
        ({"kind": "thought_chunk", "text": "hmm"}, "agent_thought_chunk"),
        (
            {
                "kind": "tool_call",
                "tool_call_id": "t1",
                "title": "Edit a.py",
                "tool_kind": "edit",
                "status": "pending",
                "locations": [{"path": "/w/a.py", "line": 3}],
                "raw_input": {"path": "a.py"},
                "content": [{"type": "diff", "path": "/w/a.py", "oldText": "a", "newText": "b"}],
            },
            "tool_call",
        ),
        (
            {"kind": "tool_call_update", "tool_call_id": "t1", "status": "completed"},
            "tool_call_update",
        ),
        (
            {
                "kind": "plan",
                "entries": [{"content": "x", "priority": "high", "status": "pending"}],
            },
            "plan",
        ),
        (
            {"kind": "commands", "commands": [{"name": "web", "description": "search"}]},
            "available_commands_update",
        ),
        ({"kind": "session_info", "mode": "plan"}, "current_mode_update"),
        ({"kind": "session_info", "title": "Fix the bug"}, "session_info_update"),
        ({"kind": "usage", "context_used": 10, "context_size": 100}, "usage_update"),
        (
            {"kind": "other", "update": {"sessionUpdate": "session_info_update", "title": "t"}},
            "session_info_update",
        ),
    ],
)
def test_each_progress_kind_becomes_its_update(data: dict[str, Any], kind: str) -> None:
    assert _valid(m.progress_update(data))["sessionUpdate"] == kind


@pytest.mark.timeout(10)
@pytest.mark.parametrize(
    "data",
    [
        {"kind": "phase", "phase": "starting_agent"},
        {"kind": "usage", "input_tokens": 3},
        {"kind": "session_info", "context_reset": True, "message": "lost"},
        {"kind": "other", "update": {"no": "kind"}},
        {"kind": "brand_new"},
        {"kind": "tool_call"},
        {},
    ],
)
def test_what_acp_has_no_update_for_is_skipped(data: dict[str, Any]) -> None:
    assert m.progress_update(data) is None


@pytest.mark.timeout(10)
def test_it_is_the_reverse_of_the_runtime_mapping() -> None:
    """An ACP update through the runtime's mapping and back is the update again."""
    updates: list[dict[str, Any]] = [
        {"sessionUpdate": "agent_message_chunk", "content": {"type": "text", "text": "a"}},
        {
            "sessionUpdate": "tool_call",
            "toolCallId": "t",
            "title": "Run ls",
            "kind": "execute",
            "status": "in_progress",
            "rawInput": {"command": "ls"},
        },
        {"sessionUpdate": "current_mode_update", "currentModeId": "plan"},
        {
            "sessionUpdate": "plan",
            "entries": [{"content": "c", "priority": "low", "status": "completed"}],
        },
    ]
    for update in updates:
        assert m.progress_update(reverse.update_to_progress(update)) == update


@pytest.mark.timeout(10)
def test_run_input_becomes_user_message_chunks() -> None:
    updates = m.user_message_updates(
        {
            "input_text": "look",
            "input_parts": [
                {"type": "text", "text": "more"},
                {
                    "type": "image",
                    "media": {"uri": "data:image/png;base64,AAA=", "mime_type": "image/png"},
                },
                {"type": "image", "media": {"uri": "/w/shot.png", "mime_type": "image/png"}},
            ],
        }
    )
    assert [u["content"]["type"] for u in updates] == ["text", "text", "image", "resource_link"]
    for update in updates:
        _valid(update)


@pytest.mark.timeout(10)
def test_permission_params_keep_the_options_and_decisions_follow_their_kind() -> None:
    data = {
        "request_id": "p1",
        "tool_call": {"tool_call_id": "t", "title": "rm", "tool_kind": "delete"},
        "options": [
            {"option_id": "allow-once", "name": "Allow once", "kind": "allow_once"},
            {"option_id": "always", "name": "Always", "kind": "allow_always"},
            {"option_id": "no", "name": "Reject", "kind": "reject_once"},
        ],
    }
    params = m.permission_params("s1", data)
    request = RequestPermissionRequest.model_validate(params)
    assert [o.option_id for o in request.options] == ["allow-once", "always", "no"]
    assert request.tool_call.kind == "delete"
    assert m.decision_for("always", data) == "allow_session"
    assert m.decision_for("no", data) == "reject"
    assert m.decision_for("unknown", data) is None


@pytest.mark.timeout(10)
def test_terminal_events_become_stop_reasons_or_errors() -> None:
    assert m.stop_reason("run_done", {"stop_reason": "max_tokens"}) == "max_tokens"
    assert m.stop_reason("run_error", {"code": "canceled", "message": "x"}) == "cancelled"
    assert m.stop_reason("run_error", {"code": "runtime_error", "message": "boom"}) == (
        "runtime_error",
        "boom",
    )
    assert m.jsonrpc_code("resource_not_found") == -32002
    assert m.jsonrpc_code("invalid_action") == -32602
    assert m.jsonrpc_code("conflict") == -32603


@pytest.mark.timeout(10)
def test_prompt_blocks_become_run_input() -> None:
    assert m.prompt_input([{"type": "text", "text": "hi"}]) == ("hi", [])
    text, parts = m.prompt_input(
        [
            {"type": "text", "text": "see"},
            {"type": "resource", "resource": {"uri": "file:///a.py", "text": "x = 1"}},
            {"type": "resource_link", "uri": "file:///b.py", "name": "b.py"},
            {
                "type": "resource",
                "resource": {"uri": "file:///i.png", "blob": "QQ==", "mimeType": "image/png"},
            },
        ]
    )
    assert text is None
    assert [p["type"] for p in parts] == ["text", "text", "text", "image"]
    PromptRequest.model_validate({"sessionId": "s", "prompt": [{"type": "text", "text": "see"}]})


@pytest.mark.timeout(10)
@pytest.mark.parametrize(
    "blocks",
    [
        [],
        [{"type": "text", "text": "  "}],
        [{"type": "audio", "data": "AA==", "mimeType": "audio/wav"}],
        [{"type": "resource", "resource": {"uri": "file:///x.bin", "blob": "AA=="}}],
        [{"type": "image", "mimeType": "image/png"}],
    ],
)
def test_prompts_the_contract_cannot_carry_are_refused(blocks: list[dict[str, Any]]) -> None:
    with pytest.raises(m.PromptError):
        m.prompt_input(blocks)


@pytest.mark.timeout(10)
def test_the_quick_initialize_answer_is_valid_acp() -> None:
    answer = InitializeResponse.model_validate(m.initialize_result("1.2.3"))
    assert answer.protocol_version == 1
    assert answer.agent_capabilities is not None
    assert answer.agent_capabilities.load_session is True


@pytest.mark.timeout(30)
def test_the_front_door_is_a_client_of_the_contract_only() -> None:
    """Nothing of the session core is loaded by the front door."""
    import subprocess
    import sys

    probe = (
        "import sys\nimport neocode_gateway.acp_front._agent, neocode_gateway.acp_front._stdio\n"
        "from neocode_gateway.cli import build_parser\nbuild_parser('acp')\n"
        "print('\\n'.join(sys.modules))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=30
    ).stdout.split()
    core = ("sessions", "server", "store", "dispatch")
    assert not [
        m
        for m in loaded
        if m.split(".")[1:2] and m.split(".")[1] in core and m.startswith("neocode_gateway.")
    ]
