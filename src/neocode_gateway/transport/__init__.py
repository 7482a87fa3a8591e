"""Local IPC endpoints: Unix sockets (and named pipes on Windows), addresses, peer identity."""

from __future__ import annotations

from neocode_gateway.transport._address import (
    DEFAULT_PIPE_ADDRESS,
    MAX_UNIX_PATH_BYTES,
    default_address,
    default_socket_dir,
    is_pipe_address,
)
from neocode_gateway.transport._base import Listener, ProtocolFactory
from neocode_gateway.transport._peercred import (
    PeerCredentials,
    parse_ucred,
    parse_xucred,
    read_peer_credentials,
)
from neocode_gateway.transport._unix import (
    UnixListener,
    check_path_length,
    ensure_socket_dir,
    probe_socket,
    read_lock_info,
)


def create_listener(address: str, *, max_connections: int = 128) -> Listener:
    """The listener for ``address``: a named pipe on Windows, a Unix socket elsewhere."""
    if is_pipe_address(address):
        from neocode_gateway.transport._windows import create_pipe_listener

        # One instance more than the cap, so that the extra client is admitted and
        # closed by the server (as on Unix) instead of waiting for a free instance.
        return create_pipe_listener(address, max_instances=max_connections + 1)
    return UnixListener(address)


__all__ = [
    "DEFAULT_PIPE_ADDRESS",
    "MAX_UNIX_PATH_BYTES",
    "Listener",
    "PeerCredentials",
    "ProtocolFactory",
    "UnixListener",
    "check_path_length",
    "create_listener",
    "default_address",
    "default_socket_dir",
    "ensure_socket_dir",
    "is_pipe_address",
    "probe_socket",
    "read_lock_info",
    "parse_ucred",
    "parse_xucred",
    "read_peer_credentials",
]
