"""The acp runtime driven directly (no daemon) against a real ACP agent process: the fake one.

Each test starts :mod:`tests.agents.fake_acp_agent` through :class:`AcpRuntime`
with a fake sink and session, in a temporary workdir, and closes the runtime
(checking that the agent's process group is gone) at the end.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import re
import shutil
import signal
import sys
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from neocode_gateway.config import AgentConfig
from neocode_gateway.errors import CompactUnsupported, ModeUnknown, RunFailed
from neocode_gateway.protocol import InputPart
from neocode_gateway.protocol._frames import Media
from neocode_gateway.runtime import CANCELLED, PermissionOutcome, RunInput, RuntimeOptions
from neocode_gateway.runtime.acp import AcpRuntime
from neocode_gateway.runtime.acp._process import descendant_pids, group_alive
from tests.agents.support import FakeSession, FakeSink, choose, fake_runtime
from tests.support import short_tmpdir

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


@pytest.fixture
def workdir() -> Iterator[str]:
    path = short_tmpdir("ngw-acp-")
    yield os.path.realpath(path)
    shutil.rmtree(path, ignore_errors=True)


@contextlib.asynccontextmanager
async def opened(runtime: AcpRuntime) -> AsyncIterator[AcpRuntime]:
    """The runtime, closed afterwards; its agent's process group must then be gone."""
    pids: list[int] = []
    try:
        yield runtime
    finally:
        stats = runtime.stats()
        if stats.get("pid"):
            pids.append(stats["pid"])
        await runtime.close()
    for pid in pids:
        assert not group_alive(pid), f"agent process group {pid} outlived close()"


def state_env(workdir: str, **extra: str) -> dict[str, str]:
    return {"FAKE_ACP_STATE": f"{workdir}/.fake-state", **extra}


async def prompt(
    runtime: AcpRuntime, session: FakeSession, text: str, sink: FakeSink | None = None, **kw: Any
) -> tuple[str, FakeSink]:
    sink = sink or FakeSink(choose("allow_once"))
    reason = await runtime.prompt(session, RunInput(f"r-{len(text)}", text=text, **kw), sink)
    return reason, sink


# -- mapping, end to end through a real agent process ---------------------------------------


