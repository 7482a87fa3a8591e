"""Quick commands about sessions: ``sessions``, ``approve``, ``reject`` and ``cancel``.

One request each, on the blocking connection of :mod:`neocode_gateway.cli._quick`
(no asyncio, no daemon module), because they are typed often, and often from
a second terminal while a run waits for an answer.
"""

from __future__ import annotations

from neocode_gateway.cli._common import (
    EXIT_OK,
    EXIT_USAGE,
    add_address_flags,
    describe,
    duration,
    fail,
    out,
    out_json,
    positive_int,
    styled,
)
from neocode_gateway.cli._quick import connection, guarded

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from typing import Any

    from neocode_gateway.cli._quick import CommandSpec


# -- sessions -------------------------------------------------------------------------------


def _sessions_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "what",
        nargs="?",
        choices=("list", "new", "delete"),
        default="list",
        help="list (the default), new (a session without a run), delete ID",
    )
    parser.add_argument("session", nargs="?", help="the session to delete")
    parser.add_argument("--limit", metavar="N", type=positive_int, default=20, help="(default 20)")
    parser.add_argument("--agent", metavar="NAME", help="new: the agent (default: the gateway's)")
    parser.add_argument("--mode", metavar="MODE", help="new: the agent's session mode")
    parser.add_argument("--workdir", metavar="DIR", help="new: the working directory (default .)")
    parser.add_argument("--title", metavar="TEXT", help="new: the session's title")
    parser.add_argument(
        "--mcp-servers",
        metavar="FILE",
        help="new: a JSON file with the list of MCP servers to give the agent",
    )
    parser.add_argument("--json", action="store_true", help="print JSON")
    add_address_flags(parser)
    describe(
        parser,
        "  neocode-gateway sessions\n"
        "  neocode-gateway sessions --json --limit 100\n"
        "  neocode-gateway sessions new --agent claude --workdir ~/code/app\n"
        "  neocode-gateway sessions delete s_01JDX...",
    )


def run_sessions(options: argparse.Namespace, prog: str) -> int:
    """``neocode-gateway sessions [new|delete]``: list, create or delete sessions."""
    if options.what == "new":
        from neocode_gateway.cli._session_admin import run_new

        return run_new(options, prog)
    if options.what == "delete":
        from neocode_gateway.cli._session_admin import run_delete

        return run_delete(options, prog)
    if options.session:
        return fail(prog, f"unexpected argument {options.session!r} (did you mean: delete?)", 2)

    def body() -> int:
        sessions: list[dict[str, Any]] = []
        with connection(options) as conn:
            cursor = None
            while len(sessions) < options.limit:
                page_size = min(options.limit - len(sessions), 500)
                payload = {"limit": page_size, "cursor": cursor} if cursor else {"limit": page_size}
                page = conn.payload("list_sessions", payload=payload)
                sessions.extend(page.get("sessions") or [])
                cursor = page.get("next_cursor")
                if not cursor:
                    break
        sessions = sessions[: options.limit]
        if options.json:
            for session in sessions:
                out_json(session)
        else:
            _table(sessions)
        return EXIT_OK

    return guarded(prog, options, body)


