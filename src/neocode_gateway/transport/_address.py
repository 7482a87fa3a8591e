"""Default addresses and address classification (spec section 1)."""

from __future__ import annotations

import os
import sys
from typing import Final

#: Default named pipe on Windows.
DEFAULT_PIPE_ADDRESS: Final = r"\\.\pipe\neocode-gateway"
#: Default socket, relative to the home directory, everywhere else.
DEFAULT_SOCKET_RELPATH: Final = os.path.join(".neocode", "run", "gateway.sock")
#: ``sun_path`` holds 108 bytes on Linux (104 on macOS/BSD) including the NUL.
MAX_UNIX_PATH_BYTES: Final = 107 if sys.platform.startswith("linux") else 103
PIPE_PREFIX: Final = "\\\\.\\pipe\\"


def is_pipe_address(address: str) -> bool:
    r"""Whether ``address`` names a Windows named pipe (``\\.\pipe\NAME``)."""
    return address.lower().startswith(PIPE_PREFIX)


def default_socket_dir() -> str:
    """``~/.neocode/run``: the directory of the default socket."""
    return os.path.dirname(default_address(platform="posix"))


def default_address(platform: str | None = None) -> str:
    """The address the gateway listens on and the client dials when none is given."""
    platform = platform or ("windows" if sys.platform == "win32" else "posix")
    if platform == "windows":
        return DEFAULT_PIPE_ADDRESS
    return os.path.join(os.path.expanduser("~"), DEFAULT_SOCKET_RELPATH)