def test_every_update_kind_reaches_the_sink_in_order(workdir: str) -> None:
    async def scenario() -> None:
        async with opened(fake_runtime(workdir, env={"FAKE_ACP_NO_COMPACT": "1"})) as rt:
            session = FakeSession("s1", workdir)
            text = "hi /think /tool /plan /commands /usage /title Nice /mode plan /unknown"
            reason, sink = await prompt(rt, session, text)
            assert reason == "end_turn"
            assert sink.events == [
                {"kind": "thought_chunk", "text": "hmm..."},
                {
                    "kind": "tool_call",
                    "tool_call_id": "call-1",
                    "title": "Run ls",
                    "tool_kind": "execute",
                    "status": "pending",
                    "locations": [{"path": "/tmp/x.py", "line": 3}],
                    "raw_input": {"command": "ls"},
                    "content": [
                        {"type": "content", "content": {"type": "text", "text": "listing"}}
                    ],
                },
                {
                    "kind": "tool_call_update",
                    "tool_call_id": "call-1",
                    "status": "completed",
                    "title": "Ran ls",
                    "raw_output": {"stdout": "a b"},
                },
                {
                    "kind": "plan",
                    "entries": [
                        {"content": "read the code", "priority": "high", "status": "completed"},
                        {"content": "write the fix", "priority": "medium", "status": "in_progress"},
                    ],
                },
                {
                    "kind": "commands",
                    "commands": [
                        {"name": "compact", "description": "compact the context"},
                        {"name": "help", "description": "help"},
                    ],
                },
                {
                    "kind": "usage",
                    "context_used": 1234,
                    "context_size": 200000,
                    "cost": {"amount": 0.25, "currency": "USD"},
                },
                {"kind": "session_info", "title": "Nice"},
                {"kind": "session_info", "mode": "plan"},
                {
                    "kind": "other",
                    "update": {"sessionUpdate": "future_thing", "value": 42, "nested": {"a": [1]}},
                },
                {"kind": "message_chunk", "text": text and f"echo: {text}"[: (len(text) + 6) // 2]},
                {"kind": "message_chunk", "text": f"echo: {text}"[(len(text) + 6) // 2 :]},
                {"kind": "usage", "input_tokens": 11, "output_tokens": 22},
            ]
            assert session.state["agent_session_id"].startswith("fake-")
            assert session.state["mode"] == "plan"  # the agent's own mode change is kept

    run(scenario())


def test_stop_reasons_and_agent_errors(workdir: str) -> None:
    async def scenario() -> None:
        async with opened(fake_runtime(workdir)) as rt:
            session = FakeSession("s1", workdir)
            assert (await prompt(rt, session, "/refusal"))[0] == "refusal"
            with pytest.raises(RunFailed) as failed:
                await prompt(rt, session, "/error")
            assert failed.value.code == "runtime_error"
            assert "boom on purpose" in failed.value.message
            assert (await prompt(rt, session, "still fine"))[1].text() == "echo: still fine"

    run(scenario())


def test_huge_lines_and_a_chatty_stderr(workdir: str) -> None:
    async def scenario() -> None:
        async with opened(fake_runtime(workdir)) as rt:
            session = FakeSession("s1", workdir)
            size = 2 * 1024 * 1024
            _, sink = await prompt(rt, session, f"/huge {size}")
            assert ["h" * size] == [e["text"] for e in sink.events if len(e.get("text", "")) > 100]
            # 2 MB on stderr, far beyond a pipe's buffer: the agent must not block on it.
            reason, sink = await prompt(rt, session, "/stderr 20000")
            assert reason == "end_turn"
            assert sink.text() == "echo: /stderr 20000"

    run(scenario())


# -- permissions -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "chosen", "status"),
    [
        ("allow_once", "yes", "completed"),
        ("allow_always", "always", "completed"),
        ("reject_once", "no", "failed"),
    ],
)
def test_permission_options_as_given_and_the_choice_goes_back(
    workdir: str, kind: str, chosen: str, status: str
) -> None:
    async def scenario() -> None:
        async with opened(fake_runtime(workdir)) as rt:
            reason, sink = await prompt(
                rt, FakeSession("s1", workdir), "/ask", FakeSink(choose(kind))
            )
            assert reason == "end_turn"
            tool_call, options = sink.permissions[0]
            assert tool_call == {
                "tool_call_id": "call-ask",
                "title": "touch f",
                "tool_kind": "edit",
            }
            assert options == [
                {"option_id": "yes", "name": "Allow", "kind": "allow_once"},
                {"option_id": "always", "name": "Always", "kind": "allow_always"},
                {"option_id": "no", "name": "Reject", "kind": "reject_once"},
            ]
            kinds = sink.kinds()
            assert kinds.index("tool_call") < kinds.index("permission_request")
            assert f"chosen: {chosen}" in sink.text()
            assert sink.events[-3] == {
                "kind": "tool_call_update",
                "tool_call_id": "call-ask",
                "status": status,
            }

    run(scenario())


def test_cancel_answers_a_pending_permission_cancelled(workdir: str) -> None:
    async def scenario() -> None:
        async with opened(fake_runtime(workdir)) as rt:
            session = FakeSession("s1", workdir)
            sink = FakeSink()  # nobody answers
            task = asyncio.create_task(rt.prompt(session, RunInput("r1", text="/ask"), sink))
            await sink.wait_for(lambda s: s.pending is not None)
            await rt.cancel(session)
            assert await asyncio.wait_for(task, 30) == CANCELLED
            assert "permission_cancelled" in sink.kinds()  # our wait was ended, not left hanging
            # The agent heard "cancelled" and failed the tool call.
            assert sink.events[-2:] == [
                {"kind": "permission_cancelled"},
                {"kind": "tool_call_update", "tool_call_id": "call-ask", "status": "failed"},
            ]
            assert (await prompt(rt, session, "after"))[1].text() == "echo: after"

    run(scenario())


def test_a_permission_the_core_resolves_as_cancelled_goes_back_cancelled(workdir: str) -> None:
    async def scenario() -> None:
        async with opened(fake_runtime(workdir)) as rt:
            session = FakeSession("s1", workdir)
            sink = FakeSink()
            task = asyncio.create_task(rt.prompt(session, RunInput("r1", text="/ask"), sink))
            await sink.wait_for(lambda s: s.pending is not None)
            # The core resolves the request (decided_by cancel) before telling the runtime.
            assert sink.pending is not None
            sink.pending.set_result(PermissionOutcome(None, None, "cancel"))
            await rt.cancel(session)
            assert await asyncio.wait_for(task, 30) == CANCELLED

    run(scenario())


# -- cancel, hang, crash ---------------------------------------------------------------------


def test_cancel_mid_run_ends_it_cancelled(workdir: str) -> None:
    async def scenario() -> None:
        async with opened(fake_runtime(workdir)) as rt:
            session = FakeSession("s1", workdir)
            sink = FakeSink()
            task = asyncio.create_task(rt.prompt(session, RunInput("r1", text="/slow 2000"), sink))
            await sink.wait_for(lambda s: len(s.events) >= 3)
            await rt.cancel(session)
            assert await asyncio.wait_for(task, 30) == CANCELLED
            assert (await prompt(rt, session, "next"))[1].text() == "echo: next"
            await rt.cancel(session)  # no active run: nothing happens

    run(scenario())


def test_a_hung_agent_is_stopped_by_the_cores_grace_and_its_terminal_killed(workdir: str) -> None:
    async def scenario() -> None:
        async with opened(fake_runtime(workdir)) as rt:
            session = FakeSession("s1", workdir)
            sink = FakeSink()
            task = asyncio.create_task(rt.prompt(session, RunInput("r1", text="/termhang"), sink))
            await sink.wait_for(lambda s: "started" in s.text())
            sleepers = await until(_sleepers)  # started by its shepherd: a moment later
            assert sleepers, "the terminal's command should run"
            await rt.cancel(session)
            done, _ = await asyncio.wait({task}, timeout=1.0)
            assert not done  # the agent ignores session/cancel
            task.cancel()  # what the core does after its grace
            with pytest.raises(asyncio.CancelledError):
                await task
            assert not (_sleepers() & sleepers), "the run's terminal must be killed with it"
            # The agent process is still there and serves the session again.
            reason, sink = await prompt(rt, session, "again")
            assert (reason, sink.text()) == ("end_turn", "echo: again")

    run(scenario())


async def until(condition: Callable[[], T], timeout: float = 10.0) -> T:
    """Poll ``condition`` (bounded, no fixed sleep) until it is truthy; its last value."""
    delay = 0.005
    async with asyncio.timeout(timeout):
        while not (value := condition()):
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.1)
    return value


def _sleepers() -> set[int]:
    """Our descendants running ``sleep 600`` (terminals and the fake agent's children)."""
    found = set()
    for pid, _ in descendant_pids(os.getpid()):
        with contextlib.suppress(OSError):
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\x00")
            if argv[:1] and os.path.basename(argv[0]) == b"sleep" and argv[1:2] == [b"600"]:
                found.add(pid)
    return found


def test_a_crash_mid_run_is_unavailable_with_stderr_then_restarts_and_loads(
    workdir: str,
) -> None:
    async def scenario() -> None:
        async with opened(fake_runtime(workdir, env=state_env(workdir))) as rt:
            session = FakeSession("s1", workdir)
            _, sink = await prompt(rt, session, "/pid first")
            first_pid = int(re.findall(r"pid (\d+)", sink.text())[0])
            sink = FakeSink()
            with pytest.raises(RunFailed) as failed:
                await rt.prompt(session, RunInput("r2", text="/crash"), sink)
            assert failed.value.code == "runtime_unavailable"
            assert "exited with code 3" in failed.value.message
            assert "fatal: crashing on purpose" in failed.value.message
            assert "about to crash" in sink.text()
            assert not group_alive(first_pid)
            # The next run starts the agent again and loads the session: context kept.
            _, sink = await prompt(rt, session, "/pid /remember")
            assert int(re.findall(r"pid (\d+)", sink.text())[0]) != first_pid
            assert "remembered: /pid first" in sink.text()

    run(scenario())


def test_an_agent_killed_while_idle_is_restarted_by_the_next_run(workdir: str) -> None:
    async def scenario() -> None:
        async with opened(fake_runtime(workdir, env=state_env(workdir))) as rt:
            session = FakeSession("s1", workdir)
            await prompt(rt, session, "one")
            pid = rt.stats()["pid"]
            os.killpg(pid, signal.SIGKILL)
            async with asyncio.timeout(30):
                while rt.stats()["running"]:
                    await asyncio.sleep(0.02)
            _, sink = await prompt(rt, session, "/remember")
            assert "remembered: one" in sink.text()
            assert rt.stats()["pid"] != pid

    run(scenario())


def test_close_stops_the_agent_and_everything_it_started(workdir: str) -> None:
    async def scenario() -> None:
        rt = fake_runtime(workdir, settings={"stop_grace": 1.0})
        session = FakeSession("s1", workdir)
        _, sink = await prompt(rt, session, "/spawn")
        child = int(re.findall(r"child (\d+)", sink.text())[0])
        pid = rt.stats()["pid"]
        await rt.close()
        assert not group_alive(pid)
        assert not Path(f"/proc/{child}").exists() or _zombie_or_gone(child)
        with pytest.raises(RunFailed) as failed:  # a closed runtime runs nothing
            await prompt(rt, session, "late")
        assert failed.value.code == "runtime_unavailable"

    run(scenario())


def _zombie_or_gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def test_an_active_run_ends_unavailable_when_the_runtime_closes(workdir: str) -> None:
    async def scenario() -> None:
        rt = fake_runtime(workdir, settings={"stop_grace": 1.0})
        session = FakeSession("s1", workdir)
        sink = FakeSink()
        task = asyncio.create_task(rt.prompt(session, RunInput("r1", text="/hang"), sink))
        await sink.wait_for(lambda s: "hanging" in s.text())
        await rt.close()
        with pytest.raises(RunFailed) as failed:
            await asyncio.wait_for(task, 30)
        assert failed.value.code == "runtime_unavailable"

    run(scenario())


# -- start failures ------------------------------------------------------------------------


def test_an_agent_not_on_path_is_unavailable(
    workdir: str, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> None:
        config = AgentConfig(name="ghost", command=("no-such-agent-xyz", "--acp"))
        rt = AcpRuntime("ghost", config, RuntimeOptions(Path(workdir), workdir))
        with caplog.at_level(logging.WARNING, logger="neocode_gateway.runtime.acp"):
            await rt.start()  # said at start, before any run
        assert "agent ghost: 'no-such-agent-xyz' not found on PATH" in caplog.text
        with pytest.raises(RunFailed) as failed:
            await prompt(rt, FakeSession("s1", workdir), "hi")
        assert failed.value.code == "runtime_unavailable"
        assert "'no-such-agent-xyz' not found on PATH" in failed.value.message
        await rt.close()

    run(scenario())


def test_an_agent_that_dies_at_start_says_why(workdir: str) -> None:
    async def scenario() -> None:
        async with opened(fake_runtime(workdir, env={"FAKE_ACP_EXIT_AT_START": "1"})) as rt:
            with pytest.raises(RunFailed) as failed:
                await prompt(rt, FakeSession("s1", workdir), "hi")
            assert failed.value.code == "runtime_unavailable"
            assert "exited with code 7" in failed.value.message
            assert "refusing to start" in failed.value.message

    run(scenario())


def test_an_agent_that_never_answers_initialize_times_out_and_is_stopped(workdir: str) -> None:
    async def scenario() -> None:
        config = AgentConfig(name="mute", command=("sleep", "600"))
        options = RuntimeOptions(
            Path(workdir), workdir, settings={"start_timeout": 1.0, "stop_grace": 0.5}
        )
        rt = AcpRuntime("mute", config, options)
        with pytest.raises(RunFailed) as failed:
            await prompt(rt, FakeSession("s1", workdir), "hi")
        assert failed.value.code == "runtime_unavailable"
        assert "did not answer initialize within 1s" in failed.value.message
        assert not _sleepers()
        await rt.close()

    run(scenario())


# -- sessions that survive ---------------------------------------------------------------------


def test_a_new_runtime_continues_the_session_with_load_without_replaying_history(
    workdir: str,
) -> None:
    async def scenario() -> None:
        session = FakeSession("s1", workdir)
        async with opened(fake_runtime(workdir, env=state_env(workdir))) as rt:
            await prompt(rt, session, "first words")
            await prompt(rt, session, "/mode yolo second")
        saved = dict(session.state)
        # As after a gateway restart: a new runtime, the saved state.
        again = FakeSession("s1", workdir, saved)
        async with opened(fake_runtime(workdir, env=state_env(workdir))) as rt:
            reason, sink = await prompt(rt, again, "/remember")
            assert reason == "end_turn"
            assert "remembered: first words | /mode yolo second" in sink.text()
            # The replayed history (user and agent chunks) is not logged again.
            assert all(e["kind"] != "other" for e in sink.events)
            assert "echo: first words" not in sink.text()
            assert again.state["agent_session_id"] == saved["agent_session_id"]
            assert again.state["mode"] == "yolo"

    run(scenario())


def test_without_load_session_a_fresh_agent_session_starts_and_the_reset_is_logged(
    workdir: str, caplog: pytest.LogCaptureFixture
) -> None:
    env = state_env(workdir, FAKE_ACP_LOAD="0")

    async def scenario() -> None:
        session = FakeSession("s1", workdir)
        async with opened(fake_runtime(workdir, env=env)) as rt:
            await prompt(rt, session, "first")
        old = session.state["agent_session_id"]
        async with opened(fake_runtime(workdir, env=env)) as rt:
            _, sink = await prompt(rt, session, "/remember")
            assert "remembered: " in sink.text()
            assert "first" not in sink.text()
            # The clients are told, first thing in the run; the next run says nothing.
            assert sink.events[0]["kind"] == "session_info"
            assert sink.events[0]["context_reset"] is True
            assert "cannot load sessions" in sink.events[0]["message"]
            _, sink = await prompt(rt, session, "again")
            assert all(not e.get("context_reset") for e in sink.events)
        assert session.state["agent_session_id"] != old

    with caplog.at_level(logging.WARNING, logger="neocode_gateway.runtime.acp"):
        run(scenario())
    assert "cannot load sessions" in caplog.text
    assert "context was reset" in caplog.text


def test_a_session_the_agent_cannot_load_starts_fresh(
    workdir: str, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> None:
        session = FakeSession("s1", workdir, {"agent_session_id": "fake-gone"})
        async with opened(fake_runtime(workdir, env=state_env(workdir))) as rt:
            reason, sink = await prompt(rt, session, "hello")
            assert reason == "end_turn"
            assert "could not load its session fake-gone" in sink.events[0]["message"]
        assert session.state["agent_session_id"] != "fake-gone"

    with caplog.at_level(logging.WARNING, logger="neocode_gateway.runtime.acp"):
        run(scenario())
    assert "could not load session fake-gone" in caplog.text


def test_idle_sessions_beyond_max_live_sessions_are_closed_lru_and_loaded_again(
    workdir: str,
) -> None:
    async def scenario() -> None:
        runtime = fake_runtime(workdir, env=state_env(workdir), max_live_sessions=2)
        async with opened(runtime) as rt:
            sessions = [FakeSession(f"s{n}", workdir) for n in range(3)]
            for n, session in enumerate(sessions):
                await prompt(rt, session, f"hello {n}")
            assert rt.stats()["live_sessions"] == 2  # s0 was the least recently used
            _, sink = await prompt(rt, sessions[0], "/remember")
            assert "remembered: hello 0" in sink.text()
            assert rt.stats()["live_sessions"] == 2

    run(scenario())


# -- modes and compact ---------------------------------------------------------------------


def test_modes_checked_switched_and_configured(workdir: str) -> None:
    async def scenario() -> None:
        async with opened(fake_runtime(workdir, mode="yolo")) as rt:
            session = FakeSession("s1", workdir)
            await rt.check_mode(session, "plan")
            assert session.state["mode"] == "yolo"  # the configured mode, on a new session
            with pytest.raises(ModeUnknown):
                await rt.check_mode(session, "nope")
            await prompt(rt, session, "go", mode="plan")
            assert session.state["mode"] == "plan"
        async with opened(fake_runtime(workdir, mode="nope")) as rt:
            with pytest.raises(RunFailed) as failed:
                await prompt(rt, FakeSession("s2", workdir), "go")
            assert "has no mode 'nope'" in failed.value.message
        async with opened(fake_runtime(workdir, env={"FAKE_ACP_NO_MODES": "1"})) as rt:
            with pytest.raises(ModeUnknown):
                await rt.check_mode(FakeSession("s3", workdir), "default")

    run(scenario())


def test_compact_uses_the_agents_command_or_is_unsupported(workdir: str) -> None:
    async def scenario() -> None:
        async with opened(fake_runtime(workdir)) as rt:
            session = FakeSession("s1", workdir)
            await prompt(rt, session, "/usage")
            result = await rt.compact(session)
            assert result.applied
            # In tokens, as the agent reported its context; ACP has no character counts.
            assert (result.before_chars, result.after_chars) == (0, 0)
            assert (result.before_tokens, result.after_tokens) == (1234, 300)
        async with opened(fake_runtime(workdir, env={"FAKE_ACP_NO_COMPACT": "1"})) as rt:
            session = FakeSession("s2", workdir)
            await prompt(rt, session, "hi")
            with pytest.raises(CompactUnsupported):
                await rt.compact(session)
        # After a restart, compact comes first: the loaded session's commands arrive
        # only after session/load answered, and compact waits for them.
        late = state_env(workdir, FAKE_ACP_COMMANDS_LATE="1")
        session = FakeSession("s3", workdir)
        async with opened(fake_runtime(workdir, env=late)) as rt:
            await prompt(rt, session, "hi")
        again = FakeSession("s3", workdir, dict(session.state))
        async with opened(fake_runtime(workdir, env=late)) as rt:
            assert (await rt.compact(again)).applied

    run(scenario())


# -- the client side: files and terminals, inside the workdir ----------------------------------


def test_files_inside_the_workdir_are_served_and_outside_refused(workdir: str) -> None:
    Path(workdir, "notes.txt").write_text("inside text")
    outside = short_tmpdir("ngw-out-")
    Path(outside, "secret.txt").write_text("secret")
    os.symlink(outside, Path(workdir, "escape"))

    async def scenario() -> None:
        async with opened(fake_runtime(workdir)) as rt:
            session = FakeSession("s1", workdir)
            checks = {
                f"/read {workdir}/notes.txt": "read: inside text",
                f"/read {outside}/secret.txt": "outside the session's workdir",
                f"/read {workdir}/escape/secret.txt": "outside the session's workdir",
                f"/read {workdir}/../{Path(outside).name}/secret.txt": "outside",
                f"/write {workdir}/sub/new.txt": "write: ok",
                f"/write {outside}/x.txt": "write error",
                f"/write {workdir}/escape/x.txt": "write error",
            }
            for command, expected in checks.items():
                _, sink = await prompt(rt, session, command)
                assert expected in sink.text(), (command, sink.text())
                assert "secret" not in sink.text().replace("secret.txt", "")

    try:
        run(scenario())
        assert Path(workdir, "sub/new.txt").read_text() == "written by fake"
        assert not Path(outside, "x.txt").exists()
    finally:
        shutil.rmtree(outside, ignore_errors=True)


def test_terminals_run_in_the_workdir_with_an_output_limit(workdir: str) -> None:
    Path(workdir, "sub").mkdir()

    async def scenario() -> None:
        async with opened(fake_runtime(workdir)) as rt:
            session = FakeSession("s1", workdir)
            _, sink = await prompt(rt, session, "/term pwd; echo hi")
            assert f"terminal exit 0: {workdir}\nhi" in sink.text()
            _, sink = await prompt(rt, session, f"/termcwd {workdir}/sub")
            assert f"terminal exit 0: {workdir}/sub" in sink.text()
            _, sink = await prompt(rt, session, "/termcwd /tmp")
            assert "terminal error" in sink.text()
            assert "outside" in sink.text()
            _, sink = await prompt(rt, session, "/termbig 5000")
            assert "terminal size 1000 truncated True" in sink.text()
            _, sink = await prompt(rt, session, "/term exit 3")
            assert "terminal exit 3" in sink.text()

    run(scenario())


# -- input ------------------------------------------------------------------------------------


def test_image_parts_from_a_data_uri_or_a_file(workdir: str) -> None:
    png = b"\x89PNG\r\n\x1a\n" + b"\x00" * 10
    Path(workdir, "pic.png").write_bytes(png)
    encoded = base64.b64encode(png).decode()

    async def scenario() -> None:
        async with opened(fake_runtime(workdir)) as rt:
            session = FakeSession("s1", workdir)
            parts = (
                InputPart(type="text", text="/image"),
                InputPart(
                    type="image",
                    media=Media(uri=f"data:image/png;base64,{encoded}", mime_type="image/png"),
                ),
                InputPart(type="image", media=Media(uri="pic.png", mime_type="image/png")),
            )
            reason = await rt.prompt(session, RunInput("r1", parts=parts), sink := FakeSink())
            assert reason == "end_turn"
            assert f"images: 2 image/png:{len(encoded)}, image/png:{len(encoded)}" in sink.text()
            bad = (
                InputPart(type="image", media=Media(uri="https://x/y.png", mime_type="image/png")),
            )
            with pytest.raises(RunFailed) as failed:
                await rt.prompt(session, RunInput("r2", parts=bad), FakeSink())
            assert failed.value.code == "runtime_error"
            assert "fetches nothing" in failed.value.message

    run(scenario())


def test_the_sdk_is_not_imported_until_an_agent_starts() -> None:
    import subprocess

    code = (
        "import sys; from neocode_gateway.runtime.acp import AcpRuntime, create_agent_runtimes; "
        "from neocode_gateway.config import load_config; "
        "print('acp' in sys.modules, 'pydantic' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


# -- edges ------------------------------------------------------------------------------------


def test_what_the_client_side_refuses(workdir: str) -> None:
    async def scenario() -> None:
        async with opened(fake_runtime(workdir)) as rt:
            _, sink = await prompt(rt, FakeSession("s1", workdir), "/ext /killterm")
            text = sink.text()
            assert "_fake/ask: error -32601" in text
            assert "fs/delete_file: error -32601" in text
            assert "fs/read_text_file: error -32602 unknown session" in text
            assert text.count("fs/read_text_file: error -32602") == 2
            assert "terminal/output: error -32602 terminalId: expected a string" in text
            assert "terminal/output: error -32002 unknown terminal 'term-999'" in text
            assert "killed: SIGTERM" in text or "killed: SIGKILL" in text

    run(scenario())


def test_agent_refusals_become_clear_run_errors(workdir: str) -> None:
    async def scenario() -> None:
        async with opened(fake_runtime(workdir, env={"FAKE_ACP_AUTH_REQUIRED": "1"})) as rt:
            with pytest.raises(RunFailed) as failed:
                await prompt(rt, FakeSession("s1", workdir), "hi")
            assert failed.value.code == "runtime_unavailable"
            assert "cannot start a session: Authentication required" in failed.value.message
        env = {"FAKE_ACP_SET_MODE_FAILS": "1"}
        async with opened(fake_runtime(workdir, env=env)) as rt:
            with pytest.raises(RunFailed) as failed:
                await prompt(rt, FakeSession("s2", workdir), "hi", mode="plan")
            assert failed.value.code == "runtime_error"
            assert "cannot switch to mode 'plan'" in failed.value.message

    run(scenario())


def test_one_run_per_session_and_a_failing_sink(workdir: str) -> None:
    class Broken(FakeSink):
        async def emit(self, data: dict[str, Any]) -> None:
            raise OSError("disk full")

    async def scenario() -> None:
        async with opened(fake_runtime(workdir)) as rt:
            session = FakeSession("s1", workdir)
            sink = FakeSink()
            task = asyncio.create_task(rt.prompt(session, RunInput("r1", text="/slow 2000"), sink))
            await sink.wait_for(lambda s: len(s.events) >= 2)
            with pytest.raises(RunFailed, match="already has an active run"):
                await rt.prompt(session, RunInput("r2", text="x"), FakeSink())
            await rt.cancel(session)
            assert await asyncio.wait_for(task, 30) == CANCELLED
            with pytest.raises(OSError, match="disk full"):
                await rt.prompt(session, RunInput("r3", text="x"), Broken())
            assert (await prompt(rt, session, "fine"))[0] == "end_turn"

    run(scenario())


def test_a_sink_whose_permission_request_fails_means_cancelled(workdir: str) -> None:
    class Broken(FakeSink):
        async def request_permission(self, tool_call: Any, options: Any) -> PermissionOutcome:
            raise RuntimeError("core bug")

    async def scenario() -> None:
        async with opened(fake_runtime(workdir)) as rt:
            reason = await rt.prompt(
                FakeSession("s1", workdir), RunInput("r", text="/ask"), Broken()
            )
            assert reason == CANCELLED

    run(scenario())


def test_more_busy_sessions_than_the_cap_all_run(workdir: str) -> None:
    async def scenario() -> None:
        async with opened(fake_runtime(workdir, max_live_sessions=1)) as rt:
            one, two = FakeSession("s1", workdir), FakeSession("s2", workdir)
            sink = FakeSink()
            task = asyncio.create_task(rt.prompt(one, RunInput("r1", text="/slow 2000"), sink))
            await sink.wait_for(lambda s: len(s.events) >= 2)
            assert (await prompt(rt, two, "meanwhile"))[0] == "end_turn"
            # The busy one is never closed: the cap is met again when the other run ends.
            assert rt.stats()["live_sessions"] == 1
            assert rt._table.live["s1"].run is not None
            await rt.cancel(one)
            assert await asyncio.wait_for(task, 30) == CANCELLED

    run(scenario())


def test_create_agent_runtimes_names_each_runtime(workdir: str) -> None:
    from neocode_gateway.config import GatewayConfig
    from neocode_gateway.runtime.acp import create_agent_runtimes

    agents = {"a": AgentConfig("a", ("a",)), "b": AgentConfig("b", ("b",))}
    options = RuntimeOptions(Path(workdir), workdir)
    made = create_agent_runtimes(GatewayConfig(agents=agents), options)
    assert [(n, r.name) for n, r in made.items()] == [("a", "a"), ("b", "b")]
    assert list(create_agent_runtimes(agents, options)) == ["a", "b"]
