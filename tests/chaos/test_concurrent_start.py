"""Scenario 7: concurrent start.

20 daemons started at once on one path: exactly one serves, the 19 others
exit 3 ("already running") and leave the winner's socket alone; the lock file
names the winner; stopping the winner exits 0 and removes the socket.
"""

from __future__ import annotations

import functools
import os
import time

import pytest

from tests.chaos._support import LONG, Figures, scale
from tests.chaos.conftest import DaemonFactory
from tests.support import Gateway, ping_ok, wait_for

STARTS = 20
ROUNDS = scale(1, 5)
EXIT_ALREADY_RUNNING = 3


def _exited(gateways: list[Gateway]) -> list[Gateway]:
    return [gw for gw in gateways if gw.proc is not None and gw.proc.poll() is not None]


def _losers_exited(gateways: list[Gateway]) -> bool:
    return len(_exited(gateways)) >= STARTS - 1


@pytest.mark.timeout(120 * ROUNDS)
def test_concurrent_starts_exactly_one_serves(
    daemons: DaemonFactory, sock_path: str, figures: Figures
) -> None:
    from neocode_gateway.transport import read_lock_info

    rounds = []
    for _ in range(ROUNDS):
        started = time.monotonic()
        gateways = [daemons(wait=False) for _ in range(STARTS)]
        spawned = time.monotonic() - started
        wait_for(functools.partial(_losers_exited, gateways), 60, what="19 losers to exit")
        losers_exited = time.monotonic() - started
        losers = _exited(gateways)
        winners = [gw for gw in gateways if gw not in losers]
        assert len(winners) == 1, [gw.proc.returncode for gw in losers if gw.proc]
        winner = winners[0]
        wait_for(lambda: ping_ok(sock_path), 10, what="the winner to serve")
        served = time.monotonic() - started
        codes = sorted(gw.wait(1) for gw in losers)
        assert codes == [EXIT_ALREADY_RUNNING] * (STARTS - 1), codes
        assert all("already running" in gw.log() for gw in losers)
        assert winner.proc is not None
        assert winner.proc.poll() is None
        lock = read_lock_info(sock_path)
        assert lock is not None
        assert lock.get("pid") == winner.pid
        assert winner.stop() == 0
        assert not os.path.exists(sock_path)
        rounds.append(
            {
                "starts": STARTS,
                "serving": len(winners),
                "exit_3": codes.count(EXIT_ALREADY_RUNNING),
                "spawn_s": round(spawned, 3),
                "losers_exited_s": round(losers_exited, 3),
                "winner_served_s": round(served, 3),
            }
        )
        for gw in gateways:
            gw.log_path.unlink(missing_ok=True)
    figures.record("concurrent-start", rounds=rounds if LONG else rounds[0])
