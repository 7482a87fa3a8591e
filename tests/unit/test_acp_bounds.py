"""Issue #17, the pure parts: stderr in linear time, stdout lines, confinement, permissions."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from pathlib import Path
from typing import Any

import pytest

from neocode_gateway.config import load_config
from neocode_gateway.errors import ConfigError
from neocode_gateway.runtime import PermissionOption, PermissionOutcome
from neocode_gateway.runtime.acp import _files
from neocode_gateway.runtime.acp._permissions import permission_choice
from neocode_gateway.runtime.acp._process import STDERR_LINE_BYTES, StderrTail
from neocode_gateway.runtime.acp._stdio import AgentStdio

# -- 12. stderr -----------------------------------------------------------------------------


def test_12_a_long_stderr_line_is_read_in_linear_time_and_cut() -> None:
    tail = StderrTail("agent x")
    chunk = b"y" * 65536
    began = time.process_time()
    for _ in range(512):  # 32 MiB without a newline
        tail.feed(chunk)
    tail.feed(b"\nnext line\n")
    tail.finish()
    assert time.process_time() - began < 1.0  # was 6.6 s of CPU (quadratic)
    first, second = list(tail.tail)
    assert first.startswith("y" * 100)
    assert len(first) <= 2000
    assert second == "next line"
    tail.feed(b"z" * (STDERR_LINE_BYTES + 10))
    tail.finish()
    assert tail.tail[-1].startswith("z")


# -- 4 and 11. stdout lines -----------------------------------------------------------------


class _Writer:
    """Enough of a StreamWriter for AgentStdio.receive (never written to here)."""


def _stdio(data: bytes, max_line: int, fatal: list[str]) -> AgentStdio:
    reader = asyncio.StreamReader(limit=1024)
    reader.feed_data(data)
    reader.feed_eof()
    return AgentStdio(reader, _Writer(), label="agent x", max_line=max_line, on_fatal=fatal.append)  # type: ignore[arg-type]


def test_4_a_line_past_the_limit_is_fatal_and_bounded() -> None:
    async def scenario() -> None:
        fatal: list[str] = []
        stdio = _stdio(b'{"id": 1, "result": 2}\n' + b"x" * 50_000 + b"\n{}\n", 10_000, fatal)
        assert await stdio.receive() == {"id": 1, "result": 2}
        assert await stdio.receive() is None
        assert fatal == ["sent a line longer than 10000 bytes on stdout"]
        fatal.clear()
        long_ok = b'{"method": "m", "params": "' + b"a" * 5000 + b'"}\n'
        stdio = _stdio(long_ok, 10_000, fatal)
        message = await stdio.receive()
        assert message is not None
        assert len(message["params"]) == 5000
        assert fatal == []

    asyncio.run(scenario())


def test_11_lines_that_are_not_objects_are_skipped(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        data = b'[]\n42\nnot json\n{"id": [1]}\n{"id": true}\n{"method": 3}\n{"id": 7}\n'
        stdio = _stdio(data, 10_000, [])
        assert await stdio.receive() == {"id": 7}
        assert stdio.skipped == 6

    with caplog.at_level(logging.WARNING):
        asyncio.run(scenario())
    assert not [r for r in caplog.records if r.exc_info]


# -- 1 and 14. files --------------------------------------------------------------------------


def test_1_what_is_not_a_regular_file_is_refused(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(_files.Refused, match="not a regular file"):
        _files.read_text(str(tmp_path), str(tmp_path / "fifo"))
    with pytest.raises(_files.Refused, match="cannot be written"):
        _files.write_text(str(tmp_path), str(tmp_path / "fifo"), "x")


def test_14_a_link_swapped_in_after_the_check_is_not_followed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    work, outside = tmp_path / "work", tmp_path / "outside"
    work.mkdir()
    outside.mkdir()
    (outside / "secret").write_text("s")
    os.symlink(outside, work / "sub")  # at check time it was a directory inside
    checked = str(work / "sub" / "new.txt")
    monkeypatch.setattr(_files, "confine", lambda workdir, path: checked)
    with pytest.raises(_files.Refused, match="link"):
        _files.write_text(str(work), "sub/new.txt", "escaped")
    assert not (outside / "new.txt").exists()
    monkeypatch.setattr(_files, "confine", lambda workdir, path: str(work / "sub" / "secret"))
    with pytest.raises(_files.Refused, match="link"):
        _files.read_text(str(work), "sub/secret")
    os.symlink(outside / "secret", work / "last")
    monkeypatch.setattr(_files, "confine", lambda workdir, path: str(work / "last"))
    with pytest.raises(_files.Refused, match="link"):
        _files.write_text(str(work), "last", "escaped")
    assert (outside / "secret").read_text() == "s"


def test_14_a_vanished_path_is_a_refusal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_files, "confine", lambda workdir, path: str(tmp_path / "gone" / "x"))
    with pytest.raises(_files.Refused, match="no such file"):
        _files.read_text(str(tmp_path), "gone/x")


# -- 8. permissions -------------------------------------------------------------------------


def _options(*kinds: str) -> list[PermissionOption]:
    return [PermissionOption(option_id=k, name=k, kind=k) for k in kinds]


_AO, _AA, _RO = "allow_once", "allow_always", "reject_once"


@pytest.mark.parametrize(
    ("outcome", "offered", "sent", "end_turn"),
    [
        (PermissionOutcome(_AA, "allow_once", "client"), (_AA, _RO), _RO, False),
        (PermissionOutcome(_AO, "allow_once", "client"), (_AO, _AA), _AO, False),
        (PermissionOutcome(_AA, "allow_session", "client"), (_AA,), _AA, False),
        (PermissionOutcome(None, "allow_session", "client"), (_AO, _RO), _AO, False),
        (PermissionOutcome(None, "reject", "client"), (_AO, _AA), None, True),
        (PermissionOutcome(None, "reject", "timeout"), (_AO,), None, True),
        (PermissionOutcome(None, None, "cancel"), (_RO,), None, False),
    ],
)
def test_8_a_decision_is_never_widened(
    outcome: PermissionOutcome, offered: tuple[str, ...], sent: str | None, end_turn: bool
) -> None:
    choice = permission_choice(outcome, _options(*offered))
    assert choice.kind == sent
    assert choice.end_turn is end_turn
    expected: dict[str, Any] = (
        {"outcome": "cancelled"} if sent is None else {"outcome": "selected", "optionId": sent}
    )
    assert choice.answer == {"outcome": expected}


# -- 15. env_remove -----------------------------------------------------------------------------


def test_15_env_remove_in_the_agent_table(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(
        '[agents.claude]\ncommand = ["claude-agent-acp"]\nenv_remove = ["IS_SANDBOX"]\n'
    )
    config = load_config(path)
    assert config.agents["claude"].env_remove == ("IS_SANDBOX",)
    path.write_text('[agents.claude]\ncommand = ["c"]\nenv_remove = "IS_SANDBOX"\n')
    with pytest.raises(ConfigError, match="env_remove: expected a list of strings"):
        load_config(path)
    path.write_text('[agents.claude]\ncommand = ["c"]\nenv_remove = ["1BAD"]\n')
    with pytest.raises(ConfigError, match="not a variable name"):
        load_config(path)
