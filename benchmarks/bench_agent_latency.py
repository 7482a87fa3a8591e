"""What the gateway adds between an ACP agent and a client, and what 8 live sessions cost it.

Usage (from the repository root)::

    .venv/bin/python -m benchmarks.bench_agent_latency [--ticks 1000] [--reps 3]
        [--sessions 8] [--memory-agent fake|claude|codex]

* ``latency``: the scripted agent (``tests/agents/fake_acp_agent.py``) sends
  ``--ticks`` message chunks 10 ms apart, each carrying ``time.monotonic()`` at
  the moment it was written (CLOCK_MONOTONIC is one clock for every process on
  the machine). Measured twice in the same run:

  - ``direct`` (the limit): this script is the agent's only client, speaking
    JSON-RPC on the agent's stdio itself: the cost of the pipe and of the
    agent's own writing;
  - ``gateway``: the same agent behind a real gateway daemon (``--agent``), a
    client reading ``event`` frames on the Unix socket: the pipe, the ACP
    bridge, the durable commit to SQLite, fan-out and the socket.

  The difference is what the gateway adds; the ratio is reported too.
* ``memory``: the gateway daemon's own resident memory (its process only, not
  the agents') at rest, with the agent started, and after ``--sessions`` live
  sessions (one short run each); with ``--memory-agent claude`` or ``codex``
  the real adapters run against a mock model API on 127.0.0.1 (installed with
  npm into ``.cache/agents`` as the tests do), and their process trees are
  measured beside it.

Bounded in count and time; loopback and Unix sockets only.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec

ROOT = Path(__file__).resolve().parents[1]
FAKE_AGENT = [sys.executable, str(ROOT / "tests" / "agents" / "fake_acp_agent.py")]
GATEWAY = [sys.executable, "-m", "neocode_gateway"]
STEP_TIMEOUT = 120.0


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status", "rb") as status:
        for line in status:
            if line.startswith(b"VmRSS:"):
                return int(line.split()[1])
    return 0


def summary(samples: list[float]) -> dict[str, float]:
    samples = sorted(samples)
    return {
        "samples": len(samples),
        "p50_ms": round(statistics.median(samples), 3),
        "p99_ms": round(samples[min(len(samples) - 1, int(len(samples) * 0.99))], 3),
        "max_ms": round(samples[-1], 3),
    }


def stamp_latency(text: str, now: float, samples: list[float]) -> None:
    if text.startswith("t="):
        samples.append((now - float(text[2:])) * 1000)


# -- direct: this script is the agent's client ------------------------------------------------


def direct(ticks: int, workdir: str) -> dict[str, float]:
    agent = subprocess.Popen(
        FAKE_AGENT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    assert agent.stdin is not None
    assert agent.stdout is not None
    ids = iter(range(1, 1_000_000))

    def call(method: str, params: dict[str, Any]) -> int:
        request_id = next(ids)
        frame = {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}
        agent.stdin.write(msgspec.json.encode(frame) + b"\n")  # type: ignore[union-attr]
        agent.stdin.flush()  # type: ignore[union-attr]
        return request_id

    def until(request_id: int, samples: list[float] | None = None) -> dict[str, Any]:
        deadline = time.monotonic() + STEP_TIMEOUT
        while time.monotonic() < deadline:
            line = agent.stdout.readline()  # type: ignore[union-attr]
            now = time.monotonic()
            if not line:
                raise SystemExit("the fake agent exited")
            message = msgspec.json.decode(line)
            if message.get("id") == request_id and "method" not in message:
                return dict(message.get("result") or {})
            if samples is not None and message.get("method") == "session/update":
                content = message["params"]["update"].get("content") or {}
                stamp_latency(str(content.get("text", "")), now, samples)
        raise SystemExit(f"no answer to request {request_id}")

    try:
        until(call("initialize", {"protocolVersion": 1, "clientCapabilities": {}}))
        session = until(call("session/new", {"cwd": workdir, "mcpServers": []}))["sessionId"]
        samples: list[float] = []
        prompt = [{"type": "text", "text": f"/tick {ticks}"}]
        until(call("session/prompt", {"sessionId": session, "prompt": prompt}), samples)
    finally:
        agent.stdin.close()
        try:
            agent.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(agent.pid, signal.SIGKILL)
            agent.wait()
    return summary(samples)


# -- through a gateway daemon -------------------------------------------------------------------


class Daemon:
    def __init__(self, scratch: str, *flags: str) -> None:
        self.path = f"{scratch}/gw.sock"
        env = dict(os.environ)
        env.pop("IS_SANDBOX", None)  # as root, it makes Claude Code refuse to start
        self.proc = subprocess.Popen(
            [
                *GATEWAY,
                "--listen",
                self.path,
                "--data-dir",
                f"{scratch}/data",
                "--workdir",
                scratch,
                "--log-level",
                "warn",
                *flags,
            ],
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX) as sock:
                sock.connect(self.path)
                return
            time.sleep(0.01)
        raise SystemExit("the gateway did not start")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


class Client:
    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(path)
        self.sock.settimeout(STEP_TIMEOUT)
        self.buf = b""

    def frame(self) -> tuple[dict[str, Any], float]:
        while b"\n" not in self.buf:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise SystemExit("the gateway closed the connection")
            self.buf += chunk
        now = time.monotonic()
        line, _, self.buf = self.buf.partition(b"\n")
        return msgspec.json.decode(line), now

    def run(self, text: str, request_id: str, samples: list[float] | None = None) -> str:
        """One run in a new session, to its end; its session id."""
        frame = {"type": "request", "action": "run", "request_id": request_id, "input_text": text}
        self.sock.sendall(msgspec.json.encode(frame) + b"\n")
        session = ""
        while True:
            message, now = self.frame()
            if message.get("type") == "error":
                raise SystemExit(f"run refused: {message}")
            if message.get("type") == "ack":
                session = str(message.get("session_id"))
                continue
            payload = message.get("payload") or {}
            data = payload.get("data") or {}
            if payload.get("event_type") == "run_error":
                raise SystemExit(f"run failed: {data}")
            if payload.get("event_type") == "run_done" and message.get("run_id") == request_id:
                return session
            if samples is not None and data.get("kind") == "message_chunk":
                stamp_latency(str(data.get("text", "")), now, samples)

    def close(self) -> None:
        self.sock.close()


def fake_flags() -> list[str]:
    return ["--agent", "fake=" + shlex.join(FAKE_AGENT), "--runtime", "fake"]


def through_gateway(ticks: int) -> dict[str, float]:
    scratch = tempfile.mkdtemp(prefix="ngw-lat-", dir="/tmp")
    daemon = Daemon(scratch, *fake_flags())
    try:
        client = Client(daemon.path)
        client.run("warm up", "w")
        samples: list[float] = []
        client.run(f"/tick {ticks}", "t", samples)
        client.close()
        return summary(samples)
    finally:
        daemon.stop()
        shutil.rmtree(scratch, ignore_errors=True)


# -- memory -----------------------------------------------------------------------------------


@contextlib.contextmanager
def memory_agent(name: str, scratch: str) -> Iterator[list[str]]:
    """The daemon flags that put agent ``name`` behind it (a mock model API for real ones)."""
    if name == "fake":
        yield fake_flags()
        return
    from tests.agents import mock_anthropic, mock_openai
    from tests.agents.real import claude_setup, codex_setup, installed_agents

    try:
        bin_dir = installed_agents()
    except BaseException as exc:  # pytest's skip/fail outside pytest
        raise SystemExit(f"cannot install the real agents: {exc}") from None
    start_mock, make = {
        "claude": (mock_anthropic.start, claude_setup),
        "codex": (mock_openai.start, codex_setup),
    }[name]
    mock = start_mock(0)
    try:
        setup = make(bin_dir, Path(scratch, "home"), mock.url)
        config = Path(scratch, "gateway.toml")
        config.write_text(setup.toml())
        yield ["--config", str(config), "--runtime", name]
    finally:
        mock.stop()


def tree_rss_kb(pid: int) -> int:
    """RSS of every descendant of ``pid`` (the agents), summed."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                stat = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
                children.setdefault(int(stat[1]), []).append(int(entry))
    total, todo = 0, list(children.get(pid, []))
    while todo:
        child = todo.pop()
        with contextlib.suppress(OSError):
            total += rss_kb(child)
        todo.extend(children.get(child, []))
    return total


