"""``neocode-gateway [serve]``: run the gateway in the foreground.

``main(argv)`` → options → :class:`ServerConfig` → listener → :class:`Server`,
as uvicorn does; signal handlers are installed for the daemon's life and
removed on the way out.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from neocode_gateway import __version__
from neocode_gateway.cli._common import (
    EXIT_ALREADY_RUNNING,
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_USAGE,
    fail,
)
from neocode_gateway.cli._daemon_flags import add_arguments
from neocode_gateway.cli._logging import (
    LOG_FILE_NAME,
    add_log_file,
    close_log_files,
    configure_logging,
)
from neocode_gateway.cli._resources import ensure_fd_limit, open_fds, rss_kb
from neocode_gateway.errors import AlreadyRunning, ConfigError, StoreOpenError, TransportError
from neocode_gateway.limits import (
    DEFAULT_DATA_DIR,
    DEFAULT_PERMISSION_TIMEOUT,
    DEFAULT_RETENTION_DAYS,
)
from neocode_gateway.transport import Listener, create_listener, default_address, is_pipe_address

# The daemon parses its flags and opens its socket before the event loop, msgspec,
# the core and SQLite are imported (tens of milliseconds): its first pings are
# answered meanwhile (:mod:`._early`). So those are imported where they are used.
if TYPE_CHECKING:
    import asyncio

    from neocode_gateway.cli._early import EarlyPong
    from neocode_gateway.runtime import RuntimeSet
    from neocode_gateway.server import ServerConfig
    from neocode_gateway.sessions import CoreConfig
    from neocode_gateway.store import Store

log = logging.getLogger("neocode_gateway")


def loop_factory(choice: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The event loop to run on: uvloop where available (and asked for), else asyncio's."""
    import asyncio  # noqa: F401 - the annotation's module, loaded before uvloop

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


class Services:
    """What the daemon runs besides the server: the log, the runtimes and the core.

    A plain class (not a dataclass): ``dataclasses`` costs milliseconds to import,
    and this module is loaded before the daemon's first ping is answered.
    """

    __slots__ = ("core_config", "runtimes", "store")

    def __init__(
        self,
        store: Store | None = None,
        runtimes: RuntimeSet | None = None,
        core_config: CoreConfig | None = None,
    ) -> None:
        self.store = store
        self.runtimes = runtimes
        self.core_config = core_config


async def serve(
    listener: Listener,
    config: ServerConfig,
    services: Services | None = None,
    early: EarlyPong | None = None,
    stopped_early: list[str] | None = None,
) -> None:
    """Serve until SIGINT or SIGTERM, then stop gracefully (taking over ``early``'s
    connections once the server is ready)."""
    import asyncio
    import gc

    import msgspec

    from neocode_gateway.dispatch import Dispatcher, install
    from neocode_gateway.server import Server
    from neocode_gateway.sessions import SessionCore

    loop = asyncio.get_running_loop()
    services = services or Services()
    dispatcher = Dispatcher()
    server = Server(listener, dispatcher.dispatch, config)
    core: SessionCore | None = None
    if services.store is not None:
        assert services.runtimes is not None
        assert services.core_config is not None
        core = SessionCore(
            services.store,
            services.runtimes,
            services.core_config,
            connection_count=lambda: len(server.connections),
        )
        await core.start()
        server.add_sweep_hook(core.check_slow_consumers)
    install(dispatcher, core, lambda: len(server.connections))
    adopted = early.handover() if early is not None else []
    await server.start()
    for sock, buffered in adopted:
        await server.adopt(sock, buffered)
    # Everything allocated so far lives as long as the process: keep it out of the
    # garbage collector's generations so that its passes only walk new objects.
    gc.freeze()
    stop = asyncio.Event()
    received: list[str] = [name for name in stopped_early or () if name != "SIGUSR1"]
    if received:  # SIGTERM or SIGINT came while the daemon was loading
        stop.set()

    def on_stop(signum: signal.Signals) -> None:
        received.append(signum.name)
        stop.set()

    def on_stats() -> None:
        stats: dict[str, Any] = server.stats()
        stats["fds"] = open_fds()
        stats["rss_kb"] = rss_kb()
        if core is not None:
            stats.update(core.status())
            stats["events_logged"] = core.events_logged
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
        if "SIGUSR1" in (stopped_early or ()):
            loop.call_soon(on_stats)  # asked for while the daemon was loading
    if core is None:
        what = "runtime none"
    else:
        assert services.core_config is not None
        assert services.runtimes is not None
        what = (
            f"runtime {services.runtimes.default}, data {services.core_config.data_dir}, "
            f"workdir {services.core_config.default_workdir}"
        )
    log.info(
        "neocode-gateway %s listening on %s (pid %d, loop %s, %s)",
        __version__,
        listener.address,
        os.getpid(),
        type(loop).__module__.split(".")[0],
        what,
    )
    if config.insecure_skip_peer_check:
        log.warning(
            "--insecure-skip-peer-check: connections are accepted without checking who makes them"
        )
    try:
        await stop.wait()
        log.info("received %s, shutting down", received[0] if received else "stop")
        await server.shutdown()
        if core is not None:
            await core.shutdown()
    finally:
        for signum in installed:
            loop.remove_signal_handler(signum)
    log.info("stopped")


