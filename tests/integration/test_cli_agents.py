"""``neocode-gateway agents``: list, ``--check`` (starts each agent), ``--json``, exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.agents.support import FAKE_AGENT

FAKE = f"{sys.executable} {FAKE_AGENT}"


def agents(*args: str, home: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HOME": str(home)}
    return subprocess.run(
        [sys.executable, "-m", "neocode_gateway", "agents", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )


def test_no_configuration(tmp_path: Path) -> None:
    out = agents(home=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "config: none (~/.neocode/gateway.toml does not exist)" in out.stdout
    assert "no agents configured" in out.stdout


def test_lists_the_file_and_the_flags_without_env_values(tmp_path: Path) -> None:
    (tmp_path / ".neocode").mkdir()
    (tmp_path / ".neocode" / "gateway.toml").write_text(
        'default_agent = "claude"\n'
        "[agents.claude]\n"
        'command = ["claude-agent-acp"]\n'
        'mode = "default"\n'
        'env = { ANTHROPIC_API_KEY = "sk-very-secret" }\n'
    )
    out = agents("--agent", "codex=codex-acp --x", home=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "default agent: claude" in out.stdout
    assert "claude: claude-agent-acp  (mode default; env ANTHROPIC_API_KEY;" in out.stdout
    assert "codex: codex-acp --x" in out.stdout
    assert "sk-very-secret" not in out.stdout
    report = json.loads(agents("--json", home=tmp_path).stdout)
    assert report["config"] == str(tmp_path / ".neocode" / "gateway.toml")
    assert report["agents"] == [
        {
            "name": "claude",
            "command": ["claude-agent-acp"],
            "env": ["ANTHROPIC_API_KEY"],
            "mode": "default",
            "max_live_sessions": 8,
            "origin": f"{tmp_path}/.neocode/gateway.toml: agents.claude",
        }
    ]


def test_check_starts_each_agent_and_says_why_one_failed(tmp_path: Path) -> None:
    config = tmp_path / "gw.toml"
    config.write_text(
        f"[agents.fake]\ncommand = {json.dumps([sys.executable, FAKE_AGENT])}\nmode = 'plan'\n"
        f"[agents.dies]\ncommand = {json.dumps([sys.executable, FAKE_AGENT])}\n"
        "env = { FAKE_ACP_EXIT_AT_START = '1' }\n"
        "[agents.ghost]\ncommand = ['no-such-agent-xyz']\n"
        f"[agents.oddmode]\ncommand = {json.dumps([sys.executable, FAKE_AGENT])}\nmode = 'x'\n"
    )
    out = agents("--config", str(config), "--check", home=tmp_path)
    assert out.returncode == 1, out.stderr
    text = out.stdout
    assert "fake-acp-agent 1.0 (Fake), protocol 1" in text
    assert "loadSession yes, images yes" in text
    assert "modes: default (Default) [current], plan (Plan), yolo (Yolo)" in text
    assert "FAILED: agent 'dies' failed to initialize" in text
    assert "refusing to start" in text
    assert "FAILED: agent 'ghost' cannot be started: 'no-such-agent-xyz' not found on PATH" in text
    assert "WARNING: the configured mode 'x' is not offered" in text
    report = json.loads(agents("--config", str(config), "--check", "--json", home=tmp_path).stdout)
    checks = {a["name"]: a["check"] for a in report["agents"]}
    assert checks["fake"]["ok"]
    assert checks["fake"]["load_session"] is True
    assert checks["fake"]["configured_mode_offered"] is True
    assert checks["fake"]["modes"]["current"] == "default"
    assert checks["fake"]["rss_bytes"] > 0
    assert not checks["ghost"]["ok"]
    assert "not found on PATH" in checks["ghost"]["error"]


def test_check_all_ok_exits_0(tmp_path: Path) -> None:
    out = agents("--agent", f"fake={FAKE}", "--check", home=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "ok: fake-acp-agent" in out.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--agent", "bad"], "--agent 'bad': expected NAME=COMMAND"),
        (["--default-agent", "nope"], "--default-agent: unknown agent 'nope'"),
        (["--config", "/nonexistent/gw.toml"], "config /nonexistent/gw.toml: no such file"),
        (["--timeout", "0"], "expected a positive number of seconds"),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(
    tmp_path: Path, args: list[str], message: str
) -> None:
    out = agents(*args, home=tmp_path)
    assert out.returncode == 2
    assert message in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    assert "Traceback" not in out.stderr


def test_a_bad_file_names_its_key(tmp_path: Path) -> None:
    config = tmp_path / "gw.toml"
    config.write_text("[agents.a]\ncommand = ['a']\nmodee = 'x'\n")
    out = agents("--config", str(config), home=tmp_path)
    assert out.returncode == 2
    assert f"{config}: agents.a.modee: unknown key" in out.stderr


def test_check_of_an_agent_that_exits_at_once_is_one_line_without_traceback(
    tmp_path: Path,
) -> None:
    done = agents(
        "--agent",
        "quick=/bin/true",
        "--agent",
        "gone=sh -c 'exit 3'",
        "--check",
        "--timeout",
        "10",
        home=tmp_path,
        timeout=60,
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert "Send loop failed" not in done.stderr
    assert done.stderr == ""
    failed = [line for line in done.stdout.splitlines() if "FAILED" in line]
    assert len(failed) == 2
    assert "exited with code 0" in failed[0]
    assert "exited with code 3" in failed[1]
