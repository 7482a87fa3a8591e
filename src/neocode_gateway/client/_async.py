"""The asyncio client: one connection, many concurrent requests, typed errors.

Requests are written as soon as they are made (pipelining) and each waits on
its own future; :mod:`neocode_gateway.client._protocol` resolves the futures
as the responses arrive. The blocking :class:`~neocode_gateway.client.GatewayClient`
drives this same class, so there is one implementation of the client.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Generator, Mapping, Sequence
from types import TracebackType
from typing import Any, Final, Self, cast

import msgspec

from neocode_gateway.client._local import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_REQUEST_TIMEOUT,
    MAX_RESPONSE_BYTES,
    check_trusted,
    client_default_address,
    new_request_id,
    os_reason,
)
from neocode_gateway.client._protocol import ClientProtocol, RawResponse
from neocode_gateway.client._streams import EventsDropped, SlowConsumer, Subscription
from neocode_gateway.errors import (
    ClientError,
    ConnectionClosed,
    ErrorFrameReceived,
    GatewayUnreachable,
    PeerCredentialsUnavailable,
    ProtocolViolation,
    RequestTimeout,
    TransportError,
)
from neocode_gateway.protocol import (
    SLOW_CONSUMER,
    Event,
    Frame,
    InputPart,
    decode_event,
    encode_frame,
)
from neocode_gateway.transport import PeerCredentials, is_pipe_address, read_peer_credentials

log = logging.getLogger("neocode_gateway.client")

#: Unsolicited frames of no session kept for :meth:`AsyncGatewayClient.frames` (oldest dropped).
DEFAULT_MAX_QUEUED_FRAMES: Final = 1024
#: Longest response line accepted: answers (``load_session`` of a long session) can be far
#: larger than the 1 MiB a request may be.
DEFAULT_MAX_RESPONSE_BYTES: Final = MAX_RESPONSE_BYTES
#: Seconds ``close()`` lets the transport flush before aborting it.
CLOSE_GRACE: Final = 1.0


def _check_timeout(name: str, value: float | None, *, allow_none: bool) -> None:
    if value is None and allow_none:
        return
    if value is None or not value > 0:
        raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")


def _line_key(line: bytes) -> str | None:
    """The ``request_id`` the gateway will echo for a raw request line, if any.

    The gateway echoes a non-empty string ``request_id`` whenever the line is
    a JSON object; for anything else its answer carries no id and is matched
    by position.
    """
    try:
        value = msgspec.json.decode(line)
    except (msgspec.DecodeError, RecursionError):
        return None
    if isinstance(value, dict):
        request_id = value.get("request_id")
        if isinstance(request_id, str) and request_id:
            return request_id
    return None


def raise_for_error(frame: Frame) -> Frame:
    """Raise :class:`ErrorFrameReceived` if ``frame`` is an error frame, else return it."""
    if frame.type == "error" and frame.error is not None:
        raise ErrorFrameReceived(
            frame.error.code, frame.error.message, action=frame.action, request_id=frame.request_id
        )
    return frame


async def _dial(
    address: str, factory: Callable[[], ClientProtocol], timeout: float
) -> tuple[asyncio.BaseTransport, ClientProtocol]:
    """Open the connection: a named pipe on Windows, a Unix socket elsewhere."""
    if is_pipe_address(address):
        if sys.platform == "win32":  # pragma: no cover - exercised by the Windows CI only
            from neocode_gateway.transport._windows import connect_pipe

            transport, protocol = await connect_pipe(address, factory, timeout=timeout)
            return transport, cast(ClientProtocol, protocol)
        raise GatewayUnreachable(address, "named pipes exist only on Windows")
    loop = asyncio.get_running_loop()
    try:
        return await loop.create_unix_connection(factory, address)
    except NotImplementedError:  # pragma: no cover - Windows event loops
        raise GatewayUnreachable(
            address, "this platform's event loop has no Unix sockets; use a named pipe"
        ) from None


class AsyncGatewayClient:
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

    def __init__(
        self,
        address: str | None = None,
        *,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        request_timeout: float | None = DEFAULT_REQUEST_TIMEOUT,
        on_event: Callable[[Frame], None] | None = None,
        max_queued_events: int = DEFAULT_MAX_QUEUED_FRAMES,
        max_frame_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        trust_any_uid: bool = False,
        client_name: str | None = None,
        device: str | None = None,
    ) -> None:
        _check_timeout("connect_timeout", connect_timeout, allow_none=False)
        _check_timeout("request_timeout", request_timeout, allow_none=True)
        if max_queued_events < 1:
            raise ValueError(f"max_queued_events must be at least 1, got {max_queued_events}")
        self.address: str = address or client_default_address()
        #: Talk to a gateway run by another user (by default: only ours or root's).
        self.trust_any_uid = trust_any_uid
        self._subscriptions: list[Subscription] = []
        self.connect_timeout = connect_timeout
        self.request_timeout = request_timeout
        self.on_event = on_event
        self.max_queued_events = max_queued_events
        self.max_frame_bytes = max_frame_bytes
        #: Unsolicited frames dropped because nobody read :meth:`events` in time.
        self.dropped_events = 0
        self._protocol: ClientProtocol | None = None
        self._events: asyncio.Queue[Frame | None] = asyncio.Queue()
        self._peer: PeerCredentials | None = None
        #: Said to the gateway at every connect (``hello``, contract v1.2): decisions made
        #: through this client are recorded as this client's.
        self.client_name = client_name
        self.device = device

    def __repr__(self) -> str:
        state = "connected" if self.connected else "not connected"
        return f"<{type(self).__name__} {self.address} {state}>"

    # -- connection ---------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """Whether the connection is open and requests can be made."""
        return self._protocol is not None and self._protocol.is_open

    @property
    def peer(self) -> PeerCredentials | None:
        """Who owns the gateway's end of the connection (pid, uid), where the OS tells."""
        return self._peer

    async def connect(self) -> Self:
        """Connect to :attr:`address`; a no-op if already connected.

        Raises :class:`GatewayUnreachable` (with the OS reason) when nothing
        accepts connections there, :class:`RequestTimeout` after
        :attr:`connect_timeout` seconds.
        """
        if self.connected:
            return self
        self._events = asyncio.Queue()
        self._peer = None

        def factory() -> ClientProtocol:
            return ClientProtocol(
                self.address,
                self._unsolicited,
                on_closed=self._stream_ended,
                max_frame_bytes=self.max_frame_bytes,
            )

        timeout = self.connect_timeout
        try:
            async with asyncio.timeout(timeout):
                transport, protocol = await _dial(self.address, factory, timeout)
        except ClientError:
            raise
        except TransportError as exc:  # pragma: no cover - a malformed pipe name, on Windows
            raise GatewayUnreachable(self.address, str(exc)) from None
        except TimeoutError:
            raise RequestTimeout(
                f"could not connect to the gateway at {self.address} within {timeout:g} s"
            ) from None
        except OSError as exc:
            raise GatewayUnreachable(self.address, os_reason(exc)) from None
        self._protocol = protocol
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                self._peer = read_peer_credentials(sock)
            except (PeerCredentialsUnavailable, OSError):
                # Where the OS cannot tell, the socket directory's rules are the guard.
                self._peer = None
        self._check_peer(transport)
        if self.client_name:
            self._say_hello(protocol)
        return self

    def _say_hello(self, protocol: ClientProtocol) -> None:
        """Write ``hello`` now, ahead of any request (its answer is not waited for)."""
        key = new_request_id()
        payload: dict[str, Any] = {"client": self.client_name}
        if self.device:
            payload["device"] = self.device
        frame = {"type": "request", "action": "hello", "request_id": key, "payload": payload}
        future: asyncio.Future[RawResponse] = asyncio.get_running_loop().create_future()
        future.add_done_callback(_ignore_outcome)
        protocol.pending.add(key, future)
        protocol.write(msgspec.json.encode(frame) + b"\n")

    def _check_peer(self, transport: asyncio.BaseTransport) -> None:
        """Refuse a gateway run by another user: it would read every request we send."""
        try:
            check_trusted(self.address, self._peer.uid if self._peer else None, self.trust_any_uid)
        except GatewayUnreachable:
            cast(asyncio.Transport, transport).abort()
            self._protocol = None
            raise

    async def close(self) -> None:
        """Close the connection; requests still waiting fail with :class:`ConnectionClosed`."""
        protocol = self._protocol
        if protocol is None:
            return
        protocol.close("the client closed the connection")
        await protocol.wait_lost(CLOSE_GRACE)

    async def __aenter__(self) -> Self:
        return await self.connect()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def _open_protocol(self) -> ClientProtocol:
        protocol = self._protocol
        if protocol is None:
            raise RuntimeError(
                "the client is not connected: use 'async with AsyncGatewayClient()' "
                "or 'await client.connect()' first"
            )
        if not protocol.is_open:
            # No reason yet: the transport saw a write error (the gateway hung up) and
            # has not called connection_lost yet.
            reason = protocol.close_reason or "the gateway closed the connection"
            raise ConnectionClosed(f"{reason} ({self.address})")
        return protocol

    # -- requests -----------------------------------------------------------------------

    def prepare(self, frame: Frame | Mapping[str, Any]) -> Frame:
        """The request as it will be sent: a :class:`Frame`, ``type`` and ``request_id`` filled.

        A mapping is converted with the frame's own types (``ValueError`` if a
        field has the wrong type); ``type`` defaults to ``"request"`` and a
        missing or empty ``request_id`` is generated. ``frame`` is not modified.
        """
        if isinstance(frame, Frame):
            prepared = frame
        elif isinstance(frame, Mapping):
            try:
                prepared = msgspec.convert(dict(frame), Frame)
            except msgspec.ValidationError as exc:
                raise ValueError(f"not a valid frame: {exc}") from None
        else:
            raise TypeError(f"a frame is a Frame or a mapping, not {type(frame).__name__}")
        changes: dict[str, str] = {}
        if not prepared.type:
            changes["type"] = "request"
        if not prepared.request_id:
            changes["request_id"] = new_request_id()
        return msgspec.structs.replace(prepared, **changes) if changes else prepared

    async def request(
        self,
        frame: Frame | Mapping[str, Any],
        *,
        timeout: float | None = None,
        raise_on_error: bool = True,
    ) -> Frame:
        """Send one request and return the response frame that answers it.

        ``timeout`` overrides :attr:`request_timeout` for this call. An error
        frame raises :class:`ErrorFrameReceived` unless ``raise_on_error`` is
        false, in which case it is returned like any other response.
        """
        prepared = self.prepare(frame)
        response = await self._exchange(encode_frame(prepared), prepared.request_id, timeout)
        if raise_on_error:
            raise_for_error(response.frame)
        return response.frame

    async def request_line(self, line: bytes | str, *, timeout: float | None = None) -> RawResponse:
        """Send one raw request line exactly as given; return the response, error or not.

        For tools that relay frames they did not build (``neocode-gateway
        call --frame``): nothing is checked or filled in, so the gateway's own
        validation answers. A trailing newline is optional; a line that is
        blank or holds a newline inside is a ``ValueError`` (the gateway would
        answer it with no response, or with two).
        """
        data = line.encode() if isinstance(line, str) else bytes(line)
        if data.endswith(b"\n"):
            data = data[:-1]
        if b"\n" in data:
            raise ValueError("a request line must not contain a newline")
        if not data.strip(b" \t\r"):
            raise ValueError("a blank line is not a request (the gateway does not answer it)")
        return await self._exchange(data + b"\n", _line_key(data), timeout)

    async def ping(self, *, timeout: float | None = None) -> float:
        """Ping the gateway; return the round-trip time in seconds."""
        prepared = self.prepare(Frame(type="request", action="ping"))
        data = encode_frame(prepared)
        start = time.perf_counter()
        response = await self._exchange(data, prepared.request_id, timeout)
        elapsed = time.perf_counter() - start
        reply = raise_for_error(response.frame)
        if reply.type != "ack":
            raise ProtocolViolation(
                f"the gateway answered ping with a {reply.type} frame: {response.line!r}"
            )
        return elapsed

    async def _exchange(self, data: bytes, key: str | None, timeout: float | None) -> RawResponse:
        protocol = self._open_protocol()
        wait = self.request_timeout if timeout is None else timeout
        _check_timeout("timeout", wait, allow_none=True)
        future: asyncio.Future[RawResponse] = asyncio.get_running_loop().create_future()
        protocol.pending.add(key, future)
        protocol.write(data)
        try:
            async with asyncio.timeout(wait):
                await protocol.drain()
                return await future
        except TimeoutError:
            which = f" to request {key!r}" if key else ""
            raise RequestTimeout(
                f"no response{which} from the gateway at {self.address} within {wait:g} s"
            ) from None

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
        self, *, limit: int | None = None, cursor: str | None = None
    ) -> dict[str, Any]:
        """One page of sessions, newest first: ``{"sessions": [...], "next_cursor"?: C}``."""
        payload = {k: v for k, v in (("limit", limit), ("cursor", cursor)) if v is not None}
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


def _ignore_outcome(future: asyncio.Future[Any]) -> None:
    """An answer nobody waits for (``hello``'s): retrieve it, so asyncio does not warn."""
    if not future.cancelled():
        future.exception()


def _payload(frame: Frame) -> dict[str, Any]:
    payload = frame.payload
    return payload if isinstance(payload, dict) else {}


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