def memory(agent: str, sessions: int) -> dict[str, Any]:
    scratch = tempfile.mkdtemp(prefix="ngw-mem-", dir="/tmp")
    try:
        with memory_agent(agent, scratch) as flags:
            daemon = Daemon(scratch, *flags)
            try:
                at_rest = rss_kb(daemon.proc.pid)
                client = Client(daemon.path)
                by_sessions = []
                for n in range(sessions):
                    client.run("hello", f"m{n}")
                    by_sessions.append(rss_kb(daemon.proc.pid))
                agents = tree_rss_kb(daemon.proc.pid)
                client.close()
            finally:
                daemon.stop()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return {
        "agent": agent,
        "gateway_rss_mib_at_rest": round(at_rest / 1024, 1),
        "gateway_rss_mib_by_sessions": [round(kb / 1024, 1) for kb in by_sessions],
        "agents_rss_mib": round(agents / 1024),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ticks", type=int, default=1000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--sessions", type=int, default=8)
    parser.add_argument("--memory-agent", choices=("fake", "claude", "codex"), default="fake")
    options = parser.parse_args()
    workdir = tempfile.mkdtemp(prefix="ngw-direct-", dir="/tmp")
    try:
        rows: dict[str, list[dict[str, float]]] = {"direct": [], "gateway": []}
        for _ in range(options.reps):
            rows["direct"].append(direct(options.ticks, workdir))
            rows["gateway"].append(through_gateway(options.ticks))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    result: dict[str, Any] = {"bench": "agent_latency", "ticks": options.ticks}
    for name, reps in rows.items():
        result[name] = {
            key: round(statistics.median(r[key] for r in reps), 3)
            for key in ("p50_ms", "p99_ms", "max_ms")
        }
    for key in ("p50_ms", "p99_ms"):
        added = result["gateway"][key] - result["direct"][key]
        result.setdefault("added", {})[key] = round(added, 3)
        result.setdefault("ratio", {})[key] = round(
            result["gateway"][key] / max(result["direct"][key], 1e-6), 2
        )
    print(
        f"agent update -> client, {options.ticks} chunks, median of {options.reps}:\n"
        f"  direct (limit): p50 {result['direct']['p50_ms']} ms, "
        f"p99 {result['direct']['p99_ms']} ms\n"
        f"  via gateway:    p50 {result['gateway']['p50_ms']} ms, "
        f"p99 {result['gateway']['p99_ms']} ms "
        f"({result['ratio']['p50_ms']}x / {result['ratio']['p99_ms']}x)\n"
        f"  added:          p50 {result['added']['p50_ms']} ms, p99 {result['added']['p99_ms']} ms"
    )
    result["memory"] = memory(options.memory_agent, options.sessions)
    mem = result["memory"]
    print(
        f"gateway RSS with the {mem['agent']} agent: at rest {mem['gateway_rss_mib_at_rest']} MiB, "
        f"with 1..{options.sessions} live sessions {mem['gateway_rss_mib_by_sessions']} MiB; "
        f"the agents' processes {mem['agents_rss_mib']} MiB"
    )
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
