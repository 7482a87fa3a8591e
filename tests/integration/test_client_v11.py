"""The client library's v1.1 API against a real daemon (echo runtime); issue 9's client items."""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import signal
import socket
import threading
from collections.abc import Iterator

import pytest

from neocode_gateway.client import (
    AsyncGatewayClient,
    ConnectionClosed,
    ErrorFrameReceived,
    Event,
    EventsDropped,
    GatewayClient,
    Subscription,
    UntrustedGateway,
)
from tests.conftest import GatewayFactory
from tests.support import PONG, Gateway, connect, short_tmpdir, wait_for

IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


@pytest.fixture
def data_dir() -> Iterator[str]:
    path = short_tmpdir("ngw-data-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_async_run_streams_to_its_terminal_event(gateway: Gateway) -> None:
    async def scenario() -> None:
        async with AsyncGatewayClient(gateway.path) as client:
            stream = await client.run("hello there /plan")
            assert stream.session_id.startswith("s_")
            assert stream.ack is not None
            assert stream.ack.payload == {"message": "run accepted"}
            events = [event async for event in stream]
            assert isinstance(events[0], Event)
            assert events[0].event_type == "run_started"
            assert [e.seq for e in events] == list(range(1, len(events) + 1))
            assert events[-1].terminal
            assert stream.terminal is events[-1]
            assert {e.kind for e in events} >= {"message_chunk", "plan", "usage"}
            # Without awaiting first: iterate the run directly.
            kinds = [event.event_type async for event in client.run("direct")]
            assert kinds[0] == "run_started"
            assert kinds[-1] == "run_done"
            second = await client.run("again", session_id=stream.session_id)
            end = await second.result()
            assert end.event_type == "run_done"
            assert end.data == {"stop_reason": "end_turn"}
            page = await client.list_sessions(limit=10)
            newest = page["sessions"][0]["updated_at"]
            # Updated last (timestamps have milliseconds: a tie is broken by id).
            assert stream.session_id in [
                s["id"] for s in page["sessions"] if s["updated_at"] == newest
            ]
            ids = [s["id"] async for s in client.iter_sessions(page_size=1)]
            assert len(ids) == 2
            assert ids == [s["id"] for s in page["sessions"]]
            loaded = await client.load_session(stream.session_id)
            assert [m["role"] for m in loaded["messages"]] == ["user", "agent"] * 2
            status = await client.status()
            assert status["sessions"] == 2
            compacted = await client.compact(stream.session_id)
            assert compacted["trigger_mode"] == "manual"
            with pytest.raises(ErrorFrameReceived) as info:
                await client.load_session("s_missing")
            assert info.value.code == "resource_not_found"

    asyncio.run(scenario())


def test_blocking_client_permission_answered_from_another_client(gateway: Gateway) -> None:
    with GatewayClient(gateway.path) as runner, GatewayClient(gateway.path) as approver:
        stream = runner.run("please /ask")
        seen: list[Event] = []
        for event in stream:
            seen.append(event)
            if event.event_type == "permission_request":
                ack = approver.resolve_permission(event.data["request_id"], "allow_once")
                assert ack["message"] == "permission resolved"
        assert seen[-1].event_type == "run_done"
        resolved = [e for e in seen if e.event_type == "permission_resolved"]
        assert resolved[0].data["decided_by"] == "client"
        slow = runner.run("/slow 100", session_id=stream.session_id)
        assert approver.cancel(slow.run_id, session_id=stream.session_id)["canceled"] is True
        end = slow.result()
        assert end.data["code"] == "canceled"


def test_session_events_replay_without_follow(gateway: Gateway) -> None:
    with GatewayClient(gateway.path) as client:
        stream = client.run("one two three")
        end = stream.result()
        with GatewayClient(gateway.path) as reader:
            replayed = list(reader.session_events(stream.session_id, after_seq=2, follow=False))
            assert [e.seq for e in replayed] == list(range(3, end.seq + 1))
            ack = reader.bind_stream(stream.session_id)
            assert ack["last_seq"] == end.seq
            reader.unbind_stream(stream.session_id)


def test_session_events_survive_a_gateway_restart(
    gateway_factory: GatewayFactory, data_dir: str
) -> None:
    gateway = gateway_factory("--data-dir", data_dir)
    with GatewayClient(gateway.path) as client:
        session_id = client.run("first").session_id
    seen: list[int] = []
    restarted = threading.Event()

    def follow() -> None:
        with GatewayClient(gateway.path) as reader:
            for event in reader.session_events(
                session_id, after_seq=0, reconnect=True, reconnect_timeout=30
            ):
                seen.append(event.seq)
                if event.event_type == "run_error" and event.data["code"] == "gateway_restarted":
                    return

    thread = threading.Thread(target=follow, daemon=True)
    thread.start()
    with GatewayClient(gateway.path) as client:
        client.run("/slow 200", session_id=session_id)
        wait_for(lambda: len(seen) >= 10, 20, what="events before the restart")
    os.kill(gateway.pid, signal.SIGKILL)
    gateway.wait(10)
    gateway_factory("--data-dir", data_dir, path=gateway.path)
    restarted.set()
    thread.join(60)
    assert not thread.is_alive()
    assert seen == list(range(1, len(seen) + 1)), "an event was missed or shown twice"


def test_large_response_fits(gateway: Gateway) -> None:
    text = "word " * 180_000  # 900 kB in; the transcript answer is about twice that
    with GatewayClient(gateway.path) as client:
        stream = client.run(text)
        stream.result()
        loaded = client.load_session(stream.session_id)
        assert len(loaded["messages"][0]["text"]) == len(text)


def test_subscription_never_drops_silently() -> None:
    async def scenario() -> None:
        subscription = Subscription("s", maxsize=3)
        for seq in range(1, 6):
            subscription.put(Event("s", "r", seq, "run_progress", "t", {}))
        got = [await subscription.get() for _ in range(3)]
        assert [e.seq for e in got] == [1, 2, 3]
        with pytest.raises(EventsDropped) as info:
            await subscription.get()
        assert info.value.last_seq == 3
        assert "after_seq=3" in str(info.value)

    asyncio.run(scenario())


def test_address_from_the_environment(gateway: Gateway, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEOCODE_GATEWAY_ADDRESS", gateway.path)
    with GatewayClient() as client:
        assert client.address == gateway.path
        assert client.ping() > 0


def test_connection_limit_is_named(gateway_factory: GatewayFactory) -> None:
    gateway = gateway_factory("--max-connections", "1")
    with connect(gateway.path) as holder:
        holder.sendall(b'{"type":"request","action":"ping","request_id":"smoke-1"}\n')
        assert holder.recv(4096) == PONG
        client = GatewayClient(gateway.path)
        try:
            client.connect()  # accepted by the kernel, then closed by the gateway
            with pytest.raises(ConnectionClosed, match="connection limit"):
                client.ping()
        finally:
            client.close()


# -- fault 10: the client refuses a gateway run by another user ------------------------------


@pytest.mark.skipif(not IS_ROOT, reason="needs root to run a server as another user (nobody)")
def test_client_refuses_a_gateway_of_another_user(sock_dir: str) -> None:
    nobody = pwd.getpwnam("nobody")
    os.chmod(sock_dir, 0o1777)
    path = f"{sock_dir}/squat.sock"
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.setgroups([])
            os.setgid(nobody.pw_gid)
            os.setuid(nobody.pw_uid)
            server = socket.socket(socket.AF_UNIX)
            server.bind(path)
            os.chmod(path, 0o777)
            server.listen(4)
            os.write(ready_w, b"x")
            server.settimeout(20)
            for _ in range(2):
                conn, _ = server.accept()
                conn.settimeout(5)
                if conn.recv(4096):
                    conn.sendall(PONG)
                conn.close()
        finally:
            os._exit(0)
    try:
        os.close(ready_w)
        assert os.read(ready_r, 1) == b"x"
        with pytest.raises(UntrustedGateway, match=f"uid {nobody.pw_uid}"):
            GatewayClient(path).connect()
        with GatewayClient(path, trust_any_uid=True) as client:
            assert client.request({"action": "ping", "request_id": "smoke-1"}).type == "ack"
    finally:
        os.close(ready_r)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
