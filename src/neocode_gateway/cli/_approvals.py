"""``pending``, ``grants``, ``audit`` (quick commands) and ``policy check|explain``.

``pending``, ``grants`` and ``audit`` are one request each on the blocking
connection; ``policy`` reads the configuration file itself (no gateway needed):
``check`` validates the ``[[policy]]`` tables, ``explain`` says which rule would
decide a tool call and why, or that a person would be asked.
"""

from __future__ import annotations

import os
import time

from neocode_gateway.cli._common import (
    EXIT_OK,
    EXIT_USAGE,
    add_address_flags,
    describe,
    fail,
    out,
    out_json,
    positive_int,
)
from neocode_gateway.cli._quick import connection, guarded

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from typing import Any

    from neocode_gateway.cli._quick import CommandSpec

#: The contract's ``decided_by`` values (``protocol.DECIDED_BY``; this module stays free of
#: msgspec, so that these commands start fast: a test keeps the two equal).
DECIDED_BY = ("policy", "grant", "client", "timeout", "cancel")


def _listed(items: list[dict[str, Any]], as_json: bool, empty: str) -> bool:
    """``--json``: one object per line; no items: the ``empty`` line. ``True`` when that
    was all there is to print."""
    if as_json:
        for item in items:
            out_json(item)
        return True
    if not items:
        out(empty)
        return True
    return False


# -- pending ---------------------------------------------------------------------------------


def _pending_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--session", metavar="ID", help="only this session's requests")
    parser.add_argument("--json", action="store_true", help="one JSON object per request")
    add_address_flags(parser)
    describe(parser, "  neocode-gateway pending\n  neocode-gateway approve $(... p_ id ...)")


def run_pending(options: argparse.Namespace, prog: str) -> int:
    """``neocode-gateway pending``: every unanswered permission request, oldest first."""

    def body() -> int:
        with connection(options) as conn:
            answer = conn.payload("list_pending", session_id=options.session)
        requests = answer.get("requests") or []
        if _listed(requests, options.json, "nothing waits for an answer"):
            return EXIT_OK
        for request in requests:
            tool = request.get("tool_call") or {}
            waited = _ago(float(request.get("waiting_s") or 0))
            out(
                f"{request.get('request_id')}  {tool.get('tool_kind', 'other'):8} "
                f"{tool.get('title', '')}  (session {request.get('session_id')}, "
                f"waiting {waited})"
            )
        out("answer with: neocode-gateway approve ID  |  neocode-gateway reject ID")
        return EXIT_OK

    return guarded(prog, options, body)


def _ago(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


# -- grants ----------------------------------------------------------------------------------


def _grants_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("what", nargs="?", choices=("list", "revoke"), default="list")
    parser.add_argument("grant", nargs="?", help="revoke: the grant's id (g_...)")
    parser.add_argument("--session", metavar="ID", help="only this session's grants")
    parser.add_argument("--json", action="store_true", help="print JSON")
    add_address_flags(parser)
    describe(
        parser,
        "  neocode-gateway grants\n  neocode-gateway grants --session s_01J... --json\n"
        "  neocode-gateway grants revoke g_01J...",
    )


def run_grants(options: argparse.Namespace, prog: str) -> int:
    """``neocode-gateway grants [revoke ID]``: what people allowed, and taking it back."""
    if options.what == "revoke":
        if not options.grant:
            return fail(prog, "name the grant to revoke (neocode-gateway grants lists them)", 2)

        def revoke() -> int:
            with connection(options) as conn:
                ack = conn.payload("revoke_grant", payload={"grant_id": options.grant})
            if options.json:
                out_json({"ok": True, **ack})
            else:
                out(f"{options.grant}: revoked")
            return EXIT_OK

        return guarded(prog, options, revoke)
    if options.grant:
        return fail(prog, f"unexpected argument {options.grant!r} (did you mean: revoke?)", 2)

    def listing() -> int:
        with connection(options) as conn:
            grants = conn.payload("list_grants", session_id=options.session).get("grants") or []
        if _listed(
            grants, options.json, "no grants (approve ID --session, --for or --next gives one)"
        ):
            return EXIT_OK
        for grant in grants:
            ends = []
            if grant.get("expires_at"):
                ends.append(f"until {grant['expires_at']}")
            if grant.get("remaining") is not None:
                ends.append(f"{grant['remaining']} uses left")
            out(
                f"{grant.get('grant_id')}  {grant.get('rule')}  session {grant.get('session_id')}"
                f"  by {grant.get('given_by')} at {grant.get('created_at')}, used "
                f"{grant.get('uses', 0)}x" + (f", {', '.join(ends)}" if ends else "")
            )
        return EXIT_OK

    return guarded(prog, options, listing)


# -- audit -----------------------------------------------------------------------------------


def _audit_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--session", metavar="ID", help="only this session's decisions")
    parser.add_argument(
        "--since", metavar="WHEN", help="an RFC 3339 time, or a duration ago (30m, 2h, 1d)"
    )
    parser.add_argument("--decided-by", choices=DECIDED_BY, help="only decisions made so")
    parser.add_argument("--limit", metavar="N", type=positive_int, default=100)
    parser.add_argument("--json", action="store_true", help="one JSON object per decision")
    add_address_flags(parser)
    describe(
        parser,
        "  neocode-gateway audit\n  neocode-gateway audit --since 1d --decided-by policy --json",
    )


def run_audit(options: argparse.Namespace, prog: str) -> int:
    """``neocode-gateway audit``: every permission decision: what, who, how long it waited."""
    since = options.since
    if since:
        try:
            from neocode_gateway.cli._common import duration

            ago = duration(since)
            since = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(time.time() - ago))
        except Exception:
            if not since[:4].isdigit():
                return fail(prog, f"--since {since}: a duration (30m) or a time (2026-12-01)", 2)
    payload: dict[str, Any] = {"limit": options.limit}
    if since:
        payload["since"] = since
    if options.decided_by:
        payload["decided_by"] = options.decided_by

    def body() -> int:
        with connection(options) as conn:
            answer = conn.payload("audit", session_id=options.session, payload=payload)
        decisions = answer.get("decisions") or []
        if _listed(decisions, options.json, "no permission decisions"):
            return EXIT_OK
        for d in decisions:
            tool = d.get("tool") or {}
            what = tool.get("command") or ", ".join(tool.get("paths") or []) or tool.get("title")
            waited = d.get("waited_ms")
            out(
                f"{d.get('created_at')}  {d.get('decision') or d.get('state'):13} "
                f"{tool.get('kind', 'other'):8} {what}  by {d.get('decided_by')}"
                + (f" [{d['who']}]" if d.get("who") and d.get("who") != d.get("decided_by") else "")
                + (f", waited {waited} ms" if waited is not None else "")
            )
        return EXIT_OK

    return guarded(prog, options, body)


