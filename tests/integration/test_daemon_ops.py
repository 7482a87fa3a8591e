"""Operating the daemon: event loops, stats, descriptor limits, configuration errors."""

from __future__ import annotations

import json
import os
import resource
import signal
import sys

import pytest

from neocode_gateway.cli import _daemon, main
from neocode_gateway.errors import ConfigError
from neocode_gateway.server import ServerConfig
from tests.conftest import GatewayFactory
from tests.support import Gateway, LineReader, connect, ping_ok, wait_for


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_both_event_loops_serve(gateway_factory: GatewayFactory, loop: str) -> None:
    gw = gateway_factory("--loop", loop)
    assert f"loop {loop}," in gw.wait_log(f"loop {loop},")
    assert ping_ok(gw.path)


def test_sigusr1_logs_stats(gateway: Gateway) -> None:
    assert ping_ok(gateway.path)
    gateway.signal(signal.SIGUSR1)
    log = gateway.wait_log(" stats {")
    stats = json.loads(log.split(" stats ", 1)[1].splitlines()[0])
    assert stats["accepted"] >= 1
    assert stats["connections"] == 0 or stats["connections"] == 1
    assert stats["fds"] > 0
    assert stats["rss_kb"] > 0
    assert stats["tasks"] >= 1


def test_low_descriptor_limit_is_reported_and_the_daemon_still_serves(sock_path: str) -> None:
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))

    gw = Gateway(sock_path).start(preexec_fn=limit)
    try:
        log = gw.log()
        assert "RLIMIT_NOFILE is 64 (hard limit 64)" in log
        assert "--max-connections 128 needs 160 descriptors" in log
        assert "serving at most 32 connections at once" in log
        assert ping_ok(gw.path)
    finally:
        gw.stop()
        gw.log_path.unlink(missing_ok=True)


def test_soft_limit_is_raised_to_what_the_cap_needs(sock_path: str) -> None:
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, 4096))

    gw = Gateway(sock_path, "--max-connections", "1000").start(preexec_fn=limit)
    try:
        assert "RLIMIT_NOFILE" not in gw.log()
        soft = _soft_limit_of(gw.pid)
        assert soft == 1032
    finally:
        gw.stop()
        gw.log_path.unlink(missing_ok=True)


def _soft_limit_of(pid: int) -> int:
    with open(f"/proc/{pid}/limits") as limits:
        for line in limits:
            if line.startswith("Max open files"):
                return int(line.split()[3])
    raise AssertionError("no descriptor limit in /proc")


def test_loop_factory_without_uvloop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)
    assert _daemon.loop_factory("auto") is None
    assert _daemon.loop_factory("asyncio") is None
    with pytest.raises(ConfigError, match="uvloop is not installed"):
        _daemon.loop_factory("uvloop")


def test_missing_uvloop_is_a_usage_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], sock_path: str
) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)
    assert main(["--listen", sock_path, "--loop", "uvloop"]) == 2
    assert "uvloop is not installed" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_connections": 0}, "max_connections"),
        ({"max_frame_bytes": 0}, "max_frame_bytes"),
        ({"read_timeout": 0.0}, "read_timeout"),
        ({"write_timeout": float("inf")}, "write_timeout"),
        ({"shutdown_grace": -1.0}, "shutdown_grace"),
    ],
)
def test_server_config_validates(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ServerConfig(**kwargs)  # type: ignore[arg-type]


def test_serve_subcommand_is_the_default(gateway_factory: GatewayFactory, sock_path: str) -> None:
    from tests.support import run_cli

    result = run_cli("serve", "--help")
    assert result.returncode == 0
    assert "--max-connections" in result.stdout


def test_requests_sent_while_the_daemon_loads_are_answered_in_order(sock_path: str) -> None:
    """The first pings are answered by the early thread; what it does not answer is the
    full gateway's, on the same connection, in request order, once it has loaded."""
    gw = Gateway(sock_path)
    try:
        gw.start(wait=False)
        wait_for(lambda: os.path.exists(sock_path), 10, what="the socket")
        sock = connect(sock_path, 10)
        reader = LineReader(sock)
        sock.sendall(
            b'{"type":"request","action":"ping","request_id":"p1"}\n'
            b'{"type":"request","action":"status","request_id":"s1"}\n'
            b'{"type":"request","action":"ping","request_id":"p2"}\n'
        )
        answers = [reader.frame() for _ in range(3)]
        assert [a["request_id"] for a in answers] == ["p1", "s1", "p2"]
        assert answers[0]["payload"] == {"message": "pong"}
        assert answers[1]["payload"]["pid"] == gw.pid
        sock.close()
        assert gw.stop(10) == 0
    finally:
        gw.cleanup()


def test_a_stop_while_the_daemon_loads_is_kept(sock_path: str) -> None:
    gw = Gateway(sock_path)
    try:
        gw.start(wait=False)
        wait_for(lambda: ping_ok(sock_path), 10, what="the first pong")
        gw.signal(signal.SIGTERM)
        assert gw.wait(10) == 0
        assert not os.path.exists(sock_path)
    finally:
        gw.cleanup()
