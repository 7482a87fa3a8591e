"""The front door when things go wrong: no gateway, a gateway killed mid-prompt, an editor
that leaves. Every daemon the front door starts is found by its pid and killed here."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from acp import RequestError, text_block

from neocode_gateway.client import GatewayClient
from tests.acp_front_support import WAIT, Editor, front_door, front_env, run
from tests.conftest import GatewayFactory
from tests.support import short_tmpdir, wait_for

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
def started_daemons() -> Iterator[list[int]]:
    """Pids of daemons the front door started (read from the gateway): killed afterwards."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _daemon_pid(path: str) -> int:
    with GatewayClient(path) as client:
        return int(client.status()["pid"])


def test_no_gateway_starts_one_in_the_background_and_says_so(
    sock_dir: str, started_daemons: list[int]
) -> None:
    path = f"{sock_dir}/gw.sock"
    workdir = os.path.realpath(short_tmpdir("ngw-wd-"))

    async def body() -> None:
        editor = Editor()
        async with front_door(editor, path) as (conn, proc):
            new = await conn.new_session(cwd=workdir, mcp_servers=[])
            started_daemons.append(await asyncio.to_thread(_daemon_pid, path))
            answer = await conn.prompt(session_id=new.session_id, prompt=[text_block("hi")])
            assert answer.stop_reason == "end_turn"
            note = await asyncio.wait_for(proc.stderr.readline(), WAIT)
            assert b"started one in the background" in note

    run(body())


def test_gateway_down_without_autostart_is_a_clear_error(sock_dir: str) -> None:
    async def body() -> None:
        async with front_door(Editor(), f"{sock_dir}/gw.sock", "--no-autostart") as (conn, _):
            with pytest.raises(RequestError) as caught:
                await conn.new_session(cwd="/tmp", mcp_servers=[])
            assert "gateway unavailable" in str(caught.value)
            assert "start one with: neocode-gateway" in str(caught.value)

    run(body())


def test_gateway_killed_mid_prompt_then_the_next_request_reconnects(
    gateway_factory: GatewayFactory, started_daemons: list[int]
) -> None:
    gateway = gateway_factory()
    workdir = os.path.realpath(short_tmpdir("ngw-wd-"))

    async def body() -> None:
        editor = Editor()
        async with front_door(editor, gateway.path) as (conn, _):
            new = await conn.new_session(cwd=workdir, mcp_servers=[])
            prompt = asyncio.ensure_future(
                conn.prompt(session_id=new.session_id, prompt=[text_block("/slow 200")])
            )
            await editor.wait(lambda: editor.updates)
            gateway.kill()
            with pytest.raises(RequestError) as caught:
                await prompt
            assert "gateway went away" in str(caught.value)
            listed = await conn.list_sessions()  # reconnects: starts a daemon again
            assert listed.sessions == []  # that one keeps its log in the editor's HOME
            started_daemons.append(await asyncio.to_thread(_daemon_pid, gateway.path))

    run(body())


def _rpc(proc: subprocess.Popen[bytes], ident: int, method: str, params: Any) -> None:
    assert proc.stdin is not None
    line = {"jsonrpc": "2.0", "id": ident, "method": method, "params": params}
    proc.stdin.write(json.dumps(line).encode() + b"\n")
    proc.stdin.flush()


def _answer(proc: subprocess.Popen[bytes], ident: int) -> Any:
    assert proc.stdout is not None
    while True:
        message = json.loads(proc.stdout.readline())
        if message.get("id") == ident and "method" not in message:
            return message["result"]


def test_editor_closing_stdin_exits_at_once_and_the_run_goes_on(
    gateway_factory: GatewayFactory,
) -> None:
    gateway = gateway_factory()
    workdir = os.path.realpath(short_tmpdir("ngw-wd-"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "neocode_gateway", "acp", "--listen", gateway.path],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=front_env(),
    )
    try:
        _rpc(proc, 1, "initialize", {"protocolVersion": 1})
        assert _answer(proc, 1)["protocolVersion"] == 1
        _rpc(proc, 2, "session/new", {"cwd": workdir, "mcpServers": []})
        session_id = _answer(proc, 2)["sessionId"]
        _rpc(
            proc,
            3,
            "session/prompt",
            {"sessionId": session_id, "prompt": [{"type": "text", "text": "/slow 20"}]},
        )
        with GatewayClient(gateway.path) as client:
            wait_for(lambda: client.list_sessions()["sessions"][0]["state"] == "running", 10)
            assert proc.stdin is not None
            proc.stdin.close()
            assert proc.wait(timeout=3) == 0
            # The run goes on without the editor, to its end.
            terminal = next(e for e in client.session_events(session_id, after_seq=0) if e.terminal)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    assert terminal.event_type == "run_done"
