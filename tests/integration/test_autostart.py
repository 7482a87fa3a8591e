"""The daemon started by a front-end when none answers (``client/_autostart.py``)."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal

import pytest

from neocode_gateway.client._autostart import GatewayDown, ensure_gateway
from tests.support import short_tmpdir, wait_for


def test_a_gateway_is_started_once_and_then_found() -> None:
    base = short_tmpdir("ngw-auto-")
    address = os.path.join(base, "gw.sock")
    notes: list[str] = []
    pid = None
    try:
        pid = asyncio.run(
            ensure_gateway(address, daemon_args=["--data-dir", f"{base}/data"], note=notes.append)
        )
        assert pid is not None
        assert "started one in the background" in notes[0]
        assert asyncio.run(ensure_gateway(address)) is None  # it answers now
    finally:
        if pid is not None:
            os.kill(pid, signal.SIGTERM)
            wait_for(lambda: not os.path.exists(address), 10, what="the gateway to stop")
        shutil.rmtree(base, ignore_errors=True)


def test_a_daemon_that_cannot_start_is_said_in_one_line() -> None:
    base = short_tmpdir("ngw-auto-")
    try:
        with pytest.raises(GatewayDown, match="exited with code 2"):
            asyncio.run(
                ensure_gateway(
                    os.path.join(base, "gw.sock"), daemon_args=["--no-such-flag"], timeout=20
                )
            )
    finally:
        shutil.rmtree(base, ignore_errors=True)