def build_services(options: argparse.Namespace) -> Services:
    """Open the event log and create the runtimes; ``ConfigError``/``StoreOpenError`` if not."""
    from neocode_gateway.cli._agents import config_from_flags
    from neocode_gateway.runtime import RuntimeOptions, RuntimeSet, create_runtime
    from neocode_gateway.sessions import CoreConfig
    from neocode_gateway.store import Store

    file_config = config_from_flags(options)
    runtime = options.runtime or file_config.default_agent or "echo"
    if runtime == "none":
        return Services()
    options.workdir = options.workdir or file_config.workdir
    options.data_dir = options.data_dir or file_config.data_dir
    if options.permission_timeout is None:
        options.permission_timeout = file_config.permission_timeout
    if options.event_retention_days is None:
        options.event_retention_days = file_config.event_retention_days
    workdir = os.path.realpath(options.workdir or os.getcwd())
    if not os.path.isdir(workdir):
        raise ConfigError(f"--workdir {options.workdir}: not a directory")
    data_dir = Path(os.path.expanduser(options.data_dir or DEFAULT_DATA_DIR))
    runtime_options = RuntimeOptions(data_dir=data_dir, default_workdir=workdir)
    runtimes = RuntimeSet(default=runtime)
    runtimes.add("echo", create_runtime("echo", runtime_options))
    if file_config.agents:
        from neocode_gateway.runtime.acp import create_agent_runtimes

        for name, agent_runtime in create_agent_runtimes(file_config, runtime_options).items():
            runtimes.add(name, agent_runtime)
    if runtime not in runtimes.names():
        runtimes.add(runtime, create_runtime(runtime, runtime_options))
    store = Store.open(data_dir)
    core_config = CoreConfig(
        data_dir=data_dir,
        default_workdir=workdir,
        permission_timeout=options.permission_timeout or DEFAULT_PERMISSION_TIMEOUT,
        event_retention_days=DEFAULT_RETENTION_DAYS
        if options.event_retention_days is None
        else options.event_retention_days,
        policy=file_config.policy,
    )
    if file_config.policy is not None:
        for warning in file_config.policy.warnings:
            log.warning("policy: %s", warning)
    return Services(store=store, runtimes=runtimes, core_config=core_config)


def run(options: argparse.Namespace, prog: str) -> int:
    """Run the daemon with parsed ``options``; return the exit code.

    The socket is opened first and its plain pings answered by a thread
    (:class:`~._early.EarlyPong`) while the rest loads; the server takes its
    connections over when it starts.
    """
    configure_logging(options.log_level)
    max_connections = ensure_fd_limit(options.max_connections)
    address = options.listen or default_address()
    listener = create_listener(address, max_connections=max_connections)
    try:
        listener.open()
    except AlreadyRunning as exc:
        return fail(prog, str(exc), EXIT_ALREADY_RUNNING)
    except TransportError as exc:
        return fail(prog, str(exc), EXIT_FAILURE)
    early = None
    sock = getattr(listener, "sock", None)
    if sock is not None and not is_pipe_address(address):
        from neocode_gateway.cli._early import EarlyPong

        early = EarlyPong(sock, skip_peer_check=options.insecure_skip_peer_check)
        early.start()
    # Pings are answered from now on, so a stop may come before the event loop's own
    # handlers are installed: it is kept, and the daemon stops as soon as it serves.
    stopped_early: list[str] = []

    def on_early_stop(signum: int, frame: object) -> None:
        stopped_early.append(signal.Signals(signum).name)

    early_signals = [signal.SIGINT, signal.SIGTERM]
    if hasattr(signal, "SIGUSR1"):
        early_signals.append(signal.SIGUSR1)  # its default would end the process
    previous = {sig: signal.signal(sig, on_early_stop) for sig in early_signals}
    services = Services()
    try:
        try:
            import asyncio

            from neocode_gateway.server import ServerConfig

            config = ServerConfig(
                max_connections=max_connections,
                read_timeout=options.read_timeout,
                write_timeout=options.write_timeout,
                max_frame_bytes=options.max_frame_bytes,
                insecure_skip_peer_check=options.insecure_skip_peer_check,
            )
            factory = loop_factory(options.loop)
            services = build_services(options)
        except ConfigError as exc:
            return fail(prog, str(exc), EXIT_USAGE)
        except StoreOpenError as exc:
            return fail(prog, str(exc), EXIT_FAILURE)
        _open_log_file(options)
        with asyncio.Runner(loop_factory=factory) as runner:
            runner.run(serve(listener, config, services, early, stopped_early))
    except KeyboardInterrupt:  # pragma: no cover - SIGINT before the handler was installed
        pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if early is not None:
            for early_sock, _ in early.handover():  # not taken over (a failure before serving)
                early_sock.close()
        listener.release()
        if services.store is not None:
            services.store.close()
        close_log_files()
    return EXIT_OK


def _open_log_file(options: argparse.Namespace) -> None:
    """The rotated log file: ``--log-file``, else ``gateway.log`` in the data directory."""
    choice = options.log_file
    if choice is not None and choice.lower() == "none":
        return
    if choice is None:
        data_dir = os.path.expanduser(options.data_dir or DEFAULT_DATA_DIR)
        choice = os.path.join(data_dir, LOG_FILE_NAME)
    problem = add_log_file(Path(os.path.expanduser(choice)))
    if problem is not None:
        log.warning("%s; logging to stderr only", problem)


def commands() -> dict[
    str,
    tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace, str], int]],
]:
    """Name -> (help line, add_arguments, run), as the other command modules."""
    return {"serve": ("run the gateway in the foreground (the default)", add_arguments, run)}
