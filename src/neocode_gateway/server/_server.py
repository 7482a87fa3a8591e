"""The asyncio server: accept, connection cap, peer check, deadlines, graceful stop.

The server knows nothing about actions: it is given a :data:`Handler` (the
dispatch layer plugs in above it) and a :class:`~neocode_gateway.transport.Listener`
(the transport layer below it).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import socket
import time
from collections.abc import Callable
from typing import Any, Final

from neocode_gateway.errors import PeerCredentialsUnavailable
from neocode_gateway.server._config import ServerConfig
from neocode_gateway.server._connection import Connection, Handler
from neocode_gateway.transport import Listener

log = logging.getLogger("neocode_gateway.server")

#: The sweeper's period is a fraction of the shortest timeout, within these bounds.
_MIN_SWEEP: Final = 0.02
_MAX_SWEEP: Final = 1.0


class RateLimitedLog:
    """Log a repeated event at most once per ``interval`` seconds, with a count of the rest."""

    __slots__ = ("_interval", "_last", "_logger", "_suppressed")

    def __init__(self, logger: logging.Logger, interval: float = 1.0) -> None:
        self._logger = logger
        self._interval = interval
        self._last = -interval
        self._suppressed = 0

    def warning(self, message: str, *args: object) -> None:
        """Log at WARNING level, unless one was logged less than ``interval`` ago."""
        self.log(logging.WARNING, message, *args)

    def exception(self, message: str, *args: object) -> None:
        """Log at ERROR level with the current exception's trace, rate-limited."""
        self.log(logging.ERROR, message, *args, exc_info=True)

    def log(self, level: int, message: str, *args: object, exc_info: bool = False) -> None:
        """Log at ``level``, unless one was logged less than ``interval`` ago."""
        now = time.monotonic()
        if now - self._last < self._interval:
            self._suppressed += 1
            return
        if self._suppressed:
            message += f" ({self._suppressed} similar events suppressed)"
            self._suppressed = 0
        self._last = now
        self._logger.log(level, message, *args, exc_info=exc_info)


