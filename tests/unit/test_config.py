"""The configuration file and the agent flags: every mistake is one line naming its key."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from neocode_gateway.config import (
    DEFAULT_MAX_LIVE_SESSIONS,
    AgentConfig,
    GatewayConfig,
    load_config,
    parse_agent_flag,
)
from neocode_gateway.errors import ConfigError

EXAMPLE = """
default_agent = "claude"
data_dir = "~/gw-data"
workdir = "/srv/code"
permission_timeout = 90
event_retention_days = 0

[agents.claude]
command = ["claude-agent-acp"]
env = { ANTHROPIC_API_KEY = "sk-x", CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC = "1" }
mode = "default"

[agents.codex]
command = "codex-acp --flag 'two words'"
mode = "workspace-write"
max_live_sessions = 2
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gateway.toml"
    path.write_text(text)
    return path


def test_the_example_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    path = write(tmp_path, EXAMPLE)
    config = load_config(path)
    assert config.path == path
    assert config.default_agent == "claude"
    assert list(config.agents) == ["claude", "codex"]
    claude = config.agents["claude"]
    assert claude.command == ("claude-agent-acp",)
    assert dict(claude.env) == {
        "ANTHROPIC_API_KEY": "sk-x",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
    }
    assert claude.mode == "default"
    assert claude.max_live_sessions == DEFAULT_MAX_LIVE_SESSIONS
    assert claude.origin == f"{path}: agents.claude"
    codex = config.agents["codex"]
    assert codex.command == ("codex-acp", "--flag", "two words")
    assert codex.max_live_sessions == 2
    assert config.data_dir == str(tmp_path / "gw-data")
    assert config.workdir == "/srv/code"
    assert config.permission_timeout == 90.0
    assert config.event_retention_days == 0


def test_no_file_is_an_empty_configuration(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    assert load_config() == GatewayConfig()


def test_the_default_file_is_read_when_present(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / ".neocode").mkdir()
    (tmp_path / ".neocode" / "gateway.toml").write_text('[agents.a]\ncommand = ["a"]\n')
    config = load_config()
    assert config.path == tmp_path / ".neocode" / "gateway.toml"
    assert list(config.agents) == ["a"]


def test_flags_add_agents_and_override_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, EXAMPLE)
    config = load_config(
        path,
        ["claude=/opt/claude-acp --debug", "gemini=gemini --experimental-acp"],
        "gemini",
    )
    assert list(config.agents) == ["claude", "codex", "gemini"]
    claude = config.agents["claude"]
    assert claude.command == ("/opt/claude-acp", "--debug")
    assert claude.mode == "default"
    assert claude.env["ANTHROPIC_API_KEY"] == "sk-x"
    assert claude.origin == "--agent claude"
    assert config.agents["gemini"] == AgentConfig(
        name="gemini", command=("gemini", "--experimental-acp"), origin="--agent gemini"
    )
    assert config.default_agent == "gemini"


def test_echo_may_be_the_default_agent(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, 'default_agent = "echo"\n')).default_agent == "echo"
    assert load_config(write(tmp_path, ""), default_agent_flag="echo").default_agent == "echo"


