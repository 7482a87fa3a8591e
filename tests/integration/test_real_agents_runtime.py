"""Claude Code and Codex behind the acp runtime, offline, against mock model servers.

The pinned adapters are installed with npm once (:mod:`tests.agents.real`);
each agent talks only to a mock of its model API on 127.0.0.1. Driven here
through :class:`AcpRuntime` with a fake sink (no daemon): a command that needs
permission, a cancel mid-run, and a session continued by a new runtime (as
after a gateway restart) through ``session/load``.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from neocode_gateway.runtime import CANCELLED, RunInput, RuntimeOptions
from neocode_gateway.runtime.acp import AcpRuntime
from neocode_gateway.runtime.acp._process import group_alive
from tests.agents import mock_anthropic, mock_openai
from tests.agents.mock_models import MockServer
from tests.agents.real import (
    AgentSetup,
    claude_setup,
    codex_setup,
    installed_agents,
    without_sandbox_flag,
)
from tests.agents.support import FakeSession, FakeSink, choose
from tests.support import short_tmpdir

pytestmark = pytest.mark.timeout(300)

AGENTS: dict[str, tuple[Callable[[int], MockServer], Callable[..., AgentSetup]]] = {
    "claude": (mock_anthropic.start, claude_setup),
    "codex": (mock_openai.start, codex_setup),
}


@pytest.fixture(scope="module")
def bin_dir() -> Path:
    return installed_agents()


@pytest.fixture(params=sorted(AGENTS))
def agent(request: pytest.FixtureRequest, bin_dir: Path) -> Iterator[tuple[AgentSetup, str]]:
    """(the agent's setup, a workdir): a fresh HOME and mock server per test."""
    start_mock, setup = AGENTS[request.param]
    mock = start_mock(0)
    scratch = short_tmpdir("ngw-real-")
    workdir = os.path.join(scratch, "work")
    os.mkdir(workdir)
    try:
        with without_sandbox_flag():
            yield setup(bin_dir, Path(scratch, "home"), mock.url), os.path.realpath(workdir)
    finally:
        mock.stop()
        shutil.rmtree(scratch, ignore_errors=True)


def runtime(setup: AgentSetup, workdir: str) -> AcpRuntime:
    options = RuntimeOptions(Path(workdir), workdir, settings={"stop_grace": 5.0})
    return AcpRuntime(setup.name, setup.config, options)


async def closed(rt: AcpRuntime) -> None:
    """Close ``rt``; the agent's process group must be gone afterwards."""
    pid = rt.stats().get("pid")
    await rt.close()
    if pid:
        assert not group_alive(pid), f"{rt.name}: process group {pid} outlived close()"


def test_a_command_that_needs_permission_runs_once_allowed(agent: tuple[AgentSetup, str]) -> None:
    setup, workdir = agent

    async def scenario() -> dict[str, Any]:
        rt = runtime(setup, workdir)
        try:
            session = FakeSession("s1", workdir)
            sink = FakeSink(choose("allow_once"))
            reason = await rt.prompt(
                session, RunInput("r1", text="please run: touch created.txt"), sink
            )
            stats = rt.stats()
        finally:
            await closed(rt)
        assert reason == "end_turn", sink.events
        assert sink.permissions, f"{setup.name} asked no permission: {sink.kinds()}"
        tool_call, options = sink.permissions[0]
        assert "touch created.txt" in str(tool_call)
        assert {o["kind"] for o in options} >= {"allow_once"}
        kinds = sink.kinds()
        assert kinds.index("tool_call") < kinds.index("permission_request")
        assert "Done." in sink.text()
        assert session.state["agent_session_id"]
        return stats

    stats = asyncio.run(scenario())
    assert Path(workdir, "created.txt").exists()
    print(
        f"\n{setup.name}: start to initialize {stats['started_in_s']:.2f}s, "
        f"agent process tree RSS with one session {stats['rss_bytes'] / 2**20:.0f} MiB"
    )


def test_cancel_mid_run_then_a_new_runtime_continues_the_session(
    agent: tuple[AgentSetup, str],
) -> None:
    setup, workdir = agent

    async def scenario() -> None:
        session = FakeSession("s1", workdir)
        rt = runtime(setup, workdir)
        try:
            await rt.prompt(session, RunInput("r1", text="remember the word banana"), FakeSink())
            sink = FakeSink()
            task = asyncio.create_task(
                rt.prompt(session, RunInput("r2", text="SLOWLY count to many"), sink)
            )
            await sink.wait_for(lambda s: s.text().count("tick") >= 3, timeout=120)
            await rt.cancel(session)
            assert await asyncio.wait_for(task, 60) == CANCELLED
            sink = FakeSink()
            reason = await rt.prompt(session, RunInput("r3", text="RECALL please"), sink)
            assert reason == "end_turn"
            assert "banana" in sink.text(), sink.text()
            assert "SLOWLY" in sink.text(), sink.text()
        finally:
            await closed(rt)
        saved = dict(session.state)
        # A new runtime, as after a gateway restart: the agent loads its session.
        again = FakeSession("s1", workdir, saved)
        rt = runtime(setup, workdir)
        try:
            sink = FakeSink()
            reason = await rt.prompt(again, RunInput("r4", text="RECALL again"), sink)
        finally:
            await closed(rt)
        assert reason == "end_turn"
        assert again.state["agent_session_id"] == saved["agent_session_id"]
        assert "banana" in sink.text(), sink.text()
        assert "RECALL please" in sink.text(), sink.text()
        # The history the agent replayed while loading is not logged as new events.
        assert "Mock answer." not in sink.text()

    asyncio.run(scenario())
