"""Following a run on a terminal: show events, answer permissions, handle Ctrl-C.

:func:`follow` is shared by ``run`` (its own run) and ``attach`` (any
session's runs): Ctrl-C once cancels (``run``) or detaches (``attach``),
twice detaches; a permission request is asked on the terminal (one key), or
answered by ``--approve``, or left to another client, and in every case its
id and the command that answers it elsewhere are on screen.
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

from neocode_gateway.cli._common import EXIT_ERROR_FRAME, EXIT_INTERRUPTED, EXIT_OK
from neocode_gateway.client import AsyncGatewayClient, ErrorFrameReceived
from neocode_gateway.protocol import Event, encode_event

_KEYS: Final = {"a": "allow_once", "s": "allow_session", "r": "reject"}


def emit(renderer: Any, event: Event) -> None:
    """Show one event: rendered, or as its NDJSON frame (``--json``: no renderer)."""
    if renderer is None:
        frame = encode_event(
            event.session_id, event.run_id, event.seq, event.event_type, event.ts, event.data
        )
        sys.stdout.write(frame.decode())
        sys.stdout.flush()
    else:
        renderer.feed(event)


def note(renderer: Any, text: str) -> None:
    """A line of our own (waiting, canceling, detaching): on stderr with ``--json``."""
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
    """Ctrl-C once: ``on_first`` (cancel); twice: detach (stop following).

    While it is installed, the terminal does not echo what is typed: the echo
    of Ctrl-C (``^C``) lands after the live region's last line, which rich pads
    to the full width, so it wraps, the region cannot be erased in place any
    more, and the text streamed so far would be printed again at each redraw.
    """

    def __init__(self, on_first: Callable[[], None]) -> None:
        self.count = 0
        self.detached = asyncio.Event()
        self._on_first = on_first
        self._installed = False
        self._saved_tty: list[Any] | None = None

    def __enter__(self) -> _Interrupts:
        loop = asyncio.get_running_loop()
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signal.SIGINT, self._fired)
            self._installed = True
        self._saved_tty = _quiet_terminal()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._installed:
            asyncio.get_running_loop().remove_signal_handler(signal.SIGINT)
        if self._saved_tty is not None:
            _restore_terminal(self._saved_tty)

    def _fired(self) -> None:
        self.count += 1
        if self.count == 1:
            self._on_first()
        else:
            self.detached.set()


def _quiet_terminal() -> list[Any] | None:
    """Turn off the echo of the terminal on stdin (if it is one); the settings to restore."""
    try:
        import termios
    except ImportError:  # pragma: no cover - Windows
        return None
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        return None
    fd = sys.stdin.fileno()
    try:
        saved = termios.tcgetattr(fd)
        quiet = termios.tcgetattr(fd)
        quiet[3] &= ~(termios.ECHO | termios.ECHOCTL)
        termios.tcsetattr(fd, termios.TCSANOW, quiet)
    except termios.error:  # pragma: no cover - a terminal that refuses
        return None
    return saved


def _restore_terminal(saved: list[Any]) -> None:
    import termios

    with contextlib.suppress(termios.error):
        termios.tcsetattr(sys.stdin.fileno(), termios.TCSADRAIN, saved)


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
        decision = await _ask(renderer, permission_id)
    if decision is None:
        note(
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
        note(renderer, "that permission was already answered")


_PROMPT: Final = "  allow [a]once, allow for the [s]ession, or [r]eject? "


def elsewhere(permission_id: str) -> str:
    """How to answer ``permission_id`` from another terminal."""
    return (
        f"  {permission_id}: from another terminal, neocode-gateway approve {permission_id}"
        f" (--session for the whole session) or neocode-gateway reject {permission_id}"
    )


async def _ask(renderer: Any, permission_id: str) -> str | None:
    """One key (no Enter needed): a, s or r; ``None`` at end of input."""
    sys.stdout.write(elsewhere(permission_id) + "\n")
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
        note(renderer, "please answer a, s or r")


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


async def follow(
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
    # Requests met in the replay: asked once the replay is over if still open then (an
    # attach to a run that waits for an answer must be able to give it).
    replayed_open: dict[str, Event] = {}

    def show(event: Event) -> None:
        emit(renderer, event)
        permission_id = str(event.data.get("request_id"))
        if event.event_type != "permission_request" or permission_id in settled:
            return
        if event.seq > live_from:
            asking[permission_id] = asyncio.ensure_future(ask(permission_id, event))
        else:
            replayed_open[permission_id] = event

    def replay_over() -> None:
        for permission_id, event in list(replayed_open.items()):
            if permission_id not in settled and permission_id not in asking:
                asking[permission_id] = asyncio.ensure_future(ask(permission_id, event))
        replayed_open.clear()

    def release_held() -> None:
        while held and not asking:
            show(held.pop(0))

    async def ask(permission_id: str, event: Event) -> None:
        try:
            await _answer_permission(client, options, renderer, event)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # shown, never a traceback: the run goes on
            note(renderer, f"could not answer permission {permission_id}: {exc}")
        finally:
            asking.pop(permission_id, None)
            release_held()

    async def withdraw(permission_ids: set[str] | None = None) -> None:
        """Stop asking about these permissions (all if ``None``): settled elsewhere."""
        if permission_ids is None:
            permission_ids = (
                set(asking)
                | set(replayed_open)
                | {
                    str(e.data.get("request_id"))
                    for e in held
                    if e.event_type == "permission_request"
                }
            )
        settled.update(permission_ids)
        for key in permission_ids:
            replayed_open.pop(key, None)
        for key in permission_ids & set(asking):
            task = asking[key]
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def first_interrupt() -> None:
        if cancel is None:
            interrupts.detached.set()
            return
        note(renderer, "canceling the run (Ctrl-C again to detach and leave it running)")
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
            if event.seq == live_from and not (stop_at_end and event.terminal):
                replay_over()
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
        note(
            renderer,
            f"detached. Attach again with: neocode-gateway attach {session_id} --from {last_seq}",
        )
        return EXIT_OK if not stop_at_end else EXIT_INTERRUPTED
    return _exit_for(terminal)
