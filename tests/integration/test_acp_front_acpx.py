"""The front door driven by acpx 0.19.1, a real headless ACP client (installed by npm into
``.cache/acpx``; skipped with the reason when node or npm is missing).

acpx keeps a "queue owner" process per session alive between its commands; each test
gives acpx a throwaway ``HOME`` and kills the queue owners it reports (their process
groups) afterwards.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from neocode_gateway.client import GatewayClient
from tests.support import Gateway, run_cli, short_tmpdir, wait_for

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / ".cache" / "acpx"
VERSION = "0.19.1"
STEP = 30.0


def _installed() -> bool:
    manifest = CACHE / "node_modules" / "acpx" / "package.json"
    try:
        return bool(json.loads(manifest.read_text())["version"] == VERSION)
    except (OSError, ValueError, KeyError):
        return False


def acpx_bin() -> Path:
    """``acpx``, pinned, installed once into ``.cache/acpx``."""
    if os.environ.get("NEOCODE_SKIP_REAL_AGENTS") == "1":
        pytest.skip("acpx: NEOCODE_SKIP_REAL_AGENTS=1")
    npm = shutil.which("npm")
    if shutil.which("node") is None or npm is None:
        pytest.skip("acpx: node and npm are needed to install acpx")
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not _installed():
            result = subprocess.run(
                [
                    npm,
                    "install",
                    "--prefix",
                    str(CACHE),
                    "--no-audit",
                    "--no-fund",
                    "--loglevel=error",
                    f"acpx@{VERSION}",
                ],
                capture_output=True,
                text=True,
                timeout=600,
                check=False,
            )
            if result.returncode != 0 or not _installed():
                pytest.fail(f"npm install acpx@{VERSION} failed:\n{result.stderr[-2000:]}")
    return CACHE / "node_modules" / ".bin" / "acpx"


class Acpx:
    """acpx in a throwaway HOME and workdir, its agent the front door on ``gateway``."""

    def __init__(self, gateway: Gateway) -> None:
        self.bin = str(acpx_bin())
        self.gateway = gateway
        self.home = short_tmpdir("ngw-acpx-")
        self.cwd = os.path.realpath(short_tmpdir("ngw-wd-"))
        bindir = os.path.dirname(sys.executable)
        self.env = dict(os.environ, HOME=self.home, PATH=f"{bindir}:{os.environ['PATH']}")
        self.env.pop("NEOCODE_GATEWAY_ADDRESS", None)
        self.agent = f"neocode-gateway acp --listen {gateway.path}"

    def argv(self, *args: str) -> list[str]:
        return [self.bin, "--agent", self.agent, "--format", "text", *args]

    def __call__(self, *args: str, timeout: float = STEP) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.argv(*args),
            cwd=self.cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            stdin=subprocess.DEVNULL,
        )

    def start(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.argv(*args),
            cwd=self.cwd,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            stdin=subprocess.DEVNULL,
        )

    def cleanup(self) -> None:
        """Kill the queue owner acpx left running (by the pid ``acpx status`` gives)."""
        with contextlib.suppress(subprocess.TimeoutExpired):
            status = self("status", timeout=15).stdout
            for pid in re.findall(r"^pid: (\d+)$", status, re.M):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(int(pid), signal.SIGKILL)
        shutil.rmtree(self.home, ignore_errors=True)
        shutil.rmtree(self.cwd, ignore_errors=True)


@pytest.fixture
def acpx(gateway: Gateway) -> Iterator[Acpx]:
    tool = Acpx(gateway)
    yield tool
    tool.cleanup()


def _session_ids(path: str) -> list[str]:
    with GatewayClient(path) as client:
        return [s["id"] for s in client.list_sessions()["sessions"]]


def test_exec_streams_an_echo_run(acpx: Acpx) -> None:
    done = acpx("exec", "hello from acpx /burst 3")
    assert done.returncode == 0, done.stderr
    assert "hello from acpx" in done.stdout
    assert "end_turn" in done.stdout


def test_two_prompts_share_one_session(acpx: Acpx) -> None:
    created = acpx("sessions", "new")
    assert created.returncode == 0, created.stderr
    for text in ("first words", "second words"):
        done = acpx(text)
        assert done.returncode == 0, done.stderr
    sessions = _session_ids(acpx.gateway.path)
    assert len(sessions) == 1
    shown = run_cli("show", sessions[0], "--listen", acpx.gateway.path)
    assert "first words" in shown.stdout
    assert "second words" in shown.stdout


def test_approve_all_and_deny_all(acpx: Acpx) -> None:
    allowed = acpx("--approve-all", "exec", "/ask")
    assert allowed.returncode == 0, allowed.stderr
    assert "completed" in allowed.stdout
    denied = acpx("--deny-all", "exec", "/ask")
    assert denied.returncode == 5  # acpx's exit code for a denied permission
    assert "failed" in denied.stdout
    with GatewayClient(acpx.gateway.path) as client:
        decisions = []
        for session_id in _session_ids(acpx.gateway.path):
            for event in client.session_events(session_id, after_seq=0, follow=False):
                if event.event_type == "permission_resolved":
                    decisions.append(event.data["decision"])
    assert sorted(decisions) == ["allow_once", "reject"]


def test_cancel_of_a_slow_run(acpx: Acpx) -> None:
    assert acpx("sessions", "new").returncode == 0
    slow = acpx.start("/slow 300")
    try:
        path = acpx.gateway.path
        wait_for(
            lambda: (
                GatewayClient(path).__enter__().list_sessions()["sessions"][0]["state"] == "running"
            ),
            20,
            what="the slow run",
        )
        canceled = acpx("cancel")
        assert canceled.returncode == 0, canceled.stderr
        out, _ = slow.communicate(timeout=STEP)
        assert "cancelled" in out
    finally:
        if slow.poll() is None:
            slow.kill()
            slow.wait(5)


def test_set_mode_reaches_the_next_run(acpx: Acpx) -> None:
    assert acpx("sessions", "new").returncode == 0
    moded = acpx("set-mode", "plan")
    assert moded.returncode == 0, moded.stderr + moded.stdout
    assert acpx("after the mode").returncode == 0
    with GatewayClient(acpx.gateway.path) as client:
        session = client.load_session(_session_ids(acpx.gateway.path)[0])
    assert session["mode"] == "plan"


def test_a_session_started_by_acpx_is_approved_from_the_terminal(acpx: Acpx) -> None:
    assert acpx("sessions", "new").returncode == 0
    # acpx leaves the question open (it answers "cancelled"): the terminal decides.
    asking = acpx.start("--non-interactive-permissions", "fail", "/ask")
    try:
        session_id = _session_ids(acpx.gateway.path)[0]
        with GatewayClient(acpx.gateway.path) as client:
            request = next(
                e
                for e in client.session_events(session_id, after_seq=0)
                if e.event_type == "permission_request"
            )
        approved = run_cli("approve", request.data["request_id"], "--listen", acpx.gateway.path)
        assert approved.returncode == 0, approved.stderr
        out, err = asking.communicate(timeout=STEP)
        # The run went on and completed; acpx still reports (exit 5) that it could not ask.
        assert "completed" in out, out + err
        assert "end_turn" in out
        assert asking.returncode in (0, 5)
    finally:
        if asking.poll() is None:
            asking.kill()
            asking.wait(5)


@pytest.mark.timeout(420)
def test_real_claude_behind_the_front_door_edits_a_file() -> None:
    """acpx -> neocode-gateway acp -> the gateway -> Claude Code (its model mocked on
    loopback): a prompt through acpx writes a file in the workdir, approved by acpx."""
    from tests.agents import mock_anthropic
    from tests.agents.real import claude_setup, installed_agents
    from tests.integration.test_real_agents_gateway import start_gateway

    bin_dir = installed_agents()
    mock = mock_anthropic.start(0)
    scratch = short_tmpdir("ngw-acpx-claude-")
    gateway = None
    tool = None
    try:
        agent = claude_setup(bin_dir, Path(scratch, "home"), mock.url)
        gateway = start_gateway(agent, scratch)
        tool = Acpx(gateway)
        tool.env.pop("IS_SANDBOX", None)  # Claude Code as root refuses it (tests.agents.real)
        target = os.path.join(tool.cwd, "written.txt")
        done = tool("--approve-all", "exec", f"WRITE {target}", timeout=240)
        assert done.returncode == 0, done.stdout + done.stderr
        assert Path(target).read_text() == "written by the mock\n"
        with GatewayClient(gateway.path) as client:
            (session,) = client.list_sessions()["sessions"]
        assert session["agent"] == "claude"
        assert session["workdir"] == tool.cwd
    finally:
        if tool is not None:
            tool.cleanup()
        if gateway is not None:
            gateway.stop(20)
            gateway.cleanup()
        mock.stop()
        shutil.rmtree(scratch, ignore_errors=True)
