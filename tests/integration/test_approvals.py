"""The approval layer end to end (issue 20): rules, grants, the audit, pending, client names;
a real daemon with the echo runtime asking for tool kinds (``/ask KIND ...``)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from tests.conftest import GatewayFactory
from tests.support import Gateway, run_cli, short_tmpdir
from tests.v11 import Peer, data, etype

POLICY = """
[[policy]]
allow = ["read", "edit(src/**)", "execute(git status)"]
ask   = ["execute(git push *)"]
deny  = ["edit(.env*)", "execute(rm -rf *)"]
"""


@pytest.fixture
def workdir() -> Iterator[str]:
    path = short_tmpdir("ngw-wd-")
    os.makedirs(os.path.join(path, "src"))
    yield os.path.realpath(path)
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def gateway(gateway_factory: GatewayFactory, workdir: str) -> Gateway:
    config = Path(workdir) / "gateway.toml"
    config.write_text(POLICY)
    return gateway_factory("--config", str(config), "--workdir", workdir)


def _ask(peer: Peer, text: str, session_id: str | None = None) -> tuple[str, str]:
    fields = {"input_text": text}
    if session_id:
        fields["session_id"] = session_id
    ack = peer.ack("run", **fields)
    return str(ack["session_id"]), str(ack["run_id"])


def _run_events(peer: Peer, run_id: str) -> list[dict[str, object]]:
    peer.wait_terminal(run_id)
    return [f for f in peer.events if f.get("run_id") == run_id]


def test_rules_decide_without_asking_anyone(gateway: Gateway) -> None:
    with Peer(gateway.path) as peer:
        _, run_id = _ask(peer, "/ask edit src/x.py")
        events = _run_events(peer, run_id)
        assert not [e for e in events if etype(e) == "permission_request"]
        resolved = next(e for e in events if etype(e) == "permission_resolved")
        assert data(resolved)["decided_by"] == "policy"
        assert data(resolved)["decision"] == "allow_once"
        assert data(resolved)["rule"] == "edit(src/**)"
        update = next(e for e in events if data(e).get("kind") == "tool_call_update")
        assert data(update)["status"] == "completed"
        _, denied = _ask(peer, "/ask edit .env")
        events = _run_events(peer, denied)
        resolved = next(e for e in events if etype(e) == "permission_resolved")
        assert (data(resolved)["decision"], data(resolved)["decided_by"]) == ("reject", "policy")
        assert data(resolved)["rule"] == "edit(.env*)"
        update = next(e for e in events if data(e).get("kind") == "tool_call_update")
        assert data(update)["status"] == "failed"
        # A path outside the workdir is never allowed by a rule: a person is asked.
        _, outside = _ask(peer, "/ask edit /etc/hosts")
        asked = peer.wait_event(
            lambda f: f.get("run_id") == outside and etype(f) == "permission_request"
        )
        peer.ack(
            "resolve_permission",
            payload={"request_id": data(asked)["request_id"], "decision": "reject"},
        )
        peer.wait_terminal(outside)


def test_grants_audit_pending_and_client_names(gateway: Gateway) -> None:
    with Peer(gateway.path) as peer, Peer(gateway.path) as phone:
        phone.ack("hello", payload={"client": "web", "device": "pixel"})
        status = peer.ack("status")["payload"]
        assert {"client": "web", "device": "pixel"}.items() <= status["clients"][0].items()
        assert status["unidentified"] >= 1
        session_id, run_id = _ask(peer, "/ask execute ls -la")
        asked = peer.wait_event(lambda f: etype(f) == "permission_request")
        pending = run_cli("pending", "--json", "--listen", gateway.path)
        assert pending.returncode == 0, pending.stderr
        listed = msgspec.json.decode(pending.stdout.splitlines()[0])
        assert listed["request_id"] == data(asked)["request_id"]
        assert listed["tool_call"]["raw_input"]["command"] == "ls -la"
        phone.ack(
            "resolve_permission",
            payload={"request_id": data(asked)["request_id"], "decision": "allow_session"},
        )
        resolved = peer.wait_event(lambda f: etype(f) == "permission_resolved")
        assert (data(resolved)["client"], data(resolved)["device"]) == ("web", "pixel")
        peer.wait_terminal(run_id)
        # The same command again in the session: the grant answers.
        _, again = _ask(peer, "/ask execute ls -la", session_id)
        events = _run_events(peer, again)
        by_grant = next(e for e in events if etype(e) == "permission_resolved")
        assert data(by_grant)["decided_by"] == "grant"
        grants = run_cli("grants", "--json", "--listen", gateway.path)
        grant = msgspec.json.decode(grants.stdout.splitlines()[0])
        assert grant["uses"] == 1
        assert grant["given_by"] == "web (pixel)"
        assert grant["rule"] == "execute(ls -la)"
        revoked = run_cli("grants", "revoke", grant["grant_id"], "--listen", gateway.path)
        assert revoked.returncode == 0, revoked.stderr
        # Revoked: the next same request is asked again.
        _, third = _ask(peer, "/ask execute ls -la", session_id)
        asked = peer.wait_event(
            lambda f: f.get("run_id") == third and etype(f) == "permission_request"
        )
        approve = run_cli(
            "approve", data(asked)["request_id"], "--next", "2", "--listen", gateway.path
        )
        assert approve.returncode == 0, approve.stderr
        peer.wait_terminal(third)
        audit = run_cli("audit", "--json", "--session", session_id, "--listen", gateway.path)
        decisions = [msgspec.json.decode(line) for line in audit.stdout.splitlines()]
        assert [d["decided_by"] for d in decisions] == ["client", "grant", "client"]
        assert decisions[0]["who"] == "cli"
        assert decisions[2]["who"] == "web (pixel)"
        assert decisions[1]["who"].startswith("g_")
        assert all(d["tool"]["command"] == "ls -la" for d in decisions)
        assert decisions[2]["waited_ms"] >= 0
        only = run_cli("audit", "--json", "--decided-by", "grant", "--listen", gateway.path)
        assert len(only.stdout.splitlines()) == 1
        grants = run_cli("grants", "--json", "--listen", gateway.path)
        remaining = [msgspec.json.decode(line) for line in grants.stdout.splitlines()]
        assert [g["remaining"] for g in remaining] == [2]


def test_grant_terms_and_unknown_grants_are_refused(gateway: Gateway) -> None:
    with Peer(gateway.path) as peer:
        _, run_id = _ask(peer, "/ask execute make")
        asked = peer.wait_event(lambda f: etype(f) == "permission_request")
        request_id = data(asked)["request_id"]
        for bad in ({"for_s": -1}, {"next": 0}, {"for_s": 5, "next": 5}, "soon"):
            answer = peer.request(
                "resolve_permission",
                payload={"request_id": request_id, "decision": "allow_once", "grant": bad},
            )
            assert answer["error"]["code"] == "invalid_action", bad
        rejected = peer.request(
            "resolve_permission",
            payload={"request_id": request_id, "decision": "reject", "grant": {"next": 1}},
        )
        assert rejected["error"]["code"] == "invalid_action"
        peer.ack(
            "resolve_permission",
            payload={"request_id": request_id, "decision": "allow_once", "grant": {"for_s": 60}},
        )
        peer.wait_terminal(run_id)
        missing = peer.request("revoke_grant", payload={"grant_id": "g_none"})
        assert missing["error"]["code"] == "resource_not_found"
        blank = peer.request("revoke_grant")
        assert blank["error"]["code"] == "missing_required_field"
        hello = peer.request("hello")
        assert hello["error"]["code"] == "missing_required_field"


def test_policy_check_and_explain(workdir: str) -> None:
    config = Path(workdir) / "gateway.toml"
    config.write_text(POLICY + '\n[[policy]]\nask = ["execute"]\nallow = ["execute(ls)"]\n')
    checked = run_cli("policy", "check", "--config", str(config))
    assert checked.returncode == 0, checked.stderr
    assert "ok" in checked.stdout
    assert "warning" in checked.stdout
    explained = run_cli(
        "policy",
        "explain",
        "execute",
        "rm -rf build",
        "--config",
        str(config),
        "--workdir",
        workdir,
    )
    assert explained.returncode == 0, explained.stderr
    assert "rm -rf *" in explained.stdout
    config.write_text('[[policy]]\ndeny = ["edit(.env*"]\n')
    broken = run_cli("policy", "check", "--config", str(config))
    assert broken.returncode == 2
    assert "unbalanced" in broken.stderr
    assert "Traceback" not in broken.stderr


def test_a_malformed_rule_stops_the_daemon_with_one_line(workdir: str) -> None:
    config = Path(workdir) / "bad.toml"
    config.write_text('[[policy]]\nallow = ["frobnicate(x)"]\n')
    result = run_cli(
        "--listen",
        os.path.join(workdir, "gw.sock"),
        "--config",
        str(config),
        "--data-dir",
        os.path.join(workdir, "data"),
    )
    assert result.returncode == 2
    assert "frobnicate" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_commands_speak_plainly_too(gateway: Gateway, workdir: str) -> None:
    listen = ("--listen", gateway.path)
    empty = run_cli("pending", *listen)
    assert empty.stdout.strip() == "nothing waits for an answer"
    assert run_cli("grants", *listen).stdout.startswith("no grants")
    assert run_cli("audit", *listen).stdout.strip() == "no permission decisions"
    with Peer(gateway.path) as peer:
        session_id, run_id = _ask(peer, "/ask execute make all")
        asked = peer.wait_event(lambda f: etype(f) == "permission_request")
        waiting = run_cli("pending", *listen)
        assert data(asked)["request_id"] in waiting.stdout
        assert "neocode-gateway approve ID" in waiting.stdout
        approved = run_cli("approve", data(asked)["request_id"], "--for", "30m", *listen)
        assert approved.returncode == 0, approved.stderr
        peer.wait_terminal(run_id)
        _, by_rule = _ask(peer, "/ask read notes.txt", session_id)
        peer.wait_terminal(by_rule)
    grants = run_cli("grants", "--session", session_id, *listen)
    assert "execute(make all)" in grants.stdout
    assert "until" in grants.stdout
    audit = run_cli("audit", "--since", "1h", *listen)
    assert "policy" in audit.stdout
    assert "by client [cli]" in audit.stdout
    bad = run_cli("audit", "--since", "yesterday", *listen)
    assert bad.returncode == 2
    both = run_cli("approve", "p_x", "--for", "1m", "--next", "2", *listen)
    assert both.returncode == 2
    assert "not both" in both.stderr
    wrong = run_cli("approve", "p_x", "--for", "soon", *listen)
    assert wrong.returncode == 2
    revoke = run_cli("grants", "revoke", *listen)
    assert revoke.returncode == 2
    for kind, arg in (("edit", "src/a.py"), ("think", ""), ("execute", "git status")):
        explained = run_cli(
            "policy",
            "explain",
            kind,
            arg,
            "--workdir",
            workdir,
            "--config",
            str(Path(workdir) / "gateway.toml"),
        )
        assert explained.returncode == 0, explained.stderr
    nokind = run_cli("policy", "explain", "--config", str(Path(workdir) / "gateway.toml"))
    assert nokind.returncode == 2
