"""The daemon's process resources: the descriptor limit it needs, and what it uses.

Apart from :mod:`neocode_gateway.cli._daemon` so that module keeps to wiring
the daemon together; these are about the process and the OS.
"""

from __future__ import annotations

import contextlib
import logging
import os

log = logging.getLogger("neocode_gateway")

#: Descriptors the process needs besides one per connection (stdio, listener, lock, loop).
FD_HEADROOM = 32


def ensure_fd_limit(max_connections: int) -> int:
    """Raise RLIMIT_NOFILE's soft limit to what ``max_connections`` needs; return the cap to use.

    If the hard limit is too low the daemon still starts, but with the cap
    lowered to what the descriptors allow, and says so once, clearly: refusing
    a connection over the cap needs no spare descriptor, whereas running out
    of descriptors makes ``accept`` fail in ways each event loop handles
    differently (asyncio retries and logs every second, libuv drops silently).
    """
    try:
        import resource
    except ImportError:  # pragma: no cover - Windows
        return max_connections
    needed = max_connections + FD_HEADROOM
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return max_connections
    usable = max(soft - FD_HEADROOM, 1)
    log.warning(
        "RLIMIT_NOFILE is %d (hard limit %d) but --max-connections %d needs %d descriptors: "
        "serving at most %d connections at once; raise the limit (ulimit -n) or lower "
        "--max-connections",
        soft,
        hard,
        max_connections,
        needed,
        usable,
    )
    return usable


def rss_kb() -> int | None:
    """Resident set size of this process in kB (Linux), for the stats line."""
    try:
        with open("/proc/self/status", "rb") as status:
            for line in status:
                if line.startswith(b"VmRSS:"):
                    return int(line.split()[1])
    except OSError:  # pragma: no cover - not Linux
        pass
    return None  # pragma: no cover


def open_fds() -> int | None:
    """Open file descriptors of this process (Linux), for the stats line."""
    try:
        return len(os.listdir("/proc/self/fd")) - 1  # minus the one listdir used
    except OSError:  # pragma: no cover - not Linux
        return None
