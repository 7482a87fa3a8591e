"""``neocode-gateway acp`` driven by the ACP SDK's own client, against a real gateway (echo)."""

from __future__ import annotations

import asyncio
import os
import shutil
from typing import Any

import pytest
from acp import RequestError, text_block
from acp.schema import (
    EmbeddedResourceContentBlock,
    ImageContentBlock,
    TextResourceContents,
)

from neocode_gateway.client import AsyncGatewayClient
from tests.acp_front_support import Editor, front_door, run
from tests.support import Gateway, short_tmpdir

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
def workdir() -> Any:
    path = short_tmpdir("ngw-wd-")
    yield os.path.realpath(path)
    shutil.rmtree(path, ignore_errors=True)


async def _events_until(client: AsyncGatewayClient, session_id: str, want: str) -> Any:
    async for event in client.session_events(session_id, after_seq=0):
        if event.event_type == want:
            return event
    raise AssertionError(f"no {want}")


def test_initialize_answers_capabilities_and_routes_resume_and_close(gateway: Gateway) -> None:
    async def body() -> None:
        editor = Editor()
        async with front_door(editor, gateway.path) as (conn, _):
            init = await conn.initialize(protocol_version=1)
            assert init.protocol_version == 1
            caps = init.agent_capabilities
            assert caps is not None
            assert caps.load_session is True
            sessions = caps.session_capabilities
            assert sessions is not None
            assert sessions.list is not None
            assert sessions.resume is not None
            assert sessions.close is not None
            assert caps.prompt_capabilities is not None
            assert caps.prompt_capabilities.embedded_context is True
            assert init.agent_info is not None
            assert init.agent_info.name == "neocode-gateway"
            new = await conn.new_session(cwd=gateway_workdir(), mcp_servers=[])
            # resume and close are routed (the SDK needs use_unstable_protocol for them):
            # without it acpx silently falls back to session/new and loses the context.
            await conn.resume_session(session_id=new.session_id, cwd=gateway_workdir())
            await conn.close_session(session_id=new.session_id)

    run(body())


def gateway_workdir() -> str:
    return os.path.realpath("/tmp")


def test_new_session_prompt_streams_and_ends(gateway: Gateway, workdir: str) -> None:
    async def body() -> None:
        editor = Editor()
        async with front_door(editor, gateway.path) as (conn, _):
            new = await conn.new_session(cwd=workdir, mcp_servers=[])
            answer = await conn.prompt(
                session_id=new.session_id, prompt=[text_block("hello /plan /think world")]
            )
            assert answer.stop_reason == "end_turn"
            assert editor.texts() == "hello /plan /think world"
            kinds = editor.kinds()
            assert "agent_thought_chunk" in kinds
            assert "plan" in kinds
            assert "user_message_chunk" not in kinds  # the editor's own input is not echoed
            async with AsyncGatewayClient(gateway.path) as client:
                session = await client.load_session(new.session_id)
            assert session["workdir"] == workdir
            assert session["messages"][0]["text"] == "hello /plan /think world"

    run(body())


def test_new_session_refuses_a_bad_cwd(gateway: Gateway) -> None:
    async def body() -> None:
        async with front_door(Editor(), gateway.path) as (conn, _):
            for cwd in ("relative/dir", "/nonexistent/ngw-nowhere"):
                with pytest.raises(RequestError) as caught:
                    await conn.new_session(cwd=cwd, mcp_servers=[])
                assert caught.value.code == -32602

    run(body())


def test_prompt_with_image_and_embedded_resource(gateway: Gateway, workdir: str) -> None:
    async def body() -> None:
        editor = Editor()
        async with front_door(editor, gateway.path) as (conn, _):
            new = await conn.new_session(cwd=workdir, mcp_servers=[])
            blocks: list[Any] = [
                text_block("look"),
                ImageContentBlock(type="image", mime_type="image/png", data="iVBORw0KGgo="),
                EmbeddedResourceContentBlock(
                    type="resource",
                    resource=TextResourceContents(uri="file:///a.py", text="print(1)"),
                ),
            ]
            answer = await conn.prompt(session_id=new.session_id, prompt=blocks)
            assert answer.stop_reason == "end_turn"
            async with AsyncGatewayClient(gateway.path) as client:
                events = [
                    e
                    async for e in client.session_events(new.session_id, after_seq=0, follow=False)
                ]
            parts = events[0].data["input_parts"]
            assert [p["type"] for p in parts] == ["text", "image", "text"]
            assert parts[1]["media"]["uri"] == "data:image/png;base64,iVBORw0KGgo="
            assert "print(1)" in parts[2]["text"]

    run(body())


