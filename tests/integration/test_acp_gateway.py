"""The acp runtime behind a real gateway daemon, with the scripted fake agent.

What a front-end sees through the socket: a title from the agent renames the
session, kinds the contract lacks arrive as ``other``, a mode switch, a
permission answered by a second client, and ``status`` reporting the agent.
The real agents (Claude Code, Codex) run the same paths in
``test_real_agents_gateway.py`` where node exists.
"""

from __future__ import annotations

import shlex
import sys

import pytest

from tests.agents.support import FAKE_AGENT
from tests.conftest import GatewayFactory
from tests.support import run_cli
from tests.v11 import Peer, data, etype

pytestmark = pytest.mark.timeout(120)


def test_fake_agent_through_the_gateway(gateway_factory: GatewayFactory) -> None:
    command = shlex.join([sys.executable, FAKE_AGENT])
    gateway = gateway_factory("--agent", f"fake={command}", "--runtime", "fake", timeout=30)
    with Peer(gateway.path, timeout=60) as a, Peer(gateway.path, timeout=60) as b:
        ack = a.ack("run", input_text="/title Renamed /unknown /mode plan hello")
        session, run = str(ack["session_id"]), str(ack["run_id"])
        end = a.wait_terminal(run, timeout=60)
        assert etype(end) == "run_done", a.run_events(run)
        kinds = [data(e).get("kind") for e in a.run_events(run) if etype(e) == "run_progress"]
        assert "other" in kinds
        assert "session_info" in kinds
        listed = b.ack("list_sessions")["payload"]["sessions"]
        assert next(s for s in listed if s["id"] == session)["title"] == "Renamed"

        # A permission request, answered by the other client.
        ack = a.ack("run", session_id=session, input_text="/ask", payload={"mode": "default"})
        run = str(ack["run_id"])
        asked = a.wait_event(lambda e: e.get("run_id") == run and etype(e) == "permission_request")
        options = data(asked)["options"]
        assert options, asked
        b.ack(
            "resolve_permission",
            session_id=session,
            payload={"request_id": data(asked)["request_id"], "decision": "allow_once"},
        )
        assert etype(a.wait_terminal(run, timeout=60)) == "run_done"

        # compact, in tokens: the fake agent's context goes from 1234 to 300.
        a.wait_terminal(str(a.ack("run", session_id=session, input_text="/usage")["run_id"]))
        compacted = b.ack("compact", session_id=session)["payload"]
        assert compacted["before_tokens"] == 1234
        assert compacted["after_tokens"] == 300
        assert compacted["saved_ratio"] == round(934 / 1234, 4)
        assert compacted["before_chars"] == 0
        assert compacted["trigger_mode"] == "manual"

        status = b.ack("status")["payload"]
        agent = status["agents"]["fake"]
        assert agent["running"] is True
        assert agent["live_sessions"] == 1
        assert agent["rss_bytes"] > 0
    shown = run_cli("status", "--listen", gateway.path)
    assert shown.returncode == 0, shown.stderr
    assert "agent fake: running (pid " in shown.stdout
    assert "1 live session," in shown.stdout
    with Peer(gateway.path) as c:
        c.wait_terminal(str(c.ack("run", session_id=session, input_text="/usage")["run_id"]))
    compact = run_cli("compact", session, "--listen", gateway.path)
    assert compact.stdout.strip() == "compacted: context 1234 -> 300 tokens (saved 76%)"
