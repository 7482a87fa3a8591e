"""Chaos-suite helpers: process figures from /proc, the daemon's stats line, load clients.

Everything here reads this machine's /proc (Linux) for the daemon's pid, talks
only to Unix sockets in the test's own temporary directory, and bounds every
loop by count and time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from tests.support import GATEWAY_CMD, Gateway, wait_for

#: ``make chaos`` sets this: bigger numbers where the CI numbers are not the issue's.
LONG: Final = os.environ.get("NEOCODE_CHAOS_LONG", "") not in ("", "0")
_CLK_TCK: Final = os.sysconf("SC_CLK_TCK")
_STATS_RE: Final = re.compile(r" INFO stats (\{.*\})$", re.MULTILINE)
_RECORD_RE: Final = re.compile(r"^\d{4}-\d\d-\d\dT[\d:.]+Z (?P<level>[A-Z]+) (?P<message>.*)$")


def scale(ci: int, long: int) -> int:
    """The CI number, or the long variant's under ``NEOCODE_CHAOS_LONG=1``."""
    return long if LONG else ci


# -- /proc figures ----------------------------------------------------------------------


def proc_fds(pid: int) -> int:
    """Open file descriptors of ``pid``."""
    return len(os.listdir(f"/proc/{pid}/fd"))


def proc_status_kb(pid: int, key: str) -> int:
    """A ``kB`` field of /proc/PID/status (``VmRSS``, ``VmHWM``...)."""
    with open(f"/proc/{pid}/status", "rb") as status:
        for line in status:
            if line.startswith(key.encode() + b":"):
                return int(line.split()[1])
    raise KeyError(key)


def proc_rss_kb(pid: int) -> int:
    return proc_status_kb(pid, "VmRSS")


def proc_peak_rss_kb(pid: int) -> int:
    """The high-water mark of the resident set since the process started."""
    return proc_status_kb(pid, "VmHWM")