def test_permission_asked_of_the_editor_and_its_choice_resolves(
    gateway: Gateway, workdir: str
) -> None:
    async def body() -> None:
        editor = Editor()
        editor.choose = lambda options: next(
            o.option_id for o in options if o.kind == "reject_once"
        )
        async with front_door(editor, gateway.path) as (conn, _):
            new = await conn.new_session(cwd=workdir, mcp_servers=[])
            answer = await conn.prompt(session_id=new.session_id, prompt=[text_block("/ask")])
            assert answer.stop_reason == "end_turn"
            assert len(editor.asked) == 1
            _, _, options = editor.asked[0]
            assert [o.kind for o in options] == [
                "allow_once",
                "allow_always",
                "reject_once",
                "reject_always",
            ]
            async with AsyncGatewayClient(gateway.path) as client:
                resolved = await _events_until(client, new.session_id, "permission_resolved")
                audit = await client.request(
                    {"action": "audit", "session_id": new.session_id, "payload": {}}
                )
            assert resolved.data["decision"] == "reject"
            assert resolved.data["client"] == "acp"  # the front door names itself (hello)
            assert audit.payload["decisions"][0]["who"] == "acp"
            failed = [u for _, u in editor.updates if u.session_update == "tool_call_update"]
            assert failed[-1].status == "failed"

    run(body())


def test_another_client_answers_first_and_the_editors_late_answer_is_ignored(
    gateway: Gateway, workdir: str
) -> None:
    async def body() -> None:
        editor = Editor()
        release = asyncio.Event()

        async def late(options: list[Any]) -> str:
            await release.wait()
            return str(next(o.option_id for o in options if o.kind == "reject_once"))

        editor.choose = late
        async with front_door(editor, gateway.path) as (conn, _):
            new = await conn.new_session(cwd=workdir, mcp_servers=[])
            prompt = asyncio.ensure_future(
                conn.prompt(session_id=new.session_id, prompt=[text_block("/ask")])
            )
            await editor.wait(lambda: editor.asked)
            async with AsyncGatewayClient(gateway.path) as client:
                asked = await _events_until(client, new.session_id, "permission_request")
                await client.resolve_permission(asked.data["request_id"], "allow_once")
            answer = await prompt
            assert answer.stop_reason == "end_turn"
            release.set()  # the editor answers now: too late, ignored without error
            again = await conn.prompt(session_id=new.session_id, prompt=[text_block("next")])
            assert again.stop_reason == "end_turn"
            async with AsyncGatewayClient(gateway.path) as client:
                resolved = await _events_until(client, new.session_id, "permission_resolved")
            assert resolved.data["decision"] == "allow_once"

    run(body())


def test_editor_cancelled_answer_leaves_the_request_to_other_clients(
    gateway: Gateway, workdir: str
) -> None:
    async def body() -> None:
        editor = Editor()
        editor.choose = lambda options: None
        async with front_door(editor, gateway.path) as (conn, _):
            new = await conn.new_session(cwd=workdir, mcp_servers=[])
            prompt = asyncio.ensure_future(
                conn.prompt(session_id=new.session_id, prompt=[text_block("/ask")])
            )
            await editor.wait(lambda: editor.asked)
            async with AsyncGatewayClient(gateway.path) as client:
                asked = await _events_until(client, new.session_id, "permission_request")
                await client.resolve_permission(asked.data["request_id"], "allow_session")
            assert (await prompt).stop_reason == "end_turn"

    run(body())


def test_load_replays_the_whole_log_then_stays_live(gateway: Gateway, workdir: str) -> None:
    async def body() -> None:
        async with AsyncGatewayClient(gateway.path) as client:
            first = await client.run("first /ask", workdir=workdir)
            async for event in first:
                if event.event_type == "permission_request":
                    await client.resolve_permission(event.data["request_id"], "allow_once")
            await client.run("second", session_id=first.session_id).result()
            session_id = first.session_id
        editor = Editor()
        async with front_door(editor, gateway.path) as (conn, _):
            await conn.load_session(cwd=workdir, session_id=session_id, mcp_servers=[])
            assert editor.texts("user_message_chunk") == "first /asksecond"
            assert editor.texts() == "first /asksecond"
            assert "tool_call" in editor.kinds()
            assert editor.asked == []  # a resolved request is history, not a question
            count = len(editor.updates)
            # Another client's run on the session reaches the editor: its input, then updates.
            async with AsyncGatewayClient(gateway.path) as client:
                await client.run("from the terminal", session_id=session_id).result()
            await editor.wait(lambda: "terminal" in editor.texts())
            later = [u.session_update for _, u in editor.updates[count:]]
            assert later[0] == "user_message_chunk"
            answer = await conn.prompt(session_id=session_id, prompt=[text_block("third")])
            assert answer.stop_reason == "end_turn"

    run(body())


