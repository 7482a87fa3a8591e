"""Issue #17: each fault of the ACP runtime, reproduced with a misbehaving fake agent.

Driven directly (no daemon) through :class:`AcpRuntime`; the faults about
processes seen from the daemon are in ``test_acp_processes.py``. Processes are
found by a unique marker in their argv (``sleep 600.<n>``), anywhere on the
machine: an orphan is no longer our descendant.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import random
import re
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from neocode_gateway.config import AgentConfig
from neocode_gateway.errors import RunFailed
from neocode_gateway.runtime import CANCELLED, PermissionOutcome, RunInput, RuntimeOptions
from neocode_gateway.runtime.acp import AcpRuntime
from neocode_gateway.runtime.acp._process import group_alive
from tests.agents.support import FakeSession, FakeSink, fake_runtime
from tests.integration.test_acp_runtime import opened, prompt, until
from tests.support import short_tmpdir

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")

_marks = itertools.count(random.randrange(1000, 9000) * 100)


def marker() -> str:
    """A ``sleep`` argument no other process has: ``600.<unique>``."""
    return f"600.{next(_marks)}"


def with_marker(mark: str) -> list[int]:
    """Every live (not zombie) process whose argv is ``sleep MARK`` or names MARK."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            argv = Path(f"/proc/{name}/cmdline").read_bytes().split(b"\0")
            state = Path(f"/proc/{name}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if mark.encode() in argv and state != "Z":
            found.append(int(name))
    return found


@pytest.fixture
def workdir() -> Iterator[str]:
    path = short_tmpdir("ngw-acpf-")
    yield os.path.realpath(path)
    shutil.rmtree(path, ignore_errors=True)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def mute_runtime(workdir: str, mark: str, **settings: float) -> AcpRuntime:
    """An "agent" that never answers initialize, and has a child: two ``sleep MARK``."""
    config = AgentConfig(name="mute", command=("sh", "-c", f"sleep {mark} & sleep {mark}; wait"))
    return AcpRuntime("mute", config, RuntimeOptions(Path(workdir), workdir, settings=settings))


# -- 1. a FIFO in the workdir ------------------------------------------------------------


def test_1_a_fifo_is_refused_at_once_and_file_calls_go_on(workdir: str) -> None:
    os.mkfifo(f"{workdir}/pipe")
    Path(workdir, "ok.txt").write_text("fine")

    async def scenario() -> None:
        async with opened(fake_runtime(workdir)) as rt:
            sessions = [FakeSession(f"s{n}", workdir) for n in range(6)]
            async with asyncio.timeout(20):
                results = await asyncio.gather(
                    *(prompt(rt, s, f"/read {workdir}/pipe") for s in sessions)
                )
            for _, sink in results:
                assert "not a regular file" in sink.text(), sink.text()
            _, sink = await prompt(rt, sessions[0], f"/read {workdir}/ok.txt /write {workdir}/pipe")
            assert "read: fine" in sink.text()
            assert "write error" in sink.text()

    run(scenario())


# -- 2. an agent that stops reading its stdin --------------------------------------------


def test_2_close_is_bounded_when_the_agent_stops_reading_and_ignores_sigterm(
    workdir: str,
) -> None:
    async def scenario() -> None:
        rt = fake_runtime(workdir, env={"FAKE_ACP_IGNORE_TERM": "1"}, settings={"stop_grace": 1})
        one, two = FakeSession("s1", workdir), FakeSession("s2", workdir)
        await prompt(rt, two, "ready")
        pid = rt.stats()["pid"]
        frozen = FakeSink()
        first = asyncio.create_task(rt.prompt(one, RunInput("r1", text="/freeze"), frozen))
        await frozen.wait_for(lambda s: "freezing" in s.text())
        big = asyncio.create_task(prompt(rt, two, "x" * (2 * 1024 * 1024)))
        await until(lambda: big.done() or ("s2" in rt._runs and rt._runs["s2"].live is not None))
        began = time.monotonic()
        await asyncio.wait_for(rt.close(), 10)
        assert time.monotonic() - began < 1 + 4  # the grace, and the bounded reaping
        assert not group_alive(pid)
        for task in (first, big):
            with pytest.raises(RunFailed):
                await asyncio.wait_for(task, 5)

    run(scenario())


# -- 3 and 13. starts: cancelled, and failing ----------------------------------------------


def test_3_runs_cancelled_while_the_agent_starts_leave_no_agent(workdir: str) -> None:
    mark = marker()

    async def scenario() -> None:
        rt = mute_runtime(workdir, mark, stop_grace=0.5)
        for n in range(3):  # as the core's forced cancel does, three times
            task = asyncio.create_task(prompt(rt, FakeSession(f"s{n}", workdir), "hi"))
            await until(lambda: len(with_marker(mark)) == 2)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        await asyncio.wait_for(rt.close(), 10)
        assert with_marker(mark) == []

    run(scenario())


def test_13_runs_waiting_on_one_failing_start_share_its_failure(workdir: str) -> None:
    mark = marker()

    async def scenario() -> None:
        rt = mute_runtime(workdir, mark, start_timeout=1, stop_grace=0.3)
        began = time.monotonic()
        tasks = [prompt(rt, FakeSession(f"s{n}", workdir), "hi") for n in range(4)]
        results = await asyncio.gather(*tasks, return_exceptions=True)
        assert all(isinstance(r, RunFailed) for r in results), results
        assert all("did not answer initialize within 1s" in str(r) for r in results)
        assert time.monotonic() - began < 3.5  # one start for all four, not four in turn
        await rt.close()
        assert with_marker(mark) == []

    run(scenario())


# -- 4 and 11. what the agent writes on stdout -------------------------------------------


def test_4_an_over_long_stdout_line_is_a_clear_fatal_error(workdir: str) -> None:
    async def scenario() -> None:
        rt = fake_runtime(workdir, settings={"max_line_bytes": 1024 * 1024})
        async with opened(rt):
            session = FakeSession("s1", workdir)
            with pytest.raises(RunFailed) as failed:
                await prompt(rt, session, f"/huge {3 * 1024 * 1024}")
            assert failed.value.code == "runtime_unavailable"
            assert "sent a line longer than 1048576 bytes on stdout" in failed.value.message
            assert (await prompt(rt, session, "again"))[1].text() == "echo: again"

    run(scenario())


def test_11_lines_that_are_not_json_rpc_objects_are_skipped(
    workdir: str, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> None:
        async with opened(fake_runtime(workdir)) as rt:
            pid = rt.stats().get("pid")
            reason, sink = await prompt(rt, FakeSession("s1", workdir), "/junk")
            assert reason == "end_turn"
            assert sink.text().endswith("echo: /junk")
            assert pid is None or rt.stats()["pid"] == pid

    with caplog.at_level(logging.DEBUG):
        run(scenario())
    skipped = [r for r in caplog.records if "was skipped" in r.getMessage()]
    assert len(skipped) == 5
    assert not [r for r in caplog.records if r.exc_info], "no traceback for a bad line"


# -- 6. descendants that leave the group --------------------------------------------------


def test_6_setsid_descendants_die_with_a_crash_and_with_close(workdir: str) -> None:
    crash_mark, close_mark = marker(), marker()

    async def scenario() -> None:
        rt = fake_runtime(workdir, settings={"stop_grace": 1})
        session = FakeSession("s1", workdir)
        with pytest.raises(RunFailed):  # the daemon holds the pipes: the crash still ends it
            await asyncio.wait_for(prompt(rt, session, f"/setsid {crash_mark} /crash"), 20)
        await until(lambda: not with_marker(crash_mark))
        await prompt(rt, session, f"/setsid {close_mark}")
        assert with_marker(close_mark)
        await asyncio.wait_for(rt.close(), 10)
        await until(lambda: not with_marker(close_mark))

    run(scenario())


def test_6_a_terminal_whose_command_leaves_a_background_child_ends(workdir: str) -> None:
    mark = marker()

    async def scenario() -> None:
        async with opened(fake_runtime(workdir)) as rt:
            _, sink = await asyncio.wait_for(
                prompt(rt, FakeSession("s1", workdir), f"/term sleep {mark} & echo started"), 20
            )
            assert "terminal exit 0: started" in sink.text()
            await until(lambda: not with_marker(mark))

    run(scenario())


# -- 7. abandoned prompts and compactions ------------------------------------------------


def test_7_an_abandoned_prompt_is_cancelled_at_the_agent(workdir: str) -> None:
    async def scenario() -> None:
        async with opened(fake_runtime(workdir)) as rt:
            session = FakeSession("s1", workdir)
            sink = FakeSink()
            task = asyncio.create_task(rt.prompt(session, RunInput("r1", text="/slow 2000"), sink))
            await sink.wait_for(lambda s: len(s.events) >= 2)
            task.cancel()  # the core's forced cancel: no runtime.cancel() before
            with pytest.raises(asyncio.CancelledError):
                await task
            _, sink = await prompt(rt, session, "/cancels")
            assert "cancels: 1" in sink.text()

    run(scenario())


def test_7_compact_can_be_cancelled_and_is_bounded(workdir: str) -> None:
    async def scenario() -> None:
        async with opened(fake_runtime(workdir, env={"FAKE_ACP_COMPACT_HANGS": "1"})) as rt:
            session = FakeSession("s1", workdir)
            await prompt(rt, session, "hi")
            task = asyncio.create_task(rt.compact(session))
            await until(lambda: "s1" in rt._runs and rt._runs["s1"].live is not None)
            await rt.cancel(session)
            result = await asyncio.wait_for(task, 10)
            assert not result.applied
            assert (await prompt(rt, session, "free"))[0] == "end_turn"
        env = {"FAKE_ACP_COMPACT_HANGS": "deaf"}
        async with opened(fake_runtime(workdir, env=env, settings={"compact_timeout": 1})) as rt:
            session = FakeSession("s2", workdir)
            await prompt(rt, session, "hi")
            with pytest.raises(RunFailed, match="did not answer session/prompt within 1s"):
                await asyncio.wait_for(rt.compact(session), 10)
            _, sink = await prompt(rt, session, "/cancels")
            assert "cancels: 1" in sink.text()

    run(scenario())


# -- 8. permissions -----------------------------------------------------------------------


def test_8_a_decision_is_never_widened(workdir: str) -> None:
    async def allow_once_by_core(tool: Any, options: Any) -> PermissionOutcome:
        # What the core hands over for "allow_once" when only allow_always is offered.
        return PermissionOutcome("always", "allow_once", "client")

    async def reject(tool: Any, options: Any) -> PermissionOutcome:
        return PermissionOutcome(None, "reject", "client")  # no reject option offered

    async def scenario() -> None:
        async with opened(fake_runtime(workdir)) as rt:
            session = FakeSession("s1", workdir)
            reason, sink = await prompt(rt, session, "/askalways", FakeSink(allow_once_by_core))
            assert (reason, "chosen: no" in sink.text()) == ("end_turn", True)
            reason, sink = await asyncio.wait_for(
                prompt(rt, session, "/askallows", FakeSink(reject)), 4
            )
            assert reason == CANCELLED
            assert "went on" not in sink.text()

    run(scenario())


# -- 9. the cap when runs end, idle sessions and agents -------------------------------------


def test_9_the_cap_holds_when_runs_end_and_idle_things_are_reaped(workdir: str) -> None:
    async def scenario() -> None:
        rt = fake_runtime(workdir, max_live_sessions=2)
        async with opened(rt):
            sessions = [FakeSession(f"s{n}", workdir) for n in range(6)]
            await asyncio.gather(*(prompt(rt, s, "/slow 3") for s in sessions))
            assert rt.stats()["live_sessions"] == 2
        settings = {"session_idle_timeout": 0.3, "agent_idle_timeout": 0.3}
        rt = fake_runtime(workdir, settings=settings)
        async with opened(rt):
            await prompt(rt, FakeSession("s1", workdir), "hi")
            pid = rt.stats()["pid"]
            await until(lambda: not rt.stats()["running"])
            await until(lambda: not group_alive(pid))
            assert (await prompt(rt, FakeSession("s1", workdir), "back"))[0] == "end_turn"

    run(scenario())


# -- 10. the context_reset notice ------------------------------------------------------------


def test_10_the_reset_notice_survives_a_run_that_fails_before_its_prompt(workdir: str) -> None:
    env = {"FAKE_ACP_STATE": f"{workdir}/.state", "FAKE_ACP_LOAD": "0"}

    async def scenario() -> None:
        session = FakeSession("s1", workdir)
        async with opened(fake_runtime(workdir, env=env)) as rt:
            await prompt(rt, session, "first")
        async with opened(fake_runtime(workdir, env=env)) as rt:
            failed_sink = FakeSink()
            with pytest.raises(RunFailed):
                await rt.prompt(session, RunInput("r", text="x", mode="nope"), failed_sink)
            _, next_sink = await prompt(rt, session, "again")
            notices = [e for e in failed_sink.events + next_sink.events if e.get("context_reset")]
            assert len(notices) == 1
            assert "context_reset" not in session.state

    run(scenario())


# -- 15. owners, runs, late sessions, environment ------------------------------------------


def test_15_terminals_belong_to_their_run(workdir: str) -> None:
    async def scenario() -> None:
        async with opened(fake_runtime(workdir)) as rt:
            one = FakeSink()
            task = asyncio.create_task(
                rt.prompt(FakeSession("s1", workdir), RunInput("r", text="/termhang"), one)
            )
            await one.wait_for(lambda s: "started" in s.text())
            terminal = re.findall(r"terminal (\S+) started", one.text())[0]
            _, sink = await prompt(rt, FakeSession("s2", workdir), f"/termout {terminal}")
            assert "terminal error" in sink.text()
            assert "unknown terminal" in sink.text()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    run(scenario())


def test_15_file_calls_outside_a_run_are_refused(workdir: str) -> None:
    Path(workdir, "f.txt").write_text("content")

    async def scenario() -> None:
        async with opened(fake_runtime(workdir)) as rt:
            answered = asyncio.Event()
            handle = rt._inbound.handle

            async def watched(agent: Any, method: str, params: Any, note: bool) -> Any:
                try:
                    return await handle(agent, method, params, note)
                finally:
                    if method == "fs/read_text_file":
                        answered.set()

            rt._inbound.handle = watched  # type: ignore[method-assign, assignment]
            session = FakeSession("s1", workdir)
            await prompt(rt, session, f"/readlater {workdir}/f.txt")
            await asyncio.wait_for(answered.wait(), 10)  # asked after the run ended
            _, sink = await prompt(rt, session, "/late")
            assert "only served during a run" in sink.text()

    run(scenario())


def test_15_a_session_answered_after_a_forced_cancel_is_closed(workdir: str) -> None:
    async def scenario() -> None:
        rt = fake_runtime(workdir, env={"FAKE_ACP_NEW_DELAY": "0.5"})
        async with opened(rt):
            await prompt(rt, FakeSession("s0", workdir), "warm")
            sink = FakeSink()
            task = asyncio.create_task(
                rt.prompt(FakeSession("s1", workdir), RunInput("r", text="hi"), sink)
            )
            await sink.wait_for(lambda s: "creating_session" in s.phases)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            seen: list[str] = []

            async def count() -> bool:
                seen.append((await prompt(rt, FakeSession("s0", workdir), "/sessions"))[1].text())
                return "sessions: 1 " in seen[-1] or seen[-1].startswith("sessions: 1")

            async with asyncio.timeout(10):
                while not await count():
                    pass

    run(scenario())


def test_15_env_remove_and_the_hint_for_root_with_is_sandbox(
    workdir: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IS_SANDBOX", "1")
    monkeypatch.setenv("NGW_TEST_DROP", "x")

    async def scenario() -> None:
        from tests.agents.support import fake_agent_config

        config = fake_agent_config()
        removed = AgentConfig(
            name="fake", command=config.command, env_remove=("NGW_TEST_DROP", "IS_SANDBOX")
        )
        rt = AcpRuntime("fake", removed, RuntimeOptions(Path(workdir), workdir))
        async with opened(rt):
            _, sink = await prompt(rt, FakeSession("s1", workdir), "/env NGW_TEST_DROP")
            assert "env NGW_TEST_DROP=unset" in sink.text()
        if os.geteuid() == 0:
            dying = fake_agent_config(env={"FAKE_ACP_EXIT_AT_START": "1"})
            rt = AcpRuntime("fake", dying, RuntimeOptions(Path(workdir), workdir))
            async with opened(rt):
                with pytest.raises(RunFailed) as failed:
                    await prompt(rt, FakeSession("s1", workdir), "hi")
                assert 'env_remove = ["IS_SANDBOX"]' in failed.value.message

    run(scenario())


# -- #18: what a run waits for -------------------------------------------------------------


def test_phases_of_a_run(workdir: str) -> None:
    env = {"FAKE_ACP_STATE": f"{workdir}/.state"}

    async def scenario() -> None:
        session = FakeSession("s1", workdir)
        async with opened(fake_runtime(workdir, env=env)) as rt:
            _, sink = await prompt(rt, session, "hi")
            assert sink.phases == ["starting_agent", "creating_session", "waiting_for_model"]
            kinds = sink.kinds()
            assert kinds[-1] == "message_chunk"
            _, sink = await prompt(rt, session, "again")
            assert sink.phases == ["waiting_for_model"]
        async with opened(fake_runtime(workdir, env=env)) as rt:
            _, sink = await prompt(rt, session, "after a restart")
            assert sink.phases == ["starting_agent", "loading_session", "waiting_for_model"]

    run(scenario())
