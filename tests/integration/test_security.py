"""Peer identity and socket-directory rules, with real directories, symlinks and users."""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import socket

import pytest

from neocode_gateway.dispatch import Dispatcher
from neocode_gateway.errors import AddressError, PeerCredentialsUnavailable
from neocode_gateway.server import Server, ServerConfig
from neocode_gateway.transport import PeerCredentials, UnixListener, ensure_socket_dir
from tests.conftest import GatewayFactory
from tests.support import PING, PONG, LineReader, connect, run_cli, short_tmpdir

IS_ROOT = os.geteuid() == 0


def nobody() -> pwd.struct_passwd:
    return pwd.getpwnam("nobody")


def connect_as(user: pwd.struct_passwd, path: str, payload: bytes) -> tuple[str, bytes]:
    """Fork a child that becomes ``user``, connects, sends and reads; report back on a pipe.

    A fork (not an exec) because another user may not be allowed to run this
    virtual environment's interpreter.
    """
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child process
        code = 0
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(user.pw_gid)
            os.setuid(user.pw_uid)
            with socket.socket(socket.AF_UNIX) as sock:
                sock.settimeout(5)
                sock.connect(path)
                try:
                    sock.sendall(payload)
                    data = sock.recv(4096)
                except (BrokenPipeError, ConnectionResetError):
                    data = b""
            os.write(write_end, b"connected " + data)
        except BaseException as exc:
            os.write(write_end, f"failed {exc!r}".encode())
            code = 1
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as reader:
        report = reader.read()
    os.waitpid(pid, 0)
    status, _, data = report.partition(b" ")
    return status.decode(), data


@pytest.mark.skipif(not IS_ROOT, reason="needs root to connect as another user (nobody)")
def test_connection_from_another_uid_is_closed_without_a_response(
    gateway_factory: GatewayFactory, sock_dir: str
) -> None:
    gw = gateway_factory()
    # Make the socket reachable by everyone, as a careless operator might.
    os.chmod(sock_dir, 0o777)
    os.chmod(gw.path, 0o666)
    other = nobody()
    status, data = connect_as(other, gw.path, PING)
    assert status == "connected"
    assert data == b""  # closed without a response
    with connect(gw.path) as owner:
        owner.sendall(PING)
        assert LineReader(owner).line() == PONG
    log = gw.wait_log(f"uid {other.pw_uid} is not uid 0 or root")
    assert "peer pid" in log


def test_fail_closed_when_credentials_cannot_be_read() -> None:
    """A platform without peer credentials refuses connections unless told otherwise."""

    class Blind(UnixListener):
        def peer_credentials(self, transport: asyncio.BaseTransport) -> PeerCredentials:
            raise PeerCredentialsUnavailable("peer credentials are not supported on testos")

    async def attempt(skip: bool) -> bytes:
        directory = short_tmpdir()
        listener = Blind(f"{directory}/gw.sock")
        listener.open()
        server = Server(listener, Dispatcher(), ServerConfig(insecure_skip_peer_check=skip))
        await server.start()
        try:
            reader, writer = await asyncio.open_unix_connection(listener.address)
            writer.write(PING)
            try:
                data = await asyncio.wait_for(reader.readline(), 5)
            except ConnectionError:  # reset, or a broken pipe: it was closed unread
                data = b""
            writer.close()
            return data
        finally:
            await server.shutdown()
            listener.release()
            shutil.rmtree(directory, ignore_errors=True)

    assert asyncio.run(attempt(skip=False)) == b""
    assert asyncio.run(attempt(skip=True)) == PONG


def test_insecure_flag_logs_a_warning(gateway_factory: GatewayFactory) -> None:
    gw = gateway_factory("--insecure-skip-peer-check")
    assert "--insecure-skip-peer-check" in gw.log()


# -- socket directory rules ---------------------------------------------------------


