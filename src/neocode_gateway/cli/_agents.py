"""``neocode-gateway agents``: the configured coding agents, and whether they start.

Without ``--check`` it only reads the configuration (file and flags) and lists
the agents. With ``--check`` it starts each agent, as the gateway would, and
reports its ``initialize`` answer (protocol version, agent, ``loadSession``,
prompt capabilities, auth methods), then the modes of a session created in a
temporary directory, the time each step took and the memory of the agent's
processes; or why it failed (not found on PATH, exited, timed out). Then it
stops the agent.

Exit codes: 0 ok (every checked agent started), 1 an agent failed its check,
2 usage or configuration error, 130 interrupted.

The configuration flags (:func:`add_config_flags`, :func:`config_from_flags`)
are shared with the daemon. Importing this module loads neither the ACP SDK
nor the runtime: they load when ``--check`` runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from neocode_gateway.cli._common import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, fail, positive_seconds
from neocode_gateway.limits import DEFAULT_CONFIG_PATH

if TYPE_CHECKING:  # the configuration is read at run time (the daemon's flags are parsed first)
    from neocode_gateway.config import AgentConfig, GatewayConfig
from neocode_gateway.errors import ConfigError

EXIT_INTERRUPTED: Final = 130
#: How long each step of a check (start, a session) may take by default.
DEFAULT_CHECK_TIMEOUT: Final = 60.0

CommandSpec = tuple[
    str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace, str], int]
]


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    """``--config``, ``--agent NAME=COMMAND`` (repeatable) and ``--default-agent``."""
    parser.add_argument(
        "--config",
        metavar="PATH",
        default=None,
        help=f"the configuration file (default: {DEFAULT_CONFIG_PATH}, if it exists)",
    )
    parser.add_argument(
        "--agent",
        metavar="NAME=COMMAND",
        action="append",
        default=[],
        help="an ACP agent (repeatable); COMMAND is split as a shell would, e.g. "
        "--agent 'claude=claude-agent-acp'; overrides the command of the file's agent NAME",
    )
    parser.add_argument(
        "--default-agent",
        metavar="NAME",
        default=None,
        help="the agent of new sessions that name none (overrides the file's default_agent)",
    )


def config_from_flags(options: argparse.Namespace) -> GatewayConfig:
    """The configuration the flags of :func:`add_config_flags` name; ``ConfigError`` if bad."""
    from neocode_gateway.config import load_config

    return load_config(options.config, options.agent, options.default_agent)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_flags(parser)
    parser.add_argument(
        "--check",
        action="store_true",
        help="start each agent, report its initialize answer and session modes, then stop it",
    )
    parser.add_argument(
        "--timeout",
        metavar="S",
        type=positive_seconds,
        default=DEFAULT_CHECK_TIMEOUT,
        help=f"with --check: seconds each agent may take to start, and to open a session "
        f"(default: {DEFAULT_CHECK_TIMEOUT:g})",
    )
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    parser.epilog = (
        "examples:\n"
        "  neocode-gateway agents\n"
        "  neocode-gateway agents --check\n"
        "  neocode-gateway agents --agent 'gemini=gemini --experimental-acp' --check --json\n\n"
        "exit codes: 0 ok, 1 an agent failed its check, 2 usage or configuration error,"
        " 130 interrupted"
    )


def run(options: argparse.Namespace, prog: str) -> int:
    try:
        config = config_from_flags(options)
    except ConfigError as exc:
        return fail(prog, str(exc), EXIT_USAGE)
    agents = [describe(agent) for agent in config.agents.values()]
    failed = False
    if options.check and config.agents:
        import asyncio
        import logging

        # The report says how each check went, one entry per agent. The agent SDK logs
        # through the root logger (whose first use would set up a stderr handler printing
        # tracebacks, e.g. "Send loop failed" when an agent exits at once), and the runtime
        # warns that a dead agent will be restarted: noise here, so both are dropped.
        logging.getLogger().addHandler(logging.NullHandler())

        try:
            checks = asyncio.run(_check_all(list(config.agents.values()), options.timeout))
        except KeyboardInterrupt:
            return fail(prog, "interrupted", EXIT_INTERRUPTED)
        for entry, check in zip(agents, checks, strict=True):
            entry["check"] = check
            failed = failed or not check["ok"]
    report = {
        "config": str(config.path) if config.path is not None else None,
        "default_agent": config.default_agent,
        "agents": agents,
    }
    if options.json:
        sys.stdout.write(json.dumps(report) + "\n")
    else:
        sys.stdout.write(render(report))
    sys.stdout.flush()
    return EXIT_FAILURE if failed else EXIT_OK


def describe(agent: AgentConfig) -> dict[str, Any]:
    """An agent as listed: never the values of its environment (they hold keys)."""
    return {
        "name": agent.name,
        "command": list(agent.command),
        "env": sorted(agent.env),
        "mode": agent.mode,
        "max_live_sessions": agent.max_live_sessions,
        "origin": agent.origin,
    }


async def _check_all(agents: list[AgentConfig], timeout: float) -> list[dict[str, Any]]:
    return [await check(agent, timeout) for agent in agents]


async def check(agent: AgentConfig, timeout: float) -> dict[str, Any]:
    """Start ``agent``, open a session in a temporary directory, stop it; what was seen."""
    import tempfile
    from pathlib import Path

    from neocode_gateway.errors import RunFailed
    from neocode_gateway.runtime import RuntimeOptions
    from neocode_gateway.runtime.acp import AcpRuntime

    with tempfile.TemporaryDirectory(prefix="ngw-check-") as scratch:
        options = RuntimeOptions(
            data_dir=Path(scratch),
            default_workdir=scratch,
            settings={"start_timeout": timeout, "session_timeout": timeout},
        )
        runtime = AcpRuntime(agent.name, agent, options)
        try:
            report = await runtime.probe(scratch)
        except RunFailed as exc:
            return {"ok": False, "error": exc.message}
        finally:
            await runtime.close()
    available = [m["id"] for m in report["modes"]["available"]]
    if agent.mode is not None:
        report["configured_mode_offered"] = agent.mode in available
    return {"ok": True, **report}


def render(report: dict[str, Any]) -> str:
    """The plain-text listing."""
    lines = [f"config: {report['config'] or f'none ({DEFAULT_CONFIG_PATH} does not exist)'}"]
    lines.append(f"default agent: {report['default_agent'] or 'echo (none set)'}")
    if not report["agents"]:
        lines.append("no agents configured (add [agents.NAME] to the file, or --agent NAME=CMD)")
    for agent in report["agents"]:
        command = " ".join(agent["command"])
        extra = [f"mode {agent['mode']}"] if agent["mode"] else []
        if agent["env"]:
            extra.append("env " + ", ".join(agent["env"]))
        extra.append(f"max_live_sessions {agent['max_live_sessions']}")
        lines.append(f"{agent['name']}: {command}  ({'; '.join(extra)})")
        check = agent.get("check")
        if check is None:
            continue
        if not check["ok"]:
            error = str(check["error"]).replace("\n", "\n      ")
            lines.append(f"  FAILED: {error}")
            continue
        info = check["agent"]
        caps = check["prompt_capabilities"]
        lines.append(
            f"  ok: {info['name'] or '?'} {info['version'] or '?'}"
            + (f" ({info['title']})" if info["title"] else "")
            + f", protocol {check['protocol_version']}, started in {check['start_s']:.2f}s,"
            f" session in {check['session_s']:.2f}s"
        )
        lines.append(
            f"  loadSession {_yes(check['load_session'])}, images {_yes(caps['image'])},"
            f" embedded context {_yes(caps['embedded_context'])},"
            f" auth methods: {', '.join(check['auth_methods']) or 'none'}"
        )
        modes = check["modes"]
        names = [
            m["id"]
            + (f" ({m['name']})" if m["name"] != m["id"] else "")
            + (" [current]" if m["id"] == modes["current"] else "")
            for m in modes["available"]
        ]
        lines.append(f"  modes: {', '.join(names) or 'none'}")
        if "configured_mode_offered" in check and not check["configured_mode_offered"]:
            lines.append(f"  WARNING: the configured mode {agent['mode']!r} is not offered")
        lines.append(f"  memory: {check['rss_bytes'] / 2**20:.0f} MiB (agent processes, 1 session)")
    return "\n".join(lines) + "\n"


def _yes(value: Any) -> str:
    return "yes" if value else "no"


def commands() -> dict[str, CommandSpec]:
    """Name -> (help line, add_arguments, run), as the other command modules."""
    return {
        "agents": (
            "list the configured coding agents (--check starts each one)",
            add_arguments,
            run,
        )
    }
