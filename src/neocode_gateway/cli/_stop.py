"""``neocode-gateway stop``: stop the gateway at the address gracefully, and wait until it is gone.

The gateway has no "shut down" request (a front-end must not be able to stop
what other front-ends use by mistake); stopping is the operator's SIGTERM,
the same signal a service manager sends. The command finds the process from
the connection itself (the kernel's peer credentials, so never a stale pid
file), refuses one that runs as another user, and waits until the process has
exited, so that a script can start a new gateway right after.
"""

from __future__ import annotations

import os
import signal
import sys
import time

from neocode_gateway.cli._common import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_TIMEOUT,
    add_address_flags,
    describe,
    fail,
    out,
    out_json,
    positive_seconds,
)
from neocode_gateway.cli._quick import connection, guarded

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse

#: Seconds ``stop`` waits for the gateway to exit by default (runs are canceled first).
DEFAULT_STOP_WAIT = 30.0


def stop_arguments(parser: argparse.ArgumentParser) -> None:
    add_address_flags(parser)
    parser.add_argument(
        "--wait",
        metavar="S",
        type=positive_seconds,
        default=DEFAULT_STOP_WAIT,
        help=f"seconds to wait for the gateway to exit (default: {DEFAULT_STOP_WAIT:g})",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    describe(parser, "  neocode-gateway stop\n  neocode-gateway stop --listen /tmp/gw.sock")


def run_stop(options: argparse.Namespace, prog: str) -> int:
    """Send SIGTERM to the gateway serving the address; wait for its exit."""

    def body() -> int:
        with connection(options) as conn:
            pid = conn.peer_pid
            if pid is None:
                reported = conn.payload("status").get("pid")
                pid = reported if isinstance(reported, int) else None
        address = conn.address
        if pid is None or sys.platform == "win32":
            return fail(prog, f"cannot tell which process serves {address}; stop it where it runs")
        try:
            os.kill(pid, signal.SIGTERM)
        except PermissionError:
            return fail(prog, f"the gateway at {address} (pid {pid}) belongs to another user")
        except ProcessLookupError:
            pass  # it exited between the answer and the signal
        if not _wait_gone(pid, options.wait):
            return fail(
                prog,
                f"the gateway at {address} (pid {pid}) is still running after {options.wait:g} s "
                f"(stop --wait {options.wait * 2:g} waits longer; kill {pid} stops it at once)",
                EXIT_TIMEOUT,
            )
        if options.json:
            out_json({"address": address, "pid": pid, "stopped": True})
        else:
            out(f"stopped the gateway at {address} (pid {pid})")
        return EXIT_OK

    return guarded(prog, options, body)


def _wait_gone(pid: int, timeout: float) -> bool:
    """Whether process ``pid`` exited (or is a zombie, waiting for its parent) in time."""
    deadline = time.monotonic() + timeout
    delay = 0.005
    while True:
        if not _alive(pid):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(delay)  # polling a process we do not own: there is nothing to wait on
        delay = min(delay * 2, 0.1)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover - checked before the signal
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            state = stat.read().rpartition(b")")[2].split()[0]
    except (OSError, IndexError):
        return True  # no /proc (macOS): kill(0) is all there is
    return state not in (b"Z", b"X")


__all__ = ["EXIT_FAILURE", "run_stop", "stop_arguments"]
