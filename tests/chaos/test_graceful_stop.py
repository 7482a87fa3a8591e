"""Scenario 8: graceful stop under load.

16 clients pipeline pings as fast as the daemon takes them, each with its own
sequence of request ids; SIGTERM arrives mid-stream. Every request whose bytes
the daemon read gets its reply before its connection closes: each client's
replies are a contiguous prefix of its requests (ids in order, no gap, no torn
line), whatever it sees after them (EOF or ECONNRESET). The clients use raw
sockets, so a send failing once the daemon has closed cannot hide a reply that
had already arrived. The daemon exits 0
within 5 s, without having to abort anyone, and its socket file is gone.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from dataclasses import dataclass

import pytest

from tests.chaos._support import LONG, Figures, RawClient, ping_line, pong_line, scale, summary
from tests.chaos.conftest import DaemonFactory
from tests.support import Gateway

CLIENTS = 16
ROUNDS = scale(1, 5)
BATCH = 64
#: Bounded load: at most this many requests per client.
MAX_REQUESTS = 400_000
WARMUP_REPLIES = 200
EXIT_BOUND_S = 5.0


@dataclass
class Client:
    sent: int = 0
    replies: int = 0
    torn_tail: bytes = b""
    out_of_order: str = ""
    end: str = ""


async def _client(path: str, c: int, client: Client, stop_reading: asyncio.Event) -> None:
    raw = await RawClient.connect(path)

    async def send() -> None:
        while client.sent < MAX_REQUESTS:
            batch = b"".join(ping_line(f"{c}-{client.sent + i}") for i in range(BATCH))
            if not await raw.send(batch):
                return  # the daemon closed: everything it read is answered below
            client.sent += BATCH

    sending = asyncio.create_task(send())
    try:
        while not stop_reading.is_set():  # bounded: the test gives up after its deadline
            line = await raw.line()
            if not line.endswith(b"\n"):
                client.torn_tail = line
                client.end = "closed"
                break
            if line != pong_line(f"{c}-{client.replies}"):
                client.out_of_order = f"reply #{client.replies}: {line[:120]!r}"
                break
            client.replies += 1
    finally:
        sending.cancel()
        await asyncio.gather(sending, return_exceptions=True)
        raw.close()


async def _round(gw: Gateway) -> dict[str, object]:
    clients = [Client() for _ in range(CLIENTS)]
    give_up = asyncio.Event()
    tasks = [asyncio.create_task(_client(gw.path, c, clients[c], give_up)) for c in range(CLIENTS)]
    try:
        warm_deadline = time.monotonic() + 20
        while min(c.replies for c in clients) < WARMUP_REPLIES:
            assert time.monotonic() < warm_deadline, "the load never got going"
            await asyncio.sleep(0.01)
        replies_at_signal = sum(c.replies for c in clients)
        signalled = time.monotonic()
        os.kill(gw.pid, signal.SIGTERM)
        assert gw.proc is not None
        code = await asyncio.to_thread(gw.proc.wait, 30)
        exited = time.monotonic() - signalled
        await asyncio.wait_for(asyncio.gather(*tasks), 10)
    finally:
        give_up.set()
        await asyncio.gather(*tasks, return_exceptions=True)

    assert code == 0, gw.log()
    assert exited <= EXIT_BOUND_S
    for c, client in enumerate(clients):
        assert not client.out_of_order, f"client {c}: {client.out_of_order}"
        assert client.torn_tail == b"", f"client {c} got a torn reply {client.torn_tail[:80]!r}"
        assert client.end == "closed", f"client {c} ended with {client.end!r}"
        assert 0 < client.replies <= client.sent
    assert not os.path.exists(gw.path), "the socket file is still there"
    log = gw.log()
    assert "received SIGTERM" in log
    assert "did not drain" not in log, "connections were aborted instead of drained"
    return {
        "exit_code": code,
        "exit_after_sigterm_s": round(exited, 3),
        "replies_before_signal": replies_at_signal,
        "replies_after_signal": sum(c.replies for c in clients) - replies_at_signal,
        "requests_sent": sum(c.sent for c in clients),
        "replies_received": sum(c.replies for c in clients),
        "unanswered_per_client": summary([c.sent - c.replies for c in clients], 0),
        "clients_closed_after_their_replies": sum(1 for c in clients if c.end == "closed"),
        "gaps_or_torn_replies": 0,
        "socket_removed": True,
    }


@pytest.mark.timeout(60 * ROUNDS)
def test_sigterm_under_load_answers_what_was_read(daemons: DaemonFactory, figures: Figures) -> None:
    results = []
    for _ in range(ROUNDS):
        gw = daemons()
        results.append(asyncio.run(_round(gw)))
    figures.record("graceful-stop", clients=CLIENTS, rounds=results if LONG else results[0])
