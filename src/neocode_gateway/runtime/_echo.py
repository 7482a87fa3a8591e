"""The ``echo`` runtime: a deterministic demo agent for client authors, demos and tests.

Every run streams its input back as ``message_chunk``s, one per word (each
word with the whitespace that follows it, so the chunks joined are exactly
the input text), then ends with ``run_done`` ``end_turn``. Commands are words
of the input, anywhere in it; a command that takes a number reads the next
word. What they add, in this order:

``/think``      ``thought_chunk``s before the answer
``/plan``       a ``plan`` of three entries, whose statuses then advance
``/ask``        a ``tool_call`` (``execute``) and a ``permission_request`` with four
                options (one of each kind); the tool call then completes (allowed)
                or fails (rejected). ``/ask KIND ...`` asks for that tool kind:
                ``/ask read PATH``, ``/ask edit PATH`` (any file kind: the next word
                is the path, relative to the workdir or absolute), ``/ask execute
                WORD...`` (the rest of the input is the command line)
``/wait N``     first a ``phase`` ``waiting_for_model`` (contract v1.2), then N x 100 ms
                of silence (at most 10,000) before the answer, as a slow model; cancelable
``/slow N``     N chunks, 100 ms apart (at most 10,000), on a line of their own after
                the echoed input; cancelable at any point
``/burst N``    N chunks as fast as the gateway takes them (at most 10,000,000)
``/tick N``     N chunks 10 ms apart whose text is the sender's monotonic clock
                (``t=SECONDS``): what the latency benchmark measures
``/hang N``     like ``/slow N``, but deaf to ``cancel``, as a hung agent is: the
                gateway stops the run itself after its cancel grace period
``/fail``       ends with ``run_error`` ``runtime_error``

A run ends with a ``usage`` event (words in, chunks out). The runtime offers
the session modes ``default`` and ``plan``; ``compact`` keeps the last 20% of
the session's history (its inputs and answers) and reports the sizes.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from typing import Any, Final

from neocode_gateway.errors import ModeUnknown, RunFailed
from neocode_gateway.runtime._port import (
    CANCELLED,
    CompactResult,
    PermissionOption,
    RunInput,
    RunSink,
    SessionRef,
)

MODES: Final = ("default", "plan")
SLOW_INTERVAL: Final = 0.1
TICK_INTERVAL: Final = 0.01
LIMITS: Final = {"/slow": 10_000, "/burst": 10_000_000, "/tick": 100_000, "/hang": 10_000}
WAIT_LIMIT: Final = 10_000
OPTIONS: Final[tuple[PermissionOption, ...]] = (
    {"option_id": "allow-once", "name": "Allow once", "kind": "allow_once"},
    {"option_id": "allow-always", "name": "Allow for this session", "kind": "allow_always"},
    {"option_id": "reject-once", "name": "Reject", "kind": "reject_once"},
    {"option_id": "reject-always", "name": "Reject always", "kind": "reject_always"},
)
_WORDS: Final = re.compile(r"\s*\S+\s*")
_KEEP_RATIO: Final = 0.2


class _Canceled(Exception):
    """The run was canceled: unwind to the prompt's return."""


class _SessionState:
    __slots__ = ("canceled", "history", "mode")

    def __init__(self) -> None:
        self.history: list[str] = []
        self.canceled = asyncio.Event()
        self.mode = "default"


