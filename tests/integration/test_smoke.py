"""The seed's smoke test against a real daemon process."""

from __future__ import annotations

import socket

from tests.support import PING, PONG, Gateway, LineReader, connect


def test_smoke_ping_gets_exact_ack(gateway: Gateway) -> None:
    with connect(gateway.path) as sock:
        sock.sendall(PING)
        assert LineReader(sock).line() == PONG


def test_stop_removes_socket_and_exits_zero(gateway: Gateway) -> None:
    import os

    assert os.path.exists(gateway.path)
    assert gateway.stop() == 0
    assert not os.path.exists(gateway.path)
    log = gateway.log()
    assert "listening on" in log
    assert f"pid {gateway.pid}" in log
    assert isinstance(socket.AF_UNIX, int)
