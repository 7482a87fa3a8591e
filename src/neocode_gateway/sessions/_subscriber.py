"""The subscriber port: what the core needs of a client it answers and pushes events to.

The core never sees a socket or the server's connection class. Whatever
carries frames to a client (the server's connection today; a WebSocket or an
ACP front door tomorrow) satisfies this small protocol, structurally: the
dispatch layer hands it to the core's handlers as it is.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol


class Subscriber(Protocol):
    """One client of the core: a sink for encoded frame lines with measured back-pressure."""

    #: Set by the core while the client has bindings (it then waits for events, not frames).
    bound: bool

    @property
    def closed(self) -> bool:
        """Whether the client is gone."""
        ...

    def send(
        self, data: bytes, *, mark: tuple[str, int] | None = None, replay: bool = False
    ) -> bool:
        """Push encoded frame lines, in order with earlier pushes (not behind owed answers).

        ``mark=(key, value)``: :meth:`delivered` reports ``value`` once ``data`` is
        handed to the client in full. ``replay``: the frames come from the log, paced
        by :meth:`drain`; they never count toward :attr:`pending_bytes` nor the age of
        what waits. ``False`` when the client is closing (nothing was queued).
        """
        ...

    @property
    def pending_bytes(self) -> int:
        """Bytes of live pushed frames still waiting in the gateway for this client."""
        ...

    def oldest_pending_age(self, now: float) -> float:
        """Seconds the oldest live pushed frame still waiting has waited (0.0 if none)."""
        ...

    def delivered(self, key: str) -> int | None:
        """The last ``mark`` value of ``key`` whose frames were all handed to the client."""
        ...

    def forget_mark(self, key: str) -> None:
        """Drop what :meth:`delivered` knows of ``key`` (the key is no longer used)."""
        ...

    async def drain(self) -> bool:
        """Wait until pushed frames are taken; ``False`` if the client closed meanwhile."""
        ...

    def after_answer(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once the answer to the request being handled now is written
        (at once when no request is being handled)."""
        ...

    def close_with_error(self, data: bytes) -> None:
        """Drop the pushed frames still waiting, write ``data`` (an error frame), close."""
        ...

    def add_close_callback(self, callback: Callable[[Subscriber], None]) -> None:
        """Call ``callback(self)`` once, when the client is gone."""
        ...
