"""The terminal front-end (issue 12) against a real daemon with the echo runtime.

Plain and ``--json`` output in subprocesses; the interactive path in a real
pseudo-terminal with pexpect (a permission answered by key, Ctrl-C once and
twice); ``attach`` across a gateway restart.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pexpect
import pytest

from tests.conftest import GatewayFactory
from tests.support import GATEWAY_CMD, Gateway, run_cli, short_tmpdir
from tests.v11 import Peer, data, etype


def cli(gateway: Gateway, *args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
    if "input" in kw:
        kw["stdin"] = None
    return run_cli(*args, "--listen", gateway.path, **kw)


def events(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


@pytest.fixture
def data_dir() -> Iterator[str]:
    path = short_tmpdir("ngw-data-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_run_plain_and_json(gateway: Gateway) -> None:
    plain = cli(gateway, "run", "hello there /plan")
    assert plain.returncode == 0, plain.stderr
    assert "hello there /plan" in plain.stdout
    assert "[x] Read the input" in plain.stdout
    assert plain.stdout.rstrip().endswith("done (end_turn)")
    assert "\x1b[" not in plain.stdout  # no escape codes in a pipe
    as_json = cli(gateway, "run", "again", "--json")
    frames = events(as_json.stdout)
    assert etype(frames[0]) == "run_started"
    assert etype(frames[-1]) == "run_done"
    assert [f["payload"]["seq"] for f in frames] == list(range(1, len(frames) + 1))


def test_run_exit_codes_and_stdin(gateway: Gateway) -> None:
    failed = cli(gateway, "run", "/fail")
    assert failed.returncode == 1
    assert "error runtime_error" in failed.stdout
    piped = cli(gateway, "run", "-", input="from stdin\n")
    assert piped.returncode == 0
    assert "from stdin" in piped.stdout
    empty = cli(gateway, "run")
    assert empty.returncode == 2
    assert "a prompt is required" in empty.stderr
    missing = cli(gateway, "run", "x", "--image", "/no/such.png")
    assert missing.returncode == 2
    assert "no such file" in missing.stderr
    unknown = cli(gateway, "run", "x", "--session", "s_nope")
    assert unknown.returncode == 1
    assert unknown.stderr == (
        "neocode-gateway run: error: no session s_nope (neocode-gateway sessions lists them)\n"
    )
    debug = cli(gateway, "run", "x", "--session", "s_nope", "--log-level", "debug")
    assert "[resource_not_found: unknown session: s_nope]" in debug.stderr
    agent = cli(gateway, "run", "x", "--agent", "nope")
    assert agent.returncode == 1
    assert "no agent 'nope' at this gateway (configured: echo)" in agent.stderr
    assert "Traceback" not in unknown.stderr + agent.stderr


def test_continue_sessions_show_compact(gateway: Gateway, tmp_path: Any) -> None:
    image = tmp_path / "pic.png"
    image.write_bytes(b"\x89PNG fake")
    first = cli(gateway, "run", "first words", "--image", str(image), "--json")
    session_id = events(first.stdout)[0]["session_id"]
    second = cli(gateway, "run", "second words", "--continue", "--json")
    assert events(second.stdout)[0]["session_id"] == session_id
    table = cli(gateway, "sessions")
    assert table.returncode == 0
    assert session_id in table.stdout
    assert "TITLE" in table.stdout
    listed = events(cli(gateway, "sessions", "--json", "--limit", "5").stdout)
    assert listed[0]["id"] == session_id
    shown = cli(gateway, "show", session_id)
    assert "first words" in shown.stdout
    assert "second words" in shown.stdout
    assert shown.stdout.count("agent (") == 2
    assert json.loads(cli(gateway, "show", session_id, "--json").stdout)["id"] == session_id
    compacted = cli(gateway, "compact", session_id)
    assert compacted.returncode == 0
    assert "compacted" in compacted.stdout


def test_approve_reject_cancel_from_another_terminal(gateway: Gateway) -> None:
    proc = subprocess.Popen(
        [*GATEWAY_CMD, "run", "please /ask", "--listen", gateway.path],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        assert "waiting for another client" in line, line
        permission_id = line.split("permission ", 1)[1].split()[0]
        approved = cli(gateway, "approve", permission_id)
        assert approved.returncode == 0
        assert "allow_once" in approved.stdout
        out, _ = proc.communicate(timeout=20)
        assert proc.returncode == 0
        assert "completed" in out
    finally:
        proc.kill()
        proc.wait()
    again = cli(gateway, "reject", permission_id)
    assert again.returncode == 1
    assert "was already answered" in again.stderr
    as_json = cli(gateway, "reject", permission_id, "--json")
    assert as_json.returncode == 1
    assert json.loads(as_json.stdout)["code"] == "conflict"  # the code stays for programs
    with Peer(gateway.path) as peer:
        ack = peer.ack("run", input_text="/slow 200")
        canceled = cli(
            gateway, "cancel", str(ack["run_id"]), "--session", str(ack["session_id"]), "--json"
        )
        assert canceled.returncode == 0
        assert json.loads(canceled.stdout)["canceled"] is True
        assert data(peer.wait_terminal(str(ack["run_id"])))["code"] == "canceled"
    assert cli(gateway, "cancel").returncode == 2


def test_attach_across_a_restart(gateway_factory: GatewayFactory, data_dir: str) -> None:
    gateway = gateway_factory("--data-dir", data_dir)
    with Peer(gateway.path) as peer:
        session_id = str(peer.ack("run", input_text="warm")["session_id"])
        peer.ack("run", input_text="/slow 300", session_id=session_id)
        peer.wait_event(lambda f: data(f).get("text") == "[5/300] ")
        attach = subprocess.Popen(
            [
                *GATEWAY_CMD,
                "attach",
                session_id,
                "--all",
                "--until-done",
                "--json",
                "--listen",
                gateway.path,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    try:
        assert attach.stdout is not None
        assert attach.stderr is not None
        first = [attach.stdout.readline() for _ in range(10)]
        assert all(first)
        os.kill(gateway.pid, signal.SIGKILL)
        gateway.wait(10)
        gateway_factory("--data-dir", data_dir, path=gateway.path)
        rest = attach.stdout.read()  # through the same buffer as readline, to the end
        err = attach.stderr.read()
        assert attach.wait(60) == 1, err  # the run ended with gateway_restarted
        assert "the gateway went away: reconnecting" in err
        assert "reconnected" in err
        frames = events("".join(first) + rest)
        seqs = [f["payload"]["seq"] for f in frames]
        assert seqs == list(range(1, len(seqs) + 1)), "an event missed or shown twice"
        assert data(frames[-1])["code"] == "gateway_restarted"
    finally:
        attach.kill()
        attach.wait()


def test_global_flags_before_the_command_and_log_levels(gateway: Gateway) -> None:
    result = run_cli("--listen", gateway.path, "ping")
    assert result.returncode == 0, result.stderr
    assert "pong from" in result.stdout
    assert run_cli("--timeout", "2", "--listen", gateway.path, "status").returncode == 0
    for level in ("warning", "WARN", "Debug"):
        help_run = run_cli("--log-level", level, "--help")
        assert help_run.returncode == 0, (level, help_run.stderr)


def test_ping_json_when_unreachable(sock_dir: str) -> None:
    result = run_cli("ping", "--json", "--listen", f"{sock_dir}/none.sock")
    assert result.returncode == 3
    assert json.loads(result.stdout)["reachable"] is False


def test_ping_until_interrupted_prints_a_summary(gateway: Gateway) -> None:
    proc = subprocess.Popen(
        [*GATEWAY_CMD, "ping", "--count", "0", "--interval", "0.05", "--listen", gateway.path],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert "pong from" in proc.stdout.readline()
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=10)
        assert proc.returncode == 0
        assert "ping statistics ---" in out
        assert "0% loss" in out
        assert "rtt min/avg/max/mdev" in out
    finally:
        proc.kill()
        proc.wait()


# -- in a pseudo-terminal, as a person uses it ------------------------------------------------


def _spawn(gateway: Gateway, *args: str) -> pexpect.spawn:
    env = dict(os.environ, COLUMNS="100", LINES="40", TERM="xterm-256color")
    child = pexpect.spawn(
        sys.executable,
        ["-m", "neocode_gateway", *args, "--listen", gateway.path],
        env=env,
        encoding="utf-8",
        timeout=20,
        dimensions=(40, 100),
    )
    child.delaybeforesend = None  # two Ctrl-C as fast as a person's double press
    return child


def test_terminal_permission_prompt_answered_by_key(gateway: Gateway) -> None:
    child = _spawn(gateway, "run", "hello /ask")
    try:
        child.expect("permission")
        child.expect(r"\[a\]once")
        child.send("x")  # one key, no Enter
        child.expect("please answer a, s or r")
        child.expect(r"\[a\]once")
        child.send("a")
        child.expect("allow_once")
        child.expect("done")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0


def test_terminal_question_withdrawn_when_another_client_answers(gateway: Gateway) -> None:
    child = _spawn(gateway, "run", "hello /ask")
    try:
        child.expect(r"\[a\]once")
        with Peer(gateway.path) as peer:
            sessions = peer.ack("list_sessions")["payload"]["sessions"]
            session = next(s for s in sessions if s["state"] == "running")
            peer.ack("bind_stream", session_id=session["id"], payload={"after_seq": 0})
            asked = peer.wait_event(lambda e: etype(e) == "permission_request")
            peer.ack(
                "resolve_permission",
                session_id=session["id"],
                payload={"request_id": data(asked)["request_id"], "decision": "reject"},
            )
        child.expect(r"reject \(by client\)")
        child.expect("done")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0


def test_client_commands_honour_the_address_variable(gateway: Gateway) -> None:
    env = dict(os.environ, NEOCODE_GATEWAY_ADDRESS=gateway.path)
    for command in (["ping", "--count", "1"], ["status"], ["sessions"], ["run", "hi"]):
        done = run_cli(*command, env=env)
        assert done.returncode == 0, (command, done.stderr)
    status = run_cli("status", "--json", env=env)
    assert json.loads(status.stdout)["address"] == gateway.path


def test_terminal_ctrl_c_once_cancels_twice_detaches(gateway: Gateway) -> None:
    child = _spawn(gateway, "run", "/slow 300")
    try:
        child.expect(r"\[3/300\]")
        child.sendintr()
        child.expect("canceling the run")
        child.expect("canceled")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 130

    # A run whose agent does not stop at once: the second Ctrl-C comes while it winds down.
    child = _spawn(gateway, "run", "/hang 300")
    try:
        child.expect(r"\[3/300\]")
        child.sendintr()
        child.expect("canceling the run")
        child.sendintr()
        child.expect("neocode-gateway attach s_")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 130


def test_terminal_attach_ctrl_c_detaches(gateway: Gateway) -> None:
    with Peer(gateway.path) as peer:
        ack = peer.ack("run", input_text="/slow 300")
        child = _spawn(gateway, "attach", str(ack["session_id"]), "--all")
        try:
            child.expect(r"\[3/300\]")
            child.sendintr()
            child.expect("detached")
            child.expect(pexpect.EOF)
        finally:
            child.close(force=True)
        assert child.exitstatus == 0
        # Detaching left the run going.
        status = peer.ack("status")["payload"]
        assert status["active_runs"] == 1
        peer.ack("cancel", run_id=str(ack["run_id"]))


def test_terminal_tool_lines_and_markdown(gateway: Gateway) -> None:
    child = _spawn(gateway, "run", "**bold** text /plan", "--approve", "allow_once")
    try:
        child.expect("Plan")
        child.expect("done")
        child.expect(pexpect.EOF)
        screen = child.before or ""
    finally:
        child.close(force=True)
    assert child.exitstatus == 0
    assert "**bold**" not in screen  # rendered as Markdown, not printed raw


def test_attach_until_done_on_an_idle_session_ends_with_the_replay(gateway: Gateway) -> None:
    with Peer(gateway.path) as peer:
        ack = peer.ack("run", input_text="finished /fail")
        peer.wait_terminal(str(ack["run_id"]))
    result = cli(gateway, "attach", str(ack["session_id"]), "--all", "--until-done", timeout=20)
    assert result.returncode == 1  # the replayed run ended in run_error
    assert "error runtime_error" in result.stdout


def test_terminal_ctrl_c_at_the_question_cancels_the_run(gateway: Gateway) -> None:
    child = _spawn(gateway, "run", "hello /ask")
    try:
        child.expect(r"\[a\]once")
        child.sendintr()
        child.expect("canceling the run")
        child.expect("canceled")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 130
