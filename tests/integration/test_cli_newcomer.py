"""Issue 18: the terminal front-end as a newcomer meets it, against a real daemon (echo).

On a terminal (pexpect in a pseudo-terminal; tmux where what counts is the
screen as drawn, not the bytes written): a spinner with the elapsed time while
the run waits, the permission id and the command that answers it elsewhere,
``attach`` answering a question, text never drawn twice after Ctrl-C,
``NO_COLOR``. As subprocesses: ``attach`` showing the last run, ``show``
telling how runs ended, ``help``, ``completion``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from typing import Any

import pexpect
import pytest

from tests.support import GATEWAY_CMD, Gateway, run_cli, short_tmpdir, wait_for
from tests.v11 import Peer, etype

pytestmark = pytest.mark.timeout(60)


def cli(gateway: Gateway, *args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
    return run_cli(*args, "--listen", gateway.path, **kw)


def spawn(gateway: Gateway, *args: str, **env: str) -> pexpect.spawn:
    environ = dict(os.environ, COLUMNS="100", LINES="40", TERM="xterm-256color")
    environ.pop("NO_COLOR", None)
    environ.update(env)
    child = pexpect.spawn(
        sys.executable,
        ["-m", "neocode_gateway", *args, "--listen", gateway.path],
        env=environ,
        encoding="utf-8",
        timeout=20,
        dimensions=(40, 100),
    )
    child.delaybeforesend = None
    return child


def test_a_spinner_says_what_the_run_waits_for_and_since_when(gateway: Gateway) -> None:
    child = spawn(gateway, "run", "/wait 25 hello")
    try:
        child.expect(r"waiting for the model\.\.\. \d+s")
        child.expect(r"waiting for the model\.\.\. [12]s")  # the time goes on
        child.expect("hello")
        child.expect("done")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0


def test_the_question_shows_the_permission_id_and_how_to_answer_elsewhere(
    gateway: Gateway,
) -> None:
    child = spawn(gateway, "run", "hello /ask")
    try:
        child.expect(r"\? permission (p_\w+)")
        permission_id = child.match.group(1)
        child.expect(f"neocode-gateway approve {permission_id}")
        child.expect(r"\[a\]once")
        approved = cli(gateway, "approve", permission_id)
        assert approved.returncode == 0, approved.stderr
        child.expect(r"allow_once \(by client\)")
        child.expect("done")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0


def test_attach_asks_a_question_that_was_waiting_and_answers_it(gateway: Gateway) -> None:
    with Peer(gateway.path) as peer:
        ack = peer.ack("run", input_text="please /ask")
        peer.wait_event(lambda e: etype(e) == "permission_request")
        child = spawn(gateway, "attach", str(ack["session_id"]), "--until-done")
        try:
            child.expect(r"\? permission p_\w+")
            child.expect(r"\[a\]once")
            child.send("s")
            child.expect(r"allow_session \(by client\)")
            child.expect("done")
            child.expect(pexpect.EOF)
        finally:
            child.close(force=True)
        assert child.exitstatus == 0


def test_ctrl_c_never_draws_the_streamed_text_twice(gateway: Gateway) -> None:
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed")
    work = short_tmpdir("ngw-tmux-")
    tmux = ["tmux", "-S", f"{work}/tmux"]
    command = " ".join([*GATEWAY_CMD, "run", "'/slow 300'", "--listen", gateway.path])
    try:
        subprocess.run(
            [*tmux, "new-session", "-d", "-x", "100", "-y", "40", f"{command}; sleep 60"],
            check=True,
            timeout=10,
        )

        def screen() -> str:
            return subprocess.run(
                [*tmux, "capture-pane", "-p"],
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            ).stdout

        wait_for(lambda: "[30/300]" in screen(), timeout=20, what="30 chunks on screen")
        subprocess.run([*tmux, "send-keys", "C-c"], check=True, timeout=10)
        wait_for(lambda: "error canceled" in screen(), timeout=20, what="the run's end")
        shown = screen()
    finally:
        subprocess.run([*tmux, "kill-server"], timeout=10, check=False)
        shutil.rmtree(work, ignore_errors=True)
    assert "canceling the run" in shown
    assert shown.count("[2/300]") == 1, shown
    assert "^C" not in shown


def test_no_color_turns_off_every_style(gateway: Gateway) -> None:
    child = spawn(gateway, "run", "**bold** /plan", NO_COLOR="1")
    try:
        child.expect(pexpect.EOF)
        screen = child.before or ""
    finally:
        child.close(force=True)
    assert child.exitstatus == 0
    assert "done (end_turn)" in screen
    assert "\x1b[" not in screen  # no colour, no bold, no cursor movement


def test_attach_on_an_idle_session_shows_its_last_run(gateway: Gateway) -> None:
    with Peer(gateway.path) as peer:
        first = peer.ack("run", input_text="first words")
        peer.wait_terminal(str(first["run_id"]))
        second = peer.ack("run", input_text="second words", session_id=first["session_id"])
        peer.wait_terminal(str(second["run_id"]))
    result = cli(gateway, "attach", str(first["session_id"]), "--until-done")
    assert result.returncode == 0, result.stderr
    assert "second words" in result.stdout
    assert "first words" not in result.stdout
    assert "showing its last run" in result.stderr


def test_show_tells_how_runs_ended_and_what_was_decided(gateway: Gateway) -> None:
    asked = cli(gateway, "run", "please /ask", "--approve", "reject", "--json")
    session_id = json.loads(asked.stdout.splitlines()[0])["session_id"]
    failed = cli(gateway, "run", "then /fail", "--session", session_id)
    assert failed.returncode == 1
    shown = cli(gateway, "show", session_id)
    assert shown.returncode == 0, shown.stderr
    assert re.search(r"permission p_\w+ asked: Run echo please", shown.stdout)
    assert re.search(r"permission p_\w+: reject \(by client\)", shown.stdout)
    assert "ended with error runtime_error: echo: the input asked for /fail" in shown.stdout
    as_json = json.loads(cli(gateway, "show", session_id, "--json").stdout)
    kinds = [e["event_type"] for e in as_json["events"]]
    assert kinds.count("run_error") == 1
    assert "permission_resolved" in kinds
    missing = cli(gateway, "show", "s_missing")
    assert missing.returncode == 1
    assert "no session s_missing (neocode-gateway sessions lists them)" in missing.stderr


def test_help_and_completion() -> None:
    assert run_cli("help", "ping").stdout == run_cli("ping", "--help").stdout
    assert "sub-commands" in run_cli("help").stdout
    unknown = run_cli("help", "nope")
    assert unknown.returncode == 2
    assert "no command 'nope'" in unknown.stderr
    for shell in ("bash", "zsh", "fish"):
        script = run_cli("completion", shell)
        assert script.returncode == 0, script.stderr
        assert "approve" in script.stdout
        assert "until-done" in script.stdout
    bash = run_cli("completion", "bash").stdout
    if shutil.which("bash"):
        syntax = subprocess.run(["bash", "-n"], input=bash, text=True, timeout=10, check=False)
        assert syntax.returncode == 0
    assert run_cli("completion").returncode == 2


def test_completion_lists_sessions_and_agents(gateway: Gateway) -> None:
    with Peer(gateway.path) as peer:
        ack = peer.ack("run", input_text="hi")
        peer.wait_terminal(str(ack["run_id"]))
    sessions = cli(gateway, "completion", "--list", "sessions")
    assert str(ack["session_id"]) in sessions.stdout.split()
    assert cli(gateway, "completion", "--list", "agents").stdout.split() == ["echo"]
    nobody = run_cli("completion", "--list", "sessions", "--listen", "/tmp/ngw-none/x.sock")
    assert (nobody.returncode, nobody.stdout) == (0, "")
