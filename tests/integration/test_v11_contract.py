"""Contract v1.1 against a real daemon with the echo runtime: runs, events, actions.

Each test names the rule of ``frame-contract-v1.1.md`` it checks.
"""

from __future__ import annotations

import os
import socket
import tempfile

import pytest

from tests.conftest import GatewayFactory
from tests.support import Gateway, LineReader, connect, wait_for
from tests.v11 import Peer, data, etype, seqs


def _run(peer: Peer, text: str, **fields: object) -> tuple[dict[str, object], str, str]:
    ack = peer.ack("run", input_text=text, **fields)
    return ack, str(ack["session_id"]), str(ack["run_id"])


# -- section 3 and 4 (run): the ack first, one run_started first, one terminal event last --


def test_run_ack_comes_before_every_event_and_events_are_numbered(gateway: Gateway) -> None:
    with Peer(gateway.path) as peer:
        request_id = peer.send("run", input_text="hello brave new world")
        first = peer.read()
        assert first["type"] == "ack", first
        assert first["request_id"] == request_id
        assert first["run_id"] == request_id
        assert first["session_id"].startswith("s_")
        assert first["payload"] == {"message": "run accepted"}
        done = peer.wait_terminal(request_id)
        events = peer.run_events(request_id)
        assert seqs(events) == list(range(1, len(events) + 1))
        assert etype(events[0]) == "run_started"
        assert data(events[0])["input_text"] == "hello brave new world"
        assert data(events[0])["workdir"] == os.path.realpath(os.getcwd())
        assert events[-1] is done
        assert etype(done) == "run_done"
        assert data(done) == {"stop_reason": "end_turn"}
        assert [etype(e) for e in events].count("run_started") == 1
        text = "".join(data(e)["text"] for e in events if data(e).get("kind") == "message_chunk")
        assert "hello" in text
        assert "world" in text
        for event in events:
            assert event["action"] == "run"
            assert event["session_id"] == first["session_id"]
            assert event["payload"]["ts"].endswith("Z")


def test_pipelined_ping_ping_run_answers_in_order_before_events(gateway: Gateway) -> None:
    with Peer(gateway.path) as peer:
        ids = [peer.send("ping"), peer.send("ping"), peer.send("run", input_text="x")]
        kinds = [peer.read() for _ in range(3)]
        assert [f["type"] for f in kinds] == ["ack", "ack", "ack"]
        assert [f["request_id"] for f in kinds] == ids
        peer.wait_terminal(ids[2])


def test_fail_ends_with_runtime_error(gateway: Gateway) -> None:
    with Peer(gateway.path) as peer:
        _, _, run_id = _run(peer, "before /fail")
        end = peer.wait_terminal(run_id)
        assert etype(end) == "run_error"
        assert data(end)["code"] == "runtime_error"
        assert data(end)["message"]


def test_second_run_on_a_busy_session_is_a_conflict(gateway: Gateway) -> None:
    with Peer(gateway.path) as peer:
        _, session_id, run_id = _run(peer, "/slow 50")
        busy = peer.request("run", input_text="again", session_id=session_id)
        assert busy["type"] == "error"
        assert busy["error"] == {"code": "conflict", "message": "session already has an active run"}
        peer.ack("cancel", run_id=run_id)
        peer.wait_terminal(run_id)
        again = peer.ack("run", input_text="now", session_id=session_id)
        assert etype(peer.wait_terminal(str(again["run_id"]))) == "run_done"


