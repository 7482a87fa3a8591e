"""Connection cap, read and write deadlines, against a real daemon process."""

from __future__ import annotations

import contextlib
import socket
import time

from tests.conftest import GatewayFactory
from tests.support import PING, PONG, LineReader, connect, wait_for


def test_129th_connection_is_closed_while_128_are_answered(
    gateway_factory: GatewayFactory,
) -> None:
    gw = gateway_factory()
    socks = [connect(gw.path) for _ in range(128)]
    try:
        # Make sure all 128 are admitted before the extra one arrives.
        for sock in socks:
            sock.sendall(PING)
            assert LineReader(sock).line() == PONG
        with connect(gw.path) as extra:
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                extra.sendall(PING)
            assert LineReader(extra).at_eof()
        for sock in socks:
            sock.sendall(PING)
            assert LineReader(sock).line() == PONG
        gw.wait_log("limit of 128 concurrent connections reached")
    finally:
        for sock in socks:
            sock.close()
    # Slots free up again once clients leave.
    wait_for(lambda: _ping(gw.path), what="a slot after the 128 clients left")


def _ping(path: str) -> bool:
    try:
        with connect(path, 1) as sock:
            sock.sendall(PING)
            return LineReader(sock).line() == PONG
    except OSError:
        return False


def test_small_cap_and_log_is_rate_limited(gateway_factory: GatewayFactory) -> None:
    gw = gateway_factory("--max-connections", "1")
    with connect(gw.path) as first:
        first.sendall(PING)
        assert LineReader(first).line() == PONG
        for _ in range(20):
            with connect(gw.path) as extra:
                assert LineReader(extra).at_eof()
        first.sendall(PING)
        assert LineReader(first).line() == PONG
    log = gw.log()
    assert 1 <= log.count("concurrent connections reached") < 20


def test_read_timeout_cuts_an_idle_client(gateway_factory: GatewayFactory) -> None:
    gw = gateway_factory("--read-timeout", "0.3")
    with connect(gw.path) as sock:
        start = time.monotonic()
        assert LineReader(sock).at_eof()
        elapsed = time.monotonic() - start
    assert 0.25 <= elapsed < 2.0


def test_read_deadline_is_per_frame_so_trickling_is_cut(gateway_factory: GatewayFactory) -> None:
    gw = gateway_factory("--read-timeout", "0.5")
    with connect(gw.path) as sock:
        sock.sendall(PING)
        reader = LineReader(sock)
        assert reader.line() == PONG
        start = time.monotonic()
        closed = False
        # Trickle one byte every 50 ms: the frame never completes within 0.5 s.
        for byte in b'{"type":"request","action":"ping","request_id":"slow-and-long"}':
            try:
                sock.sendall(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            sock.settimeout(0.05)
            try:
                if sock.recv(1) == b"":
                    closed = True
                    break
            except TimeoutError:
                pass
        assert closed
        assert 0.4 <= time.monotonic() - start < 2.0


def test_active_client_is_not_cut(gateway_factory: GatewayFactory) -> None:
    gw = gateway_factory("--read-timeout", "0.4")
    with connect(gw.path) as sock:
        reader = LineReader(sock)
        end = time.monotonic() + 1.2
        while time.monotonic() < end:
            sock.sendall(PING)
            assert reader.line() == PONG


def test_write_timeout_aborts_a_client_that_does_not_read(
    gateway_factory: GatewayFactory,
) -> None:
    gw = gateway_factory("--write-timeout", "0.5", "--read-timeout", "30")
    with connect(gw.path) as lazy:
        lazy.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        lazy.settimeout(0.2)
        burst = PING * 1000
        sent_until = time.monotonic() + 10
        stalled_at = None
        while time.monotonic() < sent_until:
            try:
                lazy.sendall(burst)
            except TimeoutError:
                stalled_at = stalled_at or time.monotonic()  # the server stopped reading us
                if time.monotonic() - stalled_at > 5:
                    break
            except (BrokenPipeError, ConnectionResetError):
                break
        else:
            raise AssertionError("the server never stopped reading a client that does not read")
        # Meanwhile another client is served normally.
        assert _ping(gw.path)
        lazy.settimeout(5)
        reader = LineReader(lazy)
        end = time.monotonic() + 5
        while time.monotonic() < end:
            try:
                if reader.line() == b"":
                    break
            except ConnectionResetError:
                break
        else:
            raise AssertionError("lazy client was not aborted")
    gw.wait_log("did not read its responses in time")
