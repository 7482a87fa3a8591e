"""The commands a person runs often, and their plumbing: ``ping`` and ``status`` here.

Each sends a request or two and prints the answer, so each is built on the
blocking, standard-library-only :class:`~neocode_gateway.client._local.BlockingConnection`:
no asyncio, no msgspec, no rich (unless a table is drawn on a terminal), no
daemon module. The whole process then costs about the interpreter's own
start; ``tests/unit/test_import_discipline.py`` keeps it so. On a named pipe
(Windows) the same commands go through the asyncio client instead.

:mod:`neocode_gateway.cli._requests` and :mod:`neocode_gateway.cli._stop`
hold the other quick commands, on the plumbing defined here.

Exit codes: 0 ok, 1 an error frame (or a broken protocol), 2 usage error,
3 no gateway reachable, 4 timeout, 130 interrupted, 141 stdout closed.
"""

from __future__ import annotations

import os
import stat
import time

from neocode_gateway.cli._common import (
    EXIT_BROKEN_PIPE,
    EXIT_OK,
    EXIT_TIMEOUT,
    LOG_LEVELS,
    add_address_flags,
    describe,
    fail,
    non_negative_int,
    non_negative_seconds,
    out,
    out_json,
    silence_stdout,
)
from neocode_gateway.cli._wording import error_json, explain
from neocode_gateway.client._local import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_REQUEST_TIMEOUT,
    BlockingConnection,
    client_default_address,
    is_pipe_address,
)
from neocode_gateway.errors import ClientError, GatewayUnreachable, RequestTimeout

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable
    from typing import Any

    CommandSpec = tuple[
        str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace, str], int]
    ]


def connection(options: argparse.Namespace) -> BlockingConnection:
    """The connection the flags name (not yet connected); a pipe gets the asyncio client."""
    timeout: float | None = options.timeout
    address = options.listen or client_default_address()
    if is_pipe_address(address):  # pragma: no cover - Windows
        from neocode_gateway.cli._pipe import PipeConnection

        return PipeConnection(address, timeout, getattr(options, "trust_any_uid", False))
    return BlockingConnection(
        address,
        connect_timeout=timeout or DEFAULT_CONNECT_TIMEOUT,
        request_timeout=timeout or DEFAULT_REQUEST_TIMEOUT,
        trust_any_uid=getattr(options, "trust_any_uid", False),
        client_name="cli",
    )


def guarded(prog: str, options: argparse.Namespace, body: Callable[[], int]) -> int:
    """Run ``body``; every expected failure becomes one line and its exit code.

    With ``--json``, an error frame is also printed as a JSON object on stdout
    (its ``code`` included), so that scripts read one format.
    """
    try:
        return body()
    except (ClientError, KeyboardInterrupt) as exc:
        if getattr(options, "json", False) and not isinstance(exc, KeyboardInterrupt):
            out_json(error_json(exc))
        debug = getattr(options, "log_level", LOG_LEVELS["warn"]) <= LOG_LEVELS["debug"]
        message, code = explain(exc, debug=debug)
        return fail(prog, message, code)
    except BrokenPipeError:
        silence_stdout()
        return EXIT_BROKEN_PIPE


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


# -- ping -----------------------------------------------------------------------------------


def _ping_arguments(parser: argparse.ArgumentParser) -> None:
    add_address_flags(parser)
    parser.add_argument(
        "--count",
        "-c",
        metavar="N",
        type=non_negative_int,
        default=1,
        help="pings to send on one connection; 0 pings until Ctrl-C (default: 1)",
    )
    parser.add_argument(
        "--interval",
        "-i",
        metavar="S",
        type=non_negative_seconds,
        default=None,
        help="seconds between pings (default: 1 with --count 0, else 0)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON lines instead of text")
    describe(
        parser,
        "  neocode-gateway ping\n"
        "  neocode-gateway ping --count 0                 # like ping(8): until Ctrl-C\n"
        "  neocode-gateway ping --count 5 --interval 0.2 --listen /tmp/gw.sock\n"
        "  neocode-gateway ping --json --timeout 0.5",
    )


def run_ping(options: argparse.Namespace, prog: str) -> int:
    """``neocode-gateway ping``: one line per ping; a summary at the end or on Ctrl-C."""
    address = options.listen or client_default_address()

    def body() -> int:
        try:
            return _ping(options, prog)
        except (GatewayUnreachable, RequestTimeout) as exc:
            if options.json:
                reason = exc.reason if isinstance(exc, GatewayUnreachable) else str(exc)
                out_json({"address": address, "reachable": False, "error": reason})
            message, code = explain(exc)
            return fail(prog, message, code)

    return guarded(prog, options, body)


def _ping(options: argparse.Namespace, prog: str) -> int:
    conn = connection(options)
    address = conn.address
    rtts: list[float] = []
    sent = 0
    interval = options.interval
    if interval is None:
        interval = 1.0 if options.count == 0 else 0.0
    interrupted = False
    with conn:
        try:
            while options.count == 0 or sent < options.count:
                sent += 1
                try:
                    rtt = conn.ping()
                except RequestTimeout as exc:
                    if options.json:
                        out_json({"address": address, "seq": sent, "ok": False, "error": "timeout"})
                    fail(prog, str(exc))
                else:
                    rtts.append(rtt)
                    if options.json:
                        out_json({"address": address, "seq": sent, "ok": True, "rtt_ms": _ms(rtt)})
                    else:
                        out(f"pong from {address}: seq={sent} time={rtt * 1000:.2f} ms")
                if interval and (options.count == 0 or sent < options.count):
                    time.sleep(interval)  # the pace the user asked for; Ctrl-C ends it
        except KeyboardInterrupt:
            interrupted = True
    _ping_summary(options, address, sent, rtts, interrupted=interrupted)
    if interrupted:
        return EXIT_OK if rtts else 1
    return EXIT_OK if len(rtts) == sent else EXIT_TIMEOUT


