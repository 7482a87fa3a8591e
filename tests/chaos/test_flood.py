"""Scenario 3: connection flood.

1,280 concurrent connection attempts against the default cap of 128 (each one
pings and, if served, holds its connection until every attempt has an answer),
then 10,000 connect/ping/close cycles. The daemon survives; its open
descriptors (/proc/PID/fd and its own count) and asyncio tasks (its debug
count, SIGUSR1) return to their baseline; its RSS stays within a stated bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import pytest

from tests.chaos._support import (
    LONG,
    Figures,
    baseline_stats,
    daemon_stats,
    ping_line,
    pong_line,
    proc_peak_rss_kb,
    proc_rss_kb,
    raise_nofile,
    scale,
    summary,
    wait_for_baseline,
)
from tests.chaos.conftest import DaemonFactory
from tests.support import ping_ok

CAP = 128
CONCURRENT = 1280
CYCLES = scale(10_000, 50_000)
CYCLE_WORKERS = 16
#: RSS bounds, stated: after the flood the daemon holds at most 16 MiB more than at
#: rest, and at its peak (VmHWM) it never held more than 64 MiB above its resting RSS.
RSS_AFTER_BOUND_KB = 16 * 1024
RSS_PEAK_BOUND_KB = 64 * 1024


async def _attempt(path: str, i: int, release: asyncio.Event) -> str:
    """One concurrent attempt: ``served`` (pong, then hold until released) or ``rejected``."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(path), 20)
    except (ConnectionRefusedError, BlockingIOError):
        return "connect-failed"
    try:
        rid = f"flood-{i}"
        writer.write(ping_line(rid))
        try:
            line = await asyncio.wait_for(reader.readline(), 20)
        except (ConnectionResetError, BrokenPipeError):
            return "rejected"
        if line == b"":
            return "rejected"
        assert line == pong_line(rid), line
        await asyncio.wait_for(release.wait(), 60)
        return "served"
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def _concurrent(path: str) -> tuple[list[str], float]:
    release = asyncio.Event()
    started = time.monotonic()
    tasks = [asyncio.create_task(_attempt(path, i, release)) for i in range(CONCURRENT)]
    try:
        # Everyone who was not served has its answer; the served hold their slot.
        while sum(t.done() for t in tasks) < CONCURRENT - CAP:
            assert time.monotonic() - started < 60, "the flood did not resolve in 60 s"
            await asyncio.sleep(0.02)
        elapsed = time.monotonic() - started
        release.set()
        outcomes = await asyncio.wait_for(asyncio.gather(*tasks), 60)
    finally:
        release.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return list(outcomes), elapsed


async def _cycles(path: str) -> tuple[list[float], int]:
    latencies: list[float] = []
    failures = 0

    async def worker(w: int) -> None:
        nonlocal failures
        for n in range(CYCLES // CYCLE_WORKERS):
            rid = f"c{w}-{n}"
            started = time.monotonic()
            reader, writer = await asyncio.open_unix_connection(path)
            try:
                writer.write(ping_line(rid))
                line = await asyncio.wait_for(reader.readline(), 10)
                if line != pong_line(rid):
                    failures += 1
            finally:
                writer.close()
            latencies.append(time.monotonic() - started)

    await asyncio.wait_for(asyncio.gather(*(worker(w) for w in range(CYCLE_WORKERS))), 300)
    return latencies, failures


@pytest.mark.timeout(600 if LONG else 180)
def test_flood_survives_and_returns_to_baseline(daemons: DaemonFactory, figures: Figures) -> None:
    raise_nofile(CONCURRENT + 256)
    gw = daemons()
    baseline = baseline_stats(gw)

    outcomes, resolve_s = asyncio.run(_concurrent(gw.path))
    counts = {kind: outcomes.count(kind) for kind in sorted(set(outcomes))}
    assert counts.get("served") == CAP, counts
    assert counts.get("rejected") == CONCURRENT - CAP, counts
    after_flood = wait_for_baseline(gw, baseline)
    assert after_flood["rejected_over_cap"] - baseline["rejected_over_cap"] == CONCURRENT - CAP

    started = time.monotonic()
    latencies, failures = asyncio.run(_cycles(gw.path))
    cycles_s = time.monotonic() - started
    assert failures == 0
    assert len(latencies) == CYCLES

    after = wait_for_baseline(gw, baseline)
    assert ping_ok(gw.path), "the daemon stopped serving after the flood"
    rss_after = proc_rss_kb(gw.pid)
    rss_peak = proc_peak_rss_kb(gw.pid)
    assert rss_after - baseline["proc_rss_kb"] <= RSS_AFTER_BOUND_KB
    assert rss_peak - baseline["proc_rss_kb"] <= RSS_PEAK_BOUND_KB
    stats = daemon_stats(gw)
    figures.record(
        "flood",
        concurrent_attempts=CONCURRENT,
        cap=CAP,
        outcomes=counts,
        resolve_s=round(resolve_s, 2),
        cycles=CYCLES,
        cycles_s=round(cycles_s, 2),
        cycles_per_s=int(CYCLES / cycles_s),
        cycle_latency_s=summary(latencies, 4),
        fds_baseline_after=[baseline["proc_fds"], after["proc_fds"]],
        daemon_fds_baseline_after=[baseline["fds"], after["fds"]],
        tasks_baseline_after=[baseline["tasks"], after["tasks"]],
        rss_kb_baseline_peak_after=[baseline["proc_rss_kb"], rss_peak, rss_after],
        rss_bound_kb={"after": RSS_AFTER_BOUND_KB, "peak": RSS_PEAK_BOUND_KB},
        accepted=stats["accepted"],
        rejected_over_cap=stats["rejected_over_cap"],
    )
