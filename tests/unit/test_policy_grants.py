"""Grants match exactly what was allowed for the session; tool calls map to requests."""

from __future__ import annotations

from typing import Any

import pytest

from neocode_gateway.policy import (
    TOOL_KINDS,
    Grant,
    Policy,
    ToolRequest,
    decide_with_grants,
    grant_from_request,
    request_from_tool_call,
)
from neocode_gateway.protocol import TOOL_KINDS as CONTRACT_KINDS

WD = "/srv/code/app"


def test_tool_kinds_are_the_contracts() -> None:
    assert TOOL_KINDS == CONTRACT_KINDS


def test_execute_grant_matches_the_exact_command_only() -> None:
    request = ToolRequest("execute", command="git  push origin main")
    grant = grant_from_request(request, "s1", workdir=WD)
    assert grant.command == "git push origin main"
    assert grant.rule == "execute(git push origin main)"
    assert grant.matches(ToolRequest("execute", command="git push origin main"), "s1", 0.0)
    assert not grant.matches(ToolRequest("execute", command="git push origin dev"), "s1", 0.0)
    assert not grant.matches(ToolRequest("execute", command="git push origin main"), "s2", 0.0)
    assert not grant.matches(ToolRequest("read", paths=("x",)), "s1", 0.0)
    assert not grant.matches(ToolRequest("execute"), "s1", 0.0)


def test_file_grant_matches_the_same_paths_or_fewer() -> None:
    grant = grant_from_request(ToolRequest("edit", paths=("src/a.py", "src/b.py")), "s", workdir=WD)
    assert grant.paths == (f"{WD}/src/a.py", f"{WD}/src/b.py")
    assert grant.matches(ToolRequest("edit", paths=(f"{WD}/src/a.py",)), "s", 0.0)
    assert grant.matches(ToolRequest("edit", paths=("src/./b.py", "src/a.py")), "s", 0.0)
    assert not grant.matches(ToolRequest("edit", paths=("src/c.py",)), "s", 0.0)
    assert not grant.matches(ToolRequest("edit", paths=("src/a.py", "src/c.py")), "s", 0.0)
    assert not grant.matches(ToolRequest("edit"), "s", 0.0)
    assert not grant.matches(ToolRequest("delete", paths=("src/a.py",)), "s", 0.0)


def test_grants_without_anything_to_match_match_nothing() -> None:
    assert not grant_from_request(ToolRequest("edit"), "s", workdir=WD).matches(
        ToolRequest("edit"), "s", 0.0
    )
    empty = grant_from_request(ToolRequest("execute"), "s", workdir=WD)
    assert not empty.matches(ToolRequest("execute", command=""), "s", 0.0)


def test_other_kinds_match_by_title() -> None:
    grant = grant_from_request(ToolRequest("fetch", title="Fetch https://a"), "s", workdir=WD)
    assert grant.matches(ToolRequest("fetch", title="Fetch https://a"), "s", 0.0)
    assert not grant.matches(ToolRequest("fetch", title="Fetch https://b"), "s", 0.0)


def test_expiry_and_remaining_uses() -> None:
    request = ToolRequest("execute", command="make")
    grant = grant_from_request(request, "s", workdir=WD, expires_at=100.0, remaining=2)
    assert grant.matches(request, "s", 99.9)
    assert not grant.matches(request, "s", 100.0)
    once = grant.used()
    assert once.remaining == 1
    assert once.matches(request, "s", 0.0)
    assert not once.used().matches(request, "s", 0.0)
    assert once.used().used().remaining == 0
    forever = Grant("s", "execute", WD, command="make")
    assert forever.used() is forever
    assert forever.matches(request, "s", 1e12)


def test_deny_beats_a_grant_and_a_grant_beats_ask() -> None:
    policy = Policy.from_tables(
        [{"ask": ["execute(git push *)"], "deny": ["execute(git push --force *)"]}]
    )
    push = ToolRequest("execute", command="git push origin")
    force = ToolRequest("execute", command="git push --force origin")
    grants = [grant_from_request(r, "s", workdir=WD) for r in (push, force)]
    kwargs: dict[str, Any] = {"agent": "a", "workdir": WD, "grants": grants, "now": 0.0}
    decision, used = decide_with_grants(policy, push, session_id="s", **kwargs)
    assert (decision.verdict, decision.source, used) == ("allow", "grant", grants[0])
    decision, used = decide_with_grants(policy, force, session_id="s", **kwargs)
    assert (decision.verdict, used) == ("deny", None)
    decision, used = decide_with_grants(policy, push, session_id="other", **kwargs)
    assert (decision.verdict, decision.rule, used) == ("ask", "execute(git push *)", None)


# -- tool calls --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tool_call", "expected"),
    [
        (  # the echo runtime's /ask
            {
                "tool_call_id": "echo-ask-1",
                "title": "Run echo hi",
                "tool_kind": "execute",
                "status": "pending",
                "raw_input": {"command": "echo hi"},
            },
            ToolRequest("execute", command="echo hi", title="Run echo hi"),
        ),
        (  # Claude Code's Bash tool: the title is the command in backticks
            {"title": "`git diff`", "tool_kind": "execute"},
            ToolRequest("execute", command="git diff", title="`git diff`"),
        ),
        (  # Codex: an argv with a shell wrapper
            {"tool_kind": "execute", "raw_input": {"command": ["bash", "-lc", "git status"]}},
            ToolRequest("execute", command="git status"),
        ),
        (
            {"tool_kind": "execute", "raw_input": {"command": ["ls", "-l", "a b"]}},
            ToolRequest("execute", command="ls -l 'a b'"),
        ),
        (  # Claude Code's Edit: locations first, raw_input.file_path otherwise
            {
                "tool_kind": "edit",
                "title": "Edit",
                "locations": [{"path": "/w/a.py", "line": 3}, {"path": "/w/a.py"}, {"path": 3}],
                "raw_input": {"file_path": "/w/b.py"},
            },
            ToolRequest("edit", paths=("/w/a.py",), title="Edit"),
        ),
        (
            {"tool_kind": "edit", "raw_input": {"file_path": "/w/b.py"}},
            ToolRequest("edit", paths=("/w/b.py",)),
        ),
        ({"tool_kind": "read", "raw_input": {"path": "x"}}, ToolRequest("read", paths=("x",))),
        ({"tool_kind": "write", "title": 5}, ToolRequest("other")),
        ({}, ToolRequest("other")),
        ({"tool_kind": "execute", "raw_input": "ls"}, ToolRequest("execute")),
        ({"tool_kind": "think", "raw_input": {"command": "ls"}}, ToolRequest("think")),
    ],
)
def test_request_from_tool_call(tool_call: dict[str, Any], expected: ToolRequest) -> None:
    assert request_from_tool_call(tool_call) == expected
