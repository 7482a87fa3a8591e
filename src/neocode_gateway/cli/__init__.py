"""The ``neocode-gateway`` command: the daemon, and the client sub-commands.

``neocode-gateway [FLAGS]`` (or ``neocode-gateway serve [FLAGS]``) runs the
daemon; every other sub-command is listed in :data:`COMMANDS`.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from neocode_gateway import __version__
from neocode_gateway.cli._common import Parser

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence


class Command:
    """A sub-command: its help line and the module that implements it.

    The module is imported only when the command runs (or its ``--help`` is
    shown): ``neocode-gateway ping`` loads neither the daemon (server, store,
    runtimes) nor asyncio nor the terminal front-end. (A plain class, not a
    dataclass: :mod:`dataclasses` alone would cost a quick command 5 ms.)
    """

    __slots__ = ("help", "module")

    def __init__(self, help: str, module: str) -> None:
        self.help = help
        self.module = module

    def _impl(
        self, name: str
    ) -> tuple[Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace, str], int]]:
        module = importlib.import_module(f"neocode_gateway.cli.{self.module}")
        spec = module.commands()[name]
        return spec[1], spec[2]


COMMANDS: dict[str, Command] = {
    "serve": Command("run the gateway in the foreground (the default)", "_daemon"),
    "stop": Command("stop the gateway gracefully, and wait until it is gone", "_requests"),
    "ping": Command("check that a gateway answers, and how fast", "_quick"),
    "status": Command("show the gateway: who runs it, what it is doing", "_quick"),
    "run": Command("start a run and watch it stream", "_session_commands"),
    "attach": Command("show a session's last run, then follow it", "_session_commands"),
    "sessions": Command("list sessions; sessions new, sessions delete ID", "_requests"),
    "show": Command("print a session's transcript, with how each run ended", "_session_commands"),
    "approve": Command("allow a permission request", "_requests"),
    "reject": Command("reject a permission request", "_requests"),
    "cancel": Command("cancel a run", "_requests"),
    "pending": Command("list the permission requests waiting for an answer", "_requests"),
    "grants": Command("list what was allowed for a session; grants revoke ID", "_requests"),
    "audit": Command("every permission decision: what, who, how long it waited", "_requests"),
    "policy": Command(
        "check the approval rules, or explain how a tool call is decided", "_requests"
    ),
    "compact": Command("compact a session's context", "_session_commands"),
    "agents": Command("list the configured coding agents (--check starts each one)", "_agents"),
    "acp": Command("be an ACP agent on stdio for editors (Zed, JetBrains, acpx)", "_acp"),
    "web": Command("serve the web page: sessions, transcripts, approvals from a browser", "_web"),
    "call": Command("send request frames, print the responses", "_client_commands"),
    "schema": Command("print the JSON Schema of the frame", "_client_commands"),
    "completion": Command("print a shell completion script (bash, zsh, fish)", "_completion"),
    "help": Command("show the help of a command: neocode-gateway help [COMMAND]", "_help"),
}


#: Flags that take no value: a word after one of them may be the sub-command.
_SWITCHES = frozenset(
    {
        "--json",
        "--open",
        "--insecure-lan",
        "--no-autostart",
        "--insecure-skip-peer-check",
        "--trust-any-uid",
        "--version",
        "--help",
        "-h",
    }
)


def _command_first(args: list[str]) -> list[str]:
    """``neocode-gateway --listen X ping`` means ``neocode-gateway ping --listen X``."""
    for index, word in enumerate(args):
        if word.startswith("-"):
            continue
        previous = args[index - 1] if index else ""
        is_value = previous.startswith("-") and "=" not in previous and previous not in _SWITCHES
        if is_value:
            continue
        if word in COMMANDS:
            return [word, *args[:index], *args[index + 1 :]]
        break
    return args


def build_parser(name: str) -> argparse.ArgumentParser:
    """The parser of one sub-command (``serve`` is also the bare command)."""
    command = COMMANDS[name]
    add_arguments, _ = command._impl(name)
    prog = "neocode-gateway" if name == "serve" else f"neocode-gateway {name}"
    epilog = None
    if name == "serve":
        lines = [f"  {n:<10} {c.help}" for n, c in COMMANDS.items()]
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
    )
    parser.add_argument("--version", action="version", version=f"neocode-gateway {__version__}")
    add_arguments(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``neocode-gateway`` command; returns the exit code."""
    args = _command_first(list(sys.argv[1:] if argv is None else argv))
    if args == ["--version"]:  # answered before any command's module is loaded
        sys.stdout.write(f"neocode-gateway {__version__}\n")
        return 0
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
    _, run = COMMANDS[name]._impl(name)
    return run(options, parser.prog)