def test_run_errors(gateway: Gateway) -> None:
    with Peer(gateway.path) as peer:
        unknown = peer.request("run", input_text="x", session_id="s_nope")
        assert unknown["error"]["code"] == "resource_not_found"
        relative = peer.request("run", input_text="x", workdir="relative/dir")
        assert relative["error"] == {"code": "invalid_action", "message": "invalid workdir"}
        missing = peer.request("run", input_text="x", workdir="/no/such/dir/anywhere")
        assert missing["error"] == {"code": "invalid_action", "message": "invalid workdir"}
        agent = peer.request("run", input_text="x", payload={"agent": "nobody"})
        assert agent["error"] == {"code": "invalid_action", "message": "unknown agent"}
        mode = peer.request("run", input_text="x", payload={"mode": "turbo"})
        assert mode["error"] == {"code": "invalid_action", "message": "unknown mode"}
        bad = peer.request("run", input_text="x", payload=[1])
        assert bad["error"] == {"code": "invalid_action", "message": "invalid run payload"}
        _, session_id, run_id = _run(peer, "first", run_id="r-1")
        peer.wait_terminal(run_id)
        reuse = peer.request("run", input_text="x", session_id=session_id, run_id="r-1")
        assert reuse["error"] == {"code": "conflict", "message": "run_id already used"}
        with tempfile.TemporaryDirectory(dir="/tmp") as other:
            moved = peer.request("run", input_text="x", session_id=session_id, workdir=other)
        assert moved["error"] == {
            "code": "invalid_action",
            "message": "workdir cannot change within a session",
        }
    # Nothing above started a run: the only session is the one with r-1.
    with Peer(gateway.path) as peer:
        listed = peer.ack("list_sessions")["payload"]["sessions"]
        assert [s["id"] for s in listed] == [session_id]


def test_workdir_is_stored_resolved(gateway: Gateway) -> None:
    with tempfile.TemporaryDirectory(dir="/tmp") as real:
        link = real + "-link"
        os.symlink(real, link)
        try:
            with Peer(gateway.path) as peer:
                _, session_id, run_id = _run(peer, "x", workdir=link)
                peer.wait_terminal(run_id)
                loaded = peer.ack("load_session", session_id=session_id)["payload"]
                assert loaded["workdir"] == os.path.realpath(real)
                assert data(peer.run_events(run_id)[0])["workdir"] == os.path.realpath(real)
                # The same directory by its link is not a change of workdir.
                again = peer.ack("run", input_text="y", session_id=session_id, workdir=link)
                peer.wait_terminal(str(again["run_id"]))
        finally:
            os.unlink(link)


def test_mode_switch(gateway: Gateway) -> None:
    with Peer(gateway.path) as peer:
        _, session_id, run_id = _run(peer, "plan it", payload={"mode": "plan"})
        peer.wait_terminal(run_id)
        loaded = peer.ack("load_session", session_id=session_id)["payload"]
        assert loaded["mode"] == "plan"


# -- cancel ---------------------------------------------------------------------------


def test_cancel_slow_run_ack_then_canceled(gateway: Gateway) -> None:
    with Peer(gateway.path) as peer:
        _, session_id, run_id = _run(peer, "/slow 100")
        peer.wait_event(lambda f: data(f).get("kind") == "message_chunk")
        request_id = peer.send("cancel", run_id=run_id)
        ack = peer.read()
        while ack["type"] == "event":
            assert etype(ack) not in ("run_done", "run_error")
            ack = peer.read()
        assert ack["request_id"] == request_id
        assert ack["payload"] == {"canceled": True, "run_id": run_id}
        end = peer.wait_terminal(run_id)
        assert etype(end) == "run_error"
        assert data(end)["code"] == "canceled"
        terminals = [e for e in peer.run_events(run_id) if etype(e) in ("run_done", "run_error")]
        assert len(terminals) == 1
        # Cancel of an ended run: idempotent, no error.
        again = peer.ack("cancel", run_id=run_id, session_id=session_id)
        assert again["payload"] == {"canceled": False, "run_id": run_id}


def test_cancel_by_session_resolves_pending_permission(gateway: Gateway) -> None:
    with Peer(gateway.path) as peer:
        _, session_id, run_id = _run(peer, "/ask")
        request = peer.wait_event(lambda f: etype(f) == "permission_request")
        permission_id = data(request)["request_id"]
        peer.ack("cancel", session_id=session_id)
        resolved = peer.wait_event(lambda f: etype(f) == "permission_resolved")
        assert data(resolved)["request_id"] == permission_id
        assert data(resolved)["decided_by"] == "cancel"
        assert data(peer.wait_terminal(run_id))["code"] == "canceled"
        late = peer.request(
            "resolve_permission", payload={"request_id": permission_id, "decision": "allow_once"}
        )
        assert late["error"] == {"code": "conflict", "message": "permission already resolved"}


