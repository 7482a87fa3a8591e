"""The terminal front-end: ``run``, ``attach``, ``sessions``, ``show``, ``approve``, ``reject``,
``cancel`` and ``compact`` (contract v1.1).

Every command is a client of a running gateway (the asyncio client underneath,
one connection). Output is rendered for a terminal when stdout is one, plain
text when piped, and raw event frames with ``--json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable
from typing import Any, Final

from neocode_gateway.cli._client_commands import (
    EXIT_ERROR_FRAME,
    EXIT_INTERRUPTED,
    _add_address_flags,
    _client,
    _describe,
    _guarded,
    _out,
    _out_json,
)
from neocode_gateway.cli._common import EXIT_OK, EXIT_USAGE, fail, non_empty, positive_int
from neocode_gateway.client import AsyncGatewayClient, ErrorFrameReceived, RunStream
from neocode_gateway.protocol import Event, encode_event

DECISIONS: Final = ("allow_once", "allow_session", "reject")
_KEYS: Final = {"a": "allow_once", "s": "allow_session", "r": "reject"}


def _renderer(options: argparse.Namespace) -> Any:
    from neocode_gateway.cli._render import PlainRenderer, RichRenderer

    if getattr(options, "json", False):
        return None
    if sys.stdout.isatty():
        return RichRenderer()
    return PlainRenderer()


def _emit(renderer: Any, event: Event) -> None:
    if renderer is None:
        frame = encode_event(
            event.session_id, event.run_id, event.seq, event.event_type, event.ts, event.data
        )
        sys.stdout.write(frame.decode())
        sys.stdout.flush()
    else:
        renderer.feed(event)


def _note(renderer: Any, text: str) -> None:
    if renderer is None:
        sys.stderr.write(text + "\n")
    else:
        renderer.note(text)


def _exit_for(event: Event | None) -> int:
    if event is None:
        return EXIT_INTERRUPTED
    if event.event_type == "run_done":
        return EXIT_OK
    if event.data.get("code") == "canceled":
        return EXIT_INTERRUPTED
    return EXIT_ERROR_FRAME


class _Interrupts:
    """Ctrl-C once: ``on_first`` (cancel); twice: detach (stop following)."""

    def __init__(self, on_first: Callable[[], None]) -> None:
        self.count = 0
        self.detached = asyncio.Event()
        self._on_first = on_first
        self._installed = False

    def __enter__(self) -> _Interrupts:
        loop = asyncio.get_running_loop()
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signal.SIGINT, self._fired)
            self._installed = True
        return self

    def __exit__(self, *exc: object) -> None:
        if self._installed:
            asyncio.get_running_loop().remove_signal_handler(signal.SIGINT)

    def _fired(self) -> None:
        self.count += 1
        if self.count == 1:
            self._on_first()
        else:
            self.detached.set()


async def _until_detached(
    events: AsyncIterator[Event], interrupts: _Interrupts
) -> AsyncIterator[Event]:
    """The events, until the user detaches (a second Ctrl-C)."""
    detach = asyncio.ensure_future(interrupts.detached.wait())
    try:
        while True:
            step = asyncio.ensure_future(events.__anext__())
            done, _ = await asyncio.wait({step, detach}, return_when=asyncio.FIRST_COMPLETED)
            if step not in done:
                step.cancel()
                with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                    await step
                return
            try:
                yield step.result()
            except StopAsyncIteration:
                return
    finally:
        detach.cancel()


async def _answer_permission(
    client: AsyncGatewayClient, options: argparse.Namespace, renderer: Any, event: Event
) -> None:
    """Answer one request: ``--approve``, else a key on a terminal, else say who can.

    Cancelled (by :func:`_follow`) when another client answers first or the run ends.
    """
    permission_id = str(event.data.get("request_id"))
    decision = options.approve
    if decision is None and sys.stdin.isatty() and sys.stdout.isatty() and renderer is not None:
        renderer.pause()
        decision = await _ask(renderer)
    if decision is None:
        _note(
            renderer,
            f"waiting for another client to answer permission {permission_id} "
            f"(neocode-gateway approve {permission_id} | reject {permission_id})",
        )
        return
    try:
        await client.resolve_permission(permission_id, decision)
    except ErrorFrameReceived as exc:
        if exc.code not in ("conflict", "resource_not_found"):
            raise
        _note(renderer, "that permission was already answered")


_PROMPT: Final = "  allow [a]once, allow for the [s]ession, or [r]eject? "


async def _ask(renderer: Any) -> str | None:
    """One key (no Enter needed): a, s or r; ``None`` at end of input."""
    while True:
        sys.stdout.write(_PROMPT)
        sys.stdout.flush()
        try:
            key = await _read_key()
        except asyncio.CancelledError:
            sys.stdout.write("\n")
            sys.stdout.flush()
            raise
        sys.stdout.write((key if key.isprintable() else "") + "\n")
        sys.stdout.flush()
        if not key:
            return None
        decision = _KEYS.get(key.strip().lower()[:1])
        if decision is not None:
            return decision
        _note(renderer, "please answer a, s or r")


async def _read_key() -> str:
    """One key press from the terminal, without echo or Enter; ``""`` at end of input.

    The terminal is in cbreak mode only while waiting (Ctrl-C still interrupts),
    and the wait is a reader on the event loop, so it can be cancelled: the
    question goes away when another client answers it. Where there is no
    termios (Windows), a line is read instead.
    """
    try:
        import termios
        import tty
    except ImportError:  # pragma: no cover - Windows
        line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        return str(line)[:1]
    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    loop = asyncio.get_running_loop()
    got: asyncio.Future[bytes] = loop.create_future()

    def readable() -> None:
        if not got.done():
            try:
                got.set_result(os.read(fd, 32))
            except OSError:
                got.set_result(b"")

    tty.setcbreak(fd, termios.TCSANOW)
    loop.add_reader(fd, readable)
    try:
        data = await got
    finally:
        loop.remove_reader(fd)
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)
    return data.decode(errors="replace")[:1]


async def _follow(
    client: AsyncGatewayClient,
    events: AsyncIterator[Event],
    options: argparse.Namespace,
    renderer: Any,
    *,
    session_id: str,
    cancel: Callable[[], Any] | None,
    stop_at_end: bool,
    live_from: int = 0,
) -> int:
    """Show events, answer permissions, handle Ctrl-C; the exit code of the run's end.

    With ``stop_at_end``, the first terminal event after seq ``live_from`` ends it
    (the ends of runs replayed from the log do not).
    """
    terminal: Event | None = None
    last_seq = 0
    tasks: set[asyncio.Future[Any]] = set()
    # While the user is asked about a permission, events wait here (so nothing is drawn
    # over the question, and a second question waits for the first); the answer of
    # another client, or the run's end, withdraws the question.
    asking: dict[str, asyncio.Task[None]] = {}
    held: list[Event] = []
    settled: set[str] = set()  # permissions answered (or whose run ended): not to ask

    def show(event: Event) -> None:
        _emit(renderer, event)
        permission_id = str(event.data.get("request_id"))
        if (
            event.event_type == "permission_request"
            and event.seq > live_from
            and permission_id not in settled
        ):
            asking[permission_id] = asyncio.ensure_future(ask(permission_id, event))

    def release_held() -> None:
        while held and not asking:
            show(held.pop(0))

    async def ask(permission_id: str, event: Event) -> None:
        try:
            await _answer_permission(client, options, renderer, event)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # shown, never a traceback: the run goes on
            _note(renderer, f"could not answer permission {permission_id}: {exc}")
        finally:
            asking.pop(permission_id, None)
            release_held()

    async def withdraw(permission_ids: set[str] | None = None) -> None:
        """Stop asking about these permissions (all if ``None``): settled elsewhere."""
        if permission_ids is None:
            permission_ids = set(asking) | {
                str(e.data.get("request_id")) for e in held if e.event_type == "permission_request"
            }
        settled.update(permission_ids)
        for key in permission_ids & set(asking):
            task = asking[key]
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def first_interrupt() -> None:
        if cancel is None:
            interrupts.detached.set()
            return
        _note(renderer, "canceling the run (Ctrl-C again to detach and leave it running)")
        task = asyncio.ensure_future(cancel())
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    interrupts = _Interrupts(first_interrupt)
    with interrupts:
        async for event in _until_detached(events, interrupts):
            last_seq = event.seq
            if event.event_type == "permission_resolved":
                await withdraw({str(event.data.get("request_id"))})
            elif event.terminal:
                await withdraw()
            if asking or held:
                held.append(event)
                release_held()
            else:
                show(event)
            if event.terminal and event.seq > live_from:
                terminal = event
                if stop_at_end:
                    break
            if stop_at_end and event.terminal and event.seq == live_from:
                terminal = event  # the replay reached the end of a session that is idle
                break
        await withdraw()
        release_held()
    if renderer is not None:
        renderer.close()
    detached = interrupts.detached.is_set()
    if (terminal is None or (not stop_at_end and detached)) and (interrupts.count or detached):
        _note(
            renderer,
            f"detached. Attach again with: neocode-gateway attach {session_id} --from {last_seq}",
        )
        return EXIT_OK if not stop_at_end else EXIT_INTERRUPTED
    return _exit_for(terminal)


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
    _add_address_flags(parser)
    _describe(
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
    return _guarded(prog, lambda: _run(options, text, parts, workdir))


async def _run(
    options: argparse.Namespace, text: str | None, parts: list[dict[str, Any]], workdir: str | None
) -> int:
    renderer = _renderer(options)
    async with _client(options) as client:
        client.request_timeout = None if options.timeout is None else options.timeout
        session_id = options.session
        if options.cont:
            page = await client.list_sessions(limit=1)
            if not page.get("sessions"):
                raise ErrorFrameReceived("resource_not_found", "there is no session to continue")
            session_id = page["sessions"][0]["id"]
        if session_id is None and workdir is None:
            workdir = os.getcwd()
        stream: RunStream = await client.run(
            text,
            input_parts=parts or None,
            session_id=session_id,
            workdir=workdir,
            agent=options.agent,
            mode=options.mode,
        )
        return await _follow(
            client,
            stream,
            options,
            renderer,
            session_id=stream.session_id,
            cancel=stream.cancel,
            stop_at_end=True,
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
    _add_address_flags(parser)
    _describe(
        parser,
        "  neocode-gateway attach s_01J...            # follow what happens from now on\n"
        "  neocode-gateway attach s_01J... --all      # replay the session, then follow\n"
        "  neocode-gateway attach s_01J... --from 42  # after seq 42 (what a detach printed)\n\n"
        "It reconnects by itself when the gateway restarts. Ctrl-C detaches.",
    )


def run_attach(options: argparse.Namespace, prog: str) -> int:
    """``neocode-gateway attach``: replay and follow a session."""
    if options.after is not None and options.after < 0:
        return fail(prog, "--from must be a seq >= 0", EXIT_USAGE)
    return _guarded(prog, lambda: _attach(options))


async def _attach(options: argparse.Namespace) -> int:
    renderer = _renderer(options)
    async with _client(options) as client:
        loaded = await client.bind_stream(options.session)  # checks the session exists
        await client.unbind_stream(options.session)
        live_from = int(loaded.get("last_seq", 0))
        after = 0 if options.all else options.after
        if after is None:
            after = live_from
            _note(renderer, f"following session {options.session} (from seq {after})")
        events = client.session_events(options.session, after_seq=after, reconnect=True)
        return await _follow(
            client,
            events,
            options,
            renderer,
            session_id=options.session,
            cancel=None,
            stop_at_end=options.until_done,
            live_from=live_from,
        )


# -- sessions, show ---------------------------------------------------------------------------


def _sessions_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--limit", metavar="N", type=positive_int, default=20, help="(default 20)")
    parser.add_argument("--json", action="store_true", help="print one JSON object per session")
    _add_address_flags(parser)
    _describe(parser, "  neocode-gateway sessions\n  neocode-gateway sessions --json --limit 100")


def run_sessions(options: argparse.Namespace, prog: str) -> int:
    """``neocode-gateway sessions``: the most recent sessions."""

    async def body() -> int:
        async with _client(options) as client:
            sessions = []
            async for session in client.iter_sessions(page_size=min(options.limit, 500)):
                sessions.append(session)
                if len(sessions) >= options.limit:
                    break
        if options.json:
            for session in sessions:
                _out_json(session)
            return EXIT_OK
        _table(sessions)
        return EXIT_OK

    return _guarded(prog, body)


def _table(sessions: list[dict[str, Any]]) -> None:
    columns = ("id", "title", "agent", "state", "updated_at", "workdir")
    rows = [[str(s.get(c, "")) for c in columns] for s in sessions]
    if sys.stdout.isatty():
        from rich.console import Console
        from rich.table import Table

        table = Table(*("updated" if c == "updated_at" else c for c in columns))
        for row in rows:
            table.add_row(*row)
        Console().print(table)
        return
    if not rows:
        _out("no sessions")
        return
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(columns)]
    _out("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip())
    for row in rows:
        _out("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


def _show_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("session", help="the session to show")
    parser.add_argument("--json", action="store_true", help="print the load_session answer")
    _add_address_flags(parser)
    _describe(parser, "  neocode-gateway show s_01J...")


def run_show(options: argparse.Namespace, prog: str) -> int:
    """``neocode-gateway show``: a session's transcript."""

    async def body() -> int:
        async with _client(options) as client:
            loaded = await client.load_session(options.session)
        if options.json:
            _out_json(loaded)
            return EXIT_OK
        _out(f"{loaded['id']}  {loaded.get('title', '')}")
        _out(f"agent {loaded.get('agent')}, {loaded.get('state')}, workdir {loaded.get('workdir')}")
        for message in loaded.get("messages", []):
            who = "you" if message["role"] == "user" else "agent"
            _out("")
            _out(f"{who} ({message.get('run_id')}, {message.get('ts')}):")
            _out(str(message.get("text", "")).rstrip())
            for call in message.get("tool_calls") or ():
                _out(f"  [{call.get('status')}] {call.get('title')}")
        return EXIT_OK

    return _guarded(prog, body)