def test_symlinked_directory_is_refused(sock_dir: str) -> None:
    os.mkdir(f"{sock_dir}/real", 0o700)
    os.symlink(f"{sock_dir}/real", f"{sock_dir}/link")
    result = run_cli("--listen", f"{sock_dir}/link/gw.sock")
    assert result.returncode == 1
    assert "is a symlink" in result.stderr
    assert f"{sock_dir}/real" in result.stderr


def test_symlinked_socket_path_is_refused(sock_dir: str) -> None:
    os.symlink("/tmp/elsewhere.sock", f"{sock_dir}/gw.sock")
    result = run_cli("--listen", f"{sock_dir}/gw.sock")
    assert result.returncode == 1
    assert "is a symlink" in result.stderr
    assert os.path.islink(f"{sock_dir}/gw.sock")


@pytest.mark.parametrize("mode", [0o777, 0o770, 0o722])
def test_directory_writable_by_others_without_sticky_bit_is_refused(
    sock_dir: str, mode: int
) -> None:
    os.chmod(sock_dir, mode)
    with pytest.raises(AddressError, match="chmod go-w"):
        ensure_socket_dir(sock_dir)
    assert oct(os.stat(sock_dir).st_mode & 0o7777) == oct(mode)  # never chmod-ed


@pytest.mark.parametrize("mode", [0o1777, 0o755, 0o700, 0o1770])
def test_acceptable_existing_directories(sock_dir: str, mode: int) -> None:
    os.chmod(sock_dir, mode)
    assert ensure_socket_dir(sock_dir) is False
    assert os.stat(sock_dir).st_mode & 0o7777 == mode


@pytest.mark.skipif(not IS_ROOT, reason="needs root to chown a directory to another user")
def test_directory_owned_by_another_user_is_refused(sock_dir: str) -> None:
    os.chown(sock_dir, nobody().pw_uid, nobody().pw_gid)
    with pytest.raises(AddressError, match="owned by uid"):
        ensure_socket_dir(sock_dir)


def test_default_directory_must_be_private() -> None:
    home = short_tmpdir("ngw-home-")
    try:
        run_dir = f"{home}/.neocode/run"
        os.makedirs(run_dir)
        os.chmod(run_dir, 0o755)
        result = run_cli(env=dict(os.environ, HOME=home))
        assert result.returncode == 1
        assert f"fix it with: chmod 700 {run_dir}" in result.stderr
        assert os.stat(run_dir).st_mode & 0o777 == 0o755
        # Non-default directories may be group/other readable.
        assert ensure_socket_dir(run_dir, strict_private=False) is False
        os.chmod(run_dir, 0o700)
        assert ensure_socket_dir(run_dir) is False
    finally:
        shutil.rmtree(home, ignore_errors=True)


def test_parent_component_that_is_a_file(sock_dir: str) -> None:
    open(f"{sock_dir}/file", "w").close()
    with pytest.raises(AddressError, match="not a directory"):
        ensure_socket_dir(f"{sock_dir}/file/sub")


def test_uncreatable_directory(sock_dir: str) -> None:
    if IS_ROOT:
        pytest.skip("root can create directories anywhere")
    os.chmod(sock_dir, 0o500)
    try:
        with pytest.raises(AddressError, match="cannot create"):
            ensure_socket_dir(f"{sock_dir}/sub")
    finally:
        os.chmod(sock_dir, 0o700)


@pytest.mark.skipif(not IS_ROOT, reason="needs root to connect as another user (nobody)")
def test_control_without_the_peer_check_the_other_user_gets_in(
    gateway_factory: GatewayFactory, sock_dir: str
) -> None:
    """The control experiment: the same setup with the check skipped answers nobody."""
    gw = gateway_factory("--insecure-skip-peer-check")
    os.chmod(sock_dir, 0o777)
    os.chmod(gw.path, 0o666)
    assert connect_as(nobody(), gw.path, PING) == ("connected", PONG)
