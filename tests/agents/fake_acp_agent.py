"""A scripted ACP agent for tests, written with the SDK's agent side.

Run as ``python tests/agents/fake_acp_agent.py``. It answers every prompt by
echoing it (``echo: TEXT`` in two chunks); words of the prompt starting with
``/`` are commands, in order (a command taking an argument reads the next
word)::

    /think        a thought chunk
    /tool         a tool call (execute, with locations, raw input, content) and its update
    /plan         a plan of two entries
    /commands     an available_commands_update
    /compact      a usage_update: the context is now 300 tokens
    /usage        a usage_update (context used/size, cost); the response carries token usage
    /title T      a session_info_update with title T
    /mode M       a current_mode_update to M
    /unknown      an update of a kind no schema knows (sent raw)
    /image        says how many image blocks the prompt had, their types and sizes
    /ask          a tool call and a permission request; says what was chosen
                  (a cancelled answer ends the turn with stopReason cancelled)
    /read P       fs/read_text_file P; says the content or the error
    /write P      fs/write_text_file P ("written by fake"); says ok or the error
    /term CMD     terminal/create ``sh -c CMD`` (the rest of the prompt), waits, says the output
    /termcwd D    terminal/create ``pwd`` in cwd D; says the output or the error
    /termbig N    terminal/create printing N bytes with outputByteLimit 1000; says the size
    /termhang     terminal/create ``sleep 600`` (pid in the message), then hangs like /hang
    /slow N       N chunks 50 ms apart; a session/cancel ends the turn (cancelled)
    /tick N       N chunks 10 ms apart, each ``t=<time.monotonic()>`` when sent (latency)
    /hang         never answers, ignores session/cancel
    /crash        a chunk, some stderr lines, then exits with code 3
    /stderr N     N lines on stderr (a chatty agent), then the answer
    /huge N       one chunk of N bytes
    /error        answers the prompt with a JSON-RPC error
    /refusal      stopReason refusal
    /remember     says the prompts this session saw before (proves a load kept context)
    /pid          says its pid
    /ext          sends extension and malformed requests; says how each was answered
    /killterm     terminal/create ``sleep 600``, terminal/kill, says the signal
    /spawn        starts a child process (``sleep 600``), says its pid
    /spawnm M     starts a child ``sleep M`` (M a marker such as 600.123)
    /setsid M     starts ``sleep M`` in a session of its own (as a daemon would)
    /freeze       blocks its event loop for ever: it stops reading its stdin
    /junk         writes lines that are not JSON-RPC objects to stdout, then goes on
    /cancels      says how many session/cancel it received for this session
    /askalways    a permission request offering only allow_always and reject_once
    /askallows    a permission request offering only allow_once and allow_always; on a
                  cancelled answer it goes on ("went on") unless a session/cancel follows
    /termm M      terminal/create ``sleep M``, not waited for; says "terminal ID started"
    /termout ID   terminal/output of terminal ID (of any session); says it or the error
    /readlater P  reads P 0.2 s after the turn ended (outside any run); /late says how it went
    /sessions     says how many sessions it holds
    /env VAR      says the value of VAR in its environment (or "unset")

Environment: ``FAKE_ACP_STATE`` a directory where sessions are kept (for
``session/load`` by a later process); ``FAKE_ACP_LOAD=0`` advertises no
``loadSession``; ``FAKE_ACP_NO_COMPACT=1`` offers no commands (so no ``/compact``) unless asked;
``FAKE_ACP_NO_MODES=1`` offers no modes; ``FAKE_ACP_EXIT_AT_START=1`` dies
before answering ``initialize`` (with a stderr line); ``FAKE_ACP_AUTH_REQUIRED=1``
refuses ``session/new``; ``FAKE_ACP_SET_MODE_FAILS=1`` refuses every mode switch;
``FAKE_ACP_COMMANDS_LATE=1`` sends a loaded session's commands 0.3 s after answering
``session/load`` (as Claude does); ``FAKE_ACP_IGNORE_TERM=1`` ignores SIGTERM;
``FAKE_ACP_NEW_DELAY=S`` answers ``session/new`` after S seconds;
``FAKE_ACP_COMPACT_HANGS=1`` never ends a ``/compact`` prompt until cancelled (``deaf``:
not even then).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Literal

import acp
from acp import schema
from acp.helpers import (
    plan_entry,
    start_tool_call,
    text_block,
    tool_content,
    update_agent_message_text,
    update_agent_thought_text,
    update_available_commands,
    update_current_mode,
    update_plan,
    update_tool_call,
    update_user_message_text,
)

MODES = ["default", "plan", "yolo"]


def _flag(name: str) -> bool:
    return os.environ.get(name, "") not in ("", "0")


class FakeAgent:
    """The scripted agent (one per process)."""

    def __init__(self) -> None:
        self.conn: Any = None
        self.state_dir = (
            Path(os.environ["FAKE_ACP_STATE"]) if "FAKE_ACP_STATE" in os.environ else None
        )
        self.sessions: dict[str, dict[str, Any]] = {}
        self.cancels: dict[str, asyncio.Event] = {}
        self.cancel_count: dict[str, int] = {}
        self.late: list[str] = []

    def on_connect(self, conn: Any) -> None:
        self.conn = conn

    # -- lifecycle ---------------------------------------------------------------------

    async def initialize(self, protocol_version: int, **kwargs: Any) -> schema.InitializeResponse:
        if _flag("FAKE_ACP_EXIT_AT_START"):
            sys.stderr.write("fake agent: refusing to start (FAKE_ACP_EXIT_AT_START)\n")
            sys.stderr.flush()
            os._exit(7)
        return schema.InitializeResponse(
            protocol_version=protocol_version,
            agent_capabilities=schema.AgentCapabilities(
                load_session=os.environ.get("FAKE_ACP_LOAD", "1") != "0",
                prompt_capabilities=schema.PromptCapabilities(image=True),
                session_capabilities=schema.SessionCapabilities(
                    close=schema.SessionCloseCapabilities()
                ),
            ),
            agent_info=schema.Implementation(name="fake-acp-agent", title="Fake", version="1.0"),
            auth_methods=[],
        )

    def _modes(self, current: str) -> schema.SessionModeState | None:
        if _flag("FAKE_ACP_NO_MODES"):
            return None
        return schema.SessionModeState(
            current_mode_id=current,
            available_modes=[schema.SessionMode(id=m, name=m.title()) for m in MODES],
        )

    async def new_session(self, cwd: str, **kwargs: Any) -> schema.NewSessionResponse:
        if _flag("FAKE_ACP_AUTH_REQUIRED"):
            raise acp.RequestError.auth_required()
        if os.environ.get("FAKE_ACP_NEW_DELAY"):
            await asyncio.sleep(float(os.environ["FAKE_ACP_NEW_DELAY"]))
        session_id = f"fake-{uuid.uuid4().hex[:12]}"
        self.sessions[session_id] = {"cwd": cwd, "history": [], "mode": "default"}
        self._save(session_id)
        asyncio.get_running_loop().create_task(self._announce(session_id))
        return schema.NewSessionResponse(session_id=session_id, modes=self._modes("default"))

    async def _announce(self, session_id: str, always: bool = False) -> None:
        if _flag("FAKE_ACP_NO_COMPACT") and not always:
            return
        await self.conn.session_update(
            session_id,
            update_available_commands(
                [
                    schema.AvailableCommand(name="compact", description="compact the context"),
                    schema.AvailableCommand(name="help", description="help"),
                ]
            ),
        )

    async def _announce_late(self, session_id: str) -> None:
        await asyncio.sleep(0.3)
        await self._announce(session_id)

    async def load_session(
        self, cwd: str, session_id: str, **kwargs: Any
    ) -> schema.LoadSessionResponse | None:
        stored = self._load(session_id)
        if stored is None:
            raise acp.RequestError.resource_not_found(session_id)
        self.sessions[session_id] = stored
        for role, text in stored["history"]:  # the history, replayed as ACP says
            update = (
                update_user_message_text(text)
                if role == "user"
                else update_agent_message_text(text)
            )
            await self.conn.session_update(session_id, update)
        if _flag("FAKE_ACP_COMMANDS_LATE"):  # as Claude: the commands follow the answer
            asyncio.get_running_loop().create_task(self._announce_late(session_id))
        else:
            await self._announce(session_id)
        return schema.LoadSessionResponse(modes=self._modes(stored.get("mode", "default")))

    async def set_session_mode(self, session_id: str, mode_id: str, **kwargs: Any) -> None:
        if mode_id not in MODES or _flag("FAKE_ACP_SET_MODE_FAILS"):
            raise acp.RequestError.invalid_params({"details": f"no mode {mode_id}"})
        self.sessions[session_id]["mode"] = mode_id
        self._save(session_id)

    async def close_session(self, session_id: str, **kwargs: Any) -> None:
        self.sessions.pop(session_id, None)

    async def cancel(self, session_id: str, **kwargs: Any) -> None:
        self.cancel_count[session_id] = self.cancel_count.get(session_id, 0) + 1
        self.cancels.setdefault(session_id, asyncio.Event()).set()

    async def authenticate(self, method_id: str, **kwargs: Any) -> None:
        return None

    # -- state -------------------------------------------------------------------------

    def _save(self, session_id: str) -> None:
        if self.state_dir is not None:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            path = self.state_dir / f"{session_id}.json"
            path.write_text(json.dumps(self.sessions[session_id]))

    def _load(self, session_id: str) -> dict[str, Any] | None:
        if session_id in self.sessions:
            return self.sessions[session_id]
        if self.state_dir is None:
            return None
        path = self.state_dir / f"{session_id}.json"
        return json.loads(path.read_text()) if path.exists() else None

    # -- prompts -----------------------------------------------------------------------

    async def say(self, session_id: str, text: str) -> None:
        await self.conn.session_update(session_id, update_agent_message_text(text))

    async def prompt(self, prompt: list[Any], session_id: str, **kwargs: Any) -> Any:
        cancel = self.cancels[session_id] = asyncio.Event()
        session = self.sessions[session_id]
        texts = [b.text for b in prompt if isinstance(b, schema.TextContentBlock)]
        text = " ".join(texts)
        words = text.split()
        usage = None
        stop: Literal["end_turn", "refusal"] = "end_turn"
        hangs = os.environ.get("FAKE_ACP_COMPACT_HANGS", "")
        if text == "/compact" and hangs:
            await (asyncio.Event() if hangs == "deaf" else cancel).wait()
            return schema.PromptResponse(stop_reason="cancelled")
        index = 0
        while index < len(words):
            word = words[index]
            arg = words[index + 1] if index + 1 < len(words) else ""
            index += 1
            if word == "/think":
                await self.conn.session_update(session_id, update_agent_thought_text("hmm..."))
            elif word == "/tool":
                await self._tool(session_id)
            elif word == "/plan":
                await self.conn.session_update(
                    session_id,
                    update_plan(
                        [
                            plan_entry("read the code", priority="high", status="completed"),
                            plan_entry("write the fix", priority="medium", status="in_progress"),
                        ]
                    ),
                )
            elif word == "/commands":
                await self._announce(session_id, always=True)
            elif word == "/usage":
                await self.conn.session_update(
                    session_id,
                    schema.UsageUpdate(
                        session_update="usage_update",
                        used=1234,
                        size=200000,
                        cost=schema.Cost(amount=0.25, currency="USD"),
                    ),
                )
                usage = schema.Usage(input_tokens=11, output_tokens=22, total_tokens=33)
            elif word == "/compact":  # the context shrinks to 300 tokens
                await self.conn.session_update(
                    session_id,
                    schema.UsageUpdate(session_update="usage_update", used=300, size=200000),
                )
            elif word == "/title":
                index += 1
                await self.conn.session_update(
                    session_id,
                    schema.SessionInfoUpdate(session_update="session_info_update", title=arg),
                )
            elif word == "/mode":
                index += 1
                await self.conn.session_update(session_id, update_current_mode(arg))
            elif word == "/unknown":
                await self.conn._conn.send_notification(
                    "session/update",
                    {
                        "sessionId": session_id,
                        "update": {
                            "sessionUpdate": "future_thing",
                            "value": 42,
                            "nested": {"a": [1]},
                        },
                    },
                )
            elif word == "/image":
                images = [b for b in prompt if isinstance(b, schema.ImageContentBlock)]
                described = ", ".join(f"{b.mime_type}:{len(b.data)}" for b in images)
                await self.say(session_id, f"images: {len(images)} {described}")
            elif word == "/ask":
                if not await self._ask(session_id):
                    return schema.PromptResponse(stop_reason="cancelled")
            elif word == "/read":
                index += 1
                try:
                    read = await self.conn.read_text_file(session_id=session_id, path=arg)
                    await self.say(session_id, f"read: {read.content}")
                except acp.RequestError as exc:
                    await self.say(session_id, f"read error: {exc}")
            elif word == "/write":
                index += 1
                try:
                    await self.conn.write_text_file(
                        session_id=session_id, path=arg, content="written by fake"
                    )
                    await self.say(session_id, "write: ok")
                except acp.RequestError as exc:
                    await self.say(session_id, f"write error: {exc}")
            elif word == "/term":
                command = " ".join(words[index:])
                index = len(words)
                await self._terminal(session_id, "sh", ["-c", command], None, None)
            elif word == "/termcwd":
                index += 1
                await self._terminal(session_id, "pwd", [], arg, None)
            elif word == "/termbig":
                index += 1
                await self._terminal(
                    session_id,
                    "sh",
                    ["-c", f"head -c {int(arg)} /dev/zero | tr '\\0' x"],
                    None,
                    1000,
                )
            elif word == "/termhang":
                created = await self.conn.create_terminal(
                    session_id=session_id, command="sleep", args=["600"]
                )
                await self.say(session_id, f"terminal {created.terminal_id} started")
                await asyncio.Event().wait()
            elif word == "/slow":
                index += 1
                for n in range(int(arg)):
                    if cancel.is_set():
                        return schema.PromptResponse(stop_reason="cancelled")
                    await self.say(session_id, f"{n} ")
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(cancel.wait(), 0.05)
                if cancel.is_set():
                    return schema.PromptResponse(stop_reason="cancelled")
            elif word == "/tick":
                index += 1
                for _ in range(int(arg)):
                    await self.say(session_id, f"t={time.monotonic()!r}")
                    await asyncio.sleep(0.01)
            elif word == "/hang":
                await self.say(session_id, "hanging")
                await asyncio.Event().wait()
            elif word == "/crash":
                await self.say(session_id, "about to crash")
                for n in range(60):
                    sys.stderr.write(f"fake agent: stderr line {n}\n")
                sys.stderr.write("fake agent: fatal: crashing on purpose\n")
                sys.stderr.flush()
                os._exit(3)
            elif word == "/stderr":
                index += 1
                line = "fake agent: chatty " + "y" * 100 + "\n"
                for _ in range(int(arg)):
                    sys.stderr.write(line)
                sys.stderr.flush()
            elif word == "/huge":
                index += 1
                await self.say(session_id, "h" * int(arg))
            elif word == "/error":
                raise acp.RequestError.internal_error({"details": "boom on purpose"})
            elif word == "/refusal":
                stop = "refusal"
            elif word == "/remember":
                before = [t for role, t in session["history"] if role == "user"]
                await self.say(session_id, "remembered: " + " | ".join(before))
            elif word == "/pid":
                await self.say(session_id, f"pid {os.getpid()}")
            elif word == "/ext":
                await self._edge_cases(session_id)
            elif word == "/killterm":
                created = await self.conn.create_terminal(
                    session_id=session_id, command="sleep", args=["600"]
                )
                await self.conn.kill_terminal(
                    session_id=session_id, terminal_id=created.terminal_id
                )
                status = await self.conn.wait_for_terminal_exit(
                    session_id=session_id, terminal_id=created.terminal_id
                )
                await self.say(session_id, f"killed: {status.signal}")
            elif word == "/spawn":
                child = subprocess.Popen(["sleep", "600"])  # as Claude starts one per session
                await self.say(session_id, f"child {child.pid}")
            elif word in ("/spawnm", "/setsid"):
                index += 1
                child = subprocess.Popen(["sleep", arg], start_new_session=word == "/setsid")
                await self.say(session_id, f"child {child.pid}")
            elif word == "/freeze":
                await self.say(session_id, "freezing")
                time.sleep(600)
            elif word == "/junk":
                await self.say(session_id, "junk follows")
                os.write(1, b'[]\n42\nnot json\n{"id": [1], "result": 1}\n"text"\n')
            elif word == "/cancels":
                await self.say(session_id, f"cancels: {self.cancel_count.get(session_id, 0)}")
            elif word in ("/askalways", "/askallows"):
                if not await self._ask_limited(session_id, word == "/askalways", cancel):
                    return schema.PromptResponse(stop_reason="cancelled")
            elif word == "/termm":
                index += 1
                created = await self.conn.create_terminal(
                    session_id=session_id, command="sleep", args=[arg]
                )
                await self.say(session_id, f"terminal {created.terminal_id} started")
            elif word == "/termout":
                index += 1
                try:
                    out = await self.conn.terminal_output(session_id=session_id, terminal_id=arg)
                    await self.say(session_id, f"terminal output: {out.output}")
                except acp.RequestError as exc:
                    await self.say(session_id, f"terminal error: {exc}")
            elif word == "/readlater":
                index += 1
                asyncio.get_running_loop().create_task(self._read_later(session_id, arg))
            elif word == "/late":
                await self.say(session_id, "late: " + " | ".join(self.late))
            elif word == "/sessions":
                await self.say(session_id, f"sessions: {len(self.sessions)}")
            elif word == "/env":
                index += 1
                await self.say(session_id, f"env {arg}={os.environ.get(arg, 'unset')}")
        if cancel.is_set():
            return schema.PromptResponse(stop_reason="cancelled")
        answer = f"echo: {text}"
        await self.say(session_id, answer[: len(answer) // 2])
        await self.say(session_id, answer[len(answer) // 2 :])
        session["history"].append(("user", text))
        session["history"].append(("agent", answer))
        self._save(session_id)
        return schema.PromptResponse(stop_reason=stop, usage=usage)

    async def _edge_cases(self, session_id: str) -> None:
        """Requests a client must refuse cleanly; says each answer."""
        raw = self.conn._conn
        await raw.send_notification("_fake/note", {"hello": 1})
        await raw.send_notification("fake/unknown_notification", {})
        probes: list[tuple[str, dict[str, Any]]] = [
            ("_fake/ask", {}),
            ("fs/delete_file", {"sessionId": session_id}),
            ("fs/read_text_file", {"sessionId": "nope", "path": "/x"}),
            ("fs/read_text_file", {"sessionId": session_id}),
            ("terminal/output", {"sessionId": session_id, "terminalId": 5}),
            ("terminal/output", {"sessionId": session_id, "terminalId": "term-999"}),
        ]
        for method, params in probes:
            try:
                await raw.send_request(method, params)
                await self.say(session_id, f"{method}: answered;")
            except acp.RequestError as exc:
                await self.say(session_id, f"{method}: error {exc.code} {exc};")

    async def _tool(self, session_id: str) -> None:
        await self.conn.session_update(
            session_id,
            start_tool_call(
                "call-1",
                "Run ls",
                kind="execute",
                status="pending",
                locations=[schema.ToolCallLocation(path="/tmp/x.py", line=3)],
                raw_input={"command": "ls"},
                content=[tool_content(text_block("listing"))],
            ),
        )
        await self.conn.session_update(
            session_id,
            update_tool_call(
                "call-1", status="completed", raw_output={"stdout": "a b"}, title="Ran ls"
            ),
        )

    async def _ask(self, session_id: str) -> bool:
        await self.conn.session_update(
            session_id,
            start_tool_call(
                "call-ask", "touch f", kind="edit", status="pending", raw_input={"path": "f"}
            ),
        )
        response = await self.conn.request_permission(
            session_id=session_id,
            tool_call=schema.ToolCallUpdate(tool_call_id="call-ask", title="touch f", kind="edit"),
            options=[
                schema.PermissionOption(option_id="yes", name="Allow", kind="allow_once"),
                schema.PermissionOption(option_id="always", name="Always", kind="allow_always"),
                schema.PermissionOption(option_id="no", name="Reject", kind="reject_once"),
            ],
        )
        outcome = response.outcome
        if isinstance(outcome, schema.DeniedOutcome):
            await self.conn.session_update(
                session_id, update_tool_call("call-ask", status="failed")
            )
            return False
        await self.say(session_id, f"chosen: {outcome.option_id}")
        status: Literal["failed", "completed"] = (
            "failed" if outcome.option_id == "no" else "completed"
        )
        await self.conn.session_update(session_id, update_tool_call("call-ask", status=status))
        return True

    async def _ask_limited(self, session_id: str, always_only: bool, cancel: asyncio.Event) -> bool:
        kinds: list[tuple[str, Any]] = (
            [("always", "allow_always"), ("no", "reject_once")]
            if always_only
            else [("yes", "allow_once"), ("always", "allow_always")]
        )
        response = await self.conn.request_permission(
            session_id=session_id,
            tool_call=schema.ToolCallUpdate(tool_call_id="call-ask", title="touch f", kind="edit"),
            options=[schema.PermissionOption(option_id=i, name=i, kind=k) for i, k in kinds],
        )
        outcome = response.outcome
        if isinstance(outcome, schema.DeniedOutcome):
            # As real agents do: a cancelled answer alone does not end the turn.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(cancel.wait(), 5.0)
            if cancel.is_set():
                return False
            await self.say(session_id, "went on")
            return True
        await self.say(session_id, f"chosen: {outcome.option_id}")
        return True

    async def _read_later(self, session_id: str, path: str) -> None:
        await asyncio.sleep(0.2)
        try:
            read = await self.conn.read_text_file(session_id=session_id, path=path)
            self.late.append(f"read: {read.content}")
        except acp.RequestError as exc:
            self.late.append(f"read error: {exc}")

    async def _terminal(
        self, session_id: str, command: str, args: list[str], cwd: str | None, limit: int | None
    ) -> None:
        try:
            created = await self.conn.create_terminal(
                session_id=session_id, command=command, args=args, cwd=cwd, output_byte_limit=limit
            )
        except acp.RequestError as exc:
            await self.say(session_id, f"terminal error: {exc}")
            return
        terminal_id = created.terminal_id
        status = await self.conn.wait_for_terminal_exit(
            session_id=session_id, terminal_id=terminal_id
        )
        output = await self.conn.terminal_output(session_id=session_id, terminal_id=terminal_id)
        await self.conn.release_terminal(session_id=session_id, terminal_id=terminal_id)
        if limit is not None:
            await self.say(
                session_id, f"terminal size {len(output.output)} truncated {output.truncated}"
            )
        else:
            await self.say(session_id, f"terminal exit {status.exit_code}: {output.output.strip()}")


async def main() -> None:
    if _flag("FAKE_ACP_IGNORE_TERM"):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    await acp.run_agent(FakeAgent())  # type: ignore[arg-type]


if __name__ == "__main__":
    asyncio.run(main())
