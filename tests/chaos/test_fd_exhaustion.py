"""Scenario 4: file-descriptor exhaustion.

The daemon runs with ``RLIMIT_NOFILE`` 64 (soft = hard) and ``--max-connections
128``: it warns at start that the limit is too low, and keeps running. Then 96
clients connect at once (more than 64 descriptors can hold) and more keep
arriving while we watch. It must keep serving the connections it has, back off
accepting instead of spinning (its CPU time while excess connections wait is
measured from /proc/PID/stat), log the condition once or rate-limited (not once
per attempt), and recover: new connections are served once others close.

Run on both event loops, because their accept paths differ under EMFILE.
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
import time
from typing import Any

import pytest

from tests.chaos._support import (
    LONG,
    CappedLogGateway,
    Figures,
    ping_line,
    pong_line,
    proc_cpu_seconds,
    proc_fds,
)
from tests.chaos.conftest import DaemonFactory
from tests.support import ping_ok, wait_for

NOFILE = 64
ATTEMPTS = 96
#: Long enough to see a spin, short because a spinning daemon burns a core meanwhile.
WINDOW_S = 5.0 if LONG else 1.5
NEW_ATTEMPT_EVERY_S = 0.05
#: "Backs off": while excess connections wait, the daemon uses under a quarter of a core.
CPU_FRACTION_BOUND = 0.25
RECOVERY_BOUND_S = 2.0
_CONDITION = (
    "connection refused",
    "out of system resource",
    "too many open files",
    "descriptor",
    "emfile",
)

Stream = tuple[asyncio.StreamReader, asyncio.StreamWriter]


def _limit_nofile() -> None:  # runs in the child, before exec
    resource.setrlimit(resource.RLIMIT_NOFILE, (NOFILE, NOFILE))


async def _attempt(path: str, rid: str, timeout: float) -> tuple[str, Stream | None]:
    """``served`` (pong; the stream stays open), ``rejected`` (closed) or ``pending``."""
    reader, writer = await asyncio.open_unix_connection(path)
    writer.write(ping_line(rid))
    try:
        line = await asyncio.wait_for(reader.readline(), timeout)
    except TimeoutError:
        return "pending", (reader, writer)
    except (ConnectionResetError, BrokenPipeError):
        line = b""
    if line == b"":
        writer.close()
        return "rejected", None
    assert line == pong_line(rid), line
    return "served", (reader, writer)


async def _ping_on(stream: Stream, rid: str) -> bool:
    reader, writer = stream
    try:
        writer.write(ping_line(rid))
        return await asyncio.wait_for(reader.readline(), 3.0) == pong_line(rid)
    except (OSError, TimeoutError):
        return False


def _condition_records(gw: CappedLogGateway, since: float) -> list[str]:
    return [
        msg
        for msg in gw.records_since(since)
        if any(word in msg.lower() for word in _CONDITION) and "RLIMIT_NOFILE" not in msg
    ]


async def _scenario(gw: CappedLogGateway) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    pid = gw.pid
    figures["fds_at_rest"] = proc_fds(pid)
    opened: list[Stream] = []
    try:
        # 1. More clients at once than the descriptors allow.
        fill_start = time.monotonic()
        results = await asyncio.gather(
            *(_attempt(gw.path, f"fill-{i}", 1.5) for i in range(ATTEMPTS))
        )
        served = [s for kind, s in results if kind == "served" and s is not None]
        pending = [s for kind, s in results if kind == "pending" and s is not None]
        opened += served + pending
        figures["outcomes"] = {
            kind: sum(1 for k, _ in results if k == kind)
            for kind in ("served", "rejected", "pending")
        }
        figures["fds_full"] = proc_fds(pid)

        # 2. Excess connections wait (in the backlog, or keep arriving): measure CPU.
        cpu_start, window_start = proc_cpu_seconds(pid), time.monotonic()
        while time.monotonic() - window_start < WINDOW_S:
            reader, writer = await asyncio.open_unix_connection(gw.path)
            writer.write(ping_line("window"))
            opened.append((reader, writer))
            await asyncio.sleep(NEW_ATTEMPT_EVERY_S)
        window = time.monotonic() - window_start
        figures["cpu_fraction_while_exhausted"] = round(
            (proc_cpu_seconds(pid) - cpu_start) / window, 3
        )
        figures["log_records_per_s_while_exhausted"] = round(
            len(_condition_records(gw, window_start)) / window, 1
        )

        # 3. The connections it has are still served.
        held = await asyncio.gather(*(_ping_on(s, f"held-{i}") for i, s in enumerate(served)))
        figures["held_connections_still_served"] = f"{sum(held)}/{len(served)}"

        # 4. Recovery: free half the served connections and everything waiting.
        freed = served[: len(served) // 2] + pending + opened[len(served) + len(pending) :]
        for _, writer in freed:
            writer.close()
        freed_at = time.monotonic()
        recovered = False
        while time.monotonic() - freed_at < RECOVERY_BOUND_S + 3:
            kind, stream = await _attempt(gw.path, "recovery", 0.5)
            if stream is not None:
                stream[1].close()
            if kind == "served":
                recovered = True
                break
        figures["recovery_s"] = round(time.monotonic() - freed_at, 3) if recovered else None
        records = _condition_records(gw, fill_start)
        figures["condition_log_records"] = len(records)
        figures["condition_log_sample"] = records[:1]
        figures["log_lines_total"] = gw.lines
        figures["seconds_observed"] = round(time.monotonic() - fill_start, 2)
        figures["held_ok"] = sum(held) == len(served)
        figures["served"] = len(served)
    finally:
        for _, writer in opened:
            writer.close()
    return figures


@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
@pytest.mark.timeout(90)
def test_fd_exhaustion_backs_off_logs_once_and_recovers(
    daemons: DaemonFactory, figures: Figures, loop: str
) -> None:
    gw = daemons(
        "--max-connections",
        "128",
        loop=loop,
        gateway_class=CappedLogGateway,
        preexec_fn=_limit_nofile,
    )
    assert isinstance(gw, CappedLogGateway)
    wait_for(lambda: "RLIMIT_NOFILE is 64" in gw.log(), 5, what="the descriptor warning")
    result = asyncio.run(_scenario(gw))
    alive = gw.proc is not None and gw.proc.poll() is None
    result["alive"] = alive
    with contextlib.suppress(OSError):
        result["serves_after"] = alive and ping_ok(gw.path, 2.0)
    figures.record(f"fd-exhaustion-{loop}", nofile=NOFILE, attempts=ATTEMPTS, **result)

    assert alive, "the daemon died"
    assert result["served"] >= 16, "it served almost nothing"
    assert result["held_ok"], "connections it had stopped being served"
    assert result["cpu_fraction_while_exhausted"] <= CPU_FRACTION_BOUND, "it spins on accept"
    assert result["condition_log_records"] >= 1, "it never logged running out of descriptors"
    assert result["condition_log_records"] <= result["seconds_observed"] + 3, "log not rate-limited"
    assert result["recovery_s"] is not None, "it did not recover"
    assert result["recovery_s"] <= RECOVERY_BOUND_S
    assert result["serves_after"]
