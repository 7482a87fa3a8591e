"""A raw v1.1 peer for tests: a blocking socket that separates responses from events.

Deliberately independent of the client library, so that the daemon's tests
check the wire itself: every frame read is kept in :attr:`Peer.frames` in
arrival order, events also in :attr:`Peer.events`.
"""

from __future__ import annotations

import itertools
import socket
import time
from collections.abc import Callable
from typing import Any

import msgspec

from tests.support import LineReader, connect

_ids = itertools.count(1)
Frame = dict[str, Any]


class Peer:
    """One connection to a gateway, speaking v1.1 frames."""

    def __init__(self, path: str, timeout: float = 10.0) -> None:
        self.path = path
        self.sock = connect(path, timeout)
        self.reader = LineReader(self.sock)
        self.frames: list[Frame] = []
        self.events: list[Frame] = []
        self._unread_responses: list[Frame] = []

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Peer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send(self, action: str, **fields: Any) -> str:
        """Write one request; return its request_id."""
        request_id = fields.pop("request_id", None) or f"t{next(_ids)}"
        frame = {"type": "request", "action": action, "request_id": request_id, **fields}
        self.sock.sendall(msgspec.json.encode(frame) + b"\n")
        return request_id

    def read(self) -> Frame:
        """The next frame (response or event)."""
        line = self.reader.line()
        if not line:
            raise EOFError("the gateway closed the connection")
        frame: Frame = msgspec.json.decode(line)
        self.frames.append(frame)
        if frame.get("type") == "event":
            self.events.append(frame)
        return frame

    def response(self, request_id: str | None = None) -> Frame:
        """Read until the next response (or the one for ``request_id``); events are kept."""
        for index, frame in enumerate(self._unread_responses):
            if request_id is None or frame.get("request_id") == request_id:
                return self._unread_responses.pop(index)
        while True:
            frame = self.read()
            if frame.get("type") == "event":
                continue
            if request_id is None or frame.get("request_id") == request_id:
                return frame
            self._unread_responses.append(frame)

    def request(self, action: str, **fields: Any) -> Frame:
        """Send one request and return its response."""
        return self.response(self.send(action, **fields))

    def ack(self, action: str, **fields: Any) -> Frame:
        """Send one request whose answer must be an ack; return it."""
        frame = self.request(action, **fields)
        assert frame["type"] == "ack", frame
        return frame

    def wait_event(self, predicate: Callable[[Frame], bool], timeout: float = 10.0) -> Frame:
        """The first event (already read or arriving) that satisfies ``predicate``."""
        for frame in self.events:
            if predicate(frame):
                return frame
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no matching event within {timeout}s: {self.events[-5:]}")
            self.sock.settimeout(remaining)
            try:
                frame = self.read()
            except TimeoutError:
                continue
            finally:
                self.sock.settimeout(None)
            if frame.get("type") != "event":
                self._unread_responses.append(frame)
                continue
            if predicate(frame):
                return frame

    def wait_terminal(self, run_id: str, timeout: float = 20.0) -> Frame:
        """The terminal event (run_done / run_error) of ``run_id``."""
        return self.wait_event(
            lambda f: f.get("run_id") == run_id and etype(f) in ("run_done", "run_error"),
            timeout,
        )

    def run_events(self, run_id: str) -> list[Frame]:
        """Events of ``run_id`` received so far."""
        return [f for f in self.events if f.get("run_id") == run_id]


def etype(frame: Frame) -> str:
    """The event_type of an event frame."""
    return str(frame["payload"]["event_type"])


def data(frame: Frame) -> dict[str, Any]:
    """The data of an event frame."""
    value = frame["payload"]["data"]
    assert isinstance(value, dict)
    return value


def seqs(frames: list[Frame]) -> list[int]:
    """The seq numbers of event frames."""
    return [int(f["payload"]["seq"]) for f in frames]


def raw_lines(sock: socket.socket, count: int, timeout: float = 10.0) -> list[bytes]:
    """Read exactly ``count`` raw lines (for byte-exact checks)."""
    sock.settimeout(timeout)
    reader = LineReader(sock)
    return [reader.line() for _ in range(count)]
