"""The Unix listener's edge cases, in-process, on real sockets and files."""

from __future__ import annotations

import asyncio
import os
import socket

import pytest

from neocode_gateway.errors import AddressError, AlreadyRunning
from neocode_gateway.transport import (
    UnixListener,
    check_path_length,
    create_listener,
    probe_socket,
    read_lock_info,
)


def test_probe_classifies_paths(sock_dir: str) -> None:
    path = f"{sock_dir}/s.sock"
    assert probe_socket(path) == "absent"
    live = socket.socket(socket.AF_UNIX)
    live.bind(path)
    live.listen(1)
    assert probe_socket(path) == "live"
    live.close()
    assert probe_socket(path) == "stale"


def test_probe_of_a_socket_we_may_not_connect_to(sock_dir: str) -> None:
    if os.geteuid() == 0:
        pytest.skip("root connects regardless of permissions")
    path = f"{sock_dir}/s.sock"
    live = socket.socket(socket.AF_UNIX)
    live.bind(path)
    live.listen(1)
    os.chmod(path, 0)
    try:
        with pytest.raises(AddressError, match="cannot check"):
            probe_socket(path)
    finally:
        live.close()


def test_lock_excludes_a_second_listener_and_records_pid(sock_dir: str) -> None:
    first = UnixListener(f"{sock_dir}/gw.sock")
    first.open()
    try:
        info = read_lock_info(first.address)
        assert info is not None
        assert info["pid"] == os.getpid()
        second = UnixListener(f"{sock_dir}/gw.sock")
        with pytest.raises(AlreadyRunning, match="holds the lock"):
            second.open()
        assert os.path.exists(first.address)
        assert first.describe() == {
            "address": first.address,
            "transport": "unix",
            "mode": "0600",
        }
    finally:
        first.release()
        first.release()  # idempotent
    assert not os.path.exists(first.address)
    assert read_lock_info(first.address) is not None  # the lock file stays, unlocked
    again = UnixListener(f"{sock_dir}/gw.sock")
    again.open()
    again.release()


def test_read_lock_info_handles_missing_and_foreign_files(sock_dir: str) -> None:
    assert read_lock_info(f"{sock_dir}/none.sock") is None
    with open(f"{sock_dir}/x.sock.lock", "w") as f:
        f.write("[1, 2]")
    assert read_lock_info(f"{sock_dir}/x.sock") is None
    with open(f"{sock_dir}/y.sock.lock", "w") as f:
        f.write("garbage")
    assert read_lock_info(f"{sock_dir}/y.sock") is None


def test_lock_file_that_is_a_symlink_is_refused(sock_dir: str) -> None:
    os.symlink(f"{sock_dir}/elsewhere", f"{sock_dir}/gw.sock.lock")
    with pytest.raises(AddressError, match="cannot open lock file"):
        UnixListener(f"{sock_dir}/gw.sock").open()
    assert not os.path.exists(f"{sock_dir}/elsewhere")


def test_start_requires_open(sock_dir: str) -> None:
    listener = UnixListener(f"{sock_dir}/gw.sock")

    async def go() -> None:
        await listener.start(asyncio.Protocol)

    with pytest.raises(RuntimeError, match="open"):
        asyncio.run(go())


def test_bind_failure_is_an_address_error(sock_dir: str) -> None:
    os.mkdir(f"{sock_dir}/ro", 0o500)
    listener = UnixListener(f"{sock_dir}/ro/gw.sock")
    if os.geteuid() == 0:
        pytest.skip("root can bind in a read-only directory")
    with pytest.raises(AddressError):
        listener.open()


def test_path_length_limit() -> None:
    check_path_length("/tmp/" + "a" * 100)
    with pytest.raises(AddressError, match="too long"):
        check_path_length("/tmp/" + "a" * 103)


def test_create_listener_picks_unix_for_paths(sock_dir: str) -> None:
    assert isinstance(create_listener(f"{sock_dir}/gw.sock"), UnixListener)
