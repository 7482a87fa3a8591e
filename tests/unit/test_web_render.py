"""The web page's transcript items, rendered on the server: every kind, inert HTML, diffs."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("markdown_it")

from neocode_gateway.protocol import Event
from neocode_gateway.web._render import TranscriptView, render_diff


def _event(seq: int, event_type: str, data: dict[str, Any], run: str = "r1") -> Event:
    return Event(
        session_id="s_1",
        run_id=run,
        seq=seq,
        event_type=event_type,
        ts="2026-12-04T10:00:00.000Z",
        data=data,
    )


def test_every_kind_becomes_an_item() -> None:
    view = TranscriptView("s_1", can_approve=True)
    events = [
        _event(1, "run_started", {"input_text": "fix it **now**", "workdir": "/w"}),
        _event(2, "run_progress", {"kind": "thought_chunk", "text": "thinking"}),
        _event(3, "run_progress", {"kind": "message_chunk", "text": "Hello <b>x</b>"}),
        _event(
            4,
            "run_progress",
            {
                "kind": "plan",
                "entries": [
                    {"content": "a", "priority": "high", "status": "completed"},
                    {"content": "b", "priority": "low", "status": "in_progress"},
                    "not an entry",
                ],
            },
        ),
        _event(
            5,
            "run_progress",
            {
                "kind": "tool_call",
                "tool_call_id": "t1",
                "title": "Edit x",
                "tool_kind": "edit",
                "status": "in_progress",
                "content": [
                    {"type": "diff", "path": "x.py", "oldText": "a\nb", "newText": "a\nc"},
                    {"type": "content", "content": {"type": "text", "text": "output"}},
                    {"type": "terminal", "terminalId": "term-1"},
                    "junk",
                ],
            },
        ),
        _event(
            6,
            "run_progress",
            {"kind": "tool_call_update", "tool_call_id": "t1", "status": "completed"},
        ),
        _event(
            7,
            "run_progress",
            {
                "kind": "usage",
                "input_tokens": 1200,
                "output_tokens": 7,
                "cost": {"amount": 0.01, "currency": "USD"},
            },
        ),
        _event(8, "run_progress", {"kind": "phase", "phase": "waiting_for_model"}),
        _event(
            9,
            "permission_request",
            {
                "request_id": "p1",
                "tool_call": {"title": "Run ls"},
                "options": [{"option_id": "a", "name": "Allow once", "kind": "allow_once"}],
            },
        ),
        _event(
            10,
            "permission_resolved",
            {
                "request_id": "p1",
                "decision": "allow_once",
                "decided_by": "client",
                "client": "web",
                "device": "phone",
            },
        ),
        _event(11, "run_error", {"code": "canceled", "message": "the run was canceled"}),
    ]
    items = [item for event in events for item in view.feed(event)]
    html = "\n".join(item["html"] for item in items)
    kinds = {item["k"] for item in items}
    assert {"user", "thought", "msg", "plan", "tool", "usage", "phase", "perm"} <= kinds
    assert "<b>x</b>" not in html  # raw HTML is escaped, never rendered
    assert "&lt;b&gt;" in html
    assert "<strong>now</strong>" in html  # Markdown is
    assert 'class="add"' in html
    assert 'class="del"' in html
    assert "by web (phone)" in html
    assert "Run ended: canceled" in html
    assert "cost: 0.01 USD" in html


def test_a_diff_escapes_its_lines() -> None:
    html = render_diff("<a>.py", "x", "<script>alert(1)</script>")
    assert "<script>" not in html
    assert "&lt;script&gt;" in html