# -- policy ----------------------------------------------------------------------------------


def _policy_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("what", choices=("check", "explain"))
    parser.add_argument("kind", nargs="?", help="explain: the tool kind (read, edit, execute...)")
    parser.add_argument("arg", nargs="*", help="explain: the path(s), or the command line")
    parser.add_argument("--config", metavar="FILE", help="the configuration file")
    parser.add_argument("--workdir", metavar="DIR", help="explain: the session's workdir (.)")
    parser.add_argument("--agent", metavar="NAME", help="explain: the agent (default: any)")
    describe(
        parser,
        "  neocode-gateway policy check\n"
        '  neocode-gateway policy explain execute "rm -rf build" --workdir ~/code/app\n'
        "  neocode-gateway policy explain edit src/main.py --agent claude",
    )


def run_policy(options: argparse.Namespace, prog: str) -> int:
    """``neocode-gateway policy check|explain``: the rules, read from the file, no gateway."""
    from neocode_gateway.config import load_config
    from neocode_gateway.errors import ConfigError
    from neocode_gateway.policy import FILE_KINDS, TOOL_KINDS, Policy, ToolRequest

    try:
        config = load_config(options.config)
    except ConfigError as exc:
        return fail(prog, str(exc), EXIT_USAGE)
    policy = config.policy or Policy.from_tables([], source="none")
    where = str(config.path) if config.path else "no configuration file"
    if options.what == "check":
        count = sum(len(t.rules.get(v, ())) for t in policy.tables for v in t.rules)
        out(f"{where}: {len(policy.tables)} policy tables, {count} rules: ok")
        for warning in policy.warnings:
            out(f"warning: {warning}")
        return EXIT_OK
    if not options.kind or options.kind not in TOOL_KINDS:
        return fail(prog, f"explain needs a tool kind: one of {', '.join(sorted(TOOL_KINDS))}", 2)
    workdir = os.path.realpath(os.path.expanduser(options.workdir or "."))
    if options.kind in FILE_KINDS:
        request = ToolRequest(options.kind, paths=tuple(options.arg))
    elif options.kind == "execute":
        request = ToolRequest("execute", command=" ".join(options.arg))
    else:
        request = ToolRequest(options.kind, title=" ".join(options.arg))
    out(policy.explain(request, agent=options.agent or "", workdir=workdir))
    return EXIT_OK


def approval_commands() -> dict[str, CommandSpec]:
    """Name → (help line, add_arguments, run)."""
    return {
        "pending": (
            "list the permission requests waiting for an answer",
            _pending_arguments,
            run_pending,
        ),
        "grants": (
            "list what was allowed for a session; grants revoke ID",
            _grants_arguments,
            run_grants,
        ),
        "audit": (
            "every permission decision: what, who, how long it waited",
            _audit_arguments,
            run_audit,
        ),
        "policy": (
            "check the approval rules, or explain how one tool call is decided",
            _policy_arguments,
            run_policy,
        ),
    }
