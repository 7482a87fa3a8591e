"""The echo runtime and the runtime registry, without sockets: a fake sink and session."""

from __future__ import annotations

import asyncio
import sys
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from neocode_gateway.errors import ConfigError, ModeUnknown, RunFailed
from neocode_gateway.protocol import PROGRESS_KINDS
from neocode_gateway.runtime import (
    CANCELLED,
    EchoRuntime,
    PermissionOption,
    PermissionOutcome,
    RunInput,
    Runtime,
    RuntimeOptions,
    RuntimeSet,
    available_runtimes,
    create_runtime,
)


class FakeSession:
    def __init__(self, sid: str = "s1") -> None:
        self.id = sid
        self.workdir = "/tmp"
        self.runtime_state: Mapping[str, Any] = {}

    def save_runtime_state(self, state: Mapping[str, Any]) -> None:
        self.runtime_state = dict(state)


class FakeSink:
    def __init__(self, answer: str | None = "allow_once") -> None:
        self.events: list[dict[str, Any]] = []
        self.answer = answer
        self.asked: list[tuple[dict[str, Any], Sequence[PermissionOption]]] = []
        self.on_emit: Any = None

    async def emit(self, data: dict[str, Any]) -> None:
        self.events.append(dict(data))
        if self.on_emit is not None:
            self.on_emit(len(self.events))
        if len(self.events) % 100 == 0:
            await asyncio.sleep(0)  # as the gateway does when its commit batch is full

    async def request_permission(
        self, tool_call: dict[str, Any], options: Sequence[PermissionOption]
    ) -> PermissionOutcome:
        self.asked.append((tool_call, options))
        if self.answer is None:
            return PermissionOutcome(None, None, "cancel")
        kind = {"allow_once": "allow_once", "reject": "reject_once"}[self.answer]
        option = next(o for o in options if o["kind"] == kind)
        return PermissionOutcome(option["option_id"], self.answer, "client")

    def text(self) -> str:
        return "".join(e["text"] for e in self.events if e["kind"] == "message_chunk")


def run(text: str, sink: FakeSink, runtime: EchoRuntime | None = None, **kw: Any) -> str:
    echo = runtime or EchoRuntime(slow_interval=0.001)
    return asyncio.run(echo.prompt(FakeSession(), RunInput("r1", text, **kw), sink))


def test_words_come_back_and_usage_ends() -> None:
    sink = FakeSink()
    assert run("hello  brave\nworld ", sink) == "end_turn"
    assert sink.text() == "hello  brave\nworld "
    assert sink.events[-1] == {"kind": "usage", "input_tokens": 3, "output_tokens": 3}
    for event in sink.events:
        assert event["kind"] in PROGRESS_KINDS


@settings(max_examples=50, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_characters="/"), max_size=200))
def test_chunks_joined_are_the_input(text: str) -> None:
    sink = FakeSink()
    run(text, sink)
    assert sink.text() == (text if text.strip() else "")


def test_think_plan_ask_allowed() -> None:
    sink = FakeSink("allow_once")
    run("/think /plan hello /ask", sink)
    kinds = [e["kind"] for e in sink.events]
    assert kinds[:2] == ["thought_chunk", "thought_chunk"]
    assert kinds.count("plan") == 3
    statuses = [e["entries"][2]["status"] for e in sink.events if e["kind"] == "plan"]
    assert statuses == ["pending", "pending", "completed"]
    call = next(e for e in sink.events if e["kind"] == "tool_call")
    assert call["tool_kind"] == "execute"
    assert call["status"] == "pending"
    assert sorted(o["kind"] for o in sink.asked[0][1]) == [
        "allow_always",
        "allow_once",
        "reject_always",
        "reject_once",
    ]
    update = next(e for e in sink.events if e["kind"] == "tool_call_update")
    assert update["status"] == "completed"


