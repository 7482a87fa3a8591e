"""The terminal renderers, fed recorded events, without a gateway."""

from __future__ import annotations

import io
from typing import Any

from rich.console import Console

from neocode_gateway.cli._render import PlainRenderer, RichRenderer, describe_end, describe_usage
from neocode_gateway.protocol import Event


def event(seq: int, event_type: str, **data: Any) -> Event:
    return Event("s_1", "r_1", seq, event_type, "2026-11-24T00:00:00.000Z", data)


def test_usage_is_readable() -> None:
    assert (
        describe_usage(
            {
                "kind": "usage",
                "context_used": 37,
                "context_size": 1000,
                "cost": {"amount": 0.0034000000000000002, "currency": "USD"},
            }
        )
        == "context 37/1000, cost 0.0034 USD"
    )
    assert describe_usage({"kind": "usage", "input_tokens": 25}) == "input tokens 25"


def test_plain_renderer_prints_the_run() -> None:
    out = io.StringIO()
    renderer = PlainRenderer(out)
    renderer.feed(event(1, "run_started", input_text="hi"))
    renderer.feed(event(2, "run_progress", kind="message_chunk", text="Hello "))
    renderer.feed(event(3, "run_progress", kind="message_chunk", text="world"))
    renderer.feed(event(4, "run_progress", kind="usage", input_tokens=3))
    renderer.feed(event(5, "run_done", stop_reason="end_turn"))
    renderer.close()
    assert out.getvalue() == "Hello world\nusage: input tokens 3\ndone (end_turn)\n"


def test_rich_renderer_merges_usage_reported_apart() -> None:
    out = io.StringIO()
    renderer = RichRenderer(Console(file=out, force_terminal=False, width=100))
    renderer.feed(event(1, "run_progress", kind="usage", context_used=10, context_size=100))
    renderer.feed(event(2, "run_progress", kind="usage", input_tokens=3, output_tokens=4))
    renderer.feed(event(3, "run_done", stop_reason="end_turn"))
    renderer.close()
    assert "usage: context 10/100, input tokens 3, output tokens 4" in out.getvalue()


def test_a_context_reset_is_said(capsys: Any) -> None:
    reset = event(2, "run_progress", kind="session_info", context_reset=True, message="it forgot")
    out = io.StringIO()
    PlainRenderer(out).feed(reset)
    RichRenderer(Console(file=out, force_terminal=False, width=100)).feed(reset)
    assert "note: it forgot" in capsys.readouterr().err + out.getvalue()


def test_phases_are_said_once_each_on_a_pipe(capsys: Any) -> None:
    out = io.StringIO()
    renderer = PlainRenderer(out)
    renderer.feed(event(1, "run_progress", kind="phase", phase="starting_agent"))
    renderer.feed(event(2, "run_progress", kind="phase", phase="starting_agent"))
    renderer.feed(event(3, "run_progress", kind="phase", phase="waiting_for_model"))
    assert capsys.readouterr().err == "... starting the agent\n... waiting for the model\n"
    assert out.getvalue() == ""


def test_rich_spinner_follows_the_phase_and_stops_at_content() -> None:
    out = io.StringIO()
    renderer = RichRenderer(Console(file=out, force_terminal=True, width=100))
    renderer.waiting("sending the run to the gateway")
    renderer.feed(event(1, "run_progress", kind="phase", phase="creating_session"))
    assert renderer._spinner is not None
    renderer._spinner_line()
    assert "creating the agent's session... 0s" in str(renderer._spinner.text)
    renderer.feed(event(2, "run_progress", kind="message_chunk", text="hi"))
    assert renderer._wait_label is None
    renderer.close()


def test_agent_errors_come_with_their_next_step() -> None:
    auth = describe_end(
        event(9, "run_error", code="runtime_error", message="Authentication required")
    )
    assert "ANTHROPIC_API_KEY" in auth
    assert "claude /login" in auth
    root = describe_end(
        event(
            9,
            "run_error",
            code="runtime_error",
            message="--dangerously-skip-permissions cannot be used with root/sudo privileges",
        )
    )
    assert "IS_SANDBOX" in root
    assert "next step" not in describe_end(event(9, "run_error", code="canceled", message="x"))
