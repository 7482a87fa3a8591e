"""The front door on stdio: a quick ``initialize``, then the SDK's agent connection.

Importing the ACP SDK costs about 300 ms (pydantic builds its schema models).
An editor spawns the front door and waits for the ``initialize`` answer, which
does not depend on any of that, so this module answers the first line itself
when it is ``initialize`` (the answer is :func:`~._mapping.initialize_result`,
which a unit test validates against the SDK's model) while the SDK loads in a
thread and the gateway connection is made. Every other line, from the first
that is not ``initialize`` on, goes to the SDK's ``AgentSideConnection``
unchanged (with ``use_unstable_protocol=True``: without it the SDK answers
``session/resume`` and ``session/close`` with method-not-found, and acpx then
silently opens a new session, losing the user's context).

When the editor closes stdin the connection ends, the front door stops
following its sessions and exits at once; runs go on in the gateway.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import sys
from types import ModuleType
from typing import Any, Final

from neocode_gateway import __version__
from neocode_gateway.acp_front._link import GatewayDown, GatewayLink
from neocode_gateway.acp_front._mapping import initialize_result

#: Largest JSON-RPC line accepted from the editor (images travel inline).
LINE_LIMIT: Final = 50 * 1024 * 1024
#: How long the way out may spend detaching from the gateway.
SHUTDOWN_GRACE: Final = 2.0


class _WritePipe(asyncio.BaseProtocol):
    """Flow control for stdout, as :class:`asyncio.StreamWriter` needs it."""

    def __init__(self) -> None:
        self._paused = False
        self._waiter: asyncio.Future[None] | None = None

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def _drain_helper(self) -> None:
        if self._paused:
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter

    def connection_lost(self, exc: Exception | None) -> None:
        self.resume_writing()


async def _stdio() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=LINE_LIMIT)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    protocol = _WritePipe()
    transport, _ = await loop.connect_write_pipe(lambda: protocol, sys.stdout)
    return reader, asyncio.StreamWriter(transport, protocol, None, loop)


def _initialize_id(line: bytes) -> tuple[Any, dict[str, Any]] | None:
    """``(id, params)`` when ``line`` is a well-formed ``initialize`` request."""
    try:
        message = json.loads(line)
    except ValueError:
        return None
    if not isinstance(message, dict) or message.get("method") != "initialize":
        return None
    params = message.get("params")
    if "id" not in message or not isinstance(params, dict):
        return None
    if not isinstance(params.get("protocolVersion"), int):
        return None
    return message["id"], params


async def _pump(source: asyncio.StreamReader, target: asyncio.StreamReader) -> None:
    """Everything after the first line, to the SDK's reader; EOF when the editor is gone."""
    try:
        while data := await source.read(65536):
            target.feed_data(data)
    finally:
        target.feed_eof()


async def serve(link: GatewayLink, *, agent: str | None, mode: str | None, note: Any = None) -> int:
    """Serve one editor on stdin/stdout until it closes stdin; the exit code."""
    loop = asyncio.get_running_loop()
    stdin, stdout = await _stdio()
    importing = loop.run_in_executor(
        None, importlib.import_module, "neocode_gateway.acp_front._agent"
    )
    warming = asyncio.create_task(link.client())
    first = await stdin.readline()
    if not first:
        warming.cancel()
        with contextlib.suppress(BaseException):
            await warming
        await importing
        return 0
    sdk_reader = asyncio.StreamReader(limit=LINE_LIMIT)
    init = _initialize_id(first)
    if init is not None:
        answer = {"jsonrpc": "2.0", "id": init[0], "result": initialize_result(__version__)}
        stdout.write(json.dumps(answer, separators=(",", ":")).encode() + b"\n")
        await stdout.drain()
    else:
        sdk_reader.feed_data(first)
    pumping = asyncio.create_task(_pump(stdin, sdk_reader))
    try:
        await warming
    except GatewayDown as exc:
        if note is not None:
            note(f"neocode-gateway acp: {exc}")
    except Exception as exc:  # reported again, as a JSON-RPC error, by the first request
        if note is not None:
            note(f"neocode-gateway acp: the gateway is not reachable yet: {exc}")
    module: ModuleType = await importing
    front = module.FrontDoor(link, agent=agent, mode=mode, version=__version__)
    if init is not None:
        front.client_capabilities = init[1].get("clientCapabilities")
    try:
        await module.run_connection(front, stdout, sdk_reader)
    finally:
        pumping.cancel()
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(front.shutdown(), SHUTDOWN_GRACE)
    return 0
