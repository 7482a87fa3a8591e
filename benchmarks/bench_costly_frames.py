"""One client's valid but costly frames must not stall the others (issue 16, fault 13).

A fresh daemon; client A pipelines 1 MiB ``ping`` frames whose payload is arrays
nested 60 deep (valid: the limit is 64), reading its answers as fast as it can;
client B pings in a closed loop meanwhile. Prints B's round trip p50/p95/max and
A's frames per second. Bounded in count and time; loopback Unix sockets only.

    .venv/bin/python benchmarks/bench_costly_frames.py [--frames 300] [--pings 300]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_events import Daemon


def costly_frame(size: int = 1 << 20) -> bytes:
    unit = b"[" * 60 + b"1" + b"]" * 60 + b","
    count = (size - 100) // len(unit)
    payload = b"[" + unit * count + b"1]"
    return b'{"type":"request","action":"ping","request_id":"a","payload":' + payload + b"}\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--pings", type=int, default=300)
    args = parser.parse_args()
    daemon = Daemon()
    try:
        frame = costly_frame()
        heavy = socket.socket(socket.AF_UNIX)
        heavy.connect(daemon.path)
        heavy.settimeout(60)
        answered = [0]
        done = threading.Event()

        def read_answers() -> None:
            buffer = b""
            while answered[0] < args.frames:
                chunk = heavy.recv(1 << 16)
                if not chunk:
                    break
                buffer += chunk
                answered[0] += buffer.count(b"\n")
                buffer = buffer[buffer.rfind(b"\n") + 1 :]
            done.set()

        reader = threading.Thread(target=read_answers, daemon=True)
        reader.start()

        def write_frames() -> None:
            for _ in range(args.frames):
                heavy.sendall(frame)

        writer = threading.Thread(target=write_frames, daemon=True)
        start = time.perf_counter()
        writer.start()
        light = socket.socket(socket.AF_UNIX)
        light.connect(daemon.path)
        light.settimeout(10)
        times: list[float] = []
        for index in range(args.pings):
            if done.is_set():
                break
            t0 = time.perf_counter()
            light.sendall(b'{"type":"request","action":"ping","request_id":"b%d"}\n' % index)
            buffer = b""
            while b"\n" not in buffer:
                buffer += light.recv(4096)
            times.append((time.perf_counter() - t0) * 1000)
        done.wait(120)
        elapsed = time.perf_counter() - start
        times.sort()
        p95 = times[int(len(times) * 0.95) - 1] if times else float("nan")
        rate = answered[0] / elapsed
        print(
            f"RESULT costly_frames pings={len(times)} p50_ms={statistics.median(times):.2f} "
            f"p95_ms={p95:.2f} max_ms={times[-1]:.2f} heavy_frames_per_s={rate:.0f}"
        )
        heavy.close()
        light.close()
    finally:
        daemon.stop()


if __name__ == "__main__":
    main()
