"""Where frames that answer no request go: subscriptions by session, or the events queue.

The routing half of :class:`~._async.AsyncGatewayClient`: every event frame is
offered to the subscriptions of its session (a full one ends with
:class:`EventsDropped`, never silently), then to ``on_event`` or the bounded
:meth:`events` queue; a ``slow_consumer`` error ends the subscriptions it names.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

from neocode_gateway.client._link import (
    GatewayLink,
)
from neocode_gateway.client._streams import SlowConsumer, Subscription
from neocode_gateway.errors import (
    ConnectionClosed,
)
from neocode_gateway.protocol import (
    SLOW_CONSUMER,
    Frame,
    decode_event,
)

log = logging.getLogger("neocode_gateway.client")


class EventRouting(GatewayLink):
    """Subscriptions and the events queue, on top of the connection."""

    # -- unsolicited frames -------------------------------------------------------------

    def _unsolicited(self, frame: Frame) -> None:
        if frame.type == "event" and frame.session_id and self._subscriptions:
            try:
                event = decode_event(frame)
            except ValueError:
                log.warning("the gateway sent an event frame that is not valid: %r", frame)
                return
            taken = False
            for subscription in self._subscriptions:
                if subscription.wants(event):
                    subscription.put(event)
                    taken = True
            if taken:
                return
        elif (
            frame.type == "error" and frame.error is not None and frame.error.code == SLOW_CONSUMER
        ):
            payload = frame.payload if isinstance(frame.payload, dict) else {}
            last = payload.get("last_seq")
            error = SlowConsumer(
                frame.session_id, last if isinstance(last, int) else 0, self.address
            )
            if self._protocol is not None:
                self._protocol.close_reason = str(error)
            for subscription in self._subscriptions:
                subscription.close(error)
        if self.on_event is not None:
            try:
                self.on_event(frame)
            except Exception:
                log.exception("the on_event callback failed")
            return
        queue = self._events
        if queue.qsize() >= self.max_queued_events:
            queue.get_nowait()
            self.dropped_events += 1
        queue.put_nowait(frame)

    def _stream_ended(self) -> None:
        self._events.put_nowait(None)
        reason = self._protocol.close_reason if self._protocol is not None else None
        for subscription in self._subscriptions:
            subscription.close(
                ConnectionClosed(f"{reason or 'the connection closed'} ({self.address})")
            )

    async def events(self) -> AsyncIterator[Frame]:
        """Frames that answer no request (events), as they arrive; ends when the connection does."""
        queue = self._events
        while True:
            frame = await queue.get()
            if frame is None:
                queue.put_nowait(None)  # every other iterator ends too
                return
            yield frame

    def take_events(self) -> list[Frame]:
        """The unsolicited frames received so far, without waiting."""
        queue = self._events
        frames: list[Frame] = []
        ended = False
        while not queue.empty():
            frame = queue.get_nowait()
            if frame is None:
                ended = True
            else:
                frames.append(frame)
        if ended:
            queue.put_nowait(None)
        return frames

    # -- contract v1.1: sessions, runs, events -------------------------------------------

    def subscribe(self, session_id: str | None, *, run_id: str | None = None) -> Subscription:
        """A new queue of the events of ``session_id`` (and ``run_id``) on this connection.

        Events reach it only while the connection is bound to the session
        (:meth:`bind_stream`, or the session of a :meth:`run` sent here).
        """
        subscription = Subscription(session_id, run_id)
        self._subscriptions.append(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        """Stop filling ``subscription`` (its iterator ends after what it holds)."""
        with contextlib.suppress(ValueError):
            self._subscriptions.remove(subscription)
        subscription.close()