# -- approve, reject, cancel, compact -----------------------------------------------------------


def _permission_arguments(parser: argparse.ArgumentParser, approve: bool) -> None:
    parser.add_argument("permission", help="the permission request's id (p_...)")
    if approve:
        parser.add_argument(
            "--session",
            dest="for_session",
            action="store_true",
            help="allow for the rest of the session (allow_session), not only once",
        )
    _add_address_flags(parser)


def _approve_arguments(parser: argparse.ArgumentParser) -> None:
    _permission_arguments(parser, True)


def _reject_arguments(parser: argparse.ArgumentParser) -> None:
    _permission_arguments(parser, False)


def _resolve(options: argparse.Namespace, prog: str, decision: str) -> int:
    async def body() -> int:
        async with _client(options) as client:
            ack = await client.resolve_permission(options.permission, decision)
        _out(f"{ack.get('request_id')}: {ack.get('decision')}")
        return EXIT_OK

    return _guarded(prog, body)


def run_approve(options: argparse.Namespace, prog: str) -> int:
    """``neocode-gateway approve``: allow a permission request."""
    return _resolve(options, prog, "allow_session" if options.for_session else "allow_once")


def run_reject(options: argparse.Namespace, prog: str) -> int:
    """``neocode-gateway reject``: reject a permission request."""
    return _resolve(options, prog, "reject")


