"""Peer credentials of a connected Unix socket: who is on the other end.

Parsers are pure functions over the raw option bytes so they are tested on
every platform; :func:`read_peer_credentials` calls ``getsockopt`` with the
option this platform has.
"""

from __future__ import annotations

import socket
import struct
import sys
from typing import Final, NamedTuple, Protocol

from neocode_gateway.errors import PeerCredentialsUnavailable

# Linux: struct ucred { pid_t pid; uid_t uid; gid_t gid; }
_UCRED: Final = struct.Struct("=iII")
# macOS/FreeBSD: struct xucred { u_int cr_version; uid_t cr_uid; short cr_ngroups;
#                                gid_t cr_groups[16]; ... }
_XUCRED_HEAD: Final = struct.Struct("=IIh")
XUCRED_VERSION: Final = 0
SOL_LOCAL: Final = 0
LOCAL_PEERCRED: Final = 0x001
LOCAL_PEERPID: Final = 0x002
_XUCRED_SIZE: Final = 76  # enough for the header and 16 groups, with padding
_SO_PEERCRED: Final = getattr(socket, "SO_PEERCRED", 17)


class PeerCredentials(NamedTuple):
    """The connecting process: ``pid`` may be ``None`` where the platform hides it.

    A NamedTuple (not a frozen dataclass) because one is built per accepted
    connection, and a tuple is several times cheaper to create.
    """

    uid: int
    gid: int | None
    pid: int | None


class _SockOpt(Protocol):
    def getsockopt(self, level: int, optname: int, buflen: int) -> bytes: ...


def parse_ucred(raw: bytes) -> PeerCredentials:
    """Parse Linux ``SO_PEERCRED`` bytes."""
    if len(raw) < _UCRED.size:
        raise PeerCredentialsUnavailable(f"SO_PEERCRED returned {len(raw)} bytes")
    pid, uid, gid = _UCRED.unpack_from(raw)
    return PeerCredentials(uid, gid, pid or None)


def parse_xucred(raw: bytes, pid: int | None = None) -> PeerCredentials:
    """Parse BSD/macOS ``LOCAL_PEERCRED`` bytes (``struct xucred``, version 0)."""
    if len(raw) < _XUCRED_HEAD.size:
        raise PeerCredentialsUnavailable(f"LOCAL_PEERCRED returned {len(raw)} bytes")
    version, uid, ngroups = _XUCRED_HEAD.unpack_from(raw)
    if version != XUCRED_VERSION:
        raise PeerCredentialsUnavailable(f"unknown xucred version {version}")
    gid: int | None = None
    if ngroups > 0:
        # cr_groups starts at the next 4-byte boundary after the short.
        offset = (_XUCRED_HEAD.size + 3) & ~3
        if len(raw) >= offset + 4:
            (gid,) = struct.unpack_from("=I", raw, offset)
    return PeerCredentials(uid=uid, gid=gid, pid=pid)


def read_peer_credentials(sock: _SockOpt, platform: str = sys.platform) -> PeerCredentials:
    """Read the peer's credentials from a connected Unix socket.

    Raises :class:`PeerCredentialsUnavailable` where the platform has no way to
    tell (the caller then fails closed unless told otherwise).
    """
    try:
        if platform.startswith("linux"):
            return parse_ucred(sock.getsockopt(socket.SOL_SOCKET, _SO_PEERCRED, _UCRED.size))
        if platform == "darwin" or platform.startswith(("freebsd", "dragonfly")):
            raw = sock.getsockopt(SOL_LOCAL, LOCAL_PEERCRED, _XUCRED_SIZE)
            pid: int | None = None
            if platform == "darwin":
                pid = struct.unpack("=i", sock.getsockopt(SOL_LOCAL, LOCAL_PEERPID, 4))[0]
            return parse_xucred(raw, pid)
    except OSError as exc:
        raise PeerCredentialsUnavailable(f"cannot read peer credentials: {exc}") from exc
    raise PeerCredentialsUnavailable(f"peer credentials are not supported on {platform}")
