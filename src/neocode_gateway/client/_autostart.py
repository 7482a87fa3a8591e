"""Start the daemon when no gateway answers: what a front-end that must just work does.

Shared by the front-ends that are clients of the contract (``neocode-gateway web``
and the ACP front door, ``neocode-gateway acp``). The daemon is started detached
(its own session, no stdio of ours: an ACP front door's stdout carries ACP only)
with the same Python, logging to ``gateway.log`` in its data directory, and we
wait until it answers; a daemon that exits with code 3 lost a race to another
one, which will answer.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import Final

from neocode_gateway.client._async import AsyncGatewayClient
from neocode_gateway.errors import GatewayUnreachable, RequestTimeout

START_TIMEOUT: Final = 15.0
_ALREADY_RUNNING: Final = 3


class GatewayDown(Exception):
    """No gateway answers, and none could be started (the message says why)."""


async def _answers(address: str) -> bool:
    client = AsyncGatewayClient(address, connect_timeout=2.0, request_timeout=5.0)
    try:
        await client.connect()
    except (GatewayUnreachable, RequestTimeout):
        return False
    await client.close()
    return True


async def ensure_gateway(
    address: str,
    *,
    daemon_args: Sequence[str] = (),
    note: Callable[[str], None] = lambda text: None,
    timeout: float = START_TIMEOUT,
) -> int | None:
    """Make sure a gateway answers at ``address``; the pid of the one started, if any."""
    if await _answers(address):
        return None
    argv = [sys.executable, "-m", "neocode_gateway", "serve", "--listen", address, *daemon_args]
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        close_fds=True,
        env=dict(os.environ),
    )
    note(
        f"no gateway at {address}; started one in the background (pid {proc.pid}, "
        "log: gateway.log in its data directory)"
    )
    deadline = time.monotonic() + timeout
    delay = 0.01
    while not await _answers(address):
        code = proc.poll()
        if code is not None and code != _ALREADY_RUNNING:
            raise GatewayDown(
                f"no gateway answered at {address}, and the one started exited with code "
                f"{code}; run 'neocode-gateway --listen {address}' in a terminal to see why"
            )
        if time.monotonic() > deadline:
            raise GatewayDown(
                f"the gateway started at {address} (pid {proc.pid}) did not answer within "
                f"{timeout:g} s; see gateway.log in its data directory"
            )
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.2)
    return proc.pid
