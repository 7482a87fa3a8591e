"""Start, stop and the socket's safety rules, against real daemon processes."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import time

import pytest

from tests.conftest import GatewayFactory
from tests.support import (
    GATEWAY_CMD,
    PING,
    PONG,
    Gateway,
    LineReader,
    connect,
    ping_ok,
    run_cli,
    short_tmpdir,
    wait_for,
)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_graceful_stop_with_idle_and_active_clients(
    gateway_factory: GatewayFactory, signum: int
) -> None:
    gw = gateway_factory()
    idle = connect(gw.path)
    active = connect(gw.path)
    try:
        active.sendall(PING)
        reader = LineReader(active)
        assert reader.line() == PONG
        # Pipelined requests already written when the signal arrives are answered.
        active.sendall(PING * 50)
        assert reader.line() == PONG
        start = time.monotonic()
        gw.signal(signum)
        assert gw.wait(5) == 0
        assert time.monotonic() - start < 5
        assert LineReader(idle).at_eof()
        rest = 1
        while reader.line() == PONG:
            rest += 1
        assert rest == 50
    finally:
        idle.close()
        active.close()
    assert not os.path.exists(gw.path)
    assert "shutting down" in gw.log()


def test_restart_after_kill_9_removes_the_stale_socket(gateway_factory: GatewayFactory) -> None:
    first = gateway_factory()
    first.kill()
    assert stat.S_ISSOCK(os.lstat(first.path).st_mode)  # left behind
    second = gateway_factory()
    assert ping_ok(second.path)


def test_second_gateway_exits_3_and_first_keeps_serving(gateway: Gateway) -> None:
    inode = os.stat(gateway.path).st_ino
    result = run_cli("--listen", gateway.path)
    assert result.returncode == 3
    assert f"already running at {gateway.path}" in result.stderr
    assert "Traceback" not in result.stderr
    assert os.stat(gateway.path).st_ino == inode
    assert ping_ok(gateway.path)


def test_live_socket_without_lock_is_not_stolen(sock_dir: str) -> None:
    """A live server that is not holding our lock (say the Go gateway) is left alone."""
    import socket as socketlib

    path = f"{sock_dir}/other.sock"
    other = socketlib.socket(socketlib.AF_UNIX)
    other.bind(path)
    other.listen(8)
    try:
        result = run_cli("--listen", path)
        assert result.returncode == 3
        assert "already running" in result.stderr
        assert os.path.exists(path)
    finally:
        other.close()


def test_twenty_concurrent_starts_exactly_one_serves(sock_path: str) -> None:
    procs = [
        subprocess.Popen(
            [*GATEWAY_CMD, "--listen", sock_path],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
        )
        for _ in range(20)
    ]
    try:
        wait_for(
            lambda: sum(p.poll() is not None for p in procs) >= 19,
            timeout=30,
            what="19 of 20 gateways to exit",
        )
        codes = [p.poll() for p in procs]
        assert codes.count(3) == 19
        assert codes.count(None) == 1
        assert ping_ok(sock_path)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                assert proc.wait(10) == 0
            assert proc.stderr is not None
            proc.stderr.close()


def test_new_directory_is_0700_and_socket_0600(sock_dir: str) -> None:
    path = f"{sock_dir}/a/gw.sock"
    gw = Gateway(path).start()
    try:
        assert stat.S_IMODE(os.stat(f"{sock_dir}/a").st_mode) == 0o700
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        assert stat.S_ISSOCK(os.lstat(path).st_mode)
    finally:
        gw.stop()
        gw.cleanup()


def test_only_the_socket_directory_is_created(sock_dir: str) -> None:
    """Issue 12: ``--listen /a/b/c/x.sock`` used to create the whole chain."""
    path = f"{sock_dir}/a/b/gw.sock"
    gw = Gateway(path).start(wait=False)
    try:
        assert gw.wait(10) == 1
        assert f"its parent {sock_dir}/a does not exist" in gw.log()
        assert "Traceback" not in gw.log()
        assert not os.path.exists(f"{sock_dir}/a")
    finally:
        gw.cleanup()


def test_existing_directory_mode_is_not_changed(sock_dir: str) -> None:
    os.chmod(sock_dir, 0o1777)
    gw = Gateway(f"{sock_dir}/gw.sock").start()
    try:
        assert stat.S_IMODE(os.stat(sock_dir).st_mode) == 0o1777
        assert stat.S_IMODE(os.stat(gw.path).st_mode) == 0o600
    finally:
        gw.stop()
        gw.log_path.unlink(missing_ok=True)
        os.chmod(sock_dir, 0o700)


def test_path_that_is_not_a_socket_is_refused(sock_dir: str) -> None:
    path = f"{sock_dir}/file"
    with open(path, "w") as f:
        f.write("keep me")
    result = run_cli("--listen", path)
    assert result.returncode == 1
    assert "exists and is not a socket" in result.stderr
    with open(path) as f:
        assert f.read() == "keep me"


def test_parent_that_is_not_a_directory_is_refused(sock_dir: str) -> None:
    open(f"{sock_dir}/plain", "w").close()
    result = run_cli("--listen", f"{sock_dir}/plain/gw.sock")
    assert result.returncode == 1
    assert "not a directory" in result.stderr
    assert result.stderr.count("\n") == 1


def test_too_long_path_is_refused_clearly() -> None:
    result = run_cli("--listen", "/tmp/" + "x" * 200 + "/gw.sock")
    assert result.returncode == 1
    assert "socket path is too long" in result.stderr
    assert "Traceback" not in result.stderr


def test_shutdown_removes_only_our_own_socket(sock_dir: str) -> None:
    path = f"{sock_dir}/gw.sock"
    gw = Gateway(path).start()
    try:
        os.rename(path, f"{sock_dir}/moved.sock")
        # A successor's file at the same path must survive our shutdown.
        with open(path, "w") as f:
            f.write("successor")
        assert gw.stop() == 0
        assert os.path.exists(path)
    finally:
        gw.kill()
        gw.log_path.unlink(missing_ok=True)


def test_default_address_is_used_without_listen() -> None:
    home = short_tmpdir("ngw-home-")
    env = dict(os.environ, HOME=home)
    proc = subprocess.Popen(
        GATEWAY_CMD,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    path = f"{home}/.neocode/run/gateway.sock"
    try:
        deadline = time.monotonic() + 10
        while not ping_ok(path):
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert stat.S_IMODE(os.stat(f"{home}/.neocode/run").st_mode) == 0o700
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
        assert proc.stderr is not None
        assert f"listening on {path}" in proc.stderr.read().decode()
        import shutil

        shutil.rmtree(home, ignore_errors=True)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--max-connections", "0"], "--max-connections"),
        (["--max-connections", "ten"], "--max-connections"),
        (["--read-timeout", "-1"], "--read-timeout"),
        (["--write-timeout", "nan"], "--write-timeout"),
        (["--max-frame-bytes", "1.5"], "--max-frame-bytes"),
        (["--log-level", "loud"], "--log-level"),
        (["--listen", ""], "--listen"),
        (["--bogus"], "--bogus"),
        (["bogus"], "unknown command 'bogus'"),
    ],
)
def test_bad_flag_values_print_one_line_and_exit_2(args: list[str], needle: str) -> None:
    result = run_cli(*args)
    assert result.returncode == 2
    assert needle in result.stderr
    assert result.stderr.count("\n") == 1
    assert "Traceback" not in result.stderr


def test_help_and_version() -> None:
    result = run_cli("--help")
    assert result.returncode == 0
    for flag in [
        "--listen",
        "--log-level",
        "--max-connections",
        "--read-timeout",
        "--write-timeout",
        "--max-frame-bytes",
        "--version",
    ]:
        assert flag in result.stdout
    version = run_cli("--version")
    assert version.returncode == 0
    assert version.stdout.startswith("neocode-gateway ")


def test_log_level_warn_hides_the_start_line(gateway_factory: GatewayFactory) -> None:
    gw = gateway_factory("--log-level", "warn")
    assert "listening on" not in gw.log()
