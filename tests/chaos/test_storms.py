"""Scenario 9: oversized and malformed storms.

100 clients at once: half send 2 MiB lines (terminated or not, of letters or of
brackets), half send garbage that is not JSON (binary, truncated objects, text;
terminated or ended by a half-close). Each gets exactly its error frame
(``frame exceeds max size 1048576 bytes`` / ``invalid json frame``) and is
closed; the daemon's memory returns within a stated bound of its baseline.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket

import msgspec
import pytest

from tests.chaos._support import (
    LONG,
    Figures,
    RawClient,
    baseline_stats,
    ping_line,
    proc_peak_rss_kb,
    proc_rss_kb,
    scale,
    wait_for_baseline,
)
from tests.chaos.conftest import DaemonFactory
from tests.support import PONG, LineReader, connect, ping_ok

CLIENTS = 100
ROUNDS = scale(1, 5)
LINE_BYTES = 2 << 20
CHUNK = 64 << 10
TOO_LARGE = (
    b'{"type":"error","error":{"code":"invalid_frame",'
    b'"message":"frame exceeds max size 1048576 bytes"}}\n'
)
INVALID_JSON = b'{"type":"error","error":{"code":"invalid_frame","message":"invalid json frame"}}\n'
#: After the storm the daemon's RSS is back within 32 MiB of its resting RSS; at
#: the storm's peak it held at most 1.25 MiB per client (one 1 MiB frame buffer per
#: oversized client, read buffers, the allocator's slack).
RSS_AFTER_BOUND_KB = 32 * 1024
RSS_PEAK_PER_CLIENT_KB = 1280


def _payload(i: int, rng: random.Random) -> tuple[bytes, bool, bytes]:
    """Client ``i``'s bytes, whether it half-closes after them, and the reply it expects."""
    if i % 2 == 0:
        kind = (i // 2) % 4
        body = (b"[" if kind == 1 else b"a") * LINE_BYTES
        line = b'{"type":"request","action":"run","input_text":"' + body + b'"}'
        return (line + b"\n" if kind in (0, 1) else line), kind == 3, TOO_LARGE
    kind = (i // 2) % 5
    if kind == 0:
        junk = bytes(rng.randrange(256) for _ in range(rng.randint(1, 4096)))
        data = b"\xff" + junk.replace(b"\n", b" ") + b"\n"
    elif kind == 1:
        data = b'{"type":"request","action":"ping"\n'
    elif kind == 2:
        data = b"hello gateway\r\n"
    elif kind == 3:
        data = b'{"type":"request"} {"type":"request"}\n'
    else:
        data = b'{"type":"request","action":"ping","request_id":"x"' + b"," * 1000
    return data, kind == 4, INVALID_JSON


async def _storm_client(path: str, i: int, rng: random.Random) -> tuple[int, list[bytes]]:
    data, half_close, _ = _payload(i, rng)
    client = await RawClient.connect(path)

    async def send() -> None:
        for at in range(0, len(data), CHUNK):
            if not await client.send(data[at : at + CHUNK]):
                return  # the daemon closed on us mid-line: expected for the oversized ones
        if half_close:
            with contextlib.suppress(OSError):
                client.sock.shutdown(socket.SHUT_WR)

    sending = asyncio.create_task(send())
    lines: list[bytes] = []
    try:
        while len(lines) < 10 and (line := await client.line()):
            lines.append(line)
    finally:
        sending.cancel()
        await asyncio.gather(sending, return_exceptions=True)
        client.close()
    return i, lines


async def _storm(path: str, seed: int) -> list[tuple[int, list[bytes]]]:
    rng = random.Random(seed)
    return await asyncio.wait_for(
        asyncio.gather(*(_storm_client(path, i, rng) for i in range(CLIENTS))), 120
    )


@pytest.mark.timeout(90 * ROUNDS)
def test_oversized_and_malformed_storm(daemons: DaemonFactory, figures: Figures) -> None:
    gw = daemons()
    baseline = baseline_stats(gw)
    rounds = []
    for r in range(ROUNDS):
        results = asyncio.run(_storm(gw.path, seed=r))
        rng = random.Random(r)
        wrong = []
        for i, lines in results:
            expected = _payload(i, rng)[2]
            if lines != [expected]:
                wrong.append((i, [line[:100] for line in lines]))
        assert not wrong, f"{len(wrong)} clients did not get exactly their error frame: {wrong}"
        assert ping_ok(gw.path), "the daemon stopped serving during the storm"
        after = wait_for_baseline(gw, baseline)
        rounds.append(
            {
                "clients": CLIENTS,
                "got_their_error_frame_and_close": CLIENTS - len(wrong),
                "rss_kb_after": proc_rss_kb(gw.pid),
                "fds_after": after["proc_fds"],
            }
        )
    rss_after = proc_rss_kb(gw.pid)
    rss_peak = proc_peak_rss_kb(gw.pid)
    figures.record(
        "storms",
        rounds=rounds if LONG else rounds[0],
        line_bytes=LINE_BYTES,
        rss_kb_baseline_peak_after=[baseline["proc_rss_kb"], rss_peak, rss_after],
        rss_bound_kb={"after": RSS_AFTER_BOUND_KB, "peak": RSS_PEAK_PER_CLIENT_KB * CLIENTS},
        fds_baseline_after=[baseline["proc_fds"], rounds[-1]["fds_after"]],
    )
    assert rss_after - baseline["proc_rss_kb"] <= RSS_AFTER_BOUND_KB
    assert rss_peak - baseline["proc_rss_kb"] <= RSS_PEAK_PER_CLIENT_KB * CLIENTS


def test_type_error_then_invalid_utf8_gets_its_error_frame(daemons: DaemonFactory) -> None:
    gw = daemons()
    with connect(gw.path, timeout=5.0) as sock:
        # One write, so both lines arrive in one read: the ping's reply must not be lost.
        sock.sendall(
            ping_line("smoke-1") + b'{"type":"request","action":"ping","request_id":1,"x":"\xff"}\n'
        )
        sock.shutdown(socket.SHUT_WR)
        reader = LineReader(sock)
        lines = []
        with contextlib.suppress(ConnectionResetError):
            while line := reader.line():
                lines.append(line)
    assert "Traceback" not in gw.log()
    assert lines == [PONG, INVALID_JSON], lines
    assert all(isinstance(msgspec.json.decode(line), dict) for line in lines)
