"""The ``neocode-gateway`` command: the daemon, and the client sub-commands.

``neocode-gateway [FLAGS]`` (or ``neocode-gateway serve [FLAGS]``) runs the
daemon; every other sub-command is listed in :data:`COMMANDS`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from neocode_gateway import __version__
from neocode_gateway.cli import _daemon
from neocode_gateway.cli._common import Parser


@dataclass(frozen=True)
class Command:
    """A sub-command: its help line, its flags and what runs it."""

    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace, str], int]


COMMANDS: dict[str, Command] = {
    "serve": Command(
        "run the gateway in the foreground (the default)", _daemon.add_arguments, _daemon.run
    ),
}


def _register_client_commands() -> None:
    try:
        from neocode_gateway.cli import _agents, _client_commands
    except ImportError:  # pragma: no cover - the client commands ship with the package
        return
    for module in (_client_commands, _agents):
        for name, command in module.commands().items():
            COMMANDS[name] = Command(command[0], command[1], command[2])


_register_client_commands()


def build_parser(name: str) -> argparse.ArgumentParser:
    """The parser of one sub-command (``serve`` is also the bare command)."""
    command = COMMANDS[name]
    prog = "neocode-gateway" if name == "serve" else f"neocode-gateway {name}"
    epilog = None
    if name == "serve":
        lines = [f"  {n:<8} {c.help}" for n, c in COMMANDS.items()]
        epilog = (
            "sub-commands (neocode-gateway COMMAND --help):\n"
            + "\n".join(lines)
            + "\n\nexit codes (daemon): 0 ok, 1 failure, 2 usage error,"
            + " 3 a gateway is already running"
            + "\nclient commands: see neocode-gateway COMMAND --help"
        )
    parser = Parser(
        prog=prog,
        description=command.help,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"neocode-gateway {__version__}")
    command.add_arguments(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``neocode-gateway`` command; returns the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    name = "serve"
    if args and args[0] in COMMANDS:
        name = args.pop(0)
    elif args and not args[0].startswith("-"):
        sys.stderr.write(
            f"neocode-gateway: error: unknown command {args[0]!r} "
            f"(commands: {', '.join(COMMANDS)}; see --help)\n"
        )
        return 2
    parser = build_parser(name)
    options = parser.parse_args(args)
    return COMMANDS[name].run(options, parser.prog)
