"""``neocode-gateway completion bash|zsh|fish``: a shell completion script.

The commands and their flags are read from the parsers themselves when the
script is generated, so the script never lists a flag that does not exist.
Session ids and agent names change while the shell runs, so the script asks
for them at completion time with ``neocode-gateway completion --list
sessions|agents`` (a quick command: no asyncio, a few milliseconds, and
silent when no gateway answers).

Install (bash): ``neocode-gateway completion bash >
~/.local/share/bash-completion/completions/neocode-gateway``; zsh: ``... zsh >
"${fpath[1]}/_neocode-gateway"``; fish: ``... fish >
~/.config/fish/completions/neocode-gateway.fish``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from neocode_gateway.cli._common import EXIT_OK, EXIT_USAGE, add_address_flags, fail

CommandSpec = tuple[
    str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace, str], int]
]

SHELLS = ("bash", "zsh", "fish")
#: Commands whose positional argument is a session id.
SESSION_COMMANDS = ("attach", "show", "compact")
#: Flags whose value is a session id, and those whose value is an agent name.
SESSION_FLAGS = ("--session",)
AGENT_FLAGS = ("--agent", "--default-agent", "--runtime")


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("shell", nargs="?", choices=SHELLS, help="the shell to complete for")
    parser.add_argument(
        "--list",
        choices=("sessions", "agents"),
        default=None,
        help="print the session ids or agent names of the gateway, one a line (the scripts "
        "call this)",
    )
    add_address_flags(parser)
    parser.epilog = (
        "examples:\n"
        "  neocode-gateway completion bash > ~/.local/share/bash-completion/completions/"
        "neocode-gateway\n"
        '  neocode-gateway completion zsh > "${fpath[1]}/_neocode-gateway"\n'
        "  neocode-gateway completion fish > ~/.config/fish/completions/neocode-gateway.fish"
    )


def run_completion(options: argparse.Namespace, prog: str) -> int:
    if options.list is not None:
        return _list(options)
    if options.shell is None:
        return fail(prog, "name a shell: bash, zsh or fish (see --help)", EXIT_USAGE)
    flags = command_flags()
    script = {"bash": bash_script, "zsh": zsh_script, "fish": fish_script}[options.shell](flags)
    sys.stdout.write(script)
    return EXIT_OK


def command_flags() -> dict[str, list[str]]:
    """Every command and its long flags, from the parsers."""
    from neocode_gateway.cli import COMMANDS, build_parser

    flags: dict[str, list[str]] = {}
    for name in COMMANDS:
        parser = build_parser(name)
        flags[name] = sorted(
            {s for action in parser._actions for s in action.option_strings if s.startswith("--")}
        )
    return flags


def _list(options: argparse.Namespace) -> int:
    """Session ids or agent names, one a line; nothing (and 0) when no gateway answers."""
    from neocode_gateway.cli._quick import connection
    from neocode_gateway.errors import ClientError

    try:
        with connection(options) as conn:
            if options.list == "sessions":
                page = conn.payload("list_sessions", payload={"limit": 50})
                names = [str(s.get("id")) for s in page.get("sessions") or []]
            else:
                names = [str(n) for n in conn.payload("status").get("runtimes") or []]
    except ClientError:
        return EXIT_OK
    sys.stdout.write("".join(f"{n}\n" for n in names))
    return EXIT_OK


def bash_script(flags: dict[str, list[str]]) -> str:
    commands = " ".join(flags)
    cases = "\n".join(f'        {name}) opts="{" ".join(f)}" ;;' for name, f in flags.items())
    return f"""# bash completion for neocode-gateway (neocode-gateway completion bash)
_neocode_gateway() {{
    local cur prev cmd word opts
    cur="${{COMP_WORDS[COMP_CWORD]}}"
    prev="${{COMP_WORDS[COMP_CWORD-1]}}"
    cmd=""
    for word in "${{COMP_WORDS[@]:1:COMP_CWORD-1}}"; do
        case " {commands} " in *" $word "*) cmd="$word"; break ;; esac
    done
    case "$prev" in
        {"|".join(SESSION_FLAGS)})
            COMPREPLY=($(compgen -W "$(neocode-gateway completion --list sessions 2>/dev/null)" \\
                -- "$cur")); return ;;
        {"|".join(AGENT_FLAGS)})
            COMPREPLY=($(compgen -W "$(neocode-gateway completion --list agents 2>/dev/null)" \\
                -- "$cur")); return ;;
    esac
    if [[ -z "$cmd" && "$cur" != -* ]]; then
        COMPREPLY=($(compgen -W "{commands}" -- "$cur")); return
    fi
    if [[ "$cur" != -* ]]; then
        case "$cmd" in
            {"|".join(SESSION_COMMANDS)})
                COMPREPLY=($(compgen -W "$(neocode-gateway completion --list sessions \\
                    2>/dev/null)" -- "$cur")); return ;;
            help) COMPREPLY=($(compgen -W "{commands}" -- "$cur")); return ;;
            completion) COMPREPLY=($(compgen -W "{" ".join(SHELLS)}" -- "$cur")); return ;;
        esac
    fi
    case "${{cmd:-serve}}" in
{cases}
        *) opts="" ;;
    esac
    COMPREPLY=($(compgen -W "$opts" -- "$cur"))
}}
complete -F _neocode_gateway neocode-gateway
"""


def zsh_script(flags: dict[str, list[str]]) -> str:
    """zsh runs the bash function through ``bashcompinit`` (one script, one behaviour)."""
    return (
        "#compdef neocode-gateway\n"
        "# zsh completion for neocode-gateway (neocode-gateway completion zsh)\n"
        "autoload -U +X bashcompinit && bashcompinit\n" + bash_script(flags)
    )


def fish_script(flags: dict[str, list[str]]) -> str:
    from neocode_gateway.cli import COMMANDS

    lines = [
        "# fish completion for neocode-gateway (neocode-gateway completion fish)",
        "complete -c neocode-gateway -f",
    ]
    for name, command in COMMANDS.items():
        summary = command.help.replace("'", "\\'")
        lines.append(
            f"complete -c neocode-gateway -n __fish_use_subcommand -a {name} -d '{summary}'"
        )
    for name, names in flags.items():
        condition = f"__fish_seen_subcommand_from {name}"
        if name == "serve":
            condition = "__fish_use_subcommand"
        for flag in names:
            lines.append(f"complete -c neocode-gateway -n '{condition}' -l {flag[2:]}")
    sessions = "(neocode-gateway completion --list sessions 2>/dev/null)"
    agents = "(neocode-gateway completion --list agents 2>/dev/null)"
    for name in SESSION_COMMANDS:
        lines.append(
            f"complete -c neocode-gateway -n '__fish_seen_subcommand_from {name}' -a '{sessions}'"
        )
    for flag in SESSION_FLAGS:
        lines.append(f"complete -c neocode-gateway -l {flag[2:]} -x -a '{sessions}'")
    for flag in AGENT_FLAGS:
        lines.append(f"complete -c neocode-gateway -l {flag[2:]} -x -a '{agents}'")
    lines.append(
        "complete -c neocode-gateway -n '__fish_seen_subcommand_from help' -a '"
        + " ".join(COMMANDS)
        + "'"
    )
    return "\n".join(lines) + "\n"


def commands() -> dict[str, CommandSpec]:
    """Name -> (help line, add_arguments, run)."""
    return {"completion": ("print a shell completion script", _arguments, run_completion)}
