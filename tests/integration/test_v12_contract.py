"""Contract v1.2 against a real daemon: sessions created and deleted on their own, from the
wire, the client library and the CLI."""

from __future__ import annotations

import json
import os
import shutil

import msgspec

from neocode_gateway.client import GatewayClient
from tests.conftest import GatewayFactory
from tests.support import Gateway, run_cli, short_tmpdir
from tests.v11 import Peer, data, etype


def test_create_session_without_a_run_then_run_on_it(gateway: Gateway) -> None:
    workdir = short_tmpdir("ngw-wd-")
    try:
        with Peer(gateway.path) as peer:
            created = peer.ack(
                "create_session",
                workdir=workdir,
                payload={
                    "agent": "echo",
                    "mode": "plan",
                    "title": "from an editor",
                    "mcp_servers": [{"name": "fs", "command": "mcp-fs", "args": [], "env": []}],
                },
            )
            session = created["payload"]
            assert created["session_id"] == session["id"]
            assert session["workdir"] == os.path.realpath(workdir)
            assert session["title"] == "from an editor"
            assert session["mode"] == "plan"
            assert session["state"] == "idle"
            assert session["last_seq"] == 0
            assert session["mcp_servers"] == 1
            listed = peer.ack("list_sessions")["payload"]["sessions"]
            assert listed[0]["id"] == session["id"]
            run = peer.ack("run", session_id=session["id"], input_text="hello")
            end = peer.wait_terminal(str(run["run_id"]))
            assert etype(end) == "run_done"
            started = next(f for f in peer.events if etype(f) == "run_started")
            assert started["payload"]["seq"] == 1
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def test_create_session_refusals(gateway: Gateway) -> None:
    with Peer(gateway.path) as peer:
        bad_dir = peer.request("create_session", workdir="relative/dir")
        assert bad_dir["error"] == {"code": "invalid_action", "message": "invalid workdir"}
        agent = peer.request("create_session", payload={"agent": "nobody"})
        assert agent["error"] == {"code": "invalid_action", "message": "unknown agent"}
        mode = peer.request("create_session", payload={"mode": "nonsense"})
        assert mode["error"] == {"code": "invalid_action", "message": "unknown mode"}
        servers = peer.request("create_session", payload={"mcp_servers": "fs"})
        assert servers["error"]["code"] == "invalid_action"
        assert "mcp_servers" in servers["error"]["message"]
        not_object = peer.request("create_session", payload=[1])
        assert not_object["error"]["code"] == "invalid_action"
        assert peer.ack("list_sessions")["payload"]["sessions"] == []


def test_delete_session(gateway: Gateway) -> None:
    with Peer(gateway.path) as peer, Peer(gateway.path) as watcher:
        missing = peer.request("delete_session", session_id="s_none")
        assert missing["error"]["code"] == "resource_not_found"
        blank = peer.request("delete_session")
        assert blank["error"] == {
            "code": "missing_required_field",
            "message": "missing required field: session_id",
        }
        run = peer.ack("run", input_text="/slow 30")
        session_id = str(run["session_id"])
        watcher.ack("bind_stream", session_id=session_id)
        busy = peer.request("delete_session", session_id=session_id)
        assert busy["error"]["code"] == "conflict"
        peer.ack("cancel", session_id=session_id)
        peer.wait_terminal(str(run["run_id"]))
        deleted = peer.ack("delete_session", session_id=session_id)
        assert deleted["payload"] == {"deleted": True}
        assert peer.request("load_session", session_id=session_id)["error"]["code"] == (
            "resource_not_found"
        )
        assert peer.ack("list_sessions")["payload"]["sessions"] == []
        assert peer.ack("status")["payload"]["bindings"] == 0
        again = peer.request("run", session_id=session_id, input_text="x")
        assert again["error"]["code"] == "resource_not_found"


def test_runtime_none_answers_v12_actions_unsupported(gateway_factory: GatewayFactory) -> None:
    gateway = gateway_factory("--runtime", "none")
    with Peer(gateway.path) as peer:
        for action in ("create_session", "delete_session"):
            fields = {"session_id": "s_x"} if action == "delete_session" else {}
            answer = peer.request(action, **fields)
            assert answer["error"]["code"] == "unsupported_action"


def test_client_library_and_cli_create_and_delete(gateway: Gateway) -> None:
    workdir = short_tmpdir("ngw-wd-")
    try:
        with GatewayClient(gateway.path) as client:
            session = client.create_session(workdir=workdir, title="lib")
            assert session["title"] == "lib"
            assert client.delete_session(session["id"]) == {"deleted": True}
        servers = os.path.join(workdir, "mcp.json")
        with open(servers, "w") as file:
            json.dump({"mcpServers": [{"name": "x", "command": "y", "args": [], "env": []}]}, file)
        made = run_cli(
            "sessions",
            "new",
            "--workdir",
            workdir,
            "--title",
            "cli",
            "--mcp-servers",
            servers,
            "--json",
            "--listen",
            gateway.path,
        )
        assert made.returncode == 0, made.stderr
        session = msgspec.json.decode(made.stdout)
        assert session["title"] == "cli"
        assert session["mcp_servers"] == 1
        listed = run_cli("sessions", "--json", "--listen", gateway.path)
        assert session["id"] in listed.stdout
        gone = run_cli("sessions", "delete", session["id"], "--listen", gateway.path)
        assert gone.returncode == 0, gone.stderr
        assert gone.stdout.strip() == f"{session['id']}: deleted"
        again = run_cli("sessions", "delete", session["id"], "--listen", gateway.path)
        assert again.returncode != 0
        assert "Traceback" not in again.stderr
        assert session["id"] in again.stderr
        nodir = run_cli("sessions", "new", "--workdir", "/no/such/dir", "--listen", gateway.path)
        assert nodir.returncode == 2
        assert "no such directory" in nodir.stderr
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def test_set_mode_without_a_run_and_list_by_workdir(gateway: Gateway) -> None:
    workdir = short_tmpdir("ngw-wd-")
    try:
        with Peer(gateway.path) as peer:
            made = peer.ack("create_session", workdir=workdir)["payload"]
            other = peer.ack("create_session")["payload"]
            assert other["workdir"] != made["workdir"]
            changed = peer.ack("set_mode", session_id=made["id"], payload={"mode": "plan"})
            assert changed["payload"]["mode"] == "plan"
            unknown = peer.request("set_mode", session_id=made["id"], payload={"mode": "x"})
            assert unknown["error"] == {"code": "invalid_action", "message": "unknown mode"}
            missing = peer.request("set_mode", session_id=made["id"])
            assert missing["error"]["code"] == "missing_required_field"
            nosession = peer.request("set_mode", session_id="s_none", payload={"mode": "plan"})
            assert nosession["error"]["code"] == "resource_not_found"
            # The next run switches the agent to the mode (echo says so with session_info).
            run = peer.ack("run", session_id=made["id"], input_text="hi")
            peer.wait_terminal(str(run["run_id"]))
            info = [
                f
                for f in peer.events
                if f.get("run_id") == run["run_id"] and data(f).get("kind") == "session_info"
            ]
            assert data(info[0])["mode"] == "plan"
            mine = peer.ack("list_sessions", payload={"workdir": workdir})["payload"]["sessions"]
            assert [s["id"] for s in mine] == [made["id"]]
            bad = peer.request("list_sessions", payload={"workdir": "relative"})
            assert bad["error"]["code"] == "invalid_action"
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