def test_cancel_errors(gateway: Gateway) -> None:
    with Peer(gateway.path) as peer:
        missing = peer.request("cancel")
        assert missing["error"] == {
            "code": "missing_required_field",
            "message": "missing required field: run_id",
        }
        assert peer.request("cancel", run_id="r-none")["error"]["code"] == "resource_not_found"
        assert peer.request("cancel", session_id="s_none")["error"]["code"] == (
            "resource_not_found"
        )


# -- permissions ----------------------------------------------------------------------


def test_permission_request_shape_and_allow(gateway: Gateway) -> None:
    with Peer(gateway.path) as peer:
        _, _, run_id = _run(peer, "/ask")
        request = peer.wait_event(lambda f: etype(f) == "permission_request")
        body = data(request)
        assert body["request_id"].startswith("p_")
        assert body["tool_call"]["tool_kind"] == "execute"
        kinds = sorted(o["kind"] for o in body["options"])
        assert kinds == ["allow_always", "allow_once", "reject_always", "reject_once"]
        for option in body["options"]:
            assert set(option) == {"option_id", "name", "kind"}
        ack = peer.ack(
            "resolve_permission",
            payload={"request_id": body["request_id"], "decision": "allow_once"},
        )
        assert ack["payload"] == {
            "request_id": body["request_id"],
            "decision": "allow_once",
            "message": "permission resolved",
        }
        end = peer.wait_terminal(run_id)
        assert etype(end) == "run_done"
        updates = [
            data(e) for e in peer.run_events(run_id) if data(e).get("kind") == "tool_call_update"
        ]
        assert updates[-1]["status"] == "completed"


def test_two_clients_race_resolve_permission(gateway: Gateway) -> None:
    with Peer(gateway.path) as a, Peer(gateway.path) as b:
        _, session_id, run_id = _run(a, "/ask")
        request = a.wait_event(lambda f: etype(f) == "permission_request")
        b.ack("bind_stream", session_id=session_id, payload={"after_seq": 0})
        b.wait_event(lambda f: etype(f) == "permission_request")
        permission_id = data(request)["request_id"]
        payload = {"request_id": permission_id, "decision": "reject"}
        id_a = a.send("resolve_permission", payload=payload)
        id_b = b.send("resolve_permission", payload=payload)
        answers = [a.response(id_a), b.response(id_b)]
        assert sorted(f["type"] for f in answers) == ["ack", "error"]
        error = next(f for f in answers if f["type"] == "error")
        assert error["error"] == {"code": "conflict", "message": "permission already resolved"}
        for peer in (a, b):
            resolved = peer.wait_event(lambda f: etype(f) == "permission_resolved")
            assert data(resolved) == {
                "request_id": permission_id,
                "decision": "reject",
                "decided_by": "client",
            }
        end = a.wait_terminal(run_id)
        assert etype(end) == "run_done"
        updates = [
            data(e) for e in a.run_events(run_id) if data(e).get("kind") == "tool_call_update"
        ]
        assert updates[-1]["status"] == "failed"


def test_resolve_permission_errors(gateway: Gateway) -> None:
    with Peer(gateway.path) as peer:
        unknown = peer.request(
            "resolve_permission", payload={"request_id": "p_none", "decision": "reject"}
        )
        assert unknown["error"]["code"] == "resource_not_found"
        _, _, run_id = _run(peer, "/ask")
        request = peer.wait_event(lambda f: etype(f) == "permission_request")
        permission_id = data(request)["request_id"]
        bad_option = peer.request(
            "resolve_permission",
            payload={"request_id": permission_id, "decision": "reject", "option_id": "zzz"},
        )
        assert bad_option["error"] == {"code": "invalid_action", "message": "unknown option_id"}
        option = next(o for o in data(request)["options"] if o["kind"] == "allow_always")
        # A contradictory answer (reject, with an option that allows) is refused, never
        # taken as the option's kind: the request stays pending.
        contradiction = peer.request(
            "resolve_permission",
            payload={
                "request_id": permission_id,
                "decision": "reject",
                "option_id": option["option_id"],
            },
        )
        assert contradiction["error"]["code"] == "invalid_action"
        assert "does not carry the decision reject" in contradiction["error"]["message"]
        chosen = peer.ack(
            "resolve_permission",
            payload={
                "request_id": permission_id,
                "decision": "allow_session",
                "option_id": option["option_id"],
            },
        )
        assert chosen["payload"]["decision"] == "allow_session"
        resolved = peer.wait_event(lambda f: etype(f) == "permission_resolved")
        assert data(resolved)["decision"] == "allow_session"
        peer.wait_terminal(run_id)


