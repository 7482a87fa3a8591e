"""Start-up cost of whole processes: client commands, and the daemon's time to first reply.

Measures, over N runs each (median and p90, wall clock):

* ``python -c pass`` and ``python -c "import asyncio, msgspec"``: the floor on this machine;
* a stdlib-only ping script (socket + json): what any client must pay;
* ``neocode-gateway --version``, ``ping`` and ``status`` (against a running daemon), as the
  installed command (the console script beside the interpreter) and as ``python -m``;
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
#: The installed command, as a user runs it (falls back to ``python -m`` outside a venv).
_SCRIPT = os.path.join(os.path.dirname(sys.executable), "neocode-gateway")
COMMAND = [_SCRIPT] if os.path.exists(_SCRIPT) else GATEWAY
STDLIB_PING = (
    "import json, socket, sys\n"
    "s = socket.socket(socket.AF_UNIX)\n"
    "s.connect(sys.argv[1])\n"
    "s.sendall(json.dumps({'type': 'request', 'action': 'ping', 'request_id': 'b'}).encode()"
    " + b'\\n')\n"
    "json.loads(s.makefile('rb').readline())\n"
)
PING = b'{"type":"request","action":"ping","request_id":"b"}\n'


def wall(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return time.perf_counter() - start


def first_reply(path: str, extra: list[str], data_dir: str) -> float:
    start = time.perf_counter()
    proc = subprocess.Popen(
        [*COMMAND, "--listen", path, "--data-dir", data_dir, "--log-level", "error", *extra],
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


def summary(name: str, samples: list[float], floor: float | None = None) -> float:
    """Print one RESULT line (with the ratio to ``floor``, a median); return the median."""
    samples.sort()
    p90 = samples[min(len(samples) - 1, int(len(samples) * 0.9))]
    median = statistics.median(samples)
    ratio = f" x_python_pass={median / floor:.2f}" if floor else ""
    print(f"RESULT {name} median_ms={median * 1000:.1f} p90_ms={p90 * 1000:.1f}{ratio}")
    return median


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
        # Interleaved, so that a neighbour's load at one moment weighs on every figure alike.
        cases = {
            "python_pass": [sys.executable, "-c", "pass"],
            "python_asyncio_msgspec": [sys.executable, "-c", "import asyncio, msgspec"],
            "stdlib_ping_script": [sys.executable, "-c", STDLIB_PING, path],
            "version": [*COMMAND, "--version"],
            "ping": [*COMMAND, "ping", "--listen", path],
            "status": [*COMMAND, "status", "--listen", path],
            "ping_python_m": [*GATEWAY, "ping", "--listen", path],
        }
        samples: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(runs):
            for name, cmd in cases.items():
                samples[name].append(wall(cmd))
        floor = summary("python_pass", samples.pop("python_pass"))
        for name, values in samples.items():
            summary(name, values, floor)
        replies = []
        for index in range(runs):
            replies.append(first_reply(f"{work}/s{index}.sock", [], f"{work}/d{index}"))
        summary("daemon_first_reply_echo", replies, floor)
        replies = []
        for index in range(runs):
            replies.append(
                first_reply(f"{work}/n{index}.sock", ["--runtime", "none"], f"{work}/e{index}")
            )
        summary("daemon_first_reply_none", replies, floor)
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(10)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