class EchoRuntime:
    """The built-in demo agent (see the module docstring for what it does)."""

    name = "echo"

    def __init__(self, slow_interval: float = SLOW_INTERVAL) -> None:
        self.slow_interval = slow_interval
        self._sessions: dict[str, _SessionState] = {}

    def _state(self, session: SessionRef) -> _SessionState:
        state = self._sessions.get(session.id)
        if state is None:
            state = self._sessions[session.id] = _SessionState()
        return state

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        for state in self._sessions.values():
            state.canceled.set()

    async def check_mode(self, session: SessionRef, mode: str) -> None:
        if mode not in MODES:
            raise ModeUnknown(f"echo offers the modes {', '.join(MODES)}, not {mode!r}")

    async def cancel(self, session: SessionRef) -> None:
        state = self._sessions.get(session.id)
        if state is not None:
            state.canceled.set()

    async def compact(self, session: SessionRef) -> CompactResult:
        state = self._state(session)
        text = "".join(state.history)
        if not text:
            return CompactResult(applied=False, before_chars=0, after_chars=0)
        kept = text[len(text) - int(len(text) * _KEEP_RATIO) :]
        state.history = [kept]
        return CompactResult(applied=True, before_chars=len(text), after_chars=len(kept))

    async def prompt(self, session: SessionRef, run: RunInput, sink: RunSink) -> str:
        state = self._state(session)
        state.canceled.clear()
        text = _input_text(run)
        words = text.split()
        try:
            if run.mode and run.mode != state.mode:
                await self.check_mode(session, run.mode)
                state.mode = run.mode
                await sink.emit({"kind": "session_info", "mode": run.mode})
            out = await self._answer(state, text, words, sink, session.workdir)
        except _Canceled:
            return CANCELLED
        state.history.append(text)
        state.history.append(out)
        return "end_turn"

    async def _answer(
        self, state: _SessionState, text: str, words: list[str], sink: RunSink, workdir: str
    ) -> str:
        emitted = 0
        if "/wait" in words:
            await self._wait(state, _count("/wait", words, words.index("/wait")), sink)
        if "/think" in words:
            for thought in ("Reading the input. ", "Deciding what to echo. "):
                await self._emit(state, sink, {"kind": "thought_chunk", "text": thought})
        plan = "/plan" in words
        if plan:
            await self._emit(state, sink, _plan("in_progress", "pending", "pending"))
        chunks = [m.group(0) for m in _WORDS.finditer(text)]
        for chunk in chunks:
            await self._emit(state, sink, {"kind": "message_chunk", "text": chunk})
            emitted += 1
        if plan:
            await self._emit(state, sink, _plan("completed", "in_progress", "pending"))
        if "/ask" in words:
            await self._ask(state, words, sink, workdir)
        for index, word in enumerate(words):
            if word in LIMITS:
                count = _count(word, words, index)
                emitted += await self._repeat(state, word, count, sink)
        if plan:
            await self._emit(state, sink, _plan("completed", "completed", "completed"))
        await self._emit(
            state, sink, {"kind": "usage", "input_tokens": len(words), "output_tokens": emitted}
        )
        if "/fail" in words:
            raise RunFailed("runtime_error", "echo: the input asked for /fail")
        return "".join(chunks)

    async def _emit(self, state: _SessionState, sink: RunSink, data: dict[str, Any]) -> None:
        if state.canceled.is_set():
            raise _Canceled
        await sink.emit(data)

    async def _ask(
        self, state: _SessionState, words: list[str], sink: RunSink, workdir: str
    ) -> None:
        tool_call = _ask_tool_call(words, workdir)
        await self._emit(state, sink, tool_call)
        request = {k: v for k, v in tool_call.items() if k != "kind"}
        outcome = await sink.request_permission(request, OPTIONS)
        if outcome.cancelled:
            raise _Canceled
        status = "completed" if outcome.allowed else "failed"
        update: dict[str, Any] = {
            "kind": "tool_call_update",
            "tool_call_id": "echo-ask-1",
            "status": status,
        }
        if outcome.allowed and tool_call["tool_kind"] == "execute":
            stdout = str(tool_call["raw_input"]["command"]).removeprefix("echo ")
            update["raw_output"] = {"stdout": stdout + "\n", "exit_code": 0}
        await self._emit(state, sink, update)

    async def _wait(self, state: _SessionState, count: int, sink: RunSink) -> None:
        """``/wait N``: say the run waits for the model, then keep silent N intervals."""
        await self._emit(state, sink, {"kind": "phase", "phase": "waiting_for_model"})
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(state.canceled.wait(), count * self.slow_interval)
        if state.canceled.is_set():
            raise _Canceled

    async def _repeat(self, state: _SessionState, command: str, count: int, sink: RunSink) -> int:
        canceled = state.canceled
        if command == "/burst":
            chunk = {"kind": "message_chunk", "text": "."}
            emit = sink.emit
            for _ in range(count):
                if canceled.is_set():
                    raise _Canceled
                await emit(chunk)
            return count
        interval = TICK_INTERVAL if command == "/tick" else self.slow_interval
        deaf = command == "/hang"
        for index in range(count):
            if index:
                if deaf:
                    await asyncio.sleep(interval)
                else:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(canceled.wait(), interval)
            if canceled.is_set() and not deaf:
                raise _Canceled
            text = f"t={time.monotonic():.6f}" if command == "/tick" else f"[{index + 1}/{count}] "
            if index == 0 and command != "/tick":
                text = "\n\n" + text  # a paragraph of its own, apart from the echoed input
            await sink.emit({"kind": "message_chunk", "text": text})
        return count


