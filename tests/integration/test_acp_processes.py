"""Issue #17, seen from the daemon: SIGTERM and ``kill -9`` of the gateway leave no process.

A run of the fake agent starts a child (same group), a ``setsid`` child (a
group of its own) and a terminal, then hangs. After SIGTERM the gateway must
exit within the stop grace (3 s) plus 2 s, and after either SIGTERM or
``kill -9`` no process of the agent, its children or its terminals may be
left (found by markers in their argv, anywhere on the machine).
"""

from __future__ import annotations

import re
import shlex
import signal
import sys
import time

import pytest

from tests.agents.support import FAKE_AGENT
from tests.conftest import GatewayFactory
from tests.integration.test_acp_faults import marker, with_marker
from tests.support import Gateway, wait_for
from tests.v11 import Peer, data, etype

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(sys.platform != "linux", reason="reads /proc"),
]

STOP_GRACE = 3.0


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _start_hung_run(gateway_factory: GatewayFactory) -> tuple[Gateway, int, list[str]]:
    command = shlex.join([sys.executable, FAKE_AGENT])
    gateway = gateway_factory("--agent", f"fake={command}", "--runtime", "fake", timeout=30)
    marks = [marker(), marker(), marker()]
    text = f"/pid /spawnm {marks[0]} /setsid {marks[1]} /termm {marks[2]} /hang"
    with Peer(gateway.path, timeout=60) as peer:
        run = str(peer.ack("run", input_text=text)["run_id"])
        peer.wait_event(
            lambda e: (
                e.get("run_id") == run
                and etype(e) == "run_progress"
                and "hanging" in str(data(e).get("text", ""))
            ),
            timeout=60,
        )
        said = "".join(
            str(data(e).get("text", "")) for e in peer.run_events(run) if etype(e) == "run_progress"
        )
    agent_pid = int(re.findall(r"pid (\d+)", said)[0])
    for mark in marks:
        wait_for(lambda m=mark: with_marker(m), 10, what=f"sleep {mark}")  # type: ignore[misc]
    assert _alive(agent_pid)
    return gateway, agent_pid, marks


def _nothing_left(agent_pid: int, marks: list[str]) -> bool:
    return not _alive(agent_pid) and not any(with_marker(m) for m in marks)


def test_sigterm_exits_within_the_grace_and_leaves_nothing(
    gateway_factory: GatewayFactory,
) -> None:
    gateway, agent_pid, marks = _start_hung_run(gateway_factory)
    began = time.monotonic()
    gateway.signal(signal.SIGTERM)
    gateway.wait(timeout=STOP_GRACE + 10)
    assert time.monotonic() - began < STOP_GRACE + 2, gateway.log()
    wait_for(lambda: _nothing_left(agent_pid, marks), 2, what="no process left")


def test_kill_9_of_the_gateway_leaves_no_orphan(gateway_factory: GatewayFactory) -> None:
    gateway, agent_pid, marks = _start_hung_run(gateway_factory)
    gateway.signal(signal.SIGKILL)
    gateway.wait(timeout=10)
    wait_for(lambda: _nothing_left(agent_pid, marks), STOP_GRACE + 5, what="no orphan left")
