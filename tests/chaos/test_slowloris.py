"""Scenario 2: slowloris.

128 clients (the default cap) each trickle one byte every 100 ms, never
finishing a frame, against a daemon with a 1 s read timeout. Every one must be
cut within 1.5 s of its deadline (and not before it); while they hold every
slot a newcomer is turned away, and once some are cut a 129th, well-behaved
client gets its pong.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass

import pytest

from tests.chaos._support import (
    LONG,
    Figures,
    aping,
    baseline_stats,
    daemon_stats,
    ping_line,
    scale,
    summary,
    wait_for_baseline,
)
from tests.chaos.conftest import DaemonFactory
from tests.support import Gateway

CLIENTS = 128
READ_TIMEOUT = 1.0
TRICKLE_INTERVAL = 0.1
CUT_SLACK = 1.5
ROUNDS = scale(1, 3)
#: The trickle is a load pattern, bounded: 10 s of it at most per client.
MAX_TRICKLES = 100


@dataclass
class Slow:
    connected: float = 0.0
    cut: float = 0.0
    sent: int = 0
    received: bytes = b""


async def _trickler(path: str, slow: Slow, cuts: asyncio.Queue[float]) -> None:
    reader, writer = await asyncio.open_unix_connection(path)
    slow.connected = time.monotonic()
    payload = ping_line("slowloris")

    async def trickle() -> None:
        for i in range(MAX_TRICKLES):
            if writer.transport.is_closing():
                return
            writer.write(payload[i % len(payload) : i % len(payload) + 1])
            slow.sent += 1
            await asyncio.sleep(TRICKLE_INTERVAL)

    trickling = asyncio.create_task(trickle())
    try:
        slow.received = await asyncio.wait_for(reader.read(), MAX_TRICKLES * TRICKLE_INTERVAL)
    except (ConnectionResetError, BrokenPipeError):
        pass
    finally:
        slow.cut = time.monotonic()
        cuts.put_nowait(slow.cut)
        trickling.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await trickling
        writer.close()


async def _newcomer_refused(path: str) -> bool:
    """Whether a connection made now is closed without an answer (the cap is reached)."""
    reader, writer = await asyncio.open_unix_connection(path)
    try:
        writer.write(ping_line("refused"))
        try:
            line = await asyncio.wait_for(reader.readline(), 2.0)
        except (ConnectionResetError, BrokenPipeError):
            return True
        return line == b""
    finally:
        writer.close()


async def _round(gw: Gateway) -> dict[str, object]:
    slows = [Slow() for _ in range(CLIENTS)]
    cuts: asyncio.Queue[float] = asyncio.Queue()
    tasks = [asyncio.create_task(_trickler(gw.path, slow, cuts)) for slow in slows]
    try:
        # Every slot is taken: the daemon holds 128 connections and turns a newcomer away.
        def full() -> bool:
            return bool(daemon_stats(gw)["connections"] == CLIENTS)

        deadline = time.monotonic() + 5.0
        while not await asyncio.to_thread(full):
            assert time.monotonic() < deadline, "the 128 slow clients were never all admitted"
        refused = await _newcomer_refused(gw.path)

        # After some slow clients are cut, a well-behaved client is served.
        first_cut = await asyncio.wait_for(cuts.get(), READ_TIMEOUT + CUT_SLACK + 5)
        for _ in range(7):
            await asyncio.wait_for(cuts.get(), CUT_SLACK + 5)
        pong_rtt = await aping(gw.path, "well-behaved", timeout=2.0)
        pong_after_first_cut = time.monotonic() - first_cut
        await asyncio.wait_for(asyncio.gather(*tasks), READ_TIMEOUT + CUT_SLACK + 10)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    late = [s.cut - (s.connected + READ_TIMEOUT) for s in slows]
    assert all(s.received == b"" for s in slows), "a slow client got a reply to half a frame"
    assert min(late) >= -0.05, f"a client was cut before its deadline: {summary(late)}"
    assert max(late) <= CUT_SLACK, f"a client was cut too late: {summary(late)}"
    assert refused, "a 129th client was served while 128 slow clients held every slot"
    return {
        "cut_after_deadline_s": summary(late),
        "bytes_trickled_per_client": summary([s.sent for s in slows], 1),
        "newcomer_refused_while_full": refused,
        "well_behaved_pong_rtt_s": round(pong_rtt, 4),
        "well_behaved_pong_after_first_cut_s": round(pong_after_first_cut, 3),
    }


@pytest.mark.timeout(60 * ROUNDS)
def test_slowloris_clients_are_cut_and_others_served(
    daemons: DaemonFactory, figures: Figures
) -> None:
    gw = daemons("--read-timeout", str(READ_TIMEOUT))
    baseline = baseline_stats(gw)
    rounds = [asyncio.run(_round(gw)) for _ in range(ROUNDS)]
    after = wait_for_baseline(gw, baseline)
    stats = daemon_stats(gw)
    assert stats["rejected_over_cap"] >= ROUNDS
    figures.record(
        "slowloris",
        clients=CLIENTS,
        read_timeout_s=READ_TIMEOUT,
        rounds=rounds if LONG else rounds[0],
        fds_before_after=[baseline["proc_fds"], after["proc_fds"]],
    )