def proc_cpu_seconds(pid: int) -> float:
    """User plus system CPU time of ``pid`` so far."""
    with open(f"/proc/{pid}/stat", "rb") as stat:
        fields = stat.read().rsplit(b")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def child_pids() -> list[int]:
    """Live (or zombie) children of this process, from /proc."""
    found = []
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as stat:
                fields = stat.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == me:
            found.append(int(entry))
    return found


def raise_nofile(wanted: int) -> int:
    """Raise this process's soft RLIMIT_NOFILE towards ``wanted``; return the soft limit."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return int(soft)


# -- the daemon's own counters ----------------------------------------------------------


def daemon_stats(gw: Gateway, timeout: float = 5.0) -> dict[str, Any]:
    """Ask the daemon for its stats line (SIGUSR1) and return it decoded."""
    before = len(_STATS_RE.findall(gw.log()))
    gw.signal(signal.SIGUSR1)
    found: list[str] = wait_for(
        lambda: (lines := _STATS_RE.findall(gw.log())) and len(lines) > before and lines,
        timeout,
        what="the daemon's stats line",
    )
    value = json.loads(found[-1])
    assert isinstance(value, dict)
    return value


def wait_for_baseline(
    gw: Gateway, baseline: dict[str, Any], timeout: float = 10.0
) -> dict[str, Any]:
    """Wait until connections, tasks and fds are back to ``baseline``; return the stats."""
    last: dict[str, Any] = {}

    def back() -> bool:
        nonlocal last
        last = daemon_stats(gw)
        last["proc_fds"] = proc_fds(gw.pid)
        return bool(
            last["connections"] == 0
            and last["tasks"] <= baseline["tasks"]
            and last["fds"] <= baseline["fds"]
            and last["proc_fds"] <= baseline["proc_fds"]
        )

    try:
        wait_for(back, timeout, interval=0.05, what="the daemon to return to its baseline")
    except AssertionError as exc:
        raise AssertionError(f"{exc}: baseline {baseline}, last {last}") from None
    return last


def baseline_stats(gw: Gateway) -> dict[str, Any]:
    """The daemon's stats at rest, with the /proc fd count next to its own."""
    stats = daemon_stats(gw)
    stats["proc_fds"] = proc_fds(gw.pid)
    stats["proc_rss_kb"] = proc_rss_kb(gw.pid)
    return stats


# -- figures ----------------------------------------------------------------------------


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (``pct`` in 0..100) of a non-empty sequence."""
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(pct / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def summary(values: Sequence[float], digits: int = 3) -> dict[str, float]:
    """min / p50 / p95 / max of ``values`` (seconds or anything else), rounded."""
    return {
        "min": round(min(values), digits),
        "p50": round(statistics.median(values), digits),
        "p95": round(percentile(values, 95), digits),
        "max": round(max(values), digits),
    }


@dataclass
class Figures:
    """Where the scenarios record what they measured (JSON lines, one per scenario)."""

    path: Path
    records: list[dict[str, Any]]

    def record(self, scenario: str, **figures: Any) -> None:
        entry = {"scenario": scenario, "long": LONG, **figures}
        self.records.append(entry)
        line = json.dumps(entry, sort_keys=False)
        print(f"FIGURES {line}")
        with self.path.open("a") as out:
            out.write(line + "\n")


# -- clients ----------------------------------------------------------------------------


def ping_line(request_id: str) -> bytes:
    return b'{"type":"request","action":"ping","request_id":"%s"}\n' % request_id.encode()


def pong_line(request_id: str) -> bytes:
    return (
        b'{"type":"ack","action":"ping","request_id":"%s","payload":{"message":"pong"}}\n'
        % request_id.encode()
    )


async def aping(path: str, request_id: str = "p", timeout: float = 5.0) -> float:
    """Connect, ping, read the pong, close; return the round trip in seconds."""
    started = time.monotonic()
    reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(path), timeout)
    try:
        writer.write(ping_line(request_id))
        line = await asyncio.wait_for(reader.readline(), timeout)
        assert line == pong_line(request_id), line
        return time.monotonic() - started
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


@contextlib.contextmanager
def closing_all(socks: list[socket.socket]) -> Iterator[list[socket.socket]]:
    """Close every socket in ``socks`` (also those appended later) on the way out."""
    try:
        yield socks
    finally:
        for sock in socks:
            sock.close()


def log_tail(gw: Gateway, start: int) -> str:
    """What the daemon logged after ``start`` characters."""
    return gw.log()[start:]


class CappedLogGateway(Gateway):
    """A gateway whose stderr is read through a pipe and kept bounded.

    For scenarios where a defect could make the daemon log without end: the
    file on disk never grows, we keep the first :attr:`KEEP` lines plus every
    stats line, and count every log record by level with its arrival time.
    """

    KEEP: Final = 400

    def __init__(self, path: str, *args: str, env: dict[str, str] | None = None) -> None:
        super().__init__(path, *args, env=env)
        self._lock = threading.Lock()
        self._kept: list[str] = []
        self._stats_lines: list[str] = []
        self.records: list[tuple[float, str, str]] = []  # (monotonic time, level, message)
        self.lines = 0
        self.bytes = 0
        self._reader: threading.Thread | None = None

    def start(self, *, wait: bool = True, timeout: float = 10.0, **popen: Any) -> Gateway:
        env = dict(os.environ)
        env.update(self.env or {})
        self.proc = subprocess.Popen(
            [*GATEWAY_CMD, "--listen", self.path, *self.args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env,
            **popen,
        )
        self._reader = threading.Thread(target=self._read, args=(self.proc,), daemon=True)
        self._reader.start()
        if wait:
            self.wait_ready(timeout)
        return self

    def _read(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stderr is not None
        for raw in proc.stderr:
            line = raw.decode(errors="replace").rstrip("\n")
            match = _RECORD_RE.match(line)
            with self._lock:
                self.lines += 1
                self.bytes += len(raw)
                if match:
                    self.records.append((time.monotonic(), match["level"], match["message"]))
                if len(self._kept) < self.KEEP:
                    self._kept.append(line)
                elif " INFO stats {" in line:
                    self._stats_lines.append(line)
        proc.stderr.close()

    def log(self) -> str:
        with self._lock:
            return "\n".join([*self._kept, *self._stats_lines]) + "\n"

    def records_since(
        self, since: float, levels: Sequence[str] = ("WARNING", "ERROR")
    ) -> list[str]:
        """Messages of the records at ``levels`` that arrived after ``since`` (monotonic)."""
        with self._lock:
            return [msg for at, level, msg in self.records if at >= since and level in levels]

    def kill(self) -> None:
        super().kill()
        if self._reader is not None:
            self._reader.join(10)


class RawClient:
    """A non-blocking Unix socket driven by the loop's ``sock_*`` calls.

    Unlike an asyncio transport, a failed send (the daemon closed on us) does
    not discard what was already received: every byte the daemon wrote is read.
    """

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""

    @classmethod
    async def connect(cls, path: str) -> RawClient:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            await asyncio.get_running_loop().sock_connect(sock, path)
        except BaseException:
            sock.close()
            raise
        return cls(sock)

    async def send(self, data: bytes) -> bool:
        """Send everything; False if the daemon closed the connection first."""
        try:
            await asyncio.get_running_loop().sock_sendall(self.sock, data)
        except (BrokenPipeError, ConnectionResetError):
            return False
        return True

    async def line(self, timeout: float = 20.0) -> bytes:
        """The next line with its newline; what is left (maybe b"") at EOF or reset."""
        loop = asyncio.get_running_loop()
        while b"\n" not in self.buf:
            try:
                chunk = await asyncio.wait_for(loop.sock_recv(self.sock, 1 << 16), timeout)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                rest, self.buf = self.buf, b""
                return rest
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        return line + b"\n"

    def close(self) -> None:
        self.sock.close()
