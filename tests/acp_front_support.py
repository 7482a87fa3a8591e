"""Driving ``neocode-gateway acp`` as an editor would: the ACP SDK's own client.

:class:`Editor` is the client side (it records every ``session/update`` and
answers permission requests as a test tells it); :func:`front_door` spawns the
front door with ``spawn_agent_process`` in a throwaway ``HOME`` (a daemon it
may start keeps its data there) and yields the SDK's connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable
from typing import Any, cast

from acp import PROTOCOL_VERSION, spawn_agent_process
from acp.core import ClientSideConnection
from acp.interfaces import Client
from acp.schema import AllowedOutcome, DeniedOutcome, RequestPermissionResponse

from tests.support import short_tmpdir

#: Seconds any single wait of these tests may take.
WAIT = 15.0


class Editor:
    """An ACP client that records updates and answers permission requests by ``choose``."""

    def __init__(self) -> None:
        self.updates: list[tuple[str, Any]] = []
        self.asked: list[Any] = []
        self._changed = asyncio.Event()
        #: ``options -> option id`` (``None``: answer ``cancelled``); may be async.
        self.choose: Callable[[list[Any]], Any] = lambda options: options[0].option_id

    def on_connect(self, conn: Any) -> None:
        return None

    async def session_update(self, session_id: str, update: Any, **kwargs: Any) -> None:
        self.updates.append((session_id, update))
        self._changed.set()

    async def request_permission(
        self, options: list[Any], session_id: str, tool_call: Any, **kwargs: Any
    ) -> RequestPermissionResponse:
        self.asked.append((session_id, tool_call, options))
        self._changed.set()
        choice = self.choose(options)
        if asyncio.iscoroutine(choice):
            choice = await choice
        if choice is None:
            return RequestPermissionResponse(outcome=DeniedOutcome(outcome="cancelled"))
        return RequestPermissionResponse(
            outcome=AllowedOutcome(outcome="selected", option_id=choice)
        )

    def kinds(self) -> list[str]:
        return [str(u.session_update) for _, u in self.updates]

    def texts(self, kind: str = "agent_message_chunk") -> str:
        return "".join(
            u.content.text
            for _, u in self.updates
            if u.session_update == kind and u.content.type == "text"
        )

    async def wait(self, condition: Callable[[], Any], timeout: float = WAIT) -> Any:
        async with asyncio.timeout(timeout):
            while not (value := condition()):
                self._changed.clear()
                await self._changed.wait()
            return value


def front_env(home: str | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["HOME"] = home or short_tmpdir("ngw-home-")
    env.pop("NEOCODE_GATEWAY_ADDRESS", None)
    return env


@contextlib.asynccontextmanager
async def front_door(
    editor: Editor, sock: str, *args: str, env: dict[str, str] | None = None
) -> AsyncIterator[tuple[ClientSideConnection, Any]]:
    """The front door on ``sock``, initialized; stopped (the SDK closes its stdin) or killed."""
    async with spawn_agent_process(
        cast(Client, editor),
        sys.executable,
        "-m",
        "neocode_gateway",
        "acp",
        "--listen",
        sock,
        *args,
        env=env or front_env(),
    ) as (conn, proc):
        try:
            async with asyncio.timeout(WAIT):
                await conn.initialize(protocol_version=PROTOCOL_VERSION)
            yield conn, proc
        finally:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGKILL)


def run(coro: Any, timeout: float = 40.0) -> Any:
    """Run a test coroutine with a deadline."""

    async def bounded() -> Any:
        async with asyncio.timeout(timeout):
            return await coro

    return asyncio.run(bounded())
