"""Credential parsers (pure) and the platform dispatch of read_peer_credentials."""

from __future__ import annotations

import socket
import struct

import pytest

from neocode_gateway.errors import PeerCredentialsUnavailable
from neocode_gateway.transport import PeerCredentials, parse_ucred, parse_xucred
from neocode_gateway.transport import read_peer_credentials as read


def xucred(version: int, uid: int, groups: list[int]) -> bytes:
    head = struct.pack("=IIh", version, uid, len(groups))
    head += b"\0" * ((-len(head)) % 4)  # gid_t cr_groups[] is 4-byte aligned
    body = b"".join(struct.pack("=I", g) for g in groups + [0] * (16 - len(groups)))
    return head + body


def test_parse_ucred() -> None:
    assert parse_ucred(struct.pack("=iII", 1234, 1000, 100)) == PeerCredentials(1000, 100, 1234)
    assert parse_ucred(struct.pack("=iII", 0, 0, 0)) == PeerCredentials(0, 0, None)
    with pytest.raises(PeerCredentialsUnavailable, match="4 bytes"):
        parse_ucred(b"\0" * 4)


def test_parse_xucred() -> None:
    assert parse_xucred(xucred(0, 501, [20, 12]), pid=77) == PeerCredentials(501, 20, 77)
    assert parse_xucred(xucred(0, 0, [])) == PeerCredentials(0, None, None)
    with pytest.raises(PeerCredentialsUnavailable, match="xucred version 1"):
        parse_xucred(xucred(1, 501, [20]))
    with pytest.raises(PeerCredentialsUnavailable, match="2 bytes"):
        parse_xucred(b"\0\0")


class FakeSock:
    def __init__(self, answers: dict[tuple[int, int], bytes] | None = None) -> None:
        self.answers = answers or {}

    def getsockopt(self, level: int, optname: int, buflen: int) -> bytes:
        try:
            return self.answers[(level, optname)]
        except KeyError:
            raise OSError(92, "Protocol not available") from None


def test_read_dispatches_by_platform() -> None:
    linux = FakeSock({(socket.SOL_SOCKET, 17): struct.pack("=iII", 5, 6, 7)})
    assert read(linux, "linux") == PeerCredentials(6, 7, 5)
    mac = FakeSock({(0, 1): xucred(0, 501, [20]), (0, 2): struct.pack("=i", 42)})
    assert read(mac, "darwin") == PeerCredentials(501, 20, 42)
    bsd = FakeSock({(0, 1): xucred(0, 1001, [1001])})
    assert read(bsd, "freebsd14") == PeerCredentials(1001, 1001, None)


def test_read_fails_closed() -> None:
    with pytest.raises(PeerCredentialsUnavailable, match="not supported on sunos5"):
        read(FakeSock(), "sunos5")
    with pytest.raises(PeerCredentialsUnavailable, match="cannot read peer credentials"):
        read(FakeSock(), "linux")


def test_real_socketpair_reports_this_process() -> None:
    import os

    a, b = socket.socketpair(socket.AF_UNIX)
    with a, b:
        creds = read(a)
    assert creds.uid == os.geteuid()
    assert creds.pid == os.getpid()
