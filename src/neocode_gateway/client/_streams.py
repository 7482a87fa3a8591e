"""Event streams on the client: per-session subscriptions, run streams, no silent loss.

The gateway pushes ``event`` frames between responses. The client routes
each to the subscriptions of its session (and to the stream of its run);
each subscription is a bounded queue. When a consumer falls behind so far
that its queue is full, the subscription stops taking events and, after
handing out what it kept, raises :class:`EventsDropped` with the last ``seq``
delivered: the caller resumes from there with ``bind_stream`` ``after_seq``
(``AsyncGatewayClient.events(..., reconnect=True)`` does it by itself).
Nothing is ever dropped without the consumer being told.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Final

from neocode_gateway.errors import ClientError, ConnectionClosed
from neocode_gateway.protocol import Event

#: Events one subscription keeps for a consumer that is not reading.
DEFAULT_MAX_QUEUED_EVENTS: Final = 10_000


class EventsDropped(ClientError):
    """Events of a session were not consumed in time; resume after :attr:`last_seq`."""

    def __init__(self, session_id: str, last_seq: int) -> None:
        super().__init__(
            f"events of session {session_id} after seq {last_seq} were not consumed in time "
            f"and were dropped by the client; bind again with after_seq={last_seq}"
        )
        self.session_id = session_id
        self.last_seq = last_seq


class SlowConsumer(ConnectionClosed):
    """The gateway closed the connection: its events were not read fast enough."""

    def __init__(self, session_id: str | None, last_seq: int, address: str) -> None:
        super().__init__(
            f"the gateway closed the connection: this client read its events too slowly "
            f"(last delivered seq {last_seq} of session {session_id}) ({address})"
        )
        self.session_id = session_id
        self.last_seq = last_seq


class Subscription:
    """A bounded queue of the events of one session (optionally one run) on a connection."""

    __slots__ = (
        "_end",
        "_maxsize",
        "_overflowed",
        "_queue",
        "_waiter",
        "last_seq",
        "run_id",
        "session_id",
    )

    def __init__(
        self,
        session_id: str | None,
        run_id: str | None = None,
        maxsize: int = DEFAULT_MAX_QUEUED_EVENTS,
    ) -> None:
        self.session_id = session_id
        self.run_id = run_id
        self._maxsize = maxsize
        self._queue: deque[Event] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._end: BaseException | None = None
        self._overflowed = False
        #: The last seq put in the queue (what a consumer that read everything has seen).
        self.last_seq = 0

    def wants(self, event: Event) -> bool:
        """Whether ``event`` belongs to this subscription."""
        if self.run_id is not None and event.run_id != self.run_id:
            return False
        return self.session_id is None or event.session_id == self.session_id

    def put(self, event: Event) -> None:
        """Take one event (or, once full, remember that events were dropped)."""
        if self._overflowed or self._end is not None:
            return
        if self.session_id is None:
            self.session_id = event.session_id
        if len(self._queue) >= self._maxsize:
            self._overflowed = True
            self._end = EventsDropped(event.session_id, self.last_seq)
        else:
            self._queue.append(event)
            self.last_seq = event.seq
        self._wake()

    def close(self, error: BaseException | None = None) -> None:
        """No more events: the iterator ends (or raises ``error``) after the queued ones."""
        if self._end is None:
            self._end = error or StopAsyncIteration()
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def get_nowait(self) -> Event | None:
        """The next queued event, or ``None``."""
        return self._queue.popleft() if self._queue else None

    async def get(self) -> Event:
        """The next event; raises ``StopAsyncIteration`` at the end, or why it ended."""
        while not self._queue:
            if self._end is not None:
                raise self._end
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._queue.popleft()

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Event:
        return await self.get()
