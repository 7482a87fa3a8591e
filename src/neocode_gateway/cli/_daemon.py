"""``neocode-gateway [serve]``: run the gateway in the foreground.

``main(argv)`` → options → :class:`ServerConfig` → listener → :class:`Server`,
as uvicorn does; signal handlers are installed for the daemon's life and
removed on the way out.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import os
import signal
import sys
from collections.abc import Callable
from typing import Any

import msgspec

from neocode_gateway import __version__
from neocode_gateway.cli._common import (
    EXIT_ALREADY_RUNNING,
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_USAGE,
    configure_logging,
    fail,
    log_level,
    non_empty,
    positive_int,
    positive_seconds,
)
from neocode_gateway.dispatch import Dispatcher
from neocode_gateway.errors import AlreadyRunning, ConfigError, TransportError
from neocode_gateway.protocol import DEFAULT_MAX_FRAME_BYTES
from neocode_gateway.server import (
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_READ_TIMEOUT,
    DEFAULT_WRITE_TIMEOUT,
    Server,
    ServerConfig,
)
from neocode_gateway.transport import Listener, create_listener, default_address

log = logging.getLogger("neocode_gateway")

#: Descriptors the process needs besides one per connection (stdio, listener, lock, loop).
FD_HEADROOM = 32


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The daemon's flags (also accepted with no sub-command)."""
    parser.add_argument(
        "--listen",
        metavar="ADDRESS",
        type=non_empty,
        default=None,
        help=f"socket path or pipe name to listen on (default: {default_address()})",
    )
    parser.add_argument(
        "--log-level",
        metavar="LEVEL",
        type=log_level,
        default=logging.INFO,
        help="debug, info, warn or error (default: info)",
    )
    parser.add_argument(
        "--max-connections",
        metavar="N",
        type=positive_int,
        default=DEFAULT_MAX_CONNECTIONS,
        help=f"concurrent connections; extra ones are closed at once "
        f"(default: {DEFAULT_MAX_CONNECTIONS})",
    )
    parser.add_argument(
        "--read-timeout",
        metavar="SECONDS",
        type=positive_seconds,
        default=DEFAULT_READ_TIMEOUT,
        help=f"a whole frame must arrive within this time (default: {DEFAULT_READ_TIMEOUT:g})",
    )
    parser.add_argument(
        "--write-timeout",
        metavar="SECONDS",
        type=positive_seconds,
        default=DEFAULT_WRITE_TIMEOUT,
        help=f"a client that does not read its responses for this long is dropped "
        f"(default: {DEFAULT_WRITE_TIMEOUT:g})",
    )
    parser.add_argument(
        "--max-frame-bytes",
        metavar="N",
        type=positive_int,
        default=DEFAULT_MAX_FRAME_BYTES,
        help=f"largest frame accepted, without its newline (default: {DEFAULT_MAX_FRAME_BYTES})",
    )
    parser.add_argument(
        "--insecure-skip-peer-check",
        action="store_true",
        help="accept connections even where the peer's credentials cannot be read (unsafe)",
    )
    parser.add_argument(
        "--loop",
        choices=("auto", "asyncio", "uvloop"),
        default="auto",
        help="event loop implementation (default: auto = uvloop where available)",
    )


def loop_factory(choice: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The event loop to run on: uvloop where available (and asked for), else asyncio's."""
    if choice == "asyncio" or sys.platform == "win32":
        return None
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise ConfigError("--loop uvloop: uvloop is not installed") from None
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


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


async def serve(listener: Listener, config: ServerConfig) -> None:
    """Serve until SIGINT or SIGTERM, then stop gracefully."""
    loop = asyncio.get_running_loop()
    server = Server(listener, Dispatcher(), config)
    await server.start()
    # Everything allocated so far lives as long as the process: keep it out of the
    # garbage collector's generations so that its passes only walk new objects.
    gc.freeze()
    stop = asyncio.Event()
    received: list[str] = []

    def on_stop(signum: signal.Signals) -> None:
        received.append(signum.name)
        stop.set()

    def on_stats() -> None:
        stats: dict[str, Any] = server.stats()
        stats["fds"] = open_fds()
        stats["rss_kb"] = rss_kb()
        log.info("stats %s", msgspec.json.encode(stats).decode())

    installed: list[signal.Signals] = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, on_stop, signum)
            installed.append(signum)
    if hasattr(signal, "SIGUSR1"):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signal.SIGUSR1, on_stats)
            installed.append(signal.SIGUSR1)
    log.info(
        "neocode-gateway %s listening on %s (pid %d, loop %s)",
        __version__,
        listener.address,
        os.getpid(),
        type(loop).__module__.split(".")[0],
    )
    if config.insecure_skip_peer_check:
        log.warning(
            "--insecure-skip-peer-check: connections are accepted without checking who makes them"
        )
    try:
        await stop.wait()
        log.info("received %s, shutting down", received[0] if received else "stop")
        await server.shutdown()
    finally:
        for signum in installed:
            loop.remove_signal_handler(signum)
    log.info("stopped")


def run(options: argparse.Namespace, prog: str) -> int:
    """Run the daemon with parsed ``options``; return the exit code."""
    configure_logging(options.log_level)
    try:
        config = ServerConfig(
            max_connections=ensure_fd_limit(options.max_connections),
            read_timeout=options.read_timeout,
            write_timeout=options.write_timeout,
            max_frame_bytes=options.max_frame_bytes,
            insecure_skip_peer_check=options.insecure_skip_peer_check,
        )
        factory = loop_factory(options.loop)
    except ConfigError as exc:
        return fail(prog, str(exc), EXIT_USAGE)
    address = options.listen or default_address()
    listener = create_listener(address, max_connections=config.max_connections)
    try:
        listener.open()
    except AlreadyRunning as exc:
        return fail(prog, str(exc), EXIT_ALREADY_RUNNING)
    except TransportError as exc:
        return fail(prog, str(exc), EXIT_FAILURE)
    try:
        with asyncio.Runner(loop_factory=factory) as runner:
            runner.run(serve(listener, config))
    except KeyboardInterrupt:  # pragma: no cover - SIGINT before the handler was installed
        pass
    finally:
        listener.release()
    return EXIT_OK
