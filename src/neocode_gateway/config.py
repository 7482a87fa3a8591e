"""The gateway's configuration file, and the agent flags that extend it.

One TOML file (``--config PATH``, default ``~/.neocode/gateway.toml``, read
with the standard library's :mod:`tomllib`) says which coding agents sit
behind the gateway and, optionally, the daemon's own settings::

    default_agent = "claude"            # the runtime of new sessions that name none
    data_dir = "~/.neocode"             # daemon settings: flags override them
    workdir = "/home/me/src"
    permission_timeout = 600            # seconds
    event_retention_days = 30           # 0 keeps events forever

    [agents.claude]
    command = ["claude-agent-acp"]      # argv (or one string, split as a shell would)
    env = { ANTHROPIC_API_KEY = "..." } # added to the gateway's environment
    env_remove = ["IS_SANDBOX"]         # removed from it (Claude Code as root refuses it)
    mode = "default"                    # session mode set on every new agent session
    max_live_sessions = 8               # idle agent sessions beyond this are closed (LRU)

``--agent NAME=COMMAND`` (repeatable) and ``--default-agent NAME`` are folded
into the same structure by :func:`load_config`: flags override the file, the
file overrides the defaults. Every mistake is one :class:`ConfigError` line
that names the file and the key (the CLI turns it into exit 2): a typo must
not silently leave an agent unconfigured.

This module imports only the standard library and :mod:`neocode_gateway.errors`,
so that the CLI can read the file without loading the daemon or the ACP SDK.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final

from neocode_gateway import _config_values as _values
from neocode_gateway.errors import ConfigError
from neocode_gateway.limits import DEFAULT_CONFIG_PATH  # absent is fine there

if TYPE_CHECKING:
    from neocode_gateway.policy import Policy

__all__ = ["DEFAULT_CONFIG_PATH", "AgentConfig", "GatewayConfig", "load_config"]

#: Live agent sessions kept per agent before the least recently used idle one is closed.
DEFAULT_MAX_LIVE_SESSIONS: Final = 8
#: Names that are runtimes of the gateway itself, not configurable agents.
RESERVED_NAMES: Final = frozenset({"echo", "none"})

_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")
_ENV_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")

_TOP_KEYS: Final = (
    "default_agent",
    "agents",
    "data_dir",
    "workdir",
    "permission_timeout",
    "event_retention_days",
    "policy",
)
_AGENT_KEYS: Final = (
    "command",
    "env",
    "env_remove",
    "mode",
    "max_live_sessions",
    "session_idle_timeout",
    "idle_timeout",
)


@dataclass(frozen=True, slots=True)
class AgentConfig:
    """One configured ACP agent: how to start it and how to set up its sessions.

    ``command`` is the argv (``command[0]`` is looked up on ``PATH`` when the
    agent starts, not here: the file stays valid on a machine that lacks one
    agent). ``env`` is added to the gateway's own environment, and the
    variables named in ``env_remove`` are taken out of it. ``origin`` says
    where the agent was defined, for messages (``FILE:agents.NAME`` or
    ``--agent NAME``).
    """

    name: str
    command: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    mode: str | None = None
    max_live_sessions: int = DEFAULT_MAX_LIVE_SESSIONS
    origin: str = ""
    env_remove: tuple[str, ...] = ()
    #: Seconds an agent session without a run is kept (None: the runtime's default, 30 min;
    #: 0: for ever), and an agent process with no live session (default 10 min).
    session_idle_timeout: float | None = None
    idle_timeout: float | None = None


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    """The configuration, file and flags merged.

    Daemon settings are ``None`` when the file does not set them: the daemon
    applies ``flag if given, else file value if not None, else its default``.
    ``default_agent`` is already merged (``--default-agent`` over the file).
    ``agents`` keeps the order of the file, then of the flags.
    """

    path: Path | None = None
    default_agent: str | None = None
    agents: Mapping[str, AgentConfig] = field(default_factory=lambda: MappingProxyType({}))
    data_dir: str | None = None
    workdir: str | None = None
    permission_timeout: float | None = None
    event_retention_days: int | None = None
    #: The ``[[policy]]`` tables, compiled (``None`` when the file has none).
    policy: Policy | None = None


def load_config(
    path: str | os.PathLike[str] | None = None,
    agent_flags: Sequence[str] = (),
    default_agent_flag: str | None = None,
) -> GatewayConfig:
    """Read the file at ``path`` (or the default one, if it exists) and merge the flags.

    ``agent_flags`` are the values of ``--agent`` (``NAME=COMMAND``; COMMAND is
    split as a shell would); a flag naming an agent of the file replaces only
    its command (its ``env`` and ``mode`` stay). ``default_agent_flag`` is
    ``--default-agent``. Raises :class:`ConfigError` (one line) on any unknown
    key or bad value, or when an explicitly given file cannot be read.
    """
    data: dict[str, Any] = {}
    source: Path | None = None
    if path is not None:
        source = Path(os.path.expanduser(os.fspath(path)))
        data = _read(source, explicit=True)
    else:
        default = Path(os.path.expanduser(DEFAULT_CONFIG_PATH))
        if default.exists():
            source = default
            data = _read(default, explicit=False)
    where = str(source) if source is not None else "config"
    config = _parse(data, where, source)
    agents = dict(config.agents)
    for flag in agent_flags:
        name, command = parse_agent_flag(flag)
        previous = agents.get(name)
        if previous is None:
            agents[name] = AgentConfig(name=name, command=command, origin=f"--agent {name}")
        else:
            agents[name] = AgentConfig(
                name=name,
                command=command,
                env=previous.env,
                env_remove=previous.env_remove,
                mode=previous.mode,
                max_live_sessions=previous.max_live_sessions,
                origin=f"--agent {name}",
                session_idle_timeout=previous.session_idle_timeout,
                idle_timeout=previous.idle_timeout,
            )
    default_agent = config.default_agent
    if default_agent_flag is not None:
        default_agent = _check_default(default_agent_flag, agents, "--default-agent")
    elif default_agent is not None:
        default_agent = _check_default(default_agent, agents, f"{where}: default_agent")
    return GatewayConfig(
        path=config.path,
        default_agent=default_agent,
        agents=MappingProxyType(agents),
        data_dir=config.data_dir,
        workdir=config.workdir,
        permission_timeout=config.permission_timeout,
        event_retention_days=config.event_retention_days,
        policy=config.policy,
    )


def parse_agent_flag(text: str) -> tuple[str, tuple[str, ...]]:
    """``NAME=COMMAND`` -> (name, argv); ``ConfigError`` naming the flag if malformed."""
    name, sep, command = text.partition("=")
    name = name.strip()
    if not sep or not name:
        raise ConfigError(f"--agent {text!r}: expected NAME=COMMAND")
    _check_name(name, f"--agent {text!r}")
    try:
        argv = tuple(shlex.split(command))
    except ValueError as exc:
        raise ConfigError(f"--agent {text!r}: COMMAND cannot be split ({exc})") from None
    if not argv:
        raise ConfigError(f"--agent {text!r}: COMMAND is empty")
    return name, argv


# -- the file ---------------------------------------------------------------------------


def _read(path: Path, *, explicit: bool) -> dict[str, Any]:
    import tomllib

    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        if explicit:
            raise ConfigError(f"config {path}: no such file") from None
        return {}
    except OSError as exc:
        raise ConfigError(f"config {path}: cannot be read ({exc.strerror or exc})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config {path}: not UTF-8 text ({exc.reason})") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config {path}: not valid TOML ({exc})") from None


def _parse(data: Mapping[str, Any], where: str, source: Path | None) -> GatewayConfig:
    _values.no_unknown(data, _TOP_KEYS, where, "")
    agents: dict[str, AgentConfig] = {}
    raw_agents = data.get("agents", {})
    if not isinstance(raw_agents, dict):
        raise ConfigError(f"{where}: agents: expected a table of agents ([agents.NAME])")
    for name, table in raw_agents.items():
        agents[name] = _agent(name, table, where)
    default_agent = data.get("default_agent")
    if default_agent is not None and not isinstance(default_agent, str):
        raise ConfigError(
            f"{where}: default_agent: expected a string, got {_values.show(default_agent)}"
        )
    return GatewayConfig(
        path=source,
        default_agent=default_agent,
        agents=MappingProxyType(agents),
        data_dir=_values.directory(data, "data_dir", where),
        workdir=_values.directory(data, "workdir", where),
        permission_timeout=_values.seconds(data, "permission_timeout", where),
        event_retention_days=_values.count(data, "event_retention_days", where, minimum=0),
        policy=_policy(data, where),
    )


def _policy(data: Mapping[str, Any], where: str) -> Policy | None:
    """The ``[[policy]]`` tables (imported only when the file has some)."""
    tables = data.get("policy")
    if tables is None:
        return None
    from neocode_gateway.policy import Policy

    if not isinstance(tables, list):
        raise ConfigError(
            f"{where}: policy: expected tables ([[policy]]), got {_values.show(tables)}"
        )
    return Policy.from_tables(tables, source=where)


def _agent(name: str, table: Any, where: str) -> AgentConfig:
    key = f"agents.{name}"
    _check_name(name, f"{where}: {key}")
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: {key}: expected a table ([{key}]), got {_values.show(table)}")
    _values.no_unknown(table, _AGENT_KEYS, where, f"{key}.")
    if "command" not in table:
        raise ConfigError(f"{where}: {key}.command: missing (the agent's argv)")
    command = _values.command(table["command"], where, f"{key}.command")
    env = table.get("env", {})
    if not isinstance(env, dict):
        raise ConfigError(
            f"{where}: {key}.env: expected a table of strings, got {_values.show(env)}"
        )
    for var, value in env.items():
        if not _ENV_NAME.match(var):
            raise ConfigError(f"{where}: {key}.env.{var}: not a valid environment variable name")
        if not isinstance(value, str):
            raise ConfigError(
                f"{where}: {key}.env.{var}: expected a string, got {_values.show(value)}"
            )
        if "\0" in value:
            raise ConfigError(f"{where}: {key}.env.{var}: contains a NUL character")
    remove = table.get("env_remove", [])
    if not isinstance(remove, list) or not all(isinstance(v, str) for v in remove):
        raise ConfigError(
            f"{where}: {key}.env_remove: expected a list of strings, got {_values.show(remove)}"
        )
    for var in remove:
        if not _ENV_NAME.match(var):
            raise ConfigError(f"{where}: {key}.env_remove: {var!r} is not a variable name")
    mode = table.get("mode")
    if mode is not None and (not isinstance(mode, str) or not mode.strip()):
        raise ConfigError(
            f"{where}: {key}.mode: expected a non-empty string, got {_values.show(mode)}"
        )
    live = _values.count(table, "max_live_sessions", where, minimum=1, prefix=f"{key}.")
    idle = {
        name: _values.idle(table, name, where, key)
        for name in ("session_idle_timeout", "idle_timeout")
    }
    return AgentConfig(
        name=name,
        command=command,
        env=MappingProxyType(dict(env)),
        env_remove=tuple(remove),
        mode=mode,
        max_live_sessions=DEFAULT_MAX_LIVE_SESSIONS if live is None else live,
        origin=f"{where}: {key}",
        session_idle_timeout=idle["session_idle_timeout"],
        idle_timeout=idle["idle_timeout"],
    )


def _check_name(name: str, what: str) -> None:
    if not _NAME.match(name):
        raise ConfigError(
            f"{what}: agent name {name!r} must be letters, digits, '.', '_' or '-' "
            "(at most 64, starting with a letter or digit)"
        )
    if name in RESERVED_NAMES:
        raise ConfigError(f"{what}: agent name {name!r} is reserved (a built-in runtime)")


def _check_default(name: str, agents: Mapping[str, AgentConfig], what: str) -> str:
    if name == "echo" or name in agents:
        return name
    known = ", ".join(["echo", *agents])
    raise ConfigError(f"{what}: unknown agent {name!r} (configured: {known})")