def _input_text(run: RunInput) -> str:
    if run.text is not None and run.text.strip():
        return run.text
    texts = [p.text for p in run.parts if p.type == "text" and p.text]
    images = [p for p in run.parts if p.type == "image"]
    text = " ".join(texts)
    if images:
        names = ", ".join((p.media.file_name or p.media.uri or "?") for p in images if p.media)
        text = f"{text} [images: {names}]".strip()
    return text


def _count(command: str, words: list[str], index: int) -> int:
    limit = LIMITS.get(command, WAIT_LIMIT)
    word = words[index + 1] if index + 1 < len(words) else ""
    if not word.isdigit() or not 1 <= int(word) <= limit:
        raise RunFailed(
            "runtime_error",
            f"echo: {command} needs a number from 1 to {limit}, got {word or 'nothing'!r}",
        )
    return int(word)


def _plan(*statuses: str) -> dict[str, Any]:
    steps = ("Read the input", "Echo it back", "Report usage")
    priorities = ("high", "medium", "low")
    return {
        "kind": "plan",
        "entries": [
            {"content": step, "priority": priority, "status": status}
            for step, priority, status in zip(steps, priorities, statuses, strict=True)
        ],
    }


#: The tool kinds ``/ask KIND`` takes, and those whose argument is a path.
_ASK_KINDS: Final = frozenset(
    {"read", "edit", "delete", "move", "search", "execute", "think", "fetch", "other"}
)
_FILE_KINDS: Final = frozenset({"read", "edit", "delete", "move", "search"})


def _ask_tool_call(words: list[str], workdir: str) -> dict[str, Any]:
    """The tool call ``/ask`` requests: plain (an ``echo`` of the input's words) or of a
    kind, with its path or command (what a permission policy matches on)."""
    index = words.index("/ask")
    kind = words[index + 1] if index + 1 < len(words) else ""
    tool_call: dict[str, Any] = {
        "kind": "tool_call",
        "tool_call_id": "echo-ask-1",
        "status": "pending",
    }
    if kind in _FILE_KINDS and index + 2 < len(words):
        path = words[index + 2]
        full = path if path.startswith("/") else f"{workdir.rstrip('/')}/{path}"
        tool_call.update(
            title=f"{kind.capitalize()} {path}",
            tool_kind=kind,
            locations=[{"path": full}],
            raw_input={"file_path": full},
        )
    elif kind == "execute" and index + 2 < len(words):
        command = " ".join(words[index + 2 :])
        tool_call.update(
            title=f"Run {command}", tool_kind="execute", raw_input={"command": command}
        )
    elif kind in _ASK_KINDS and kind not in _FILE_KINDS and kind != "execute":
        tool_call.update(title=f"{kind.capitalize()}", tool_kind=kind, raw_input={})
    else:
        command = ("echo " + " ".join(w for w in words if not w.startswith("/"))[:60]).strip()
        tool_call.update(
            title=f"Run {command}", tool_kind="execute", raw_input={"command": command}
        )
    return tool_call
