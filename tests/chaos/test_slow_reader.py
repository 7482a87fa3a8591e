"""Scenario 5: a client that never reads.

One client pipelines enough pings for 16 MiB of replies and never reads one
(write timeout 1 s). The daemon must stop reading from it once its write buffer
is full (so the client cannot even send everything), abort it after the write
timeout, measured from the moment the client stopped making progress, and keep
answering everybody else meanwhile. Its memory stays bounded throughout.
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass, field

import pytest

from tests.chaos._support import (
    LONG,
    Figures,
    baseline_stats,
    ping_line,
    pong_line,
    proc_peak_rss_kb,
    scale,
    summary,
    wait_for_baseline,
)
from tests.chaos.conftest import DaemonFactory
from tests.support import LineReader, connect

WRITE_TIMEOUT = 1.0
REPLY_BYTES = 16 << 20
ROUNDS = scale(1, 3)
#: Aborted no earlier than 0.8 x and no later than 1 s past the write timeout.
ABORT_SLACK = 1.0
OTHERS_LATENCY_BOUND = 0.5


@dataclass
class Hog:
    sent: int = 0
    total: int = 0
    started: float = 0.0
    last_progress: float = 0.0
    aborted_at: float | None = None
    error: str = ""
    unread_reply_bytes: int = 0


@dataclass
class Other:
    latencies: list[float] = field(default_factory=list)
    failures: int = 0


def _hog(path: str, hog: Hog, done: threading.Event) -> None:
    reply = pong_line("hog")
    payload = ping_line("hog") * (REPLY_BYTES // len(reply) + 1)
    hog.total = len(payload)
    view = memoryview(payload)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(path)
        sock.settimeout(0.02)
        hog.started = hog.last_progress = time.monotonic()
        deadline = hog.started + WRITE_TIMEOUT + ABORT_SLACK + 10
        try:
            while hog.sent < hog.total and time.monotonic() < deadline:
                try:
                    hog.sent += sock.send(view[hog.sent : hog.sent + 65536])
                    hog.last_progress = time.monotonic()
                except TimeoutError:
                    continue
        except (BrokenPipeError, ConnectionResetError) as exc:
            hog.aborted_at = time.monotonic()
            hog.error = type(exc).__name__
        finally:
            done.set()
        # What the daemon wrote before aborting, still unread in our receive queue.
        sock.settimeout(1.0)
        try:
            while chunk := sock.recv(1 << 20):
                hog.unread_reply_bytes += len(chunk)
        except OSError:
            pass


def _other(path: str, other: Other, done: threading.Event) -> None:
    with connect(path, timeout=2.0) as sock:
        reader = LineReader(sock)
        for n in range(2000):  # bounded: the scenario ends long before
            if done.is_set():
                return
            started = time.monotonic()
            try:
                sock.sendall(ping_line(f"o{n}"))
                ok = reader.line() == pong_line(f"o{n}")
            except OSError:
                ok = False
            other.latencies.append(time.monotonic() - started)
            other.failures += not ok
            time.sleep(0.02)  # a paced client, not a wait


@pytest.mark.timeout(60 * ROUNDS)
def test_client_that_never_reads_is_aborted_others_unaffected(
    daemons: DaemonFactory, figures: Figures
) -> None:
    gw = daemons("--write-timeout", str(WRITE_TIMEOUT))
    baseline = baseline_stats(gw)
    results = []
    for _ in range(ROUNDS):
        hog, other = Hog(), Other()
        done = threading.Event()
        threads = [
            threading.Thread(target=_hog, args=(gw.path, hog, done)),
            threading.Thread(target=_other, args=(gw.path, other, done)),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(WRITE_TIMEOUT + ABORT_SLACK + 20)
        assert not any(t.is_alive() for t in threads)

        assert hog.aborted_at is not None, f"never aborted: sent {hog.sent} of {hog.total}"
        latency = hog.aborted_at - hog.last_progress
        assert hog.sent < hog.total, "the daemon kept reading from a client that never reads"
        assert 0.8 * WRITE_TIMEOUT <= latency <= WRITE_TIMEOUT + ABORT_SLACK, latency
        assert other.failures == 0
        assert other.latencies, "the other client never ran"
        assert max(other.latencies) <= OTHERS_LATENCY_BOUND, summary(other.latencies)
        results.append(
            {
                "abort_after_last_progress_s": round(latency, 3),
                "abort_after_connect_s": round(hog.aborted_at - hog.started, 3),
                "client_error": hog.error,
                "request_bytes_sent_of_total": [hog.sent, hog.total],
                "reply_bytes_written_before_abort": hog.unread_reply_bytes,
                "other_client_pings": len(other.latencies),
                "other_client_latency_s": summary(other.latencies, 4),
            }
        )
    log = gw.wait_log("client did not read its responses in time")
    after = wait_for_baseline(gw, baseline)
    peak = proc_peak_rss_kb(gw.pid)
    figures.record(
        "never-reads",
        write_timeout_s=WRITE_TIMEOUT,
        replies_pipelined_bytes=REPLY_BYTES,
        rounds=results if LONG else results[0],
        abort_log_lines=log.count("client did not read its responses in time"),
        fds_before_after=[baseline["proc_fds"], after["proc_fds"]],
        rss_kb_baseline_peak=[baseline["proc_rss_kb"], peak],
    )