@pytest.mark.parametrize(
    ("flag", "message"),
    [
        ("claude", "--agent 'claude': expected NAME=COMMAND"),
        ("=cmd", "expected NAME=COMMAND"),
        ("claude=", "COMMAND is empty"),
        ("claude='unclosed", "COMMAND cannot be split"),
        ("bad name=x", "agent name 'bad name' must be"),
        ("echo=x", "agent name 'echo' is reserved"),
        ("none=x", "agent name 'none' is reserved"),
    ],
)
def test_bad_agent_flags(flag: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_agent_flag(flag)


def test_an_unknown_default_agent(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"--default-agent: unknown agent 'x' \(configured: echo"):
        load_config(write(tmp_path, ""), default_agent_flag="x")
    path = write(tmp_path, 'default_agent = "x"\n')
    with pytest.raises(ConfigError, match=rf"{path}: default_agent: unknown agent 'x'"):
        load_config(path)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("defualt_agent = 'a'", r": defualt_agent: unknown key \(known: default_agent, agents"),
        ("default_agent = 3", "default_agent: expected a string, got an integer"),
        ("agents = 3", "agents: expected a table of agents"),
        ("[agents.a]\ncomand = ['a']", r"agents\.a\.comand: unknown key"),
        ("[agents.a]\nmode = 'x'", r"agents\.a\.command: missing"),
        ("[agents.a]\ncommand = []", r"agents\.a\.command: is empty"),
        ("[agents.a]\ncommand = ''", r"agents\.a\.command: is empty"),
        ("[agents.a]\ncommand = [1]", r"agents\.a\.command: expected a list of strings"),
        ("[agents.a]\ncommand = 'a \"b'", r"agents\.a\.command: cannot be split"),
        ("[agents.a]\ncommand = ['a']\nenv = 3", r"agents\.a\.env: expected a table"),
        ("[agents.a]\ncommand = ['a']\nenv = { X = 1 }", r"agents\.a\.env\.X: expected a string"),
        ("[agents.a]\ncommand = ['a']\nenv = { '1X' = 'v' }", r"env\.1X: not a valid environment"),
        ("[agents.a]\ncommand = ['a']\nmode = ''", r"agents\.a\.mode: expected a non-empty"),
        ("[agents.a]\ncommand = ['a']\nmax_live_sessions = 0", r"max_live_sessions: expected an"),
        ("[agents.a]\ncommand = ['a']\nmax_live_sessions = true", "expected an integer >= 1"),
        ("agents.a = 3", r"agents\.a: expected a table"),
        ("[agents.'a b']\ncommand = ['a']", "agent name 'a b' must be"),
        ("[agents.echo]\ncommand = ['a']", "agent name 'echo' is reserved"),
        ("data_dir = ''", "data_dir: expected a non-empty path string"),
        ("workdir = 5", "workdir: expected a non-empty path string"),
        ("permission_timeout = 0", "permission_timeout: expected a positive number"),
        ("permission_timeout = nan", "permission_timeout: expected a positive number"),
        ("permission_timeout = 'x'", "permission_timeout: expected a number of seconds"),
        ("event_retention_days = -1", "event_retention_days: expected an integer >= 0"),
        ("event_retention_days = 1.5", "event_retention_days: expected an integer >= 0"),
        ("x = [", "not valid TOML"),
        ("[agents.a]\ncommand = ['a']\nidle_timeout = -1", r"agents\.a\.idle_timeout: expected"),
        ("[agents.a]\ncommand = ['a']\nsession_idle_timeout = 'x'", "session_idle_timeout"),
        ("policy = 3", "policy: expected tables"),
        ("[[policy]]\nallow = ['bogus']", "bogus"),
    ],
)
def test_each_mistake_is_one_line_naming_file_and_key(
    tmp_path: Path, text: str, message: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=message) as raised:
        load_config(path)
    assert "\n" not in str(raised.value)
    assert str(raised.value).startswith(f"{path}") or str(raised.value).startswith("config ")


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"gone\.toml: no such file"):
        load_config(tmp_path / "gone.toml")
    with pytest.raises(ConfigError, match="cannot be read"):
        load_config(tmp_path)  # a directory
    bad = tmp_path / "latin1.toml"
    bad.write_bytes(b"x = '\xe9'\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(bad)


def test_a_nul_in_an_env_value_or_command(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="NUL"):
        load_config(write(tmp_path, '[agents.a]\ncommand = ["a"]\nenv = { X = "a\\u0000b" }'))
    with pytest.raises(ConfigError, match="NUL"):
        load_config(write(tmp_path, '[agents.a]\ncommand = ["a\\u0000"]'))


def test_importing_the_config_is_cheap() -> None:
    import subprocess
    import sys

    # What importing the config adds (coverage, measuring subprocesses under `make test`,
    # imports tomllib itself to read pyproject.toml).
    code = (
        "import sys; wanted = ('tomllib', 'acp', 'pydantic'); "
        "before = {m for m in wanted if m in sys.modules}; import neocode_gateway.config; "
        "print(sorted(m for m in wanted if m in sys.modules and m not in before))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=os.environ
    )
    assert out.stdout.strip() == "[]"


def test_idle_timeouts_and_policy_are_read(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "[agents.a]\ncommand = ['a']\nsession_idle_timeout = 60\nidle_timeout = 0\n"
        "[[policy]]\nallow = ['read']\n",
    )
    config = load_config(path)
    agent = config.agents["a"]
    assert (agent.session_idle_timeout, agent.idle_timeout) == (60.0, 0.0)
    assert config.policy is not None
    assert len(config.policy.tables) == 1
