"""Small misbehaving Unix socket servers, for client behaviours a real gateway never shows."""

from __future__ import annotations

import contextlib
import shutil
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import msgspec

from tests.support import short_tmpdir

Handler = Callable[[socket.socket, "FakeServer"], None]


class FakeServer:
    """A tiny Unix socket server in threads, for the behaviours a real gateway never shows.

    ``handler(conn, server)`` runs in its own thread for each accepted
    connection. :meth:`stop` shuts every socket down (which wakes blocked
    ``accept``/``recv`` calls) and joins the threads.
    """

    def __init__(self, handler: Handler) -> None:
        self.dir = short_tmpdir("ngw-fake-")
        self.path = f"{self.dir}/fake.sock"
        self.handler = handler
        self.accepted = 0
        self.received: list[bytes] = []
        self.release = threading.Event()
        self._lock = threading.Lock()
        self._conns: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.bind(self.path)
        self._sock.listen(16)
        self._spawn(self._accept_loop)

    def _spawn(self, target: Callable[..., None], *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept_loop(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            with self._lock:
                self.accepted += 1
                self._conns.append(conn)
            self._spawn(self._serve, conn)

    def _serve(self, conn: socket.socket) -> None:
        try:
            self.handler(conn, self)
        except OSError:
            pass
        finally:
            conn.close()

    def lines(self, conn: socket.socket) -> Iterator[bytes]:
        """The request lines of ``conn`` until EOF (each is also recorded in ``received``)."""
        buf = b""
        while True:
            chunk = conn.recv(65536)
            if not chunk:
                return
            buf += chunk
            while b"\n" in buf:
                line, _, buf = buf.partition(b"\n")
                with self._lock:
                    self.received.append(line)
                yield line

    def stop(self) -> None:
        self.release.set()
        for sock in [self._sock, *self._conns]:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        for thread in self._threads:
            thread.join(5)
        shutil.rmtree(self.dir, ignore_errors=True)


def silent(conn: socket.socket, server: FakeServer) -> None:
    """Read everything, answer nothing."""
    for _ in server.lines(conn):
        pass


def hang_up_after_first_line(conn: socket.socket, server: FakeServer) -> None:
    """Read one request, then close without answering."""
    next(server.lines(conn), None)


def garbage(conn: socket.socket, server: FakeServer) -> None:
    """Answer the first request with a line that is not JSON."""
    for _ in server.lines(conn):
        conn.sendall(b"this is not a frame\n")


def internal_error(conn: socket.socket, server: FakeServer) -> None:
    """Answer every request with an internal_error frame, echoing action and request_id."""
    for line in server.lines(conn):
        request = msgspec.json.decode(line)
        reply = {
            "type": "error",
            "action": request.get("action"),
            "request_id": request.get("request_id"),
            "error": {"code": "internal_error", "message": "internal gateway error"},
        }
        conn.sendall(msgspec.json.encode(reply) + b"\n")


def reversed_pair_with_event(conn: socket.socket, server: FakeServer) -> None:
    """Read two requests, push an event, then answer the second before the first."""
    lines = server.lines(conn)
    first = msgspec.json.decode(next(lines))
    second = msgspec.json.decode(next(lines))
    conn.sendall(b'{"type":"event","payload":{"progress":1}}\n')
    for request in (second, first):
        reply = {"type": "ack", "action": "ping", "request_id": request["request_id"]}
        conn.sendall(msgspec.json.encode(reply) + b"\n")
    for _ in lines:
        pass


def late_answers(conn: socket.socket, server: FakeServer) -> None:
    """Answer each request only once the test sets ``release``, in order, with ids."""
    for line in server.lines(conn):
        server.release.wait(10)
        request = msgspec.json.decode(line)
        reply = {"type": "ack", "action": "ping", "request_id": request["request_id"]}
        conn.sendall(msgspec.json.encode(reply) + b"\n")


def late_answers_without_ids(conn: socket.socket, server: FakeServer) -> None:
    """Answer each request once ``release`` is set, in order, WITHOUT request_id (by position).

    The answer then names its request only by its place: a client that forgot an
    abandoned (timed-out) request would hand its late answer to the next one.
    """
    for index, _ in enumerate(server.lines(conn), start=1):
        server.release.wait(10)
        reply = {"type": "ack", "action": "ping", "payload": {"n": index}}
        conn.sendall(msgspec.json.encode(reply) + b"\n")
