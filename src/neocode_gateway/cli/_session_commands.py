"""The terminal front-end: ``run``, ``attach``, ``show`` and ``compact`` (contract v1.1).

Every command is a client of a running gateway (the asyncio client underneath,
one connection). Output is rendered for a terminal when stdout is one (and
``NO_COLOR`` is not set), plain text when piped, and raw event frames with
``--json``. Following a run (events, permissions, Ctrl-C) is
:mod:`neocode_gateway.cli._follow`; ``show`` is :mod:`neocode_gateway.cli._show`.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import Any, Final

from neocode_gateway.cli._client_commands import async_client, guarded
from neocode_gateway.cli._common import (
    EXIT_OK,
    EXIT_USAGE,
    add_address_flags,
    describe,
    fail,
    non_empty,
    out,
    out_json,
    styled,
)
from neocode_gateway.cli._follow import follow, note
from neocode_gateway.client import AsyncGatewayClient, ClientError, ErrorFrameReceived, RunStream

DECISIONS: Final = ("allow_once", "allow_session", "reject")

CommandSpec = tuple[
    str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace, str], int]
]


def _renderer(options: argparse.Namespace) -> Any:
    from neocode_gateway.cli._render import PlainRenderer, RichRenderer

    if getattr(options, "json", False):
        return None
    if styled():
        return RichRenderer()
    return PlainRenderer()


# -- run --------------------------------------------------------------------------------------


def _run_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("prompt", nargs="?", help="what to ask; - reads it from stdin")
    target = parser.add_mutually_exclusive_group()
    target.add_argument("--session", metavar="ID", type=non_empty, help="continue this session")
    target.add_argument(
        "--continue",
        dest="cont",
        action="store_true",
        help="continue the most recently updated session",
    )
    parser.add_argument(
        "--workdir",
        metavar="DIR",
        default=None,
        help="working directory of a new session (default: the current directory)",
    )
    parser.add_argument(
        "--agent", metavar="NAME", type=non_empty, help="the agent of a new session"
    )
    parser.add_argument("--mode", metavar="MODE", type=non_empty, help="the agent's session mode")
    parser.add_argument(
        "--image", metavar="FILE", action="append", default=[], help="attach an image (repeatable)"
    )
    parser.add_argument(
        "--approve",
        choices=DECISIONS,
        default=None,
        help="answer every permission request this way, without asking",
    )
    parser.add_argument("--json", action="store_true", help="print the event frames as NDJSON")
    add_address_flags(parser)
    describe(
        parser,
        '  neocode-gateway run "explain this repository"\n'
        "  git diff | neocode-gateway run - --continue\n"
        '  neocode-gateway run "fix the tests" --approve allow_once --json\n\n'
        "Ctrl-C cancels the run (and waits for its end); twice, detaches and leaves it running.\n"
        "exit codes: 0 run_done, 1 run_error, 2 usage, 3 no gateway, 4 timeout, 130 canceled",
    )


def _image_part(path: str) -> dict[str, Any]:
    import mimetypes

    full = os.path.abspath(path)
    if not os.path.isfile(full):
        raise FileNotFoundError(f"--image {path}: no such file")
    mime = mimetypes.guess_type(full)[0] or "application/octet-stream"
    return {
        "type": "image",
        "media": {"uri": f"file://{full}", "mime_type": mime, "file_name": os.path.basename(full)},
    }


def run_run(options: argparse.Namespace, prog: str) -> int:
    """``neocode-gateway run``: start a run and show it until its end."""
    text = options.prompt
    if text == "-":
        text = sys.stdin.read()
    if not options.image and (text is None or not text.strip()):
        return fail(prog, "a prompt is required (an argument, or - to read stdin)", EXIT_USAGE)
    try:
        parts = [_image_part(p) for p in options.image]
    except FileNotFoundError as exc:
        return fail(prog, str(exc), EXIT_USAGE)
    if parts and text and text.strip():
        parts.insert(0, {"type": "text", "text": text})
        text = None
    workdir = os.path.abspath(options.workdir) if options.workdir else None
    return guarded(prog, lambda: _run(options, text, parts, workdir), options)


async def _run(
    options: argparse.Namespace, text: str | None, parts: list[dict[str, Any]], workdir: str | None
) -> int:
    renderer = _renderer(options)
    async with async_client(options) as client:
        client.request_timeout = None if options.timeout is None else options.timeout
        session_id = options.session
        if options.cont:
            page = await client.list_sessions(limit=1)
            if not page.get("sessions"):
                raise ErrorFrameReceived("resource_not_found", "there is no session to continue")
            session_id = page["sessions"][0]["id"]
        if session_id is None and workdir is None:
            workdir = os.getcwd()
        if renderer is not None:
            renderer.waiting("sending the run to the gateway")
        try:
            stream: RunStream = await client.run(
                text,
                input_parts=parts or None,
                session_id=session_id,
                workdir=workdir,
                agent=options.agent,
                mode=options.mode,
            )
        except ErrorFrameReceived as exc:
            if renderer is not None:
                renderer.close()
            if exc.message == "unknown agent" and options.agent:
                raise ClientError(await _no_such_agent(client, options.agent)) from None
            raise
        if renderer is not None:
            renderer.waiting("waiting for the agent")
        return await follow(
            client,
            stream,
            options,
            renderer,
            session_id=stream.session_id,
            cancel=stream.cancel,
            stop_at_end=True,
        )


async def _no_such_agent(client: AsyncGatewayClient, agent: str) -> str:
    """``no agent 'x' (configured: echo, claude; ...)``: the name asked for, and the choices."""
    try:
        names = (await client.status()).get("runtimes") or []
    except ClientError:
        names = []
    known = ", ".join(str(n) for n in names) or "none"
    return (
        f"no agent {agent!r} at this gateway (configured: {known}); neocode-gateway agents "
        "lists the agents of the configuration, which the gateway reads when it starts"
    )


# -- attach -------------------------------------------------------------------------------------


def _attach_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("session", help="the session to follow")
    start = parser.add_mutually_exclusive_group()
    start.add_argument("--from", dest="after", metavar="SEQ", type=int, help="replay after SEQ")
    start.add_argument("--all", action="store_true", help="replay the whole session first")
    parser.add_argument(
        "--until-done", action="store_true", help="exit after the next run ends (for scripts)"
    )
    parser.add_argument(
        "--approve", choices=DECISIONS, default=None, help="answer permission requests this way"
    )
    parser.add_argument("--json", action="store_true", help="print the event frames as NDJSON")
    add_address_flags(parser)
    describe(
        parser,
        "  neocode-gateway attach s_01J...            # show the last run, then follow\n"
        "  neocode-gateway attach s_01J... --all      # replay the session, then follow\n"
        "  neocode-gateway attach s_01J... --from 42  # after seq 42 (what a detach printed)\n\n"
        "It reconnects by itself when the gateway restarts. Ctrl-C detaches.",
    )


def run_attach(options: argparse.Namespace, prog: str) -> int:
    """``neocode-gateway attach``: replay and follow a session."""
    if options.after is not None and options.after < 0:
        return fail(prog, "--from must be a seq >= 0", EXIT_USAGE)
    return guarded(prog, lambda: _attach(options), options)


async def _attach(options: argparse.Namespace) -> int:
    renderer = _renderer(options)
    async with async_client(options) as client:
        loaded = await client.bind_stream(options.session)  # checks the session exists
        await client.unbind_stream(options.session)
        live_from = int(loaded.get("last_seq", 0))
        after = 0 if options.all else options.after
        if after is None:
            after = await _last_run_start(client, options.session, live_from)
            what = "its last run, then what comes" if after < live_from else "what comes"
            note(renderer, f"session {options.session}: showing {what} (Ctrl-C detaches)")

        def reconnecting(state: str) -> None:
            if state == "lost":
                note(renderer, "the gateway went away: reconnecting...")
            else:
                note(renderer, "reconnected")

        events = client.session_events(
            options.session, after_seq=after, reconnect=True, on_reconnect=reconnecting
        )
        return await follow(
            client,
            events,
            options,
            renderer,
            session_id=options.session,
            cancel=None,
            stop_at_end=options.until_done,
            live_from=live_from,
        )


async def _last_run_start(client: AsyncGatewayClient, session_id: str, last_seq: int) -> int:
    """The seq just before the session's last ``run_started`` (``last_seq`` if none).

    The log is read once, without following, so ``attach`` can show the last
    run as a newcomer expects, whatever its length.
    """
    start = last_seq
    if last_seq == 0:
        return 0
    async for event in client.session_events(session_id, after_seq=0, follow=False):
        if event.event_type == "run_started":
            start = event.seq - 1
    return start


# -- compact ------------------------------------------------------------------------------


def _compact_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("session", help="the session to compact")
    parser.add_argument("--json", action="store_true", help="print the gateway's answer as JSON")
    add_address_flags(parser)


def _describe_compaction(result: dict[str, Any]) -> str:
    """``compacted: 5000 -> 1000 characters (saved 80%)``, or in tokens for an ACP agent."""
    head = "compacted" if result.get("applied") else "nothing compacted"
    saved = f"(saved {float(result.get('saved_ratio', 0)):.0%})"
    if result.get("before_chars") or result.get("after_chars"):
        before, after = result.get("before_chars"), result.get("after_chars")
        return f"{head}: {before} -> {after} characters {saved}"
    before, after = result.get("before_tokens"), result.get("after_tokens")
    if before and after is not None:
        return f"{head}: context {before} -> {after} tokens {saved}"
    if after is not None:
        return f"{head}: the agent's context is now {after} tokens"
    return head


def run_compact(options: argparse.Namespace, prog: str) -> int:
    """``neocode-gateway compact``: compact a session's context."""

    async def body() -> int:
        async with async_client(options) as client:
            result = await client.compact(options.session)
        if options.json:
            out_json({"ok": True, **result})
        else:
            out(_describe_compaction(result))
        return EXIT_OK

    return guarded(prog, body, options)


def commands() -> dict[str, CommandSpec]:
    """Name -> (help line, add_arguments, run)."""
    from neocode_gateway.cli._show import run_show, show_arguments

    return {
        "run": ("start a run and watch it stream", _run_arguments, run_run),
        "attach": ("replay and follow a session", _attach_arguments, run_attach),
        "show": ("print a session's transcript", show_arguments, run_show),
        "compact": ("compact a session's context", _compact_arguments, run_compact),
    }
