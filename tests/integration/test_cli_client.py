"""The client sub-commands: as subprocesses (every command, every exit code) and in-process."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import socket
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from neocode_gateway import __version__
from neocode_gateway.cli import main
from neocode_gateway.client import _local as client_local
from tests.fakes import (
    FakeServer,
    Handler,
    garbage,
    hang_up_after_first_line,
    internal_error,
    silent,
)
from tests.support import GATEWAY_CMD, Gateway, run_cli, wait_for

ROOT = Path(__file__).resolve().parents[2]


def unreachable_message(path: str) -> str:
    return (
        f"no gateway is listening at {path} (no such file or directory); "
        f"start one with: neocode-gateway"
    )


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines()]


def assert_one_error_line(stderr: str, command: str) -> str:
    assert "Traceback" not in stderr
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith(f"neocode-gateway {command}: error: ")
    return lines[0]


# -- as subprocesses ------------------------------------------------------------------------


def test_ping_prints_pong(gateway: Gateway) -> None:
    result = run_cli("ping", "--listen", gateway.path)
    assert result.returncode == 0, result.stderr
    assert re.fullmatch(
        rf"pong from {re.escape(gateway.path)}: seq=1 time=\d+\.\d\d ms\n", result.stdout
    )
    assert result.stderr == ""


def test_ping_count_prints_a_summary_and_json_parses(gateway: Gateway) -> None:
    result = run_cli("ping", "--listen", gateway.path, "--count", "3")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 6
    assert all(line.startswith("pong from ") for line in lines[:3])
    assert lines[3] == f"--- {gateway.path} ping statistics ---"
    assert lines[4] == "3 transmitted, 3 received, 0% loss"
    assert re.fullmatch(r"rtt min/avg/max/mdev = [\d.]+/[\d.]+/[\d.]+/[\d.]+ ms", lines[5])

    result = run_cli("ping", "--listen", gateway.path, "-c", "2", "--json")
    assert result.returncode == 0, result.stderr
    first, second, summary = json_lines(result.stdout)
    assert first["seq"] == 1
    assert first["ok"] is True
    assert second["seq"] == 2
    assert first["rtt_ms"] > 0
    assert summary["address"] == gateway.path
    assert (summary["sent"], summary["received"]) == (2, 2)
    assert summary["min_ms"] <= summary["avg_ms"] <= summary["max_ms"]


def test_status_names_the_daemon(gateway: Gateway) -> None:
    result = run_cli("status", "--listen", gateway.path, "--json")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["address"] == gateway.path
    assert info["reachable"] is True
    assert info["transport"] == "unix"
    assert info["version"] == __version__
    assert info["pid"] == gateway.pid
    assert info["uid"] == os.getuid()
    assert info["mode"] == "0600"
    assert info["rtt_ms"] > 0

    result = run_cli("status", "--listen", gateway.path)
    assert result.returncode == 0, result.stderr
    assert f"pid: {gateway.pid}\n" in result.stdout
    assert "reachable: yes\n" in result.stdout
    assert "mode: 0600\n" in result.stdout
    assert f"version: {__version__}\n" in result.stdout
    assert re.search(r"^rtt: \d+\.\d\d ms$", result.stdout, re.MULTILINE)


def test_call_prints_responses_as_json_lines(gateway: Gateway) -> None:
    result = run_cli("call", "ping", "--request-id", "x1", "--listen", gateway.path)
    assert result.returncode == 0, result.stderr
    assert json_lines(result.stdout) == [
        {"type": "ack", "action": "ping", "request_id": "x1", "payload": {"message": "pong"}}
    ]

    result = run_cli("call", "cancel", "--session-id", "s", "--listen", gateway.path)
    assert result.returncode == 1
    (reply,) = json_lines(result.stdout)
    assert reply["error"]["code"] == "resource_not_found"
    assert reply["request_id"]  # generated


def test_call_frames_from_stdin_are_pipelined_in_order(gateway: Gateway) -> None:
    frames = (
        '{"type":"request","action":"ping","request_id":"a"}\n'
        "\n"
        '{"type":"request","action":"fly","request_id":"b"}\n'
        '{"type":"request","action":"ping","request_id":"c"}\r\n'
        '{"type":"request","action":"ping"}'  # no id, no newline
    )
    result = run_cli("call", "--frame", "-", "--listen", gateway.path, stdin=None, input=frames)
    assert result.returncode == 1, result.stderr
    replies = json_lines(result.stdout)
    assert [r.get("request_id") for r in replies] == ["a", "b", "c", None]
    assert replies[1]["error"] == {"code": "invalid_action", "message": "invalid action"}
    assert replies[3]["type"] == "ack"


def test_call_invalid_json_line_ends_the_stream(gateway: Gateway) -> None:
    frames = '{"type":"request","action":"ping","request_id":"a"}\n{oops\n'
    result = run_cli("call", "--frame", "-", "--listen", gateway.path, stdin=None, input=frames)
    assert result.returncode == 1
    first, second = json_lines(result.stdout)
    assert first["type"] == "ack"
    assert second["error"] == {"code": "invalid_frame", "message": "invalid json frame"}


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["call"], "an ACTION or --frame is required"),
        (["call", "run", "--payload", "{bad"], "argument --payload: not valid JSON"),
        (["call", "ping", "--frame", "{}"], "--frame cannot be combined with ACTION"),
        (["ping", "--count", "-1"], "argument --count"),
        (["ping", "--timeout", "nan"], "argument --timeout"),
        (["status", "--bogus"], "unrecognized arguments: --bogus"),
    ],
)
def test_usage_errors_exit_2(args: list[str], fragment: str) -> None:
    result = run_cli(*args)
    assert result.returncode == 2
    line = assert_one_error_line(result.stderr, args[0])
    assert fragment in line
    assert result.stdout == ""


@pytest.mark.parametrize("command", [["ping"], ["status"], ["call", "ping"]])
def test_no_gateway_exits_3_with_the_message(sock_dir: str, command: list[str]) -> None:
    path = f"{sock_dir}/none.sock"
    result = run_cli(*command, "--listen", path)
    assert result.returncode == 3
    line = assert_one_error_line(result.stderr, command[0])
    assert line == f"neocode-gateway {command[0]}: error: {unreachable_message(path)}"


def test_status_json_without_gateway_still_prints_json(sock_dir: str) -> None:
    path = f"{sock_dir}/none.sock"
    result = run_cli("status", "--json", "--listen", path)
    assert result.returncode == 3
    assert json.loads(result.stdout) == {
        "address": path,
        "reachable": False,
        "reason": "no such file or directory",
    }
    assert unreachable_message(path) in result.stderr


def test_silent_gateway_exits_4(fake_server: Callable[[Handler], FakeServer]) -> None:
    server = fake_server(silent)
    result = run_cli("ping", "--listen", server.path, "--timeout", "0.2")
    assert result.returncode == 4
    line = assert_one_error_line(result.stderr, "ping")
    assert "error: no response to request 'c" in line
    assert line.endswith(f"from the gateway at {server.path} within 0.2 s")


def test_gateway_hanging_up_exits_1(fake_server: Callable[[Handler], FakeServer]) -> None:
    server = fake_server(hang_up_after_first_line)
    result = run_cli("call", "ping", "--listen", server.path)
    assert result.returncode == 1
    line = assert_one_error_line(result.stderr, "call")
    assert "the gateway closed the connection" in line


def test_schema_prints_the_committed_schema() -> None:
    result = run_cli("schema")
    assert result.returncode == 0
    assert result.stdout == (ROOT / "docs" / "frame.schema.json").read_text()


def test_bare_help_lists_the_client_commands() -> None:
    result = run_cli("--help")
    assert result.returncode == 0
    for name in ("serve", "ping", "call", "status", "schema"):
        assert re.search(rf"^  {name} ", result.stdout, re.MULTILINE), name


def test_ctrl_c_exits_130_without_traceback(fake_server: Callable[[Handler], FakeServer]) -> None:
    server = fake_server(silent)
    proc = subprocess.Popen(
        [*GATEWAY_CMD, "ping", "--listen", server.path, "--timeout", "30"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(lambda: server.received, timeout=10, what="the ping at the silent server")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    # Like ping(8): Ctrl-C ends it with the statistics; no answer came, so exit 1.
    assert proc.returncode == 1, err
    assert "1 transmitted, 0 received, 100% loss" in out
    assert "Traceback" not in err


def test_closed_stdout_exits_quietly(gateway: Gateway) -> None:
    # 2000 lines are more than a pipe holds, so the writer must hit the closed pipe.
    proc = subprocess.Popen(
        [*GATEWAY_CMD, "ping", "--listen", gateway.path, "--count", "2000"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None
    assert proc.stderr is not None
    proc.stdout.close()
    err = proc.stderr.read()
    proc.stderr.close()
    assert proc.wait(20) == 141
    assert err == b""


# -- in-process (same code paths, measured by coverage, no interpreter start-up) -------------


def test_inprocess_ping_summary_and_status(
    gateway: Gateway, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["ping", "--listen", gateway.path, "-c", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-2] == "2 transmitted, 2 received, 0% loss"
    assert lines[-1].startswith("rtt min/avg/max/mdev = ")
    assert main(["status", "--listen", gateway.path]) == 0
    out = capsys.readouterr().out
    assert f"pid: {gateway.pid}\n" in out
    assert main(["status", "--listen", gateway.path, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["pid"] == gateway.pid


def test_inprocess_timeouts_with_count_and_json(
    fake_server: Callable[[Handler], FakeServer], capsys: pytest.CaptureFixture[str]
) -> None:
    server = fake_server(silent)
    assert main(["ping", "--listen", server.path, "-c", "2", "--timeout", "0.02"]) == 4
    captured = capsys.readouterr()
    assert captured.out == (
        f"--- {server.path} ping statistics ---\n2 transmitted, 0 received, 100% loss\n"
    )
    assert captured.err.count("error: no response") == 2
    assert main(["ping", "--listen", server.path, "--json", "--timeout", "0.02"]) == 4
    first, summary = json_lines(capsys.readouterr().out)
    assert first == {"address": server.path, "seq": 1, "ok": False, "error": "timeout"}
    assert summary["received"] == 0
    assert summary["min_ms"] is None


def test_inprocess_error_frames_exit_1(
    fake_server: Callable[[Handler], FakeServer], capsys: pytest.CaptureFixture[str]
) -> None:
    server = fake_server(internal_error)
    assert main(["ping", "--listen", server.path]) == 1
    err = capsys.readouterr().err
    assert "the gateway failed: internal gateway error" in err
    assert "internal_error" not in err  # the code is for programs: --json, --log-level debug
    assert main(["ping", "--listen", server.path, "--log-level", "debug"]) == 1
    assert "[internal_error: internal gateway error]" in capsys.readouterr().err
    assert main(["call", "run", "--listen", server.path, "--input-text", "x"]) == 1
    assert json_lines(capsys.readouterr().out)[0]["error"]["code"] == "internal_error"


def test_inprocess_status_without_lock_file(
    fake_server: Callable[[Handler], FakeServer],
    capsys: pytest.CaptureFixture[str],
) -> None:
    def ack(conn: socket.socket, server: FakeServer) -> None:
        for line in server.lines(conn):
            request = json.loads(line)
            conn.sendall(
                json.dumps({"type": "ack", "request_id": request["request_id"]}).encode() + b"\n"
            )

    server = fake_server(ack)
    assert main(["status", "--listen", server.path]) == 0
    out = capsys.readouterr().out
    assert "version: unknown\n" in out
    assert f"pid: {os.getpid()}\n" in out  # the fake server runs in this process

    Path(server.path + ".lock").write_text('{"pid": 1, "version": "9.9.9"}')
    assert main(["status", "--listen", server.path, "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["version"] is None  # the lock belongs to another process
    assert info["pid"] == os.getpid()


def test_socket_mode_is_unknown_without_a_socket_file() -> None:
    from neocode_gateway.cli import _quick

    assert _quick.socket_mode("/nonexistent/socket") is None
    assert _quick.socket_mode(r"\\.\pipe\neocode-gateway") is None


def test_inprocess_status_json_timeout(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], sock_dir: str
) -> None:
    class NeverConnects(socket.socket):
        def connect(self, address: Any) -> None:
            raise TimeoutError

    monkeypatch.setattr(socket, "socket", NeverConnects)  # the module _local dials with
    path = f"{sock_dir}/gw.sock"
    assert main(["status", "--json", "--listen", path, "--timeout", "0.01"]) == 4
    captured = capsys.readouterr()
    info = json.loads(captured.out)
    assert info["reachable"] is False
    assert "could not connect" in info["reason"]
    assert "within 0.01 s" in captured.err


def test_inprocess_call_builds_the_frame_from_flags(
    fake_server: Callable[[Handler], FakeServer], capsys: pytest.CaptureFixture[str]
) -> None:
    server = fake_server(internal_error)
    argv = [
        "call",
        "run",
        "--listen",
        server.path,
        "--request-id",
        "r9",
        "--session-id",
        "s",
        "--run-id",
        "u",
        "--input-text",
        "hello",
        "--workdir",
        "/w",
        "--payload",
        '{"k":[1,2]}',
    ]
    assert main(argv) == 1
    assert json.loads(server.received[0]) == {
        "type": "request",
        "action": "run",
        "request_id": "r9",
        "run_id": "u",
        "session_id": "s",
        "input_text": "hello",
        "workdir": "/w",
        "payload": {"k": [1, 2]},
    }
    capsys.readouterr()


def test_inprocess_call_frame_argument_and_stdin_variants(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    two = (
        '{"type":"request","action":"ping","request_id":"1"}\n'
        '{"type":"request","action":"ping","request_id":"2"}'
    )
    assert main(["call", "--frame", two, "--listen", gateway.path]) == 0
    assert [r["request_id"] for r in json_lines(capsys.readouterr().out)] == ["1", "2"]

    monkeypatch.setattr("sys.stdin", io.StringIO('{"type":"request","action":"ping"}\n'))
    assert main(["call", "--frame", "-", "--listen", gateway.path]) == 0
    assert json_lines(capsys.readouterr().out)[0]["type"] == "ack"

    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"\n  \n")))
    assert main(["call", "--frame", "-", "--listen", gateway.path]) == 0
    assert capsys.readouterr().out == ""


def test_inprocess_call_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["call", "--frame", "  \n "]) == 2
    assert "--frame is blank" in capsys.readouterr().err
    assert main(["call", "--frame", "{}", "--request-id", "x", "--payload", "1"]) == 2
    err = capsys.readouterr().err
    assert "--frame cannot be combined with --request-id, --payload" in err
    with pytest.raises(SystemExit) as info:
        main(["call", "ping", "--payload", "NaN"])
    assert info.value.code == 2
    assert "argument --payload: not valid JSON" in capsys.readouterr().err


def test_inprocess_protocol_violation_exits_1(
    fake_server: Callable[[Handler], FakeServer], capsys: pytest.CaptureFixture[str]
) -> None:
    server = fake_server(garbage)
    assert (
        main(
            [
                "call",
                "--frame",
                '{"type":"request","action":"ping"}\n{"type":"request","action":"ping"}',
                "--listen",
                server.path,
            ]
        )
        == 1
    )
    err = capsys.readouterr().err
    assert "not a valid frame" in err
    assert err.count("\n") == 1


def test_inprocess_interrupt_and_broken_pipe(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def interrupted(self: Any, *args: Any, **kwargs: Any) -> float:
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(client_local.BlockingConnection, "payload", interrupted)
        assert main(["status", "--listen", gateway.path]) == 130
    assert capsys.readouterr().err == "neocode-gateway status: error: interrupted\n"

    class ClosedPipe(io.StringIO):
        def write(self, text: str) -> int:
            raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr("sys.stdout", ClosedPipe())
    assert main(["ping", "--listen", gateway.path]) == 141
    assert main(["schema"]) == 141