def test_permission_timeout_rejects(gateway_factory: GatewayFactory) -> None:
    gateway = gateway_factory("--permission-timeout", "0.5")
    with Peer(gateway.path) as peer:
        _, _, run_id = _run(peer, "/ask")
        resolved = peer.wait_event(lambda f: etype(f) == "permission_resolved")
        assert data(resolved)["decided_by"] == "timeout"
        assert data(resolved)["decision"] == "reject"
        assert etype(peer.wait_terminal(run_id)) == "run_done"


# -- list_sessions, load_session, compact, status ------------------------------------------


def test_list_sessions_pages_newest_first(gateway: Gateway) -> None:
    with Peer(gateway.path) as peer:
        made = []
        for index in range(7):
            _, session_id, run_id = _run(peer, f"session number {index}\nsecond line")
            peer.wait_terminal(run_id)
            made.append(session_id)
        seen: list[str] = []
        cursor = None
        pages = 0
        while True:
            payload = {"limit": 3} if cursor is None else {"limit": 3, "cursor": cursor}
            page = peer.ack("list_sessions", payload=payload)["payload"]
            pages += 1
            seen += [s["id"] for s in page["sessions"]]
            cursor = page.get("next_cursor")
            if cursor is None:
                break
        assert pages == 3
        assert seen == list(reversed(made))
        first = peer.ack("list_sessions", payload={"limit": 1})["payload"]["sessions"][0]
        assert first["title"] == "session number 6"
        assert first["state"] == "idle"
        assert first["last_seq"] >= 3
        assert set(first) >= {
            "id",
            "title",
            "workdir",
            "agent",
            "created_at",
            "updated_at",
            "last_seq",
            "state",
        }
        assert first["agent"] == "echo"
        for bad in ({"limit": 0}, {"limit": 501}, {"limit": "3"}, {"cursor": 5}):
            error = peer.request("list_sessions", payload=bad)
            assert error["error"]["code"] == "invalid_action", bad


def test_list_sessions_shows_running(gateway: Gateway) -> None:
    with Peer(gateway.path) as peer:
        _, session_id, run_id = _run(peer, "/slow 100")
        listed = peer.ack("list_sessions")["payload"]["sessions"]
        mine = next(s for s in listed if s["id"] == session_id)
        assert mine["state"] == "running"
        assert mine["active_run_id"] == run_id
        peer.ack("cancel", run_id=run_id)
        peer.wait_terminal(run_id)


def test_load_session_messages(gateway: Gateway) -> None:
    with Peer(gateway.path) as peer:
        _, session_id, first = _run(peer, "hello there")
        peer.wait_terminal(first)
        second = str(peer.ack("run", input_text="run /ask now", session_id=session_id)["run_id"])
        request = peer.wait_event(lambda f: etype(f) == "permission_request")
        peer.ack(
            "resolve_permission",
            payload={"request_id": data(request)["request_id"], "decision": "allow_once"},
        )
        peer.wait_terminal(second)
        loaded = peer.ack("load_session", session_id=session_id)["payload"]
        assert loaded["id"] == session_id
        messages = loaded["messages"]
        assert [m["role"] for m in messages] == ["user", "agent", "user", "agent"]
        assert messages[0]["text"] == "hello there"
        assert messages[0]["run_id"] == first
        assert "hello" in messages[1]["text"]
        calls = messages[3]["tool_calls"]
        assert calls[0]["tool_kind"] == "execute"
        assert calls[0]["status"] == "completed"
        missing = peer.request("load_session", session_id="s_nope")
        assert missing["error"]["code"] == "resource_not_found"