def test_ask_rejected_and_cancelled() -> None:
    sink = FakeSink("reject")
    run("/ask", sink)
    assert next(e for e in sink.events if e["kind"] == "tool_call_update")["status"] == "failed"
    assert run("/ask", FakeSink(None)) == CANCELLED


def test_fail_and_bad_numbers() -> None:
    with pytest.raises(RunFailed) as info:
        run("x /fail", FakeSink())
    assert info.value.code == "runtime_error"
    for text in ("/slow", "/burst x", "/slow 0", "/burst 99999999999", "/tick -1"):
        with pytest.raises(RunFailed, match="needs a number"):
            run(text, FakeSink())


def test_burst_slow_tick_counts() -> None:
    sink = FakeSink()
    run("/burst 500", sink)
    assert sum(1 for e in sink.events if e.get("text") == ".") == 500
    sink = FakeSink()
    run("/slow 3", sink)
    ticks = [e["text"] for e in sink.events if "/3]" in e.get("text", "")]
    assert ticks == ["\n\n[1/3] ", "[2/3] ", "[3/3] "]  # a paragraph apart from the input
    sink = FakeSink()
    run("/tick 2", sink)
    assert sum(1 for e in sink.events if e.get("text", "").startswith("t=")) == 2


def test_cancel_stops_slow_and_burst() -> None:
    async def scenario(text: str) -> str:
        echo = EchoRuntime(slow_interval=0.05)
        session = FakeSession()
        sink = FakeSink()
        sink.on_emit = lambda n: n == 3 and asyncio.ensure_future(echo.cancel(session))
        return await echo.prompt(session, RunInput("r", text), sink)

    assert asyncio.run(scenario("/slow 1000")) == CANCELLED
    assert asyncio.run(scenario("/burst 100000")) == CANCELLED


def test_modes_and_compact() -> None:
    async def scenario() -> None:
        echo = EchoRuntime()
        session = FakeSession()
        with pytest.raises(ModeUnknown):
            await echo.check_mode(session, "turbo")
        await echo.check_mode(session, "plan")
        empty = await echo.compact(session)
        assert (empty.applied, empty.before_chars) == (False, 0)
        sink = FakeSink()
        await echo.prompt(session, RunInput("r", "a" * 100, mode="plan"), sink)
        assert sink.events[0] == {"kind": "session_info", "mode": "plan"}
        result = await echo.compact(session)
        assert result.applied
        assert result.before_chars == 200
        assert result.after_chars == 40
        await echo.start()
        await echo.close()

    asyncio.run(scenario())


def test_image_parts_are_named() -> None:
    from neocode_gateway.protocol import InputPart, Media

    sink = FakeSink()
    part = InputPart(type="image", media=Media(uri="file:///x.png", mime_type="image/png"))
    text = InputPart(type="text", text="look")
    run("", sink, parts=(text, part))
    assert "look" in sink.text()
    assert "file:///x.png" in sink.text()


# -- registry -----------------------------------------------------------------------------


def test_registry_builtin_and_unknown(tmp_path: Path) -> None:
    options = RuntimeOptions(data_dir=tmp_path, default_workdir="/")
    assert available_runtimes()["echo"] == "built-in"
    echo = create_runtime("echo", options)
    assert isinstance(echo, Runtime)
    with pytest.raises(ConfigError, match="unknown runtime 'nope'"):
        create_runtime("nope", options)