def _ping_summary(
    options: argparse.Namespace,
    address: str,
    sent: int,
    rtts: list[float],
    *,
    interrupted: bool = False,
) -> None:
    low = _ms(min(rtts)) if rtts else None
    avg = _ms(sum(rtts) / len(rtts)) if rtts else None
    high = _ms(max(rtts)) if rtts else None
    mdev = None
    if rtts:
        mean = sum(rtts) / len(rtts)
        mdev = _ms((sum((r - mean) ** 2 for r in rtts) / len(rtts)) ** 0.5)
    if options.json:
        out_json(
            {
                "address": address,
                "sent": sent,
                "received": len(rtts),
                "min_ms": low,
                "avg_ms": avg,
                "max_ms": high,
                "mdev_ms": mdev,
            }
        )
    elif sent > 1 or options.count != 1 or interrupted:
        loss = 100.0 * (sent - len(rtts)) / sent if sent else 0.0
        out(f"--- {address} ping statistics ---")
        out(f"{sent} transmitted, {len(rtts)} received, {loss:.0f}% loss")
        if rtts:
            out(f"rtt min/avg/max/mdev = {low:.3f}/{avg:.3f}/{high:.3f}/{mdev:.3f} ms")


# -- status ---------------------------------------------------------------------------------


def _status_arguments(parser: argparse.ArgumentParser) -> None:
    add_address_flags(parser)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    describe(
        parser,
        "  neocode-gateway status\n  neocode-gateway status --json --listen /tmp/gw.sock",
    )


_STATUS_KEYS = (
    "uptime_s",
    "default_runtime",
    "runtimes",
    "data_dir",
    "sessions",
    "active_runs",
    "connections",
    "bindings",
    "pending_permissions",
    "agents",
)


def run_status(options: argparse.Namespace, prog: str) -> int:
    """``neocode-gateway status``: does a gateway answer, and who runs it."""
    address = options.listen or client_default_address()
    if not is_pipe_address(address):
        address = os.path.abspath(address)
    options.listen = address

    def body() -> int:
        try:
            return _status(options)
        except (GatewayUnreachable, RequestTimeout) as exc:
            if options.json:
                reason = exc.reason if isinstance(exc, GatewayUnreachable) else str(exc)
                out_json({"address": address, "reachable": False, "reason": reason})
            message, code = explain(exc)
            return fail(prog, message, code)

    return guarded(prog, options, body)


def _status(options: argparse.Namespace) -> int:
    conn = connection(options)
    address = conn.address
    with conn:
        rtt = conn.ping()
        try:
            gateway = conn.payload("status")
        except ClientError:
            gateway = {}  # an older gateway without the status action
    info: dict[str, Any] = {"address": address, "reachable": True}
    info["transport"] = "pipe" if is_pipe_address(address) else "unix"
    lock = None if is_pipe_address(address) else read_lock_info(address)
    lock_pid = lock.get("pid") if lock else None
    same_process = conn.peer_pid is None or lock_pid == conn.peer_pid
    version = lock.get("version") if lock and same_process else None
    info["version"] = version if isinstance(version, str) else None
    info["pid"] = conn.peer_pid if conn.peer_pid is not None else lock_pid
    info["uid"] = conn.peer_uid
    info["mode"] = socket_mode(address)
    info["rtt_ms"] = _ms(rtt)
    for key in _STATUS_KEYS:
        if key in gateway:
            info[key] = gateway[key]
    if info["version"] is None and isinstance(gateway.get("version"), str):
        info["version"] = gateway["version"]
    if options.json:
        out_json(info)
        return EXIT_OK
    shown = dict(info, reachable="yes", rtt_ms=f"{rtt * 1000:.2f} ms")
    agents = shown.pop("agents", None)
    for key, value in shown.items():
        out(f"{key.removesuffix('_ms')}: {'unknown' if value is None else value}")
    for name, agent in (agents or {}).items():
        out(f"agent {name}: {_describe_agent(agent)}")
    return EXIT_OK


def read_lock_info(socket_path: str) -> dict[str, Any] | None:
    """What the gateway wrote in ``PATH.lock`` (its pid and version), if readable."""
    import json

    try:
        with open(socket_path + ".lock", "rb") as lock:
            info = json.loads(lock.read(4096))
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def _describe_agent(agent: Any) -> str:
    """``running (pid 4242, 2 live sessions, 412 MiB)`` or ``not running``."""
    if not isinstance(agent, dict) or not agent.get("running"):
        return "not running (starts with its first run)"
    live = agent.get("live_sessions", 0)
    details = [f"pid {agent.get('pid')}", f"{live} live session{'' if live == 1 else 's'}"]
    if isinstance(agent.get("rss_bytes"), int):
        details.append(f"{agent['rss_bytes'] / 2**20:.0f} MiB")
    return f"running ({', '.join(details)})"


def socket_mode(address: str) -> str | None:
    """The socket file's permissions (``0600``), if it is a file."""
    if is_pipe_address(address):
        return None
    try:
        return f"{stat.S_IMODE(os.stat(address).st_mode):04o}"
    except OSError:
        return None


def commands() -> dict[str, CommandSpec]:
    """Name → (help line, add_arguments, run)."""
    return {
        "ping": ("check that a gateway answers, and how fast", _ping_arguments, run_ping),
        "status": (
            "show whether a gateway answers, and who runs it",
            _status_arguments,
            run_status,
        ),
    }
