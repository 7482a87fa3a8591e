"""Claude Code and Codex behind a real gateway daemon, end to end, offline.

For each agent (installed with npm once, its model API mocked on 127.0.0.1),
through the gateway's socket, as front-ends would:

1. a run whose model answer asks for a shell command -> ``permission_request``
   -> resolved from a second client -> the file exists in the workdir -> ``run_done``;
2. a cancel mid-run from the second client -> ``run_error`` ``canceled``; the
   next run works and stays in step (the agent remembers both earlier turns);
3. ``kill -9`` of the gateway, a restart on the same data directory, and a new
   run in the same session, continued by the agent through ``session/load``.

The daemon takes the agents from ``--config``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from neocode_gateway.runtime.acp._process import descendant_pids
from tests.agents import mock_anthropic, mock_openai
from tests.agents.mock_models import MockServer
from tests.agents.real import AgentSetup, claude_setup, codex_setup, installed_agents
from tests.support import Gateway, LineReader, short_tmpdir, wait_for

pytestmark = pytest.mark.timeout(420)

AGENTS: dict[str, tuple[Callable[[int], MockServer], Callable[..., AgentSetup]]] = {
    "claude": (mock_anthropic.start, claude_setup),
    "codex": (mock_openai.start, codex_setup),
}
#: Generous: a loaded 2-core machine, and real agents that start Node and their own servers.
STEP = 120.0


class Client:
    """One front-end connection: requests, their responses, and the events in between."""

    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(STEP)
        self.sock.connect(path)
        self.reader = LineReader(self.sock)
        self.events: list[dict[str, Any]] = []

    def close(self) -> None:
        self.sock.close()

    def _next(self, deadline: float) -> dict[str, Any]:
        self.sock.settimeout(max(deadline - time.monotonic(), 0.01))
        return self.reader.frame()

    def call(self, frame: dict[str, Any]) -> dict[str, Any]:
        """Send a request; its response (events meanwhile are kept in :attr:`events`)."""
        frame = {"type": "request", **frame}
        self.sock.sendall(msgspec.json.encode(frame) + b"\n")
        deadline = time.monotonic() + STEP
        while True:
            answer = self._next(deadline)
            if answer.get("type") == "event":
                self.events.append(answer)
            elif answer.get("request_id") == frame["request_id"]:
                assert answer["type"] == "ack", answer
                return answer

    def event(self, predicate: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        """The first event (kept or coming) that matches; waits up to :data:`STEP`."""
        for event in self.events:
            if predicate(event):
                return event
        deadline = time.monotonic() + STEP
        while True:
            event = self._next(deadline)
            if event.get("type") == "event":
                self.events.append(event)
                if predicate(event):
                    return event

    def run_events(self, run_id: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("run_id") == run_id]

    def text(self, run_id: str) -> str:
        return "".join(
            e["payload"]["data"].get("text", "")
            for e in self.run_events(run_id)
            if e["payload"]["event_type"] == "run_progress"
            and e["payload"]["data"]["kind"] == "message_chunk"
        )


def is_terminal(run_id: str) -> Callable[[dict[str, Any]], bool]:
    return lambda e: (
        e.get("run_id") == run_id
        and e["payload"]["event_type"]
        in (
            "run_done",
            "run_error",
        )
    )


def of_type(run_id: str, event_type: str) -> Callable[[dict[str, Any]], bool]:
    return lambda e: e.get("run_id") == run_id and e["payload"]["event_type"] == event_type


@pytest.fixture(scope="module")
def bin_dir() -> Path:
    return installed_agents()


@pytest.fixture(params=sorted(AGENTS))
def setup(request: pytest.FixtureRequest, bin_dir: Path) -> Iterator[tuple[AgentSetup, str]]:
    start_mock, make = AGENTS[request.param]
    mock = start_mock(0)
    scratch = short_tmpdir("ngw-gwreal-")
    try:
        agent = make(bin_dir, Path(scratch, "home"), mock.url)
        yield agent, scratch
    finally:
        mock.stop()
        shutil.rmtree(scratch, ignore_errors=True)


def start_gateway(agent: AgentSetup, scratch: str, extra_toml: str = "") -> Gateway:
    config = Path(scratch, "gateway.toml")
    config.write_text(f'default_agent = "{agent.name}"\n' + agent.toml() + extra_toml)
    workdir = Path(scratch, "work")
    workdir.mkdir(exist_ok=True)
    gateway = Gateway(
        f"{scratch}/gw.sock",
        "--config",
        str(config),
        "--runtime",
        agent.name,
        "--data-dir",
        f"{scratch}/data",
        "--workdir",
        str(workdir),
    )
    # Gateway.start passes os.environ on; the flag must not reach Claude (tests.agents.real).
    saved = os.environ.pop("IS_SANDBOX", None)
    try:
        return gateway.start(timeout=60)
    finally:
        if saved is not None:
            os.environ["IS_SANDBOX"] = saved


def test_real_agent_through_the_gateway(setup: tuple[AgentSetup, str]) -> None:
    agent, scratch = setup
    workdir = os.path.realpath(Path(scratch, "work"))
    gateway = start_gateway(agent, scratch)
    agent_pids: set[tuple[int, int]] = set()
    clients: list[Client] = []
    try:
        a, b = Client(gateway.path), Client(gateway.path)
        clients += [a, b]
        # 1. permission, resolved from the second client.
        ack = a.call(
            {
                "action": "run",
                "request_id": "q1",
                "input_text": "please run: touch created.txt",
                "workdir": workdir,
            }
        )
        session = ack["session_id"]
        asked = a.event(of_type("q1", "permission_request"))["payload"]["data"]
        assert "touch created.txt" in str(asked["tool_call"])
        resolved = b.call(
            {
                "action": "resolve_permission",
                "request_id": "p1",
                "session_id": session,
                "payload": {"request_id": asked["request_id"], "decision": "allow_once"},
            }
        )
        assert resolved["payload"]["decision"] == "allow_once"
        end = a.event(is_terminal("q1"))
        assert end["payload"]["event_type"] == "run_done", a.run_events("q1")
        assert Path(workdir, "created.txt").exists()
        kinds = [e["payload"]["event_type"] for e in a.run_events("q1")]
        assert kinds[0] == "run_started"
        assert kinds.index("permission_request") < kinds.index("permission_resolved")
        # 2. cancel mid-run; the next run is in step.
        a.call(
            {
                "action": "run",
                "request_id": "q2",
                "session_id": session,
                "input_text": "SLOWLY count",
            }
        )
        a.event(lambda e: e.get("run_id") == "q2" and "tick" in a.text("q2"))
        canceled = b.call({"action": "cancel", "request_id": "c1", "session_id": session})
        assert canceled["payload"] == {"canceled": True, "run_id": "q2"}
        end = a.event(is_terminal("q2"))
        assert end["payload"]["data"]["code"] == "canceled"
        a.call(
            {
                "action": "run",
                "request_id": "q3",
                "session_id": session,
                "input_text": "RECALL please",
            }
        )
        assert a.event(is_terminal("q3"))["payload"]["event_type"] == "run_done"
        assert "touch created.txt" in a.text("q3")
        assert "SLOWLY" in a.text("q3")
        # 3. kill -9, restart, the same session continues through session/load.
        agent_pids = descendant_pids(gateway.pid)
        assert agent_pids, "the agent should run under the gateway"
        a.close()
        b.close()
        gateway.kill()
        # Its agents see their stdin close and exit (no orphans left behind).
        wait_for(lambda: not _alive(agent_pids), 60, what="the agents of a killed gateway to exit")
        gateway = start_gateway(agent, scratch)
        a = Client(gateway.path)
        a.call(
            {
                "action": "run",
                "request_id": "q4",
                "session_id": session,
                "input_text": "RECALL again",
            }
        )
        assert a.event(is_terminal("q4"))["payload"]["event_type"] == "run_done", a.events
        assert "SLOWLY" in a.text("q4")
        assert "RECALL please" in a.text("q4")
        agent_pids = descendant_pids(gateway.pid)
        a.close()
        assert gateway.stop(timeout=60) == 0
        assert not _alive(agent_pids), "a stopped gateway must leave no agent process behind"
    finally:
        for client in clients:
            client.close()
        gateway.kill()
        for pid, _ in agent_pids:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        gateway.log_path.unlink(missing_ok=True)


def _alive(pids: set[tuple[int, int]]) -> bool:
    for pid, _ in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state != "Z":
            return True
    return False