def _cancel_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", nargs="?", help="the run to cancel")
    parser.add_argument("--session", metavar="ID", help="cancel the active run of this session")
    _add_address_flags(parser)


def run_cancel(options: argparse.Namespace, prog: str) -> int:
    """``neocode-gateway cancel``: cancel a run."""
    if not options.run and not options.session:
        return fail(prog, "name a run, or --session ID", EXIT_USAGE)

    async def body() -> int:
        async with _client(options) as client:
            ack = await client.cancel(options.run, session_id=options.session)
        state = "canceled" if ack.get("canceled") else "had already ended"
        _out(f"{ack.get('run_id')}: {state}")
        return EXIT_OK

    return _guarded(prog, body)


def _compact_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("session", help="the session to compact")
    _add_address_flags(parser)


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
        async with _client(options) as client:
            result = await client.compact(options.session)
        _out(_describe_compaction(result))
        return EXIT_OK

    return _guarded(prog, body)


CommandSpec = tuple[
    str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace, str], int]
]


def commands() -> dict[str, CommandSpec]:
    """Name -> (help line, add_arguments, run)."""
    return {
        "run": ("start a run and watch it stream", _run_arguments, run_run),
        "attach": ("replay and follow a session", _attach_arguments, run_attach),
        "sessions": ("list the most recent sessions", _sessions_arguments, run_sessions),
        "show": ("print a session's transcript", _show_arguments, run_show),
        "approve": ("allow a permission request", _approve_arguments, run_approve),
        "reject": ("reject a permission request", _reject_arguments, run_reject),
        "cancel": ("cancel a run", _cancel_arguments, run_cancel),
        "compact": ("compact a session's context", _compact_arguments, run_compact),
    }
