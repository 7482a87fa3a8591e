"""A run as a client sees it: its ack, then its events, ending with its terminal event."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Generator
from typing import TYPE_CHECKING, Any

from neocode_gateway.client._streams import Subscription
from neocode_gateway.protocol import (
    Event,
    Frame,
)

if TYPE_CHECKING:
    from neocode_gateway.client._async import AsyncGatewayClient


class RunStream:
    """A run: awaitable (until the gateway accepts it), then its events to the terminal one."""

    def __init__(
        self,
        client: AsyncGatewayClient,
        starting: Coroutine[Any, Any, tuple[Subscription, Frame]],
    ) -> None:
        self._client = client
        self._starting: asyncio.Task[tuple[Subscription, Frame]] = asyncio.ensure_future(starting)
        self._subscription: Subscription | None = None
        self.ack: Frame | None = None
        self.session_id: str = ""
        self.run_id: str = ""
        #: The terminal event, once seen.
        self.terminal: Event | None = None

    async def accepted(self) -> RunStream:
        """Wait for the gateway's ack (an error frame raises ``ErrorFrameReceived``)."""
        if self._subscription is None:
            self._subscription, ack = await self._starting
            self.ack = ack
            self.session_id = ack.session_id or ""
            self.run_id = ack.run_id or ""
        return self

    def __await__(self) -> Generator[Any, None, RunStream]:
        return self.accepted().__await__()

    def __aiter__(self) -> RunStream:
        return self

    async def __anext__(self) -> Event:
        if self.terminal is not None:
            raise StopAsyncIteration
        await self.accepted()
        assert self._subscription is not None
        try:
            event = await self._subscription.get()
        except asyncio.CancelledError:
            raise  # the caller stopped waiting (Ctrl-C in a front-end); the stream goes on
        except BaseException:
            self._client.unsubscribe(self._subscription)
            raise
        if event.terminal:
            self.terminal = event
            self._client.unsubscribe(self._subscription)
        return event

    async def result(self) -> Event:
        """Consume the run to its end; return its terminal event (run_done or run_error)."""
        async for _ in self:
            pass
        assert self.terminal is not None
        return self.terminal

    async def cancel(self) -> dict[str, Any]:
        """Cancel this run (its stream then ends with ``run_error`` ``canceled``)."""
        return await self._client.cancel(self.run_id, session_id=self.session_id)