def test_compact(gateway: Gateway) -> None:
    with Peer(gateway.path) as peer:
        _, session_id, run_id = _run(peer, "some words to remember " * 20)
        peer.wait_terminal(run_id)
        result = peer.ack("compact", session_id=session_id)["payload"]
        assert result["applied"] is True
        assert result["trigger_mode"] == "manual"
        assert 0 < result["after_chars"] < result["before_chars"]
        assert 0 < result["saved_ratio"] < 1
        _, _, slow = _run(peer, "/slow 100", session_id=session_id)
        busy = peer.request("compact", session_id=session_id)
        assert busy["error"]["code"] == "conflict"
        peer.ack("cancel", run_id=slow)
        peer.wait_terminal(slow)
        assert peer.request("compact", session_id="s_nope")["error"]["code"] == (
            "resource_not_found"
        )


def test_status(gateway: Gateway) -> None:
    with Peer(gateway.path) as peer:
        _, _, run_id = _run(peer, "/slow 100")
        status = peer.ack("status")["payload"]
        assert status["pid"] == gateway.pid
        assert status["default_runtime"] == "echo"
        assert "echo" in status["runtimes"]
        assert status["active_runs"] == 1
        assert status["sessions"] == 1
        assert status["connections"] >= 1
        assert status["bindings"] == 1
        assert status["pending_permissions"] == 0
        assert status["uptime_s"] >= 0
        assert status["version"]
        assert status["data_dir"]
        peer.ack("cancel", run_id=run_id)
        peer.wait_terminal(run_id)


# -- --runtime none is exactly v1 (plus status) ------------------------------------------------


def test_runtime_none_answers_as_v1(gateway_factory: GatewayFactory) -> None:
    gateway = gateway_factory("--runtime", "none")
    with Peer(gateway.path) as peer:
        for action, fields in (
            ("run", {"input_text": "x"}),
            ("compact", {"session_id": "s"}),
            ("cancel", {}),
            ("list_sessions", {}),
            ("load_session", {"session_id": "s"}),
            (
                "resolve_permission",
                {"payload": {"request_id": "p", "decision": "reject"}},
            ),
            ("bind_stream", {"session_id": "s"}),
            ("unbind_stream", {"session_id": "s"}),
        ):
            reply = peer.request(action, **fields)
            assert reply["error"] == {
                "code": "unsupported_action",
                "message": "action is not implemented",
            }, action
        status = peer.ack("status")["payload"]
        assert status["default_runtime"] == "none"
        assert status["runtimes"] == []
    assert "runtime none" in gateway.log()


# -- bind_stream / unbind_stream ------------------------------------------------------------


def test_bind_stream_replays_then_follows(gateway: Gateway) -> None:
    with Peer(gateway.path) as runner:
        _, session_id, run_id = _run(runner, "one two three")
        runner.wait_terminal(run_id)
        total = len(runner.run_events(run_id))
        with Peer(gateway.path) as watcher:
            request_id = watcher.send(
                "bind_stream", session_id=session_id, payload={"after_seq": 2}
            )
            ack = watcher.read()
            assert ack["type"] == "ack"
            assert ack["request_id"] == request_id
            assert ack["session_id"] == session_id
            assert ack["payload"] == {"last_seq": total, "replayed": total - 2}
            replay = [watcher.read() for _ in range(total - 2)]
            assert seqs(replay) == list(range(3, total + 1))
            second = str(runner.ack("run", input_text="more", session_id=session_id)["run_id"])
            end = watcher.wait_terminal(second)
            assert seqs(watcher.events) == list(range(3, seqs([end])[0] + 1))
            # Without after_seq: live only.
            live = watcher.ack("bind_stream", session_id=session_id)
            assert live["payload"]["replayed"] == 0
            unbound = watcher.ack("unbind_stream", session_id=session_id)
            assert unbound["payload"] == {"message": "stream unbound"}
            again = watcher.ack("unbind_stream", session_id="s_never_bound")
            assert again["payload"] == {"message": "stream unbound"}


