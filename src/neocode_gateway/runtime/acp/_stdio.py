"""The agent's stdin and stdout as JSON-RPC messages, for the SDK's ``Connection``.

Why not the SDK's own newline-JSON transport: its line reader appends past
the stream's limit without end (a 1 GiB line took the gateway to 2 GiB), a
valid JSON line that is not an object (``[]``, ``42``) kills its receive loop
(and with it every run on the agent), each line that is not JSON is logged
with a traceback at ERROR, and its ``close()`` waits for a write that an agent
which stopped reading never lets finish. Here:

* a line longer than ``max_line`` is a fatal agent error, said in words
  (``on_fatal``), and reading stops; memory stays within ``max_line`` and the
  stream's buffer;
* a line that is not JSON, not an object, or with an ``id`` or ``method`` of
  the wrong type is skipped, with one warning (no traceback);
* :meth:`close` never waits: unsent bytes are dropped and stdin is closed;
* ``on_sent`` hears of each message once it is written (a run's phase
  ``waiting_for_model`` follows its ``session/prompt``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from typing import Any, Final

log = logging.getLogger("neocode_gateway.runtime.acp")

#: The longest line an agent may send (real agents send whole files in one update).
DEFAULT_MAX_LINE: Final = 64 * 1024 * 1024
#: How much of a skipped line the log shows.
SHOWN: Final = 200


class AgentStdio:
    """An ``acp`` ``Transport`` over the agent's pipes (see the module docstring)."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        label: str,
        max_line: int = DEFAULT_MAX_LINE,
        on_fatal: Callable[[str], None] | None = None,
        on_sent: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._label = label
        self._max_line = max_line
        self._on_fatal = on_fatal
        self._on_sent = on_sent
        self._closed = False
        self.skipped = 0

    async def send(self, message: dict[str, Any]) -> None:
        if self._closed:
            raise ConnectionError(f"{self._label}: its stdin is closed")
        data = json.dumps(message, separators=(",", ":")).encode("utf-8") + b"\n"
        try:
            self._writer.write(data)
            await self._writer.drain()
        except (OSError, RuntimeError) as exc:
            raise ConnectionError(f"{self._label}: its stdin is closed ({exc})") from None
        if self._on_sent is not None:
            self._on_sent(message)

    async def receive(self) -> dict[str, Any] | None:
        while True:
            line = await self._read_line()
            if line is None:
                return None
            line = line.strip()
            if not line:
                continue
            message = self._parse(line)
            if message is not None:
                return message

    async def close(self) -> None:
        """Close stdin now (unsent bytes dropped): never waits for the agent to read."""
        self._closed = True
        if not self._writer.transport.is_closing():
            with contextlib.suppress(OSError, RuntimeError):
                self._writer.transport.abort()

    def _parse(self, line: bytes) -> dict[str, Any] | None:
        try:
            message = json.loads(line)
        except ValueError:
            return self._skip(line, "not JSON")
        if not isinstance(message, dict):
            return self._skip(line, "not a JSON object")
        method = message.get("method")
        if method is not None and not isinstance(method, str):
            return self._skip(line, "a method that is not a string")
        if "id" in message and not isinstance(message["id"], int | str | None):
            return self._skip(line, "an id that is neither a number nor a string")
        if isinstance(message.get("id"), bool):
            return self._skip(line, "an id that is neither a number nor a string")
        return message

    def _skip(self, line: bytes, why: str) -> dict[str, Any] | None:
        self.skipped += 1
        text = line[:SHOWN].decode("utf-8", "replace")
        more = f" ({len(line)} bytes)" if len(line) > SHOWN else ""
        log.warning("%s: a stdout line that is %s was skipped: %s%s", self._label, why, text, more)
        return None

    async def _read_line(self) -> bytes | None:
        """One line (without its end), ``None`` at end-of-file or past ``max_line``."""
        chunks: list[bytes] = []
        size = 0
        while True:
            try:
                part = await self._reader.readuntil(b"\n")
            except asyncio.LimitOverrunError as exc:
                part = await self._reader.readexactly(exc.consumed)
                size += len(part)
                if size > self._max_line:
                    return self._too_long()
                chunks.append(part)
                continue
            except asyncio.IncompleteReadError as exc:
                chunks.append(exc.partial)
                last = b"".join(chunks)
                return last if last.strip() else None
            except (OSError, ValueError):
                return None
            size += len(part)
            if size > self._max_line + 1:
                return self._too_long()
            chunks.append(part)
            return b"".join(chunks)

    def _too_long(self) -> bytes | None:
        why = f"sent a line longer than {self._max_line} bytes on stdout"
        log.error("%s %s: it is stopped", self._label, why)
        if self._on_fatal is not None:
            self._on_fatal(why)
        return None
