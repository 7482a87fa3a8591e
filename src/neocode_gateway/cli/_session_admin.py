"""``sessions new`` and ``sessions delete``: contract v1.2's create_session and delete_session.

Quick commands like ``sessions``: one request each on the blocking connection,
no asyncio and no daemon module.
"""

from __future__ import annotations

import json
import os

from neocode_gateway.cli._common import EXIT_OK, EXIT_USAGE, fail, out, out_json
from neocode_gateway.cli._quick import connection, guarded

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from typing import Any


def _mcp_servers(path: str) -> list[dict[str, Any]]:
    """The MCP servers in a JSON file: a list of objects (or ``{"mcpServers": [...]}``)."""
    with open(path, encoding="utf-8") as file:
        value = json.load(file)
    if isinstance(value, dict):
        value = value.get("mcpServers", value.get("mcp_servers"))
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise ValueError("expected a JSON list of MCP server objects")
    return value


def run_new(options: argparse.Namespace, prog: str) -> int:
    """``sessions new``: a session without a run; prints its id."""
    if options.session:
        return fail(prog, f"unexpected argument {options.session!r}", EXIT_USAGE)
    workdir = os.path.abspath(os.path.expanduser(options.workdir or "."))
    if not os.path.isdir(workdir):
        return fail(prog, f"no such directory: {workdir}", EXIT_USAGE)
    payload: dict[str, Any] = {}
    for key in ("agent", "mode", "title"):
        value = getattr(options, key)
        if value:
            payload[key] = value
    if options.mcp_servers:
        try:
            payload["mcp_servers"] = _mcp_servers(options.mcp_servers)
        except (OSError, ValueError) as exc:
            return fail(prog, f"--mcp-servers {options.mcp_servers}: {exc}", EXIT_USAGE)

    def body() -> int:
        with connection(options) as conn:
            session = conn.payload("create_session", workdir=workdir, payload=payload)
        if options.json:
            out_json(session)
        else:
            out(str(session.get("id")))
        return EXIT_OK

    return guarded(prog, options, body)


def run_delete(options: argparse.Namespace, prog: str) -> int:
    """``sessions delete ID``: the session, its log, runs and permission requests."""
    if not options.session:
        return fail(prog, "name the session to delete (neocode-gateway sessions lists them)", 2)

    def body() -> int:
        with connection(options) as conn:
            ack = conn.payload("delete_session", session_id=options.session)
        if options.json:
            out_json({"ok": True, "session_id": options.session, **ack})
        else:
            out(f"{options.session}: deleted")
        return EXIT_OK

    return guarded(prog, options, body)