def _table(sessions: list[dict[str, Any]]) -> None:
    columns = ("id", "title", "agent", "state", "updated_at", "workdir")
    rows = [[str(s.get(c, "")) for c in columns] for s in sessions]
    if styled() and rows:
        from rich.console import Console
        from rich.table import Table

        table = Table(*("updated" if c == "updated_at" else c for c in columns))
        for row in rows:
            table.add_row(*row)
        Console().print(table)
        return
    if not rows:
        out('no sessions (start one with: neocode-gateway run "...")')
        return
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(columns)]
    out("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip())
    for row in rows:
        out("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


# -- approve, reject, cancel ----------------------------------------------------------------


def _permission_arguments(parser: argparse.ArgumentParser, approve: bool) -> None:
    parser.add_argument("permission", help="the permission request's id (p_...)")
    if approve:
        parser.add_argument(
            "--session",
            dest="for_session",
            action="store_true",
            help="allow for the rest of the session (allow_session), not only once",
        )
        parser.add_argument(
            "--for",
            dest="for_time",
            metavar="DURATION",
            type=duration,
            help="also allow the same tool call again for this long (30s, 30m, 2h, 1d)",
        )
        parser.add_argument(
            "--next",
            dest="next_count",
            metavar="N",
            type=positive_int,
            help="also allow the same tool call again for its next N requests",
        )
    parser.add_argument("--json", action="store_true", help="print the gateway's answer as JSON")
    add_address_flags(parser)


def _approve_arguments(parser: argparse.ArgumentParser) -> None:
    _permission_arguments(parser, True)
    describe(
        parser,
        "  neocode-gateway approve p_01J...\n  neocode-gateway approve p_01J... --session\n"
        "  neocode-gateway approve p_01J... --for 30m\n  neocode-gateway approve p_01J... --next 5",
    )


def _reject_arguments(parser: argparse.ArgumentParser) -> None:
    _permission_arguments(parser, False)
    describe(parser, "  neocode-gateway reject p_01J...")


def _resolve(options: argparse.Namespace, prog: str, decision: str) -> int:
    payload: dict[str, Any] = {"request_id": options.permission, "decision": decision}
    for_time = getattr(options, "for_time", None)
    next_count = getattr(options, "next_count", None)
    if for_time is not None and next_count is not None:
        return fail(prog, "give --for or --next, not both", EXIT_USAGE)
    if for_time is not None:
        payload["grant"] = {"for_s": for_time}
    elif next_count is not None:
        payload["grant"] = {"next": next_count}

    def body() -> int:
        with connection(options) as conn:
            ack = conn.payload("resolve_permission", payload=payload)
        if options.json:
            out_json({"ok": True, **ack})
        else:
            out(f"{ack.get('request_id')}: {ack.get('decision')}")
        return EXIT_OK

    return guarded(prog, options, body)


def run_approve(options: argparse.Namespace, prog: str) -> int:
    """``neocode-gateway approve``: allow a permission request."""
    return _resolve(options, prog, "allow_session" if options.for_session else "allow_once")


def run_reject(options: argparse.Namespace, prog: str) -> int:
    """``neocode-gateway reject``: reject a permission request."""
    return _resolve(options, prog, "reject")


def _cancel_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", nargs="?", help="the run to cancel")
    parser.add_argument("--session", metavar="ID", help="cancel the active run of this session")
    parser.add_argument("--json", action="store_true", help="print the gateway's answer as JSON")
    add_address_flags(parser)
    describe(
        parser, "  neocode-gateway cancel r_01J...\n  neocode-gateway cancel --session s_01J..."
    )


def run_cancel(options: argparse.Namespace, prog: str) -> int:
    """``neocode-gateway cancel``: cancel a run."""
    if not options.run and not options.session:
        return fail(prog, "name a run, or --session ID", EXIT_USAGE)

    def body() -> int:
        with connection(options) as conn:
            ack = conn.payload("cancel", run_id=options.run, session_id=options.session)
        if options.json:
            out_json({"ok": True, **ack})
        else:
            state = "canceled" if ack.get("canceled") else "had already ended"
            out(f"{ack.get('run_id')}: {state}")
        return EXIT_OK

    return guarded(prog, options, body)


def commands() -> dict[str, CommandSpec]:
    """Name → (help line, add_arguments, run)."""
    from neocode_gateway.cli._approvals import approval_commands
    from neocode_gateway.cli._stop import run_stop, stop_arguments

    return {
        "sessions": (
            "list sessions; sessions new, sessions delete ID",
            _sessions_arguments,
            run_sessions,
        ),
        **approval_commands(),
        "approve": ("allow a permission request", _approve_arguments, run_approve),
        "reject": ("reject a permission request", _reject_arguments, run_reject),
        "cancel": ("cancel a run", _cancel_arguments, run_cancel),
        "stop": (
            "stop the gateway gracefully, and wait until it is gone",
            stop_arguments,
            run_stop,
        ),
    }
