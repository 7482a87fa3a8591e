"""Start-up cost of whole processes: client commands, and the daemon's time to first reply.

Measures, over N runs each (median and p90, wall clock):

* ``python -c pass`` and ``python -c "import asyncio, msgspec"``: the floor on this machine;
* ``neocode-gateway --version`` and ``neocode-gateway ping`` (against a running daemon);
* the daemon: exec to its first pong (polling the socket every 2 ms), with the echo runtime
  and a fresh data directory, and with ``--runtime none``.

Bounded: N runs (default 15) of each; loopback Unix sockets in a temporary directory.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

GATEWAY = [sys.executable, "-m", "neocode_gateway"]
PING = b'{"type":"request","action":"ping","request_id":"b"}\n'


def wall(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return time.perf_counter() - start


def first_reply(path: str, extra: list[str], data_dir: str) -> float:
    start = time.perf_counter()
    proc = subprocess.Popen(
        [*GATEWAY, "--listen", path, "--data-dir", data_dir, "--log-level", "error", *extra],
        stdin=subprocess.DEVNULL,
    )
    try:
        deadline = start + 15
        while time.perf_counter() < deadline:
            try:
                with socket.socket(socket.AF_UNIX) as sock:
                    sock.connect(path)
                    sock.sendall(PING)
                    if sock.recv(4096):
                        return time.perf_counter() - start
            except OSError:
                time.sleep(0.002)
        raise SystemExit("the daemon did not answer")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)


def summary(name: str, samples: list[float]) -> None:
    samples.sort()
    p90 = samples[min(len(samples) - 1, int(len(samples) * 0.9))]
    print(
        f"RESULT {name} median_ms={statistics.median(samples) * 1000:.1f} p90_ms={p90 * 1000:.1f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="ngw-start-", dir="/tmp")
    path = f"{work}/gw.sock"
    daemon = subprocess.Popen(
        [*GATEWAY, "--listen", path, "--data-dir", f"{work}/data", "--log-level", "error"]
    )
    try:
        while not os.path.exists(path):
            time.sleep(0.01)
        runs = args.runs
        summary("python_pass", [wall([sys.executable, "-c", "pass"]) for _ in range(runs)])
        summary(
            "python_asyncio_msgspec",
            [wall([sys.executable, "-c", "import asyncio, msgspec"]) for _ in range(runs)],
        )
        summary("version", [wall([*GATEWAY, "--version"]) for _ in range(runs)])
        summary("ping", [wall([*GATEWAY, "ping", "--listen", path]) for _ in range(runs)])
        samples = []
        for index in range(runs):
            samples.append(first_reply(f"{work}/s{index}.sock", [], f"{work}/d{index}"))
        summary("daemon_first_reply_echo", samples)
        samples = []
        for index in range(runs):
            samples.append(
                first_reply(f"{work}/n{index}.sock", ["--runtime", "none"], f"{work}/e{index}")
            )
        summary("daemon_first_reply_none", samples)
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(10)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
