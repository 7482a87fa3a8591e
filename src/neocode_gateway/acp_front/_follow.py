"""One gateway session followed for one editor: its events become ACP updates, in order.

A :class:`SessionFollower` binds the session on the gateway connection and
pumps its events, in ``seq`` order, to the editor: the input of every run it
did not send itself as ``user_message_chunk``\\ s, then what the agent did.
It also ends the editor's prompts (a run's terminal event answers
``session/prompt``) and turns each ``permission_request`` into a
``session/request_permission`` to the editor, asked in a task of its own so
that the session's other events, and another client's answer, keep flowing.
The first answer wins at the gateway: when another client answers first the
editor's request is dropped and its late answer ignored.

Nothing here imports the ACP SDK: the editor is the small :class:`Editor`
protocol, which the front door implements with the SDK's connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from neocode_gateway.acp_front import _mapping
from neocode_gateway.client import AsyncGatewayClient, ErrorFrameReceived
from neocode_gateway.errors import ClientError
from neocode_gateway.protocol import Event

log = logging.getLogger("neocode_gateway.acp_front")

Resolve = Callable[[str, str, str], Awaitable[object]]


class Editor(Protocol):
    """What the follower needs of the editor's side of the ACP connection."""

    async def update(self, session_id: str, update: dict[str, Any]) -> None:
        """Send one ``session/update``."""

    async def ask(self, params: dict[str, Any]) -> str | None:
        """``session/request_permission``: the chosen option id, ``None`` if cancelled."""


class GatewayWentAway(Exception):
    """The connection to the gateway ended while a prompt waited for its run."""


class SessionFollower:
    """Follows ``session_id`` on one gateway connection (see the module docstring)."""

    def __init__(self, session_id: str, editor: Editor, resolve: Resolve) -> None:
        self.session_id = session_id
        self.editor = editor
        self.resolve = resolve
        #: The last seq handed to the editor (a rebind after a reconnect goes on from it).
        self.last_seq = 0
        self.generation = -1
        self._runs: dict[str, asyncio.Future[Event]] = {}
        self._pending: dict[str, tuple[str | None, dict[str, Any]]] = {}
        self._asks: dict[str, asyncio.Task[None]] = {}
        self._replay_until = 0
        self._caught_up = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._client: AsyncGatewayClient | None = None

    @property
    def alive(self) -> bool:
        return self._task is not None and not self._task.done()

    async def start(
        self, client: AsyncGatewayClient, generation: int, *, after_seq: int | None
    ) -> dict[str, Any]:
        """Bind the session (replaying after ``after_seq``, if given) and follow it."""
        if self._task is not None and not self._task.done():
            self._task.cancel()  # a pump of an older connection that has not noticed yet
        subscription = client.subscribe(self.session_id)
        try:
            ack = await client.bind_stream(self.session_id, after_seq=after_seq)
        except BaseException:
            client.unsubscribe(subscription)
            raise
        self._client = client
        self.generation = generation
        self._caught_up.clear()
        self._replay_until = int(ack.get("last_seq", 0)) if after_seq is not None else 0
        if ack.get("reset"):
            self.last_seq = 0
        if self.last_seq >= self._replay_until:
            self._caught_up.set()
        self._task = asyncio.create_task(self._pump(client, subscription))
        return ack

    async def caught_up(self) -> None:
        """Wait until the replay asked for in :meth:`start` reached the editor."""
        await self._caught_up.wait()

    def expect(self, run_id: str) -> asyncio.Future[Event]:
        """A future of the terminal event of a run this editor is about to send."""
        future: asyncio.Future[Event] = asyncio.get_running_loop().create_future()
        self._runs[run_id] = future
        return future

    def forget(self, run_id: str) -> None:
        """The run was not accepted: stop waiting for it."""
        future = self._runs.pop(run_id, None)
        if future is not None and not future.done():
            future.cancel()

    async def stop(self) -> None:
        """Stop following (the editor detached): unbind, drop pending questions."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        client = self._client
        if client is not None and client.connected:
            with contextlib.suppress(ClientError):
                await client.unbind_stream(self.session_id)
        self._end_runs(GatewayWentAway("the editor detached from the session"))

    # -- the pump ------------------------------------------------------------------------

    async def _pump(self, client: AsyncGatewayClient, subscription: Any) -> None:
        reason = "the gateway connection closed"
        try:
            async for event in subscription:
                if event.seq <= self.last_seq:
                    continue
                await self._handle(event)
                self.last_seq = event.seq
                if not self._caught_up.is_set() and event.seq >= self._replay_until:
                    self._caught_up.set()
                    for permission_id, (_, data) in list(self._pending.items()):
                        self._start_ask(permission_id, data)
        except ClientError as exc:
            reason = str(exc)
        finally:
            client.unsubscribe(subscription)
            self._caught_up.set()
            for task in self._asks.values():
                task.cancel()
            self._asks.clear()
            self._pending.clear()
            self._end_runs(GatewayWentAway(reason))

    def _end_runs(self, error: BaseException) -> None:
        runs, self._runs = self._runs, {}
        for future in runs.values():
            if not future.done():
                future.set_exception(error)

    async def _handle(self, event: Event) -> None:
        kind = event.event_type
        data = event.data
        if kind == "run_progress":
            update = _mapping.progress_update(data)
            if update is not None:
                await self.editor.update(self.session_id, update)
        elif kind == "run_started":
            if event.run_id not in self._runs:  # another client's run: show its input
                for update in _mapping.user_message_updates(data):
                    await self.editor.update(self.session_id, update)
        elif kind == "permission_request":
            permission_id = str(data.get("request_id", ""))
            self._pending[permission_id] = (event.run_id, data)
            if self._caught_up.is_set():
                self._start_ask(permission_id, data)
        elif kind == "permission_resolved":
            self._settled(str(data.get("request_id", "")))
        elif event.terminal:
            for permission_id, (run_id, _) in list(self._pending.items()):
                if run_id == event.run_id:
                    self._settled(permission_id)
            future = self._runs.pop(event.run_id or "", None)
            if future is not None and not future.done():
                future.set_result(event)

    # -- permissions ---------------------------------------------------------------------

    def _start_ask(self, permission_id: str, data: dict[str, Any]) -> None:
        if permission_id not in self._asks:
            self._asks[permission_id] = asyncio.create_task(self._ask(permission_id, data))

    def _settled(self, permission_id: str) -> None:
        """Answered (by anyone), or its run ended: the editor's question is withdrawn."""
        self._pending.pop(permission_id, None)
        task = self._asks.pop(permission_id, None)
        if task is not None and task is not asyncio.current_task():
            task.cancel()

    async def _ask(self, permission_id: str, data: dict[str, Any]) -> None:
        try:
            option_id = await self.editor.ask(_mapping.permission_params(self.session_id, data))
            if option_id is None:
                return  # the editor declined to choose: the other clients may answer
            decision = _mapping.decision_for(option_id, data)
            if decision is None:
                log.warning("the editor chose option %r, which was not offered", option_id)
                return
            await self.resolve(permission_id, decision, option_id)
        except asyncio.CancelledError:
            raise
        except ErrorFrameReceived as exc:
            if exc.code not in ("conflict", "resource_not_found"):
                log.warning("answering permission %s failed: %s", permission_id, exc)
        except Exception as exc:  # the editor hung up or answered nonsense: others may answer
            log.info("permission %s was not answered by the editor: %s", permission_id, exc)
        finally:
            if self._asks.get(permission_id) is asyncio.current_task():
                del self._asks[permission_id]
