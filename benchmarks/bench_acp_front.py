"""What the ACP front door costs: update latency it adds, and time to ``initialize``.

* **Update latency.** The echo runtime's ``/tick N`` sends N chunks 10 ms apart whose
  text is the gateway's monotonic clock at the send (``t=SECONDS``; ``CLOCK_MONOTONIC``
  is one clock for every process of the machine). The same run shape is received once
  by a direct client of the gateway (the gateway's own latency) and once by an ACP
  client through ``neocode-gateway acp`` (the SDK's ``spawn_agent_process``); the
  difference of their p50 and p99 is what the front door adds.
* **Spawn to initialize.** With a warm gateway: from spawning ``neocode-gateway acp``
  to its ``initialize`` answer, N times (median, p90, max).

Bounded: a private gateway on a temporary socket, stopped at the end; N ticks (default
500), M spawns (default 15). Goals: p99 added <= 1 ms, initialize <= 150 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

from acp import PROTOCOL_VERSION, spawn_agent_process, text_block

from neocode_gateway.client import AsyncGatewayClient

GATEWAY = [sys.executable, "-m", "neocode_gateway"]


def _pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def _stamp(text: str) -> float | None:
    return float(text[2:]) if text.startswith("t=") else None


async def direct(path: str, workdir: str, ticks: int) -> list[float]:
    lat: list[float] = []
    async with AsyncGatewayClient(path) as client:
        async for event in client.run(f"/tick {ticks}", workdir=workdir):
            now = time.monotonic()
            if event.kind == "message_chunk":
                sent = _stamp(event.data.get("text", ""))
                if sent is not None:
                    lat.append(now - sent)
    return lat


class _Editor:
    def __init__(self) -> None:
        self.lat: list[float] = []

    async def session_update(self, session_id: str, update: Any, **kwargs: Any) -> None:
        now = time.monotonic()
        if update.session_update == "agent_message_chunk":
            sent = _stamp(update.content.text)
            if sent is not None:
                self.lat.append(now - sent)

    async def request_permission(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError


async def through_front(path: str, workdir: str, ticks: int, env: dict[str, str]) -> list[float]:
    editor = _Editor()
    async with spawn_agent_process(
        editor,
        *GATEWAY,
        "acp",
        "--listen",
        path,
        "--no-autostart",
        env=env,  # type: ignore[arg-type]
    ) as (conn, _):
        await conn.initialize(protocol_version=PROTOCOL_VERSION)
        new = await conn.new_session(cwd=workdir, mcp_servers=[])
        await conn.prompt(session_id=new.session_id, prompt=[text_block(f"/tick {ticks}")])
    return editor.lat


def spawn_to_initialize(path: str, env: dict[str, str]) -> float:
    line = b'{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":1}}\n'
    start = time.perf_counter()
    proc = subprocess.Popen(
        [*GATEWAY, "acp", "--listen", path],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    assert proc.stdin is not None
    assert proc.stdout is not None
    proc.stdin.write(line)
    proc.stdin.flush()
    proc.stdout.readline()
    elapsed = time.perf_counter() - start
    proc.stdin.close()
    proc.wait(10)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ticks", type=int, default=500)
    parser.add_argument("--spawns", type=int, default=15)
    args = parser.parse_args()
    tmp = tempfile.mkdtemp(prefix="ngw-bench-", dir="/tmp")
    path = f"{tmp}/gw.sock"
    env = dict(os.environ, HOME=tmp)
    gw = subprocess.Popen(
        [*GATEWAY, "--listen", path, "--data-dir", f"{tmp}/data", "--log-file", "none"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 15
        while not os.path.exists(path):
            if time.monotonic() > deadline:
                raise SystemExit("the gateway did not start")
            time.sleep(0.01)
        own = asyncio.run(direct(path, tmp, args.ticks))
        front = asyncio.run(through_front(path, tmp, args.ticks, env))
        spawns = [spawn_to_initialize(path, env) for _ in range(args.spawns)]
    finally:
        gw.send_signal(signal.SIGTERM)
        gw.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)
    ms = 1000.0
    print(f"update latency over {len(own)}/{len(front)} ticks (ms):")
    print(f"  gateway alone     p50 {_pct(own, 50) * ms:.3f}  p99 {_pct(own, 99) * ms:.3f}")
    print(f"  via front door    p50 {_pct(front, 50) * ms:.3f}  p99 {_pct(front, 99) * ms:.3f}")
    print(
        f"  added             p50 {(_pct(front, 50) - _pct(own, 50)) * ms:.3f}"
        f"  p99 {(_pct(front, 99) - _pct(own, 99)) * ms:.3f}  (goal p99 <= 1 ms)"
    )
    print(
        f"spawn -> initialize answer, warm gateway, {len(spawns)} runs (ms): median "
        f"{statistics.median(spawns) * ms:.1f}  p90 {_pct(spawns, 90) * ms:.1f}  max "
        f"{max(spawns) * ms:.1f}  (goal <= 150 ms)"
    )


if __name__ == "__main__":
    main()