class Server:
    """Serve frames from ``listener`` to ``handler`` under ``config``'s limits."""

    def __init__(self, listener: Listener, handler: Handler, config: ServerConfig) -> None:
        self.listener = listener
        self.handler = handler
        self.config = config
        #: The connections admitted and open (a dict as an ordered set: half a set's memory).
        self.connections: dict[Connection, None] = {}
        self.uid = os.geteuid() if hasattr(os, "geteuid") else -1
        self.accepted = 0
        self.rejected_over_cap = 0
        self.rejected_peer = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sweeper: asyncio.TimerHandle | None = None
        self._sweep_period = min(
            _MAX_SWEEP, max(_MIN_SWEEP, min(config.read_timeout, config.write_timeout) / 10)
        )
        #: Read deadline for a frame completed now, from a clock the sweeper updates:
        #: connections store it instead of reading the clock on every frame. It is
        #: one sweep period late at most, never early.
        self.next_read_deadline = float("inf")
        self._stopping = False
        self._all_closed = asyncio.Event()
        self._cap_log = RateLimitedLog(log)
        self._peer_log = RateLimitedLog(log)
        self._abort_log = RateLimitedLog(log)
        self._handler_log = RateLimitedLog(log)
        self._sweep_hooks: list[Callable[[float], None]] = []
        self._connection_ids = itertools.count(1)
        self.handler_failures = 0

    @property
    def stopping(self) -> bool:
        """Whether a graceful stop has begun."""
        return self._stopping

    def next_connection_id(self) -> int:
        """A number for the next connection, for logs."""
        return next(self._connection_ids)

    def call_soon(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` on a later turn of the loop (a connection yielding its turn)."""
        assert self._loop is not None
        self._loop.call_soon(callback)

    def add_sweep_hook(self, hook: Callable[[float], None]) -> None:
        """Call ``hook(loop_time)`` on every sweeper tick (the layer above checks its limits)."""
        self._sweep_hooks.append(hook)

    def handler_failed(self, action: str | None, *, cancelled: bool = False) -> None:
        """A handler raised (or was cancelled on its own): log it, rate-limited, with its trace."""
        self.handler_failures += 1
        if cancelled:
            self._handler_log.warning(
                "handler for action %r was cancelled; answered internal_error", action
            )
            return
        self._handler_log.exception("handler for action %r failed", action)

    def loop_time(self) -> float:
        assert self._loop is not None
        return self._loop.time()

    async def start(self) -> None:
        """Start accepting (the listener must be open)."""
        self._loop = asyncio.get_running_loop()
        self._tick(self._loop.time())
        await self.listener.start(self._new_connection)
        self._sweeper = self._loop.call_later(self._sweep_period, self._sweep)

    def _tick(self, now: float) -> None:
        self.next_read_deadline = now + self._sweep_period + self.config.read_timeout

    def _new_connection(self) -> Connection:
        return Connection(self, self.handler)

    async def adopt(self, sock: socket.socket, buffered: bytes = b"") -> None:
        """Serve a connection accepted before the server started (the daemon's early
        pings), with the bytes already read from it and not yet answered."""
        assert self._loop is not None
        try:
            protocol = await self.listener.adopt(sock, self._new_connection)
        except OSError:
            sock.close()
            return
        if buffered and isinstance(protocol, Connection) and not protocol.closed:
            protocol.data_received(buffered)

    # -- admission ----------------------------------------------------------------

    def admit(self, conn: Connection) -> None:
        """Called by a new connection before any byte is read: cap and peer check."""
        transport = conn.transport
        assert transport is not None
        if self._stopping:
            transport.abort()
            return
        if len(self.connections) >= self.config.max_connections:
            self.rejected_over_cap += 1
            self._cap_log.warning(
                "connection refused: limit of %d concurrent connections reached",
                self.config.max_connections,
            )
            transport.abort()
            return
        try:
            peer = self.listener.peer_credentials(transport)
        except PeerCredentialsUnavailable as exc:
            if not self.config.insecure_skip_peer_check:
                self.rejected_peer += 1
                self._peer_log.warning("connection refused: %s", exc)
                transport.abort()
                return
        except Exception as exc:
            # Fail closed: a peer we could not identify is never served untracked.
            self.rejected_peer += 1
            self._peer_log.warning(
                "connection refused: reading the peer's credentials failed: %r", exc
            )
            transport.abort()
            return
        else:
            if peer.uid not in (self.uid, 0) and not self.config.insecure_skip_peer_check:
                self.rejected_peer += 1
                self._peer_log.warning(
                    "connection refused: peer pid %s uid %s is not uid %s or root",
                    peer.pid,
                    peer.uid,
                    self.uid,
                )
                transport.abort()
                return
            conn.peer = peer
        self.accepted += 1
        self.connections[conn] = None
        conn.read_deadline = self.next_read_deadline

    def forget(self, conn: Connection) -> None:
        self.connections.pop(conn, None)
        if self._stopping and not self.connections:
            self._all_closed.set()

    # -- deadlines ------------------------------------------------------------------

    def _sweep(self) -> None:
        """Close connections past their read deadline, abort those past their write deadline."""
        now = self.loop_time()
        self._tick(now)
        for conn in [
            c for c in self.connections if c.read_deadline <= now or c.write_deadline <= now
        ]:
            if conn.write_deadline <= now:
                if conn.write_stalled(now):
                    self._abort_log.log(
                        logging.INFO,
                        "connection aborted: client did not read its responses in time",
                    )
                    conn.abort()
            elif conn.write_deadline == float("inf") and conn.idle_expirable:
                log.debug("connection closed: no complete frame within the read timeout")
                conn.expire()
        for hook in self._sweep_hooks:
            try:
                hook(now)
            except Exception:
                log.exception("a sweep hook failed")
        if not self._stopping or self.connections:
            assert self._loop is not None
            self._sweeper = self._loop.call_later(self._sweep_period, self._sweep)

    # -- shutdown ---------------------------------------------------------------------

    async def shutdown(self) -> None:
        """Stop accepting, answer what was read, close every connection, within the grace."""
        if self._stopping:
            return
        self._stopping = True
        self.listener.stop_accepting()
        for conn in list(self.connections):
            conn.close()
        if self.connections:
            try:
                await asyncio.wait_for(self._all_closed.wait(), self.config.shutdown_grace)
            except TimeoutError:
                log.warning(
                    "%d connections did not drain within %.1fs; aborting them",
                    len(self.connections),
                    self.config.shutdown_grace,
                )
                for conn in list(self.connections):
                    conn.abort()
                await asyncio.sleep(0)
        if self._sweeper is not None:
            self._sweeper.cancel()

    def stats(self) -> dict[str, Any]:
        """Counters for operators and tests (logged on SIGUSR1)."""
        return {
            "connections": len(self.connections),
            "accepted": self.accepted,
            "rejected_over_cap": self.rejected_over_cap,
            "rejected_peer": self.rejected_peer,
            "handler_failures": self.handler_failures,
            "tasks": len(asyncio.all_tasks(self._loop)) if self._loop else 0,
        }
