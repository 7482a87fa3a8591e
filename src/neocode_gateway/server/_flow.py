"""What waits for a client, and the socket's flow control: the measures the layers above read.

:class:`Flow` is the part of a connection that the slow-consumer rule and a
replay's pacing look at (:attr:`pending_bytes`, :meth:`oldest_pending_age`,
:meth:`delivered`, :meth:`drain`) and that the socket drives
(:meth:`pause_writing`, :meth:`resume_writing`, the write deadline).
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from neocode_gateway.server._server import Server

_INF: Final = float("inf")
_ANSWER: Final = -1.0
_REPLAY: Final = 0.0


class _Chunk:
    """Bytes ready to write: ``since`` is the loop time a live event was pushed at,
    ``_REPLAY`` for a replayed one, ``_ANSWER`` for an answer."""

    __slots__ = ("data", "mark", "since")

    def __init__(self, data: bytes, since: float, mark: tuple[str, int] | None) -> None:
        self.data = data
        self.since = since
        self.mark = mark


class Flow:
    """Back-pressure measures and flow control (the queues are :class:`~._outbound.Outbound`'s)."""

    __slots__ = (
        "_answers",
        "_close_when_flushed",
        "_delivered",
        "_drain_waiters",
        "_paused",
        "_pushed",
        "_pushed_bytes",
        "_server",
        "_stall_size",
        "closed",
        "transport",
        "write_deadline",
    )

    def __init__(self, server: Server) -> None:
        self._server = server
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.write_deadline = _INF
        #: Answers not ready yet, in request order (the slots of :mod:`._outbound`).
        self._answers: deque[Any] | None = None
        #: Frames ready to write, waiting for the socket.
        self._pushed: deque[_Chunk] | None = None
        self._pushed_bytes = 0
        self._paused = False
        self._stall_size = 0
        self._close_when_flushed = False
        self._delivered: dict[str, int] | None = None
        self._drain_waiters: list[asyncio.Future[bool]] | None = None

    def _pump(self) -> None:
        raise NotImplementedError

    # -- socket flow control --------------------------------------------------------------

    def pause_writing(self) -> None:
        # The socket's buffer is full: frames now wait in our queues; give the client
        # until the write deadline to make progress.
        self._paused = True
        transport = self.transport
        self._stall_size = transport.get_write_buffer_size() if transport else 0
        self.write_deadline = self._server.loop_time() + self._server.config.write_timeout

    def resume_writing(self) -> None:
        self._paused = False
        self.write_deadline = _INF
        self._pump()

    def write_stalled(self, now: float) -> bool:
        """At the write deadline: ``True`` if the client made no progress since the last check."""
        transport = self.transport
        if transport is None:
            return False
        size = transport.get_write_buffer_size()
        if size < self._stall_size:
            self._stall_size = size  # it reads, slowly: give it another period
            self.write_deadline = now + self._server.config.write_timeout
            return False
        return True

    def expire(self) -> None:
        """The read deadline passed: close now (abort if the client is not even reading)."""
        transport = self.transport
        if transport is None or self.closed:
            return
        if transport.get_write_buffer_size():
            transport.abort()
        else:
            transport.close()

    def abort(self) -> None:
        """Drop the connection now, discarding anything unsent."""
        if self.transport is not None and not self.closed:
            self.transport.abort()

    # -- public measures ------------------------------------------------------------------

    def delivered(self, key: str) -> int | None:
        """The last mark value for ``key`` whose frames were all handed to the socket.

        Everything written after it in the stream (an error frame, say) reaches
        the client after those frames, so this is what a client has seen in
        full once it reads a frame written now.
        """
        return self._delivered.get(key) if self._delivered else None

    def forget_mark(self, key: str) -> None:
        """Drop what :meth:`delivered` knows of ``key``."""
        if self._delivered:
            self._delivered.pop(key, None)

    @property
    def pending_bytes(self) -> int:
        """Bytes of live pushed frames waiting in the gateway for this client: our queue plus
        the socket's buffer (which holds at most a replay page besides them)."""
        transport = self.transport
        buffered = transport.get_write_buffer_size() if transport is not None else 0
        return self._pushed_bytes + buffered

    @property
    def pending_frames(self) -> int:
        """Frames and owed answers waiting in the outbound queues."""
        return len(self._answers or ()) + len(self._pushed or ())

    def oldest_pending_age(self, now: float) -> float:
        """Seconds the oldest live pushed frame still queued has waited (0.0 if none)."""
        for chunk in self._pushed or ():
            if chunk.since > 0.0:
                return now - chunk.since
        return 0.0

    async def drain(self) -> bool:
        """Wait until pushed frames are taken; ``False`` if the connection closed meanwhile."""
        if self.closed or self._close_when_flushed:
            return False
        if not self._pushed and not self._paused:
            return True
        waiter: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        if self._drain_waiters is None:
            self._drain_waiters = []
        self._drain_waiters.append(waiter)
        return await waiter