def test_registry_entry_point(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A third-party runtime, found through a real dist-info entry point on sys.path."""
    pkg = tmp_path / "thirdparty_rt.py"
    pkg.write_text(
        textwrap.dedent(
            """
            from neocode_gateway.runtime import EchoRuntime

            def create(options):
                runtime = EchoRuntime()
                runtime.name = "third"
                return runtime

            def broken(options):
                raise RuntimeError("no")

            def wrong(options):
                return object()
            """
        )
    )
    dist = tmp_path / "thirdparty_rt-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: thirdparty-rt\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[neocode_gateway.runtimes]\n"
        "third = thirdparty_rt:create\n"
        "broken = thirdparty_rt:broken\n"
        "wrong = thirdparty_rt:wrong\n"
        "missing = thirdparty_rt:nothing_here\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    options = RuntimeOptions(data_dir=tmp_path, default_workdir="/")
    assert available_runtimes()["third"] == "thirdparty_rt:create"
    assert create_runtime("third", options).name == "third"
    with pytest.raises(ConfigError, match="failed to start: no"):
        create_runtime("broken", options)
    with pytest.raises(ConfigError, match="did not return a Runtime"):
        create_runtime("wrong", options)
    with pytest.raises(ConfigError, match="cannot be loaded"):
        create_runtime("missing", options)
    sys.modules.pop("thirdparty_rt", None)


def test_runtime_set_closes_all_even_if_one_fails() -> None:
    class Failing(EchoRuntime):
        async def close(self) -> None:
            raise RuntimeError("close failed")

    async def scenario() -> None:
        runtimes = RuntimeSet(default="echo")
        good = EchoRuntime()
        runtimes.add("bad", Failing())
        runtimes.add("echo", good)
        assert runtimes.names() == ["bad", "echo"]
        assert runtimes.get("echo") is good
        assert runtimes.get("zzz") is None
        await runtimes.start_all()
        await runtimes.close_all()

    asyncio.run(scenario())


def test_runtime_set_closes_them_at_once() -> None:
    class Slow(EchoRuntime):
        def __init__(self, everyone: asyncio.Event, count: list[int]) -> None:
            super().__init__()
            self.everyone, self.count = everyone, count

        async def close(self) -> None:
            self.count[0] += 1
            if self.count[0] == 2:
                self.everyone.set()
            # Each close returns only once every close has begun: one at a time would hang.
            await asyncio.wait_for(self.everyone.wait(), 5)

    async def scenario() -> None:
        everyone, count = asyncio.Event(), [0]
        runtimes = RuntimeSet(default="a")
        runtimes.add("a", Slow(everyone, count))
        runtimes.add("b", Slow(everyone, count))
        await runtimes.close_all()
        assert count == [2]

    asyncio.run(scenario())


def test_wait_says_the_run_waits_for_the_model_first() -> None:
    sink = FakeSink()
    run("/wait 2 hi", sink)
    assert sink.events[0] == {"kind": "phase", "phase": "waiting_for_model"}
    assert [e["text"] for e in sink.events if e.get("kind") == "message_chunk"] == [
        "/wait ",
        "2 ",
        "hi",
    ]
    with pytest.raises(RunFailed, match="needs a number"):
        run("/wait x", FakeSink())


@pytest.mark.parametrize(
    ("text", "kind", "paths", "command"),
    [
        ("/ask read src/x.py", "read", ["/tmp/src/x.py"], None),
        ("/ask edit /etc/passwd", "edit", ["/etc/passwd"], None),
        ("/ask delete .env", "delete", ["/tmp/.env"], None),
        ("please /ask execute git push origin main", "execute", [], "git push origin main"),
        ("/ask think", "think", [], None),
        ("hello /ask", "execute", [], "echo hello"),
        ("/ask read", "execute", [], "echo read"),  # a kind without its path: plain /ask
    ],
)
def test_ask_for_a_tool_kind(text: str, kind: str, paths: list[str], command: str | None) -> None:
    sink = FakeSink("allow_once")
    run(text, sink)
    (tool_call, _options) = sink.asked[0]
    assert tool_call["tool_kind"] == kind
    assert [loc["path"] for loc in tool_call.get("locations", [])] == paths
    assert tool_call.get("raw_input", {}).get("command") == command
    update = next(e for e in sink.events if e["kind"] == "tool_call_update")
    assert update["status"] == "completed"
    if kind == "execute":
        assert update["raw_output"]["stdout"].strip() == (command or "").removeprefix("echo ")