def test_load_of_an_unknown_session_is_resource_not_found(gateway: Gateway) -> None:
    async def body() -> None:
        async with front_door(Editor(), gateway.path) as (conn, _):
            with pytest.raises(RequestError) as caught:
                await conn.load_session(cwd="/tmp", session_id="s_nope", mcp_servers=[])
            assert caught.value.code == -32002

    run(body())


def test_resume_attaches_without_replay(gateway: Gateway, workdir: str) -> None:
    async def body() -> None:
        async with AsyncGatewayClient(gateway.path) as client:
            done = await client.run("old words", workdir=workdir)
            await done.result()
        editor = Editor()
        async with front_door(editor, gateway.path) as (conn, _):
            await conn.resume_session(session_id=done.session_id, cwd=workdir)
            answer = await conn.prompt(session_id=done.session_id, prompt=[text_block("new")])
            assert answer.stop_reason == "end_turn"
            assert editor.texts() == "new"

    run(body())


def test_list_filters_by_cwd_and_pages(gateway: Gateway, workdir: str) -> None:
    async def body() -> None:
        other = short_tmpdir("ngw-wd-")
        async with AsyncGatewayClient(gateway.path) as client:
            mine = {(await client.create_session(workdir=workdir))["id"] for _ in range(3)}
            await client.create_session(workdir=other)
        async with front_door(Editor(), gateway.path) as (conn, _):
            listed = await conn.list_sessions(cwd=workdir)
            assert {s.session_id for s in listed.sessions} == mine
            assert all(s.cwd == workdir for s in listed.sessions)
            everything = await conn.list_sessions()
            assert len(everything.sessions) == 4
        shutil.rmtree(other, ignore_errors=True)

    run(body())


def test_cancel_ends_the_prompt_cancelled(gateway: Gateway, workdir: str) -> None:
    async def body() -> None:
        editor = Editor()
        async with front_door(editor, gateway.path) as (conn, _):
            new = await conn.new_session(cwd=workdir, mcp_servers=[])
            prompt = asyncio.ensure_future(
                conn.prompt(session_id=new.session_id, prompt=[text_block("/slow 100")])
            )
            await editor.wait(lambda: editor.updates)
            await conn.cancel(session_id=new.session_id)
            assert (await prompt).stop_reason == "cancelled"

    run(body())


def test_set_mode_applies_to_the_next_run(gateway: Gateway, workdir: str) -> None:
    async def body() -> None:
        async with front_door(Editor(), gateway.path, "--mode", "default") as (conn, _):
            new = await conn.new_session(cwd=workdir, mcp_servers=[])
            assert new.modes is not None
            assert new.modes.current_mode_id == "default"
            await conn.set_session_mode(session_id=new.session_id, mode_id="plan")
            await conn.prompt(session_id=new.session_id, prompt=[text_block("hi")])
            async with AsyncGatewayClient(gateway.path) as client:
                session = await client.load_session(new.session_id)
            assert session["mode"] == "plan"
            # An unknown mode is refused at once, by the agent, through the gateway.
            with pytest.raises(RequestError) as caught:
                await conn.set_session_mode(session_id=new.session_id, mode_id="nonsense")
            assert "unknown mode" in str(caught.value)

    run(body())


def test_prompt_while_a_run_is_active_says_so(gateway: Gateway, workdir: str) -> None:
    async def body() -> None:
        editor = Editor()
        async with front_door(editor, gateway.path) as (conn, _):
            new = await conn.new_session(cwd=workdir, mcp_servers=[])
            first = asyncio.ensure_future(
                conn.prompt(session_id=new.session_id, prompt=[text_block("/slow 100")])
            )
            await editor.wait(lambda: editor.updates)
            with pytest.raises(RequestError) as caught:
                await conn.prompt(session_id=new.session_id, prompt=[text_block("again")])
            assert "active run" in str(caught.value)
            await conn.cancel(session_id=new.session_id)
            assert (await first).stop_reason == "cancelled"

    run(body())


def test_a_failed_run_is_an_error_with_its_code(gateway: Gateway, workdir: str) -> None:
    async def body() -> None:
        async with front_door(Editor(), gateway.path) as (conn, _):
            new = await conn.new_session(cwd=workdir, mcp_servers=[])
            with pytest.raises(RequestError) as caught:
                await conn.prompt(session_id=new.session_id, prompt=[text_block("/fail")])
            assert str(caught.value).startswith("runtime_error: ")

    run(body())
