"""``neocode-gateway help [COMMAND]``: the help of the command, or the overview.

The same text as ``neocode-gateway COMMAND --help``, for those who type
``help`` first (as with git or go).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from neocode_gateway.cli._common import EXIT_OK, EXIT_USAGE, fail

CommandSpec = tuple[
    str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace, str], int]
]


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("topic", metavar="COMMAND", nargs="?", help="the command to explain")


def run_help(options: argparse.Namespace, prog: str) -> int:
    from neocode_gateway.cli import COMMANDS, build_parser

    topic = options.topic or "serve"
    if topic not in COMMANDS:
        return fail(prog, f"no command {topic!r} (commands: {', '.join(COMMANDS)})", EXIT_USAGE)
    build_parser(topic).print_help(sys.stdout)
    return EXIT_OK


def commands() -> dict[str, CommandSpec]:
    """Name -> (help line, add_arguments, run)."""
    return {"help": ("show the help of a command", _arguments, run_help)}
