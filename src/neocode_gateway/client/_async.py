"""The asyncio client: one connection, many concurrent requests, typed errors.

Requests are written as soon as they are made (pipelining) and each waits on
its own future; :mod:`neocode_gateway.client._protocol` resolves the futures
as the responses arrive. The blocking :class:`~neocode_gateway.client.GatewayClient`
drives this same class, so there is one implementation of the client.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any

import msgspec

from neocode_gateway.client._link import (
    CLOSE_GRACE,
)
from neocode_gateway.client._local import (
    new_request_id,
)
from neocode_gateway.client._routing import EventRouting
from neocode_gateway.client._run_stream import RunStream
from neocode_gateway.client._streams import EventsDropped, Subscription
from neocode_gateway.errors import (
    ConnectionClosed,
    GatewayUnreachable,
    RequestTimeout,
)
from neocode_gateway.protocol import (
    Event,
    Frame,
    InputPart,
)

log = logging.getLogger("neocode_gateway.client")


__all__ = ["AsyncGatewayClient", "RunStream"]


class AsyncGatewayClient(EventRouting):
    """An asyncio client of the gateway, for one connection.

    Use it as ``async with AsyncGatewayClient() as client:``. Any number of
    tasks may call :meth:`request` at the same time on one client: each
    request gets a ``request_id`` (generated when absent) and the response
    that echoes it. ``connect_timeout`` and ``request_timeout`` are seconds
    and may be changed at any time (``request_timeout=None`` waits forever).

    Frames the gateway sends that answer no request (events) go to
    ``on_event`` if given, else to the :meth:`events` iterator, which keeps
    the latest ``max_queued_events`` of them.
    """

    async def _ack(self, frame: Mapping[str, Any], timeout: float | None = None) -> Frame:
        return await self.request(
            {k: v for k, v in frame.items() if v is not None}, timeout=timeout
        )

    def run(
        self,
        input_text: str | None = None,
        *,
        input_parts: Sequence[InputPart | Mapping[str, Any]] | None = None,
        session_id: str | None = None,
        workdir: str | None = None,
        agent: str | None = None,
        mode: str | None = None,
        run_id: str | None = None,
        request_id: str | None = None,
    ) -> RunStream:
        """Start a run: ``stream = await client.run(...)`` (returns once the gateway
        accepted it), or directly ``async for event in client.run(...)``.

        The request is sent now. The connection that sends ``run`` is bound to
        the session by the gateway, so the events follow without
        :meth:`bind_stream`; they are collected from the moment the request is
        sent, so none is missed.
        """
        request_id = request_id or new_request_id()
        return RunStream(
            self,
            self._send_run(
                request_id,
                input_text,
                input_parts,
                session_id,
                workdir,
                agent,
                mode,
                run_id,
            ),
        )

    async def _send_run(  # noqa: PLR0917 - run()'s arguments, passed on
        self,
        request_id: str,
        input_text: str | None,
        input_parts: Sequence[InputPart | Mapping[str, Any]] | None,
        session_id: str | None,
        workdir: str | None,
        agent: str | None,
        mode: str | None,
        run_id: str | None,
    ) -> tuple[Subscription, Frame]:
        expected_run = run_id or request_id
        subscription = self.subscribe(session_id, run_id=expected_run)
        payload = {k: v for k, v in (("agent", agent), ("mode", mode)) if v is not None}
        parts = None
        if input_parts is not None:
            parts = [
                p if isinstance(p, InputPart) else msgspec.convert(dict(p), InputPart)
                for p in input_parts
            ]
        try:
            ack = await self.request(
                Frame(
                    type="request",
                    action="run",
                    request_id=request_id,
                    run_id=run_id,
                    session_id=session_id,
                    input_text=input_text,
                    input_parts=parts,
                    workdir=workdir,
                    payload=payload or None,
                )
            )
        except BaseException:
            self.unsubscribe(subscription)
            raise
        subscription.session_id = ack.session_id
        subscription.run_id = ack.run_id or expected_run
        return subscription, ack

    async def cancel(
        self, run_id: str | None = None, *, session_id: str | None = None
    ) -> dict[str, Any]:
        """Cancel a run (by id, or the active run of ``session_id``); the ack's payload."""
        ack = await self._ack({"action": "cancel", "run_id": run_id, "session_id": session_id})
        return _payload(ack)

    async def resolve_permission(
        self, permission_id: str, decision: str, *, option_id: str | None = None
    ) -> dict[str, Any]:
        """Answer a permission request (``allow_once``, ``allow_session`` or ``reject``)."""
        payload: dict[str, Any] = {"request_id": permission_id, "decision": decision}
        if option_id is not None:
            payload["option_id"] = option_id
        return _payload(await self._ack({"action": "resolve_permission", "payload": payload}))

    async def list_sessions(
        self, *, limit: int | None = None, cursor: str | None = None, workdir: str | None = None
    ) -> dict[str, Any]:
        """One page of sessions, newest first: ``{"sessions": [...], "next_cursor"?: C}``;
        ``workdir`` (absolute) keeps those of that working directory (contract v1.2)."""
        payload = {
            k: v
            for k, v in (("limit", limit), ("cursor", cursor), ("workdir", workdir))
            if v is not None
        }
        return _payload(await self._ack({"action": "list_sessions", "payload": payload or None}))

    async def iter_sessions(self, *, page_size: int = 50) -> AsyncIterator[dict[str, Any]]:
        """Every session, newest first, following ``next_cursor``."""
        cursor = None
        while True:
            page = await self.list_sessions(limit=page_size, cursor=cursor)
            for session in page.get("sessions", []):
                yield session
            cursor = page.get("next_cursor")
            if not cursor:
                return

    async def load_session(self, session_id: str) -> dict[str, Any]:
        """A session and its whole transcript (``messages``): the pages joined, a message
        cut by a page boundary joined again (see :meth:`iter_transcript` to go page by page)."""
        result: dict[str, Any] = {}
        messages: list[dict[str, Any]] = []
        async for page in self.iter_transcript(session_id):
            for message in page.pop("messages", []):
                if message.pop("continued", False) and messages:
                    last = messages[-1]
                    last["text"] = last.get("text", "") + message.get("text", "")
                    if message.get("tool_calls"):
                        last.setdefault("tool_calls", []).extend(message["tool_calls"])
                else:
                    messages.append(message)
            result = page
        result.pop("next_cursor", None)
        result["messages"] = messages
        return result

    async def iter_transcript(self, session_id: str) -> AsyncIterator[dict[str, Any]]:
        """The pages of ``load_session`` for a session, following ``next_cursor``."""
        cursor: str | None = None
        while True:
            frame: dict[str, Any] = {"action": "load_session", "session_id": session_id}
            if cursor:
                frame["payload"] = {"cursor": cursor}
            page = _payload(await self._ack(frame))
            cursor = page.get("next_cursor")
            yield page
            if not cursor:
                return

    async def create_session(
        self,
        *,
        workdir: str | None = None,
        agent: str | None = None,
        mode: str | None = None,
        title: str | None = None,
        mcp_servers: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """A session without a run (contract v1.2); its fields as ``list_sessions`` has them."""
        payload = {
            k: v
            for k, v in (
                ("agent", agent),
                ("mode", mode),
                ("title", title),
                ("mcp_servers", mcp_servers),
            )
            if v is not None
        }
        frame: dict[str, Any] = {"action": "create_session", "payload": payload}
        if workdir is not None:
            frame["workdir"] = workdir
        return _payload(await self._ack(frame))

    async def set_mode(self, session_id: str, mode: str) -> dict[str, Any]:
        """Set a session's mode without a run (contract v1.2); the session's fields."""
        return _payload(
            await self._ack(
                {"action": "set_mode", "session_id": session_id, "payload": {"mode": mode}}
            )
        )

    async def delete_session(self, session_id: str) -> dict[str, Any]:
        """Delete a session, its log, runs and permission requests (contract v1.2)."""
        return _payload(await self._ack({"action": "delete_session", "session_id": session_id}))

    async def compact(self, session_id: str) -> dict[str, Any]:
        """Ask the session's agent to compact its context."""
        return _payload(await self._ack({"action": "compact", "session_id": session_id}))

    async def status(self) -> dict[str, Any]:
        """What the gateway is doing (version, pid, runtimes, counts)."""
        return _payload(await self._ack({"action": "status"}))

    async def bind_stream(
        self, session_id: str, *, after_seq: int | None = None, run_id: str | None = None
    ) -> dict[str, Any]:
        """Receive a session's events here; with ``after_seq``, replay the log first."""
        payload = {"after_seq": after_seq} if after_seq is not None else None
        ack = await self._ack(
            {
                "action": "bind_stream",
                "session_id": session_id,
                "run_id": run_id,
                "payload": payload,
            }
        )
        return _payload(ack)

    async def unbind_stream(self, session_id: str) -> None:
        """Stop receiving a session's events here."""
        await self._ack({"action": "unbind_stream", "session_id": session_id})

    async def session_events(
        self,
        session_id: str,
        *,
        after_seq: int | None = None,
        run_id: str | None = None,
        follow: bool = True,
        reconnect: bool = False,
        reconnect_timeout: float = 30.0,
        on_reconnect: Callable[[str], None] | None = None,
    ) -> AsyncIterator[Event]:
        """The events of a session, in ``seq`` order, each exactly once.

        With ``after_seq``, the log is replayed from there first. ``follow=False``
        ends once the replay reached the session's last event. With
        ``reconnect=True``, a lost connection (a gateway restart, a
        ``slow_consumer`` close) or :class:`EventsDropped` is repaired by
        connecting and binding again from the last ``seq`` seen, for up to
        ``reconnect_timeout`` seconds per outage; ``on_reconnect`` is told
        ``"lost"`` when an outage begins and ``"back"`` when it is repaired, so a
        front-end can say why it is quiet.
        """
        last = after_seq
        while True:
            subscription = self.subscribe(session_id, run_id=run_id)
            try:
                ack = await self.bind_stream(session_id, after_seq=last, run_id=run_id)
                target = int(ack.get("last_seq", 0))
                if not follow and (last or 0) >= target:
                    return
                async for event in subscription:
                    if last is not None and event.seq <= last:
                        continue  # seen before a reconnect
                    last = event.seq
                    yield event
                    if not follow and last >= target:
                        return
                return
            except (ConnectionClosed, EventsDropped):
                if not reconnect:
                    raise
            finally:
                self.unsubscribe(subscription)
            if on_reconnect is not None:
                on_reconnect("lost")
            await self._reconnect(reconnect_timeout)
            if on_reconnect is not None:
                on_reconnect("back")
            last = last if last is not None else 0

    async def _reconnect(self, timeout: float) -> None:
        """Connect again (the gateway may be restarting), retrying for ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        delay = 0.05
        if self.connected and self._protocol is not None:
            self._protocol.close("reconnecting")
            await self._protocol.wait_lost(CLOSE_GRACE)
        while True:
            try:
                await self.connect()
                return
            except (GatewayUnreachable, RequestTimeout):
                if time.monotonic() + delay > deadline:
                    raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)


def _payload(frame: Frame) -> dict[str, Any]:
    payload = frame.payload
    return payload if isinstance(payload, dict) else {}
