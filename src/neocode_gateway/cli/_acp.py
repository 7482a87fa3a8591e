"""``neocode-gateway acp``: the gateway as an ACP agent on stdio, for editors.

stdout carries ACP only; every note for the user (the daemon was started,
the gateway is down) goes to stderr, which editors show in their logs. The
SDK and asyncio load only when the command runs.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from neocode_gateway.cli._common import EXIT_INTERRUPTED, LOG_LEVELS, log_level, non_empty

CommandSpec = tuple[
    str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace, str], int]
]
HELP = "be an ACP agent on stdio for editors (Zed, JetBrains, Neovim, acpx)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--agent",
        metavar="NAME",
        type=non_empty,
        default=None,
        help="the configured agent of new sessions (default: the gateway's default agent)",
    )
    parser.add_argument(
        "--mode",
        metavar="MODE",
        type=non_empty,
        default=None,
        help="the session mode of new sessions (default: the agent's configured mode)",
    )
    parser.add_argument(
        "--listen",
        metavar="ADDRESS",
        type=non_empty,
        default=None,
        help="the gateway's socket path or pipe name (default: $NEOCODE_GATEWAY_ADDRESS, "
        "else the daemon's default)",
    )
    parser.add_argument(
        "--no-autostart",
        action="store_true",
        help="fail the requests instead of starting a gateway when none answers",
    )
    parser.add_argument(
        "--config",
        metavar="PATH",
        default=None,
        help="the configuration file a gateway started by this command reads",
    )
    parser.add_argument(
        "--log-level",
        metavar="LEVEL",
        type=log_level,
        default=LOG_LEVELS["warn"],
        help="of the notes on stderr (default: warn)",
    )
    parser.epilog = (
        "examples:\n"
        '  Zed settings.json: "agent_servers": {"NeoCode": {"type": "custom",\n'
        '      "command": "neocode-gateway", "args": ["acp"]}}\n'
        "  acpx --agent 'neocode-gateway acp' exec 'hello'\n\n"
        "If no gateway answers at the address, one is started in the background\n"
        "(its log: gateway.log in its data directory). See docs/editors.md."
    )


def _note(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def run(options: argparse.Namespace, prog: str) -> int:
    import asyncio
    import logging

    from neocode_gateway.acp_front._link import GatewayLink
    from neocode_gateway.acp_front._stdio import serve

    logging.basicConfig(
        stream=sys.stderr, level=options.log_level, format="neocode-gateway acp: %(message)s"
    )
    daemon_args = ["--config", options.config] if options.config else []
    link = GatewayLink(
        options.listen, autostart=not options.no_autostart, daemon_args=daemon_args, note=_note
    )
    try:
        return asyncio.run(serve(link, agent=options.agent, mode=options.mode, note=_note))
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


def commands() -> dict[str, CommandSpec]:
    return {"acp": (HELP, add_arguments, run)}
