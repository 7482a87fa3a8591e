"""Shared plumbing of the mock model servers: a threaded HTTP server on 127.0.0.1.

The real agents (Claude Code, Codex) call their model provider over HTTP; in
tests they call one of these instead, on loopback, so that nothing ever leaves
the machine. Each server records every request (path and JSON body) for the
test to inspect, and streams server-sent events the way the real API does.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Recorded:
    """One request a mock received."""

    def __init__(self, method: str, path: str, body: Any) -> None:
        self.method = method
        self.path = path
        self.body = body


class MockServer(ThreadingHTTPServer):
    """A loopback HTTP server whose handler class answers one model API."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, handler: type[BaseHTTPRequestHandler], port: int = 0) -> None:
        super().__init__(("127.0.0.1", port), handler)
        self.requests: list[Recorded] = []
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self.serve_forever, name="mock model", daemon=True)
        #: Set to make streamed answers stop early (a cancel test's client disconnects anyway).
        self.stop_streams = threading.Event()

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> MockServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stop_streams.set()
        self.shutdown()
        self.server_close()

    def record(self, method: str, path: str, body: Any) -> None:
        with self.lock:
            self.requests.append(Recorded(method, path, body))

    def bodies(self, path_prefix: str) -> list[Any]:
        with self.lock:
            return [r.body for r in self.requests if r.path.startswith(path_prefix)]


class SseHandler(BaseHTTPRequestHandler):
    """Reads a JSON body; helpers to answer JSON or a stream of server-sent events."""

    protocol_version = "HTTP/1.1"
    server: MockServer

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        return

    def read_json(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            raw = self._read_chunked()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = {"raw": raw.decode("utf-8", "replace")}
        self.server.record(self.command, self.path, body)
        return body

    def _read_chunked(self) -> bytes:
        out = b""
        while True:
            size = int(self.rfile.readline().strip() or b"0", 16)
            if size == 0:
                self.rfile.readline()
                return out
            out += self.rfile.read(size)
            self.rfile.readline()

    def send_json(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def send_events(self, events: Iterator[tuple[str | None, Any, float]]) -> None:
        """Stream ``(event name, data, delay before it)``; stops if the client goes away."""
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        try:
            for name, data, delay in events:
                if delay and self.server.stop_streams.wait(delay):
                    return
                chunk = (f"event: {name}\n" if name else "") + f"data: {json.dumps(data)}\n\n"
                self.wfile.write(chunk.encode())
                self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            return


def now() -> int:
    return int(time.time())
