"""Real coding agents for tests: installed with npm once, pointed at mock model servers.

:func:`installed_agents` installs the pinned adapters into ``.cache/agents``
of the repository (gitignored) the first time, and reuses them afterwards; it
skips the calling test with a visible reason when ``node`` or ``npm`` is
missing (or ``NEOCODE_SKIP_REAL_AGENTS=1``), and fails it when npm cannot
install them. :func:`claude_setup` and :func:`codex_setup` write a throwaway
HOME whose agent talks only to a mock server on 127.0.0.1: nothing may reach
a real model provider.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from neocode_gateway.config import AgentConfig

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / ".cache" / "agents"
#: The adapters under test, pinned (an older Claude adapter loses the turn after a cancel).
PACKAGES = {
    "@agentclientprotocol/claude-agent-acp": "0.101.0",
    "@agentclientprotocol/codex-acp": "2.6.0",
}
#: The session modes in which each agent asks the client before it runs a command.
ASKING_MODES = {"claude": "default", "codex": "workspace-write"}
INSTALL_TIMEOUT = 600.0


def _installed_version(package: str) -> str | None:
    manifest = CACHE / "node_modules" / package / "package.json"
    try:
        return str(json.loads(manifest.read_text())["version"])
    except (OSError, ValueError, KeyError):
        return None


def installed_agents() -> Path:
    """The ``node_modules/.bin`` holding ``claude-agent-acp`` and ``codex-acp`` (installed once)."""
    if os.environ.get("NEOCODE_SKIP_REAL_AGENTS") == "1":
        pytest.skip("real agents: NEOCODE_SKIP_REAL_AGENTS=1")
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip(
            "real agents: node and npm are needed to install claude-agent-acp and codex-acp"
        )
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one installer at a time (parallel test runs)
        missing = [p for p, v in PACKAGES.items() if _installed_version(p) != v]
        if missing:
            specs = [f"{p}@{v}" for p, v in PACKAGES.items()]
            result = subprocess.run(
                [
                    npm,
                    "install",
                    "--prefix",
                    str(CACHE),
                    "--no-audit",
                    "--no-fund",
                    "--loglevel=error",
                    *specs,
                ],
                capture_output=True,
                text=True,
                timeout=INSTALL_TIMEOUT,
                check=False,
            )
            if result.returncode != 0 or any(
                _installed_version(p) != v for p, v in PACKAGES.items()
            ):
                tail = (result.stdout + result.stderr).strip()[-2000:]
                pytest.fail(f"npm install of the real agents failed ({result.returncode}):\n{tail}")
    return CACHE / "node_modules" / ".bin"


@dataclass
class AgentSetup:
    """How to run one real agent against a mock: its config, and what it needs."""

    name: str
    config: AgentConfig
    home: Path

    def toml(self) -> str:
        """The agent as a ``[agents.NAME]`` table of the gateway's configuration file."""
        lines = [
            f"[agents.{self.name}]",
            f"command = {json.dumps(list(self.config.command))}",
            f"mode = {json.dumps(self.config.mode)}",
            f"[agents.{self.name}.env]",
        ]
        lines += [f"{key} = {json.dumps(value)}" for key, value in self.config.env.items()]
        return "\n".join(lines) + "\n"


def claude_setup(bin_dir: Path, home: Path, mock_url: str) -> AgentSetup:
    """Claude Code through claude-agent-acp, its API at ``mock_url``, asking for permissions."""
    home.mkdir(parents=True, exist_ok=True)
    env = {
        "HOME": str(home),
        "ANTHROPIC_BASE_URL": mock_url,
        "ANTHROPIC_API_KEY": "sk-ant-mock-not-a-key",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_TELEMETRY": "1",
        "DISABLE_AUTOUPDATER": "1",
        "DISABLE_ERROR_REPORTING": "1",
    }
    config = AgentConfig(
        name="claude",
        command=(str(bin_dir / "claude-agent-acp"),),
        env=env,
        mode=ASKING_MODES["claude"],
    )
    return AgentSetup("claude", config, home)


def codex_setup(bin_dir: Path, home: Path, mock_url: str) -> AgentSetup:
    """Codex through codex-acp, its Responses API at ``mock_url``, asking for approval."""
    codex_home = home / ".codex"
    codex_home.mkdir(parents=True, exist_ok=True)
    (codex_home / "config.toml").write_text(
        "\n".join(
            [
                'model = "gpt-mock"',
                'model_provider = "mock"',
                'approval_policy = "on-request"',
                'sandbox_mode = "workspace-write"',
                "[model_providers.mock]",
                'name = "Mock"',
                f'base_url = "{mock_url}/v1"',
                'env_key = "MOCK_OPENAI_KEY"',
                'wire_api = "responses"',
                "",
            ]
        )
    )
    env = {
        "HOME": str(home),
        "CODEX_HOME": str(codex_home),
        "MOCK_OPENAI_KEY": "sk-mock-not-a-key",
        "NO_BROWSER": "1",
    }
    config = AgentConfig(
        name="codex",
        command=(str(bin_dir / "codex-acp"),),
        env=env,
        mode=ASKING_MODES["codex"],
    )
    return AgentSetup("codex", config, home)


@contextlib.contextmanager
def without_sandbox_flag() -> Iterator[None]:
    """Run without ``IS_SANDBOX``: as root with it set, claude-agent-acp offers bypass
    permissions and Claude Code then refuses to start (``--dangerously-skip-permissions
    cannot be used with root``)."""
    saved = os.environ.pop("IS_SANDBOX", None)
    try:
        yield
    finally:
        if saved is not None:
            os.environ["IS_SANDBOX"] = saved
