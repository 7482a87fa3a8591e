"""The daemon's first pings, answered before the event loop and the core have loaded.

The socket is open (and the single-instance lock taken) within a few
milliseconds of exec; importing asyncio, msgspec, the core and SQLite takes
tens more. Meanwhile a client that checks "is the gateway up?" (``ping``, a
front-end starting the daemon, a supervisor's probe) would wait. So a plain
thread accepts on the listening socket and answers the commonest ping frame,
``{"type":"request","action":"ping","request_id":"ID"}``, byte for byte as the
full gateway does, after the same peer check. Anything else a client sends
stops the early answers on that connection: the connection, with every byte
not yet answered, is handed to the event loop when it starts, so the contract's
rules stay in one place (the full parser) and answers keep their order.
"""

from __future__ import annotations

import os
import re
import selectors
import socket
import threading
from typing import Final

from neocode_gateway.errors import PeerCredentialsUnavailable
from neocode_gateway.transport import read_peer_credentials

#: The ping frames answered early: these three fields in this order, an id of safe
#: characters (its JSON encoding is itself between quotes), nothing else.
_SIMPLE_PING: Final = re.compile(
    rb'[ \t]*\{[ \t]*"type"[ \t]*:[ \t]*"request"[ \t]*,[ \t]*"action"[ \t]*:[ \t]*"ping"'
    rb'(?:[ \t]*,[ \t]*"request_id"[ \t]*:[ \t]*"([A-Za-z0-9._:-]{1,128})")?[ \t]*\}[ \t]*\r?'
)
#: The full gateway's ping ack (``dispatch.ping``), as bytes; a test keeps them equal.
PONG_HEAD: Final = b'{"type":"ack","action":"ping","request_id":"'
PONG_TAIL: Final = b'","payload":{"message":"pong"}}\n'
PONG_NO_ID: Final = b'{"type":"ack","action":"ping","payload":{"message":"pong"}}\n'
#: How often the thread looks at whether it must stop (seconds).
TICK: Final = 0.005
MAX_BUFFER: Final = 1 << 20


def pong_for(line: bytes) -> bytes | None:
    """The early answer to ``line`` (without its newline), or ``None`` if it is not the
    plain ping frame (then the full gateway answers it)."""
    match = _SIMPLE_PING.fullmatch(line)
    if match is None:
        return None
    request_id = match.group(1)
    if request_id is None:
        return PONG_NO_ID
    return PONG_HEAD + request_id + PONG_TAIL


class _Early:
    """One accepted connection: what it sent that is not answered yet."""

    __slots__ = ("buffer", "sock", "stopped")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""
        self.stopped = False  # a frame the early thread does not answer: the rest waits


class EarlyPong:
    """Answers plain pings on ``listening`` until :meth:`handover`."""

    def __init__(self, listening: socket.socket, *, skip_peer_check: bool = False) -> None:
        self._listening = listening
        self._skip_peer_check = skip_peer_check
        self._uid = os.geteuid()
        self._stop = threading.Event()
        self._conns: dict[socket.socket, _Early] = {}
        self._thread = threading.Thread(target=self._run, name="early-pong", daemon=True)
        self.answered = 0

    def start(self) -> None:
        self._listening.setblocking(False)
        self._thread.start()

    def handover(self) -> list[tuple[socket.socket, bytes]]:
        """Stop; the connections still open, each with the bytes not answered yet (once:
        a second call returns nothing)."""
        self._stop.set()
        if self._thread.is_alive() or self._thread.ident is not None:
            self._thread.join()
        conns, self._conns = self._conns, {}
        return [(early.sock, early.buffer) for early in conns.values()]

    def _run(self) -> None:
        selector = selectors.DefaultSelector()
        selector.register(self._listening, selectors.EVENT_READ)
        try:
            while not self._stop.is_set():
                for key, _ in selector.select(TICK):
                    if key.fileobj is self._listening:
                        self._accept(selector)
                    else:
                        self._read(selector, self._conns[key.fileobj])  # type: ignore[index]
        finally:
            selector.close()

    def _accept(self, selector: selectors.BaseSelector) -> None:
        try:
            sock, _ = self._listening.accept()
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            return
        except OSError:
            return  # out of descriptors, say: the event loop will accept it later
        if not self._trusted(sock):
            sock.close()
            return
        sock.setblocking(False)
        self._conns[sock] = _Early(sock)
        selector.register(sock, selectors.EVENT_READ)

    def _trusted(self, sock: socket.socket) -> bool:
        """The server's admission rule: our uid or root (refused ones are simply closed)."""
        if self._skip_peer_check:
            return True
        try:
            peer = read_peer_credentials(sock)
        except (PeerCredentialsUnavailable, OSError):
            return False
        return peer.uid in (self._uid, 0)

    def _read(self, selector: selectors.BaseSelector, early: _Early) -> None:
        try:
            data = early.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            selector.unregister(early.sock)
            if not early.buffer:  # gone, owing nothing: close it here
                del self._conns[early.sock]
                early.sock.close()
            return  # else the event loop reads the end of file after what is buffered
        early.buffer += data
        while not early.stopped:
            line, newline, rest = early.buffer.partition(b"\n")
            if not newline:
                break
            answer = pong_for(line)
            if answer is None:
                early.stopped = True
                break
            try:  # a few bytes: blocking, bounded, never half a frame
                early.sock.settimeout(2.0)
                early.sock.sendall(answer)
                early.sock.setblocking(False)
            except OSError:
                early.stopped = True  # not reading: the event loop's deadlines decide
                break
            early.buffer = rest
            self.answered += 1
        if early.stopped or len(early.buffer) > MAX_BUFFER:
            early.stopped = True
            selector.unregister(early.sock)  # the event loop reads the rest
