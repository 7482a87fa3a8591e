"""Test support: real gateway processes on sockets in short temporary directories.

Everything here waits on conditions with deadlines (never a fixed sleep) and
cleans up what it starts: processes by pid, directories by path.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec

PING = b'{"type":"request","action":"ping","request_id":"smoke-1"}\n'
PONG = b'{"type":"ack","action":"ping","request_id":"smoke-1","payload":{"message":"pong"}}\n'
GATEWAY_CMD = [sys.executable, "-m", "neocode_gateway"]


#: Every directory :func:`short_tmpdir` made in this test process; whatever a test left
#: behind is removed when the session ends (``tests/conftest.py``).
MADE_DIRS: list[str] = []


def short_tmpdir(prefix: str = "ngw-") -> str:
    """A fresh directory under /tmp: AF_UNIX paths must stay under 108 bytes."""
    path = tempfile.mkdtemp(prefix=prefix, dir="/tmp")
    MADE_DIRS.append(path)
    return path


def remove_made_dirs() -> int:
    """Remove the directories :func:`short_tmpdir` made that are still there; how many."""
    removed = 0
    while MADE_DIRS:
        path = MADE_DIRS.pop()
        if os.path.isdir(path):
            shutil.rmtree(path, ignore_errors=True)
            removed += 1
        elif os.path.lexists(path):
            os.unlink(path)
            removed += 1
    return removed


def wait_for(
    condition: Callable[[], Any], timeout: float = 5.0, interval: float = 0.005, what: str = ""
) -> Any:
    """Poll ``condition`` until it returns a truthy value or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or condition}")
        time.sleep(interval)
        interval = min(interval * 1.5, 0.05)


def connect(path: str, timeout: float = 5.0) -> socket.socket:
    """A blocking Unix socket connected to ``path``, with a timeout on every operation."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    sock.connect(path)
    return sock


class LineReader:
    """Read newline-terminated lines from a blocking socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""

    def line(self) -> bytes:
        """The next line, with its newline; b"" at end of stream."""
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                rest, self.buf = self.buf, b""
                return rest
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        return line + b"\n"

    def frame(self) -> dict[str, Any]:
        """The next line decoded as a JSON object."""
        line = self.line()
        assert line, "connection closed before a response"
        value = msgspec.json.decode(line)
        assert isinstance(value, dict)
        return value

    def at_eof(self) -> bool:
        """Whether the peer closed (EOF or reset) with nothing more to read."""
        try:
            return self.line() == b""
        except ConnectionResetError:
            return True


def serving(path: str, timeout: float = 2.0) -> bool:
    """Whether the whole gateway serves (``status`` answered): a ping alone may be answered
    by the early thread while the daemon still loads (``cli/_early.py``)."""
    try:
        frames = request(
            path, b'{"type":"request","action":"status","request_id":"ready"}\n', timeout
        )
    except OSError:
        return False
    return bool(frames) and frames[0].get("type") == "ack"


def request(path: str, data: bytes, timeout: float = 5.0) -> list[dict[str, Any]]:
    """Send ``data``, half-close, and return every response frame until the server closes."""
    with connect(path, timeout) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        reader = LineReader(sock)
        frames = []
        while True:
            try:
                line = reader.line()
            except ConnectionResetError:
                break
            if not line:
                break
            frames.append(msgspec.json.decode(line))
        return frames


def ping_ok(path: str, timeout: float = 1.0) -> bool:
    """Whether a gateway at ``path`` answers the smoke ping."""
    try:
        with connect(path, timeout) as sock:
            sock.sendall(PING)
            return LineReader(sock).line() == PONG
    except OSError:
        return False


class Gateway:
    """A real ``neocode-gateway`` process listening on ``path``."""

    def __init__(self, path: str, *args: str, env: dict[str, str] | None = None) -> None:
        self.path = path
        self.args = list(args)
        self.env = env
        #: The event log's directory: a fresh temporary one unless ``--data-dir`` is given.
        self.own_data_dir: str | None = None
        if "--data-dir" not in self.args:
            self.own_data_dir = short_tmpdir("ngw-data-")
            self.args += ["--data-dir", self.own_data_dir]
        self.proc: subprocess.Popen[bytes] | None = None
        fd, log_path = tempfile.mkstemp(prefix="ngw-log-", suffix=".log", dir="/tmp")
        os.close(fd)
        MADE_DIRS.append(log_path)
        self.log_path = Path(log_path)

    def start(self, *, wait: bool = True, timeout: float = 10.0, **popen: Any) -> Gateway:
        env = dict(os.environ)
        env.update(self.env or {})
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [*GATEWAY_CMD, "--listen", self.path, *self.args],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log,
                env=env,
                **popen,
            )
        if wait:
            self.wait_ready(timeout)
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def wait_ready(self, timeout: float = 10.0) -> None:
        def ready() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"gateway exited with {self.proc.returncode} before serving: {self.log()}"
                )
            return ping_ok(self.path) and serving(self.path)

        wait_for(ready, timeout, what=f"gateway at {self.path}")

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_log(self, text: str, timeout: float = 5.0) -> str:
        """Wait until the log contains ``text``; return the log."""
        wait_for(lambda: text in self.log(), timeout, what=f"{text!r} in the gateway log")
        return self.log()

    def signal(self, signum: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

    def wait(self, timeout: float = 10.0) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM and wait; returns the exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        """SIGKILL if still running, then reap."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def cleanup(self) -> None:
        """Kill if running; remove the log and the data directory this object created."""
        self.kill()
        self.log_path.unlink(missing_ok=True)
        if self.own_data_dir is not None:
            shutil.rmtree(self.own_data_dir, ignore_errors=True)


def run_cli(*args: str, timeout: float = 20.0, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Run ``neocode-gateway ARGS`` to completion and capture its output."""
    return subprocess.run(
        [*GATEWAY_CMD, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=kwargs.pop("stdin", subprocess.DEVNULL),
        check=False,
        **kwargs,
    )


@contextlib.contextmanager
def gateway_dir() -> Iterator[str]:
    """A temporary directory that is removed afterwards."""
    path = short_tmpdir()
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
