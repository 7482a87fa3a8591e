"""The approval policy with the real Claude Code behind the gateway (issue 20), offline.

Claude's ``Write`` of ``src/x.py`` is allowed by ``edit(src/**)`` without anyone being
asked; its ``Write`` of ``.env`` is denied by ``edit(.env*)``, and the agent is told so
(the file is not written and the turn ends normally). The model is the Anthropic mock.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.agents import mock_anthropic
from tests.agents.real import claude_setup, installed_agents
from tests.integration.test_real_agents_gateway import Client, is_terminal, start_gateway
from tests.support import short_tmpdir

pytestmark = pytest.mark.timeout(420)

POLICY = """
[[policy]]
allow = ["read", "edit(src/**)"]
deny  = ["edit(.env*)"]
"""


def test_claude_writes_are_decided_by_the_rules() -> None:
    bin_dir = installed_agents()
    mock = mock_anthropic.start(0)
    scratch = short_tmpdir("ngw-policy-")
    gateway = None
    try:
        agent = claude_setup(bin_dir, Path(scratch, "home"), mock.url)
        gateway = start_gateway(agent, scratch, extra_toml=POLICY)
        workdir = os.path.realpath(Path(scratch, "work"))
        Path(workdir, "src").mkdir()
        client = Client(gateway.path)
        try:
            target = os.path.join(workdir, "src", "x.py")
            ack = client.call(
                {"action": "run", "request_id": "w1", "input_text": f"WRITE {target}"}
            )
            session = ack["session_id"]
            end = client.event(is_terminal("w1"))
            events = client.run_events("w1")
            types = [e["payload"]["event_type"] for e in events]
            assert "permission_request" not in types, events
            resolved = next(
                e for e in events if e["payload"]["event_type"] == "permission_resolved"
            )
            assert resolved["payload"]["data"]["decided_by"] == "policy"
            assert resolved["payload"]["data"]["rule"] == "edit(src/**)"
            assert end["payload"]["event_type"] == "run_done", events
            assert Path(target).read_text() == "written by the mock\n"
            secret = os.path.join(workdir, ".env")
            client.call(
                {
                    "action": "run",
                    "request_id": "w2",
                    "session_id": session,
                    "input_text": f"WRITE {secret}",
                }
            )
            end = client.event(is_terminal("w2"))
            events = client.run_events("w2")
            resolved = next(
                e for e in events if e["payload"]["event_type"] == "permission_resolved"
            )
            assert resolved["payload"]["data"]["decision"] == "reject"
            assert resolved["payload"]["data"]["decided_by"] == "policy"
            assert end["payload"]["event_type"] == "run_done", events
            assert not Path(secret).exists()
        finally:
            client.close()
    finally:
        if gateway is not None:
            gateway.stop(20)
            gateway.cleanup()
        mock.stop()