def test_bind_stream_run_filter(gateway: Gateway) -> None:
    with Peer(gateway.path) as peer:
        _, session_id, first = _run(peer, "a b")
        peer.wait_terminal(first)
        second = str(peer.ack("run", input_text="c d", session_id=session_id)["run_id"])
        peer.wait_terminal(second)
        with Peer(gateway.path) as watcher:
            ack = watcher.ack(
                "bind_stream", session_id=session_id, run_id=first, payload={"after_seq": 0}
            )
            count = ack["payload"]["replayed"]
            assert count == len(peer.run_events(first))
            replay = [watcher.read() for _ in range(count)]
            assert {f["run_id"] for f in replay} == {first}


def test_bind_stream_errors(gateway: Gateway) -> None:
    with Peer(gateway.path) as peer:
        assert peer.request("bind_stream", session_id="s_nope")["error"]["code"] == (
            "resource_not_found"
        )
        bad = peer.request("bind_stream", session_id="s", payload={"after_seq": -1})
        assert bad["error"] == {"code": "invalid_action", "message": "invalid after_seq"}
        missing = peer.request("bind_stream")
        assert missing["error"] == {
            "code": "missing_required_field",
            "message": "missing required field: session_id",
        }


def test_too_many_bindings(gateway: Gateway) -> None:
    with Peer(gateway.path) as maker, Peer(gateway.path) as peer:
        sessions = []
        for _ in range(129):
            _, session_id, run_id = _run(maker, "x")
            maker.wait_terminal(run_id)
            maker.ack("unbind_stream", session_id=session_id)
            sessions.append(session_id)
        for session_id in sessions[:128]:
            peer.ack("bind_stream", session_id=session_id)
        refused = peer.request("bind_stream", session_id=sessions[128])
        assert refused["error"] == {"code": "invalid_action", "message": "too many stream bindings"}
        # Binding one already bound again is not an error.
        peer.ack("bind_stream", session_id=sessions[0])
        # A run binds its sender too, so it is refused the same way.
        run = peer.request("run", input_text="x", session_id=sessions[128])
        assert run["error"] == {"code": "invalid_action", "message": "too many stream bindings"}


# -- section 6: timeouts with bindings -------------------------------------------------------


def test_bound_connection_may_stay_silent(gateway_factory: GatewayFactory) -> None:
    gateway = gateway_factory("--read-timeout", "0.3")
    with Peer(gateway.path) as bound, connect(gateway.path) as idle:
        _, _, run_id = _run(bound, "hi")
        bound.wait_terminal(run_id)
        idle.sendall(b'{"type":"request","action":"ping","request_id":"i"}\n')
        reader = LineReader(idle)
        assert reader.line()
        # The unbound idle connection is closed after its read timeout...
        assert reader.at_eof()
        # ...while the bound one, silent for longer still, is open.
        assert bound.ack("ping")["payload"] == {"message": "pong"}


def test_bound_connection_must_finish_a_started_frame(gateway_factory: GatewayFactory) -> None:
    gateway = gateway_factory("--read-timeout", "0.3")
    with Peer(gateway.path) as bound:
        _, _, run_id = _run(bound, "hi")
        bound.wait_terminal(run_id)
        bound.sock.sendall(b'{"type":"request",')
        bound.sock.settimeout(10)
        wait_for(lambda: _closed(bound.sock), 10, what="the half frame to be cut")


def _closed(sock: socket.socket) -> bool:
    try:
        return sock.recv(65536) == b""
    except ConnectionResetError:
        return True


@pytest.mark.parametrize("action", ["bind_stream", "unbind_stream"])
def test_stream_payload_must_be_an_object(gateway: Gateway, action: str) -> None:
    with Peer(gateway.path) as peer:
        bad = peer.request(action, session_id="s", payload="x")
        assert bad["error"] == {"code": "invalid_action", "message": f"invalid {action} payload"}


def test_cancel_of_a_hung_run_still_ends_it(gateway: Gateway) -> None:
    """An agent deaf to cancel: the gateway stops the run itself after the grace period."""
    with Peer(gateway.path) as peer:
        _, _, run_id = _run(peer, "/hang 300")
        peer.wait_event(lambda f: data(f).get("kind") == "message_chunk")
        assert peer.ack("cancel", run_id=run_id)["payload"]["canceled"] is True
        end = peer.wait_terminal(run_id, timeout=30)
        assert data(end)["code"] == "canceled"
        assert "did not stop within" in gateway.wait_log("did not stop within")
