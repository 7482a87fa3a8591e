"""Event throughput, fan-out, replay and latency of the gateway (contract v1.1).

Runs a fresh daemon (echo runtime, a temporary data directory) and measures:

* ``burst1``: one ``/burst N`` run to its one bound client: durable events/s, gateway CPU per event;
* ``burst16``: the same run to 16 bound clients, each of which must receive all of it: frames/s
  delivered in total;
* ``replay``: N logged events replayed to a fresh binding: events/s, and the gateway's
  peak RSS growth meanwhile;
* ``latency``: runtime-to-client latency at 100 events/s (``/tick``), durable commit in the path:
  p50 / p99;
* ``sqlite``: the limit for ``burst1``: the same event frames written by a bare SQLite
  ``executemany`` into the gateway's own schema (WAL, ``synchronous=NORMAL``), committed in
  batches of 1,024 as the gateway's group commit does at its high-water mark: rows/s. The
  ``burst1`` line then shows its ratio to it, measured in the same run.

Bounded in count and time; loopback Unix sockets only. Usage::

    .venv/bin/python benchmarks/bench_events.py [--events 100000] [--clients 16] [--reps 3]
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
import threading
import time
from typing import Any

import msgspec

GATEWAY = [sys.executable, "-m", "neocode_gateway"]
CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, from /proc."""
    with open(f"/proc/{pid}/stat", "rb") as stat:
        fields = stat.read().rsplit(b")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_kb(pid: int, field: bytes = b"VmRSS:") -> int:
    with open(f"/proc/{pid}/status", "rb") as status:
        for line in status:
            if line.startswith(field):
                return int(line.split()[1])
    return 0


class Daemon:
    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="ngw-bench-", dir="/tmp")
        self.path = f"{self.dir}/gw.sock"
        self.proc = subprocess.Popen(
            [
                *GATEWAY,
                "--listen",
                self.path,
                "--data-dir",
                f"{self.dir}/data",
                "--log-level",
                "warn",
                "--max-connections",
                "1024",
            ],
            stdin=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                with socket.socket(socket.AF_UNIX) as sock:
                    sock.connect(self.path)
                    return
            except OSError:
                time.sleep(0.01)
        raise SystemExit("the gateway did not start")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


class Conn:
    """A raw client that counts event lines fast (no JSON decoding on the hot path)."""

    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(path)
        self.sock.settimeout(120)
        self.buf = b""

    def send(self, frame: dict[str, Any]) -> None:
        self.sock.sendall(msgspec.json.encode(frame) + b"\n")

    def line(self) -> bytes:
        while b"\n" not in self.buf:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise EOFError
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        return line

    def until_terminal(self) -> int:
        """Read until a run's terminal event; return the number of lines (events) read."""
        count = self.buf.count(b"\n")
        buf = self.buf
        if b'"event_type":"run_done"' in buf or b'"event_type":"run_error"' in buf:
            self.buf = b""
            return count
        while True:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise EOFError
            count += chunk.count(b"\n")
            window = buf[-64:] + chunk
            buf = chunk
            if b'"event_type":"run_done"' in window or b'"event_type":"run_error"' in window:
                self.buf = b""
                return count

    def read_n_events(self, n: int) -> None:
        count = self.buf.count(b"\n")
        while count < n:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise EOFError
            count += chunk.count(b"\n")
        self.buf = b""

    def close(self) -> None:
        self.sock.close()


def new_session(path: str) -> str:
    conn = Conn(path)
    conn.send({"type": "request", "action": "run", "request_id": "warm", "input_text": "warm"})
    session_id = msgspec.json.decode(conn.line())["session_id"]
    conn.until_terminal()
    conn.close()
    return str(session_id)


def burst(daemon: Daemon, events: int, clients: int) -> dict[str, float]:
    session_id = new_session(daemon.path)
    watchers = [Conn(daemon.path) for _ in range(clients)]
    for watcher in watchers:
        watcher.send({"type": "request", "action": "bind_stream", "session_id": session_id})
        watcher.line()
    counts = [0] * clients

    def watch(index: int) -> None:
        counts[index] = watchers[index].until_terminal()

    threads = [threading.Thread(target=watch, args=(i,)) for i in range(clients)]
    cpu0 = cpu_seconds(daemon.proc.pid)
    start = time.perf_counter()
    # The first watcher starts the run (a run's sender is bound to its session: it must
    # read, or it would be cut as a slow consumer); its ack is one of the lines it counts.
    watchers[0].send(
        {
            "type": "request",
            "action": "run",
            "request_id": "b",
            "session_id": session_id,
            "input_text": f"/burst {events}",
        }
    )
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    elapsed = time.perf_counter() - start
    cpu = cpu_seconds(daemon.proc.pid) - cpu0
    for watcher in watchers:
        watcher.close()
    per_client = min(counts)
    return {
        "events": per_client,
        "seconds": elapsed,
        "events_per_s": per_client / elapsed,
        "frames_per_s": sum(counts) / elapsed,
        "cpu_us_per_event": cpu / per_client * 1e6,
    }


def replay(daemon: Daemon, events: int) -> dict[str, float]:
    session_id = new_session(daemon.path)
    runner = Conn(daemon.path)
    runner.send(
        {
            "type": "request",
            "action": "run",
            "request_id": "r",
            "session_id": session_id,
            "input_text": f"/burst {events}",
        }
    )
    runner.line()
    runner.until_terminal()
    runner.close()
    pid = daemon.proc.pid
    with open(f"/proc/{pid}/clear_refs", "w") as refs:
        refs.write("5")  # reset VmHWM to the current RSS
    before = rss_kb(pid)
    conn = Conn(daemon.path)
    start = time.perf_counter()
    conn.send(
        {
            "type": "request",
            "action": "bind_stream",
            "session_id": session_id,
            "payload": {"after_seq": 0},
        }
    )
    ack = msgspec.json.decode(conn.line())
    total = int(ack["payload"]["replayed"])
    conn.read_n_events(total)
    elapsed = time.perf_counter() - start
    peak = rss_kb(pid, b"VmHWM:")
    conn.close()
    return {
        "events": total,
        "events_per_s": total / elapsed,
        "peak_rss_growth_mib": (peak - before) / 1024,
    }


def sqlite_limit(events: int) -> dict[str, float]:
    """A bare ``executemany`` of the burst's frames: what SQLite alone takes."""
    import sqlite3

    from neocode_gateway.protocol import encode_event
    from neocode_gateway.store import MIGRATIONS

    directory = tempfile.mkdtemp(prefix="ngw-bench-", dir="/tmp")
    try:
        con = sqlite3.connect(f"{directory}/limit.db", isolation_level=None)
        con.execute("PRAGMA journal_mode = WAL")
        con.execute("PRAGMA synchronous = NORMAL")
        con.executescript(MIGRATIONS[0])
        session = "s_01JDXLIMIT0000000000000000"
        ts = "2026-12-04T10:00:00.123Z"
        rows = [
            (
                session,
                seq,
                "b",
                "run_progress",
                ts,
                encode_event(
                    session, "b", seq, "run_progress", ts, {"kind": "message_chunk", "text": "w "}
                ),
            )
            for seq in range(1, events + 1)
        ]
        start = time.perf_counter()
        for index in range(0, events, 1024):
            con.execute("BEGIN IMMEDIATE")
            con.executemany("INSERT INTO events VALUES (?,?,?,?,?,?)", rows[index : index + 1024])
            con.execute("COMMIT")
        elapsed = time.perf_counter() - start
        con.close()
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    return {"rows": events, "seconds": elapsed, "rows_per_s": events / elapsed}


def latency(daemon: Daemon, count: int) -> dict[str, float]:
    conn = Conn(daemon.path)
    conn.send(
        {"type": "request", "action": "run", "request_id": "l", "input_text": f"/tick {count}"}
    )
    conn.line()
    samples: list[float] = []
    while True:
        line = conn.line()
        now = time.monotonic()
        frame = msgspec.json.decode(line)
        payload = frame.get("payload") or {}
        body = payload.get("data") or {}
        if payload.get("event_type") in ("run_done", "run_error"):
            break
        text = body.get("text", "") if body.get("kind") == "message_chunk" else ""
        if text.startswith("t="):
            samples.append((now - float(text[2:])) * 1000)
    conn.close()
    samples.sort()
    if not samples:
        return {"samples": 0}
    return {
        "samples": len(samples),
        "p50_ms": statistics.median(samples),
        "p99_ms": samples[min(len(samples) - 1, int(len(samples) * 0.99))],
        "max_ms": samples[-1],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--ticks", type=int, default=500)
    parser.add_argument("--scenarios", default="sqlite,burst1,burst16,replay,latency")
    args = parser.parse_args()
    wanted = args.scenarios.split(",")
    results: dict[str, list[dict[str, float]]] = {name: [] for name in wanted}
    for _ in range(args.reps):
        for name in wanted:
            if name == "sqlite":
                results[name].append(sqlite_limit(args.events))
                continue
            daemon = Daemon()
            try:
                if name == "burst1":
                    results[name].append(burst(daemon, args.events, 1))
                elif name == "burst16":
                    results[name].append(burst(daemon, args.events, args.clients))
                elif name == "replay":
                    results[name].append(replay(daemon, args.events))
                elif name == "latency":
                    results[name].append(latency(daemon, args.ticks))
            finally:
                daemon.stop()
    limit = 0.0
    for name, runs in results.items():
        keys = runs[0].keys() if runs else []
        medians = {k: statistics.median(r[k] for r in runs) for k in keys}
        if name == "sqlite":
            limit = medians["rows_per_s"]
        elif name == "burst1" and limit:
            medians["ratio_to_sqlite"] = medians["events_per_s"] / limit
        print(f"RESULT {name} " + " ".join(f"{k}={v:.4g}" for k, v in medians.items()))


if __name__ == "__main__":
    main()
