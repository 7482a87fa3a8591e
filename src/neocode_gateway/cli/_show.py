"""``neocode-gateway show``: a session's transcript, with what went wrong in it.

The transcript (``load_session``) holds what was said; how each run ended and
which permissions were asked and answered live only in the event log. ``show``
reads both (the log replayed once, without following) and prints each run's
outcome after its messages, so an interrupted or failed run does not look
like a normal one.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any, Final

from neocode_gateway.cli._client_commands import async_client, guarded
from neocode_gateway.cli._common import EXIT_OK, add_address_flags, describe, out, out_json
from neocode_gateway.cli._render import describe_end, tool_command
from neocode_gateway.protocol import Event

#: The events that tell how a run went, beside its messages.
OUTCOMES: Final = frozenset({"run_error", "run_done", "permission_request", "permission_resolved"})


def show_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("session", help="the session to show")
    parser.add_argument(
        "--json",
        action="store_true",
        help="print the load_session answer, with the outcome events under 'events'",
    )
    add_address_flags(parser)
    describe(parser, "  neocode-gateway show s_01J...\n  neocode-gateway show s_01J... --json")


def run_show(options: argparse.Namespace, prog: str) -> int:
    """``neocode-gateway show``: a session's transcript and its runs' outcomes."""

    async def body() -> int:
        async with async_client(options) as client:
            loaded = await client.load_session(options.session)
            outcomes = [
                event
                async for event in client.session_events(options.session, after_seq=0, follow=False)
                if event.event_type in OUTCOMES
            ]
        if options.json:
            loaded["events"] = [_as_dict(e) for e in outcomes]
            out_json(loaded)
            return EXIT_OK
        _print(loaded, outcomes)
        return EXIT_OK

    return guarded(prog, body, options)


def _as_dict(event: Event) -> dict[str, Any]:
    return {
        "seq": event.seq,
        "run_id": event.run_id,
        "event_type": event.event_type,
        "ts": event.ts,
        "data": event.data,
    }


def _print(loaded: dict[str, Any], outcomes: list[Event]) -> None:
    out(f"{loaded['id']}  {loaded.get('title', '')}")
    out(f"agent {loaded.get('agent')}, {loaded.get('state')}, workdir {loaded.get('workdir')}")
    by_run: dict[str | None, list[Event]] = {}
    for event in outcomes:
        by_run.setdefault(event.run_id, []).append(event)
    messages = list(loaded.get("messages", []))
    last_index = {m.get("run_id"): i for i, m in enumerate(messages)}
    for index, message in enumerate(messages):
        who = "you" if message["role"] == "user" else "agent"
        out("")
        out(f"{who} ({message.get('run_id')}, {message.get('ts')}):")
        out(str(message.get("text", "")).rstrip())
        for call in message.get("tool_calls") or ():
            out(f"  [{call.get('status')}] {call.get('title')}")
        run_id = message.get("run_id")
        if last_index.get(run_id) == index:
            _outcome_lines(by_run.pop(run_id, []), out)
    for events in by_run.values():  # runs without a message in the transcript
        _outcome_lines(events, out)


def _outcome_lines(events: list[Event], write: Callable[[str], None]) -> None:
    """The permissions of one run and how it ended, one line each."""
    asked: dict[str, str] = {}
    for event in events:
        data = event.data
        if event.event_type == "permission_request":
            call = data.get("tool_call") or {}
            command = tool_command(call)
            what = str(call.get("title", "a tool call")) + (f": {command}" if command else "")
            asked[str(data.get("request_id"))] = what
            write(f"  permission {data.get('request_id')} asked: {what}")
        elif event.event_type == "permission_resolved":
            write(
                f"  permission {data.get('request_id')}: {data.get('decision')}"
                f" (by {data.get('decided_by')})"
            )
        elif event.event_type == "run_error":
            write(f"  run {event.run_id} ended with {describe_end(event)}")
        elif event.event_type == "run_done" and data.get("stop_reason", "end_turn") != "end_turn":
            write(f"  run {event.run_id} {describe_end(event)}")
