"""Accepted Unix-socket connections watched by one epoll set of our own.

Why not the event loop's own transports: under uvloop each one costs about
1 KiB (the transport object, its libuv handle, an entry in the loop's weak
table of transports) whatever the connection does, and an idle connection is
the common case of a local daemon (editors, terminals and pages that stay
connected). Here a connection is a socket, a :class:`SocketTransport` of a
few slots and one entry in an epoll set; the event loop watches two
descriptors, the epoll set and the listening socket, and calls
:meth:`Reactor._ready` when any connection is ready.

The transports keep asyncio's protocol contract, so the server above does not
know which kind it has: ``connection_made`` (synchronously at accept),
``data_received``, ``eof_received``, ``pause_writing``/``resume_writing``
around a 64 KiB buffer, and ``connection_lost`` on a later loop turn.

A read takes at most 64 KiB: a larger ``recv`` (above the allocator's mmap
threshold) would map and unmap memory on every read. The set is level-triggered: a
socket whose reading is paused and that has nothing to write leaves it, since a
hang-up is reported even for no events asked, on every turn of the loop.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import select
import socket
from collections.abc import Callable
from typing import Any, Final

log = logging.getLogger("neocode_gateway.transport")

#: Bytes read at most per ready connection and loop turn (below glibc's mmap threshold:
#: the unused tail of the ``bytes`` a ``recv`` allocates is given back in place).
READ_SIZE: Final = 64 << 10
#: The write buffer above which the protocol is asked to pause, and below which it resumes.
HIGH_WATER: Final = 64 << 10
LOW_WATER: Final = 16 << 10
#: Connections accepted per wake-up of the listening socket (the others wait their turn).
ACCEPT_BATCH: Final = 16
#: Ready connections taken from the epoll set per round, and rounds per loop turn.
MAX_EVENTS: Final = 512
POLL_ROUNDS: Final = 4
#: Seconds accepting pauses when the process is out of descriptors or memory.
ACCEPT_RETRY_DELAY: Final = 0.25
_OUT_OF_RESOURCES: Final = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


#: epoll's event bits (the values are Linux's; the reactor is only used where epoll is).
_IN: Final = getattr(select, "EPOLLIN", 0x001)
_OUT: Final = getattr(select, "EPOLLOUT", 0x004)
_HUP: Final = getattr(select, "EPOLLHUP", 0x010) | getattr(select, "EPOLLERR", 0x008)

ProtocolFactory = Callable[[], asyncio.Protocol]


class Reactor:
    """One epoll set for every accepted connection of a listener, in one event loop."""

    __slots__ = (
        "_accepting",
        "_epoll",
        "_exhausted_since",
        "_factory",
        "_listening",
        "loop",
        "transports",
    )

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._epoll = select.epoll()
        #: Every open transport, by its descriptor.
        self.transports: dict[int, SocketTransport] = {}
        self._listening: socket.socket | None = None
        self._factory: ProtocolFactory | None = None
        self._accepting = False
        #: When accepting first failed for want of descriptors (``None``: it does not).
        self._exhausted_since: float | None = None
        loop.add_reader(self._epoll.fileno(), self._ready)

    # -- accepting ----------------------------------------------------------------------

    def serve(self, listening: socket.socket, factory: ProtocolFactory) -> None:
        """Accept connections from ``listening`` (non-blocking), each with a new protocol."""
        self._listening = listening
        self._factory = factory
        self._start_accepting()

    def stop_accepting(self) -> None:
        if self._accepting and self._listening is not None:
            self._accepting = False
            self.loop.remove_reader(self._listening.fileno())

    def _start_accepting(self) -> None:
        listening = self._listening
        if not self._accepting and listening is not None and listening.fileno() >= 0:
            self._accepting = True
            self.loop.add_reader(listening.fileno(), self._accept)

    def _accept(self) -> None:
        listening = self._listening
        factory = self._factory
        assert listening is not None
        assert factory is not None
        for _ in range(ACCEPT_BATCH):
            try:
                sock, _ = listening.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in _OUT_OF_RESOURCES:
                    self._exhausted(exc)
                    return
                if exc.errno == errno.ECONNABORTED:
                    continue  # the client gave up while it waited
                raise
            if self._exhausted_since is not None:
                log.warning(
                    "accepting connections again after %.1f s",
                    self.loop.time() - self._exhausted_since,
                )
                self._exhausted_since = None
            self.adopt(sock, factory)

    def _exhausted(self, exc: OSError) -> None:
        """Out of descriptors: accepting pauses a while (said once, not per attempt)."""
        if self._exhausted_since is None:
            self._exhausted_since = self.loop.time()
            log.warning(
                "accepting a connection failed: %s; retrying every %.2f s until it succeeds",
                exc.strerror,
                ACCEPT_RETRY_DELAY,
            )
        self.stop_accepting()
        self.loop.call_later(ACCEPT_RETRY_DELAY, self._start_accepting)

    def adopt(self, sock: socket.socket, factory: ProtocolFactory) -> asyncio.Protocol:
        """Serve an accepted ``sock`` with a protocol from ``factory``; return the protocol."""
        sock.setblocking(False)
        protocol = factory()
        transport = SocketTransport(self, sock, protocol)
        self.transports[sock.fileno()] = transport
        try:
            protocol.connection_made(transport)
        except Exception as exc:
            log.exception("setting up a connection failed")
            transport.force_close(exc)
            return protocol
        transport.update()
        return protocol

    # -- readiness ------------------------------------------------------------------------

    def _ready(self) -> None:
        """The epoll set is readable: serve every ready connection, then look again.

        Clients answered in one round often send again before the round ends: a
        few more rounds serve them without a trip through the event loop (bounded,
        so that timers and tasks wait at most a few rounds).
        """
        poll = self._epoll.poll
        transports = self.transports
        out, hup, readable = _OUT, _HUP, _IN | _HUP
        for _ in range(POLL_ROUNDS):
            try:
                ready = poll(0, MAX_EVENTS)
            except InterruptedError:  # pragma: no cover - retried on the next turn
                return
            if not ready:
                return
            for fd, mask in ready:
                transport = transports.get(fd)
                if transport is None:  # pragma: no cover - closed by an earlier one
                    continue
                try:
                    if mask & out or (mask & hup and transport.buffer):
                        transport.write_ready()
                    if mask & readable and not transport.lost:
                        if transport.reading:
                            transport.read_ready()
                        elif mask & hup and not transport.buffer:
                            transport.unwatch()
                except Exception as exc:
                    log.exception("a connection failed; closing it")
                    transport.force_close(exc)

    def watch(self, fd: int, events: int, registered: int) -> None:
        """Change the events ``fd`` is watched for (0: take it out of the set)."""
        if not registered:
            self._epoll.register(fd, events)
        elif not events:
            self._epoll.unregister(fd)
        else:
            self._epoll.modify(fd, events)

    def close(self) -> None:
        """Stop watching; close whatever is still open (the event loop may be closed)."""
        if not self.loop.is_closed():
            self.stop_accepting()
            self.loop.remove_reader(self._epoll.fileno())
        for transport in list(self.transports.values()):
            transport.lost = True
            transport.sock.close()
        self.transports.clear()
        self._epoll.close()


class SocketTransport(asyncio.Transport):
    """One accepted connection: asyncio's transport interface over a non-blocking socket."""

    __slots__ = (
        "_protocol",
        "_reactor",
        "buffer",
        "closing",
        "lost",
        "paused",
        "reading",
        "registered",
        "sock",
    )

    def __init__(self, reactor: Reactor, sock: socket.socket, protocol: asyncio.Protocol) -> None:
        self._reactor = reactor
        self.sock = sock
        self._protocol: asyncio.Protocol | None = protocol
        #: Bytes accepted by :meth:`write` that the socket did not take yet.
        self.buffer: bytearray | None = None
        self.reading = True
        self.closing = False
        #: Gone: the socket is out of the set and ``connection_lost`` is scheduled.
        self.lost = False
        #: Whether the protocol was asked to pause writing.
        self.paused = False
        #: The events the socket is watched for now.
        self.registered = 0

    # -- asyncio.Transport ------------------------------------------------------------------

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "socket":
            return self.sock
        return default

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._protocol  # type: ignore[return-value]

    def is_closing(self) -> bool:
        return self.closing

    def is_reading(self) -> bool:
        return self.reading and not self.closing

    def pause_reading(self) -> None:
        if self.reading:
            self.reading = False
            self.update()

    def resume_reading(self) -> None:
        if not self.reading and not self.closing:
            self.reading = True
            self.update()

    def get_write_buffer_size(self) -> int:
        buffer = self.buffer
        return len(buffer) if buffer else 0

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return (LOW_WATER, HIGH_WATER)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Send now what the socket takes; keep the rest for when it is writable."""
        if self.lost:
            return
        buffer = self.buffer
        if buffer:
            buffer += data
        else:
            try:
                sent = self.sock.send(data)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError as exc:
                self.force_close(exc)
                return
            if sent == len(data):
                return
            self.buffer = buffer = bytearray(memoryview(data)[sent:])
            self.update()
        if not self.paused and len(buffer) > HIGH_WATER:
            self.paused = True
            self._call("pause_writing")

    def can_write_eof(self) -> bool:
        return False

    def close(self) -> None:
        """Stop reading; close once everything written has been sent."""
        if self.closing:
            return
        self.closing = True
        self.reading = False
        if self.buffer:
            self.update()
        else:
            self.force_close(None)

    def abort(self) -> None:
        """Close now, discarding anything not sent."""
        self.force_close(None)

    # -- readiness (called by the reactor) --------------------------------------------------

    def read_ready(self) -> None:
        try:
            data = self.sock.recv(READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self.force_close(exc)
            return
        protocol = self._protocol
        assert protocol is not None
        if data:
            protocol.data_received(data)
            return
        self.reading = False
        self.update()
        if not protocol.eof_received():
            self.close()

    def write_ready(self) -> None:
        buffer = self.buffer
        if buffer:
            try:
                sent = self.sock.send(buffer)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self.force_close(exc)
                return
            del buffer[:sent]
            if buffer:
                if self.paused and len(buffer) <= LOW_WATER:
                    self.paused = False
                    self._call("resume_writing")
                return
        self.buffer = None
        self.update()
        if self.paused:
            self.paused = False
            self._call("resume_writing")
        if self.closing and not self.buffer:
            self.force_close(None)

    def unwatch(self) -> None:
        """Take the socket out of the set (a hang-up while reading is paused)."""
        if self.registered:
            self._reactor.watch(self.sock.fileno(), 0, self.registered)
            self.registered = 0

    def update(self) -> None:
        """Watch the socket for what it waits for now: reading, writing, both or neither."""
        if self.lost:
            return
        wanted = (_IN if self.reading and not self.closing else 0) | (_OUT if self.buffer else 0)
        if wanted != self.registered:
            self._reactor.watch(self.sock.fileno(), wanted, self.registered)
            self.registered = wanted

    def force_close(self, exc: BaseException | None) -> None:
        """Close the socket now (its descriptor is free at once: a burst of refused
        connections cannot exhaust them); ``connection_lost(exc)`` on a later turn."""
        if self.lost:
            return
        self.unwatch()
        self.closing = True
        self.lost = True
        self.reading = False
        self.buffer = None
        self._reactor.transports.pop(self.sock.fileno(), None)
        self.sock.close()
        self._reactor.loop.call_soon(self._connection_lost, exc)

    def _connection_lost(self, exc: BaseException | None) -> None:
        protocol, self._protocol = self._protocol, None
        if protocol is not None:
            protocol.connection_lost(exc)  # type: ignore[arg-type]

    def _call(self, name: str) -> None:
        """``pause_writing`` or ``resume_writing``; a failure is logged, as asyncio does."""
        try:
            getattr(self._protocol, name)()
        except Exception:
            log.exception("protocol.%s() failed", name)
