"""The client side's confinement to the workdir, file reads and writes, terminal output limits."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from neocode_gateway.runtime.acp import _files as c
from neocode_gateway.runtime.acp import _terminals as t
from neocode_gateway.runtime.acp._process import (
    ChildProcess,
    SpawnError,
    descendant_pids,
    group_alive,
    rss_bytes,
    tree_rss_bytes,
    which,
)


@pytest.fixture
def tree(tmp_path: Path) -> tuple[str, str]:
    """(a workdir, a directory outside it) with links that try to escape."""
    work = tmp_path / "work"
    outside = tmp_path / "outside"
    work.mkdir()
    outside.mkdir()
    (outside / "secret").write_text("s")
    (work / "a.txt").write_text("one\ntwo\nthree\n")
    (work / "sub").mkdir()
    os.symlink(outside, work / "out-link")
    os.symlink(outside / "secret", work / "secret-link")
    os.symlink(work / "a.txt", work / "inner-link")
    return str(work), str(outside)


def test_paths_inside_resolve(tree: tuple[str, str]) -> None:
    work, _ = tree
    assert c.confine(work, f"{work}/a.txt") == f"{work}/a.txt"
    assert c.confine(work, "a.txt") == f"{work}/a.txt"
    assert c.confine(work, f"{work}/sub/../a.txt") == f"{work}/a.txt"
    assert c.confine(work, f"{work}/inner-link") == f"{work}/a.txt"
    assert c.confine(work, work) == work
    assert c.confine(work, f"{work}/new/deeper.txt") == f"{work}/new/deeper.txt"


@pytest.mark.parametrize(
    "path",
    [
        "{outside}/secret",
        "{work}/../outside/secret",
        "{work}/out-link/secret",
        "{work}/secret-link",
        "{work}/out-link",
        "../outside/secret",
        "/etc/passwd",
        "{work}x/a",
    ],
)
def test_paths_outside_are_refused(tree: tuple[str, str], path: str) -> None:
    work, outside = tree
    with pytest.raises(c.Refused, match="outside the session's workdir"):
        c.confine(work, path.format(work=work, outside=outside))


@pytest.mark.parametrize("path", ["", "a\0b"])
def test_invalid_paths(tree: tuple[str, str], path: str) -> None:
    with pytest.raises(c.Refused, match="invalid path"):
        c.confine(tree[0], path)


def test_read_text_with_line_and_limit(tree: tuple[str, str]) -> None:
    work, outside = tree
    assert c.read_text(work, f"{work}/a.txt") == "one\ntwo\nthree\n"
    assert c.read_text(work, f"{work}/a.txt", line=2) == "two\nthree\n"
    assert c.read_text(work, f"{work}/a.txt", line=2, limit=1) == "two\n"
    assert c.read_text(work, f"{work}/a.txt", limit=0) == ""
    with pytest.raises(c.Refused, match="no such file"):
        c.read_text(work, f"{work}/none.txt")
    with pytest.raises(c.Refused, match="is a directory"):
        c.read_text(work, f"{work}/sub")
    with pytest.raises(c.Refused, match="outside"):
        c.read_text(work, f"{outside}/secret")


def test_read_text_is_bounded(tree: tuple[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(c, "MAX_READ_BYTES", 4)
    with pytest.raises(c.Refused, match="larger than 4 bytes"):
        c.read_text(tree[0], "a.txt")


def test_write_text_creates_directories_and_refuses_escapes(tree: tuple[str, str]) -> None:
    work, outside = tree
    c.write_text(work, f"{work}/new/dir/f.txt", "hello")
    assert Path(work, "new/dir/f.txt").read_text() == "hello"
    c.write_text(work, f"{work}/a.txt", "replaced")
    assert Path(work, "a.txt").read_text() == "replaced"
    for path in (f"{work}/out-link/x", f"{work}/secret-link", f"{outside}/y"):
        with pytest.raises(c.Refused, match="outside"):
            c.write_text(work, path, "no")
    assert Path(outside, "secret").read_text() == "s"
    with pytest.raises(c.Refused, match="is a directory"):
        c.write_text(work, f"{work}/sub", "no")
    Path(work, "file").write_text("")
    with pytest.raises(c.Refused, match="cannot be written"):
        c.write_text(work, f"{work}/file/below", "no")


def test_terminal_output_keeps_the_newest_bytes_on_a_character_boundary() -> None:
    terminal = t.Terminal("t", child=None, limit=5, owner=None)  # type: ignore[arg-type]
    terminal.add(b"abc")
    assert (bytes(terminal.output), terminal.truncated) == (b"abc", False)
    terminal.add("déf".encode())  # 4 bytes: 7 in all, the newest 5 are kept
    assert bytes(terminal.output).decode() == "cdéf"
    assert terminal.truncated
    terminal.add("é".encode())
    assert bytes(terminal.output).decode() == "éfé"
    terminal.add(b"g")  # cutting 1 byte would split the first "é": it goes whole
    assert bytes(terminal.output).decode() == "fég"


def test_terminals_end_to_end(tree: tuple[str, str]) -> None:
    work, outside = tree

    async def scenario() -> None:
        terminals = t.Terminals("test")
        owner = object()
        tid = await terminals.create(owner, work, "sh", ["-c", "pwd; echo $X"], env={"X": "y"})
        status = await terminals.wait(tid, owner)
        assert status == {"exitCode": 0, "signal": None}
        assert terminals.output(tid, owner) == {
            "output": f"{work}\ny\n",
            "truncated": False,
            "exitStatus": status,
        }
        await terminals.release(tid, owner)
        with pytest.raises(c.Refused, match="unknown terminal"):
            terminals.output(tid, owner)
        with pytest.raises(c.Refused, match="outside"):
            await terminals.create(owner, work, "pwd", cwd=outside)
        with pytest.raises(c.Refused, match="not a directory"):
            await terminals.create(owner, work, "pwd", cwd=f"{work}/a.txt")
        with pytest.raises(c.Refused, match="not found on PATH"):
            await terminals.create(owner, work, "no-such-cmd-xyz")
        slow = await terminals.create(owner, work, "sleep", ["600"], limit=10)
        assert "exitStatus" not in terminals.output(slow, owner)
        await terminals.kill(slow, owner)
        assert terminals.output(slow, owner)["exitStatus"]["signal"] in ("SIGTERM", "SIGKILL")
        other = object()
        with pytest.raises(c.Refused, match="unknown terminal"):
            terminals.get(slow, other)
        again = await terminals.create(owner, work, "sleep", ["600"])
        pid = terminals.get(again, owner).child.pid
        await terminals.release_owned_by(owner)
        assert len(terminals) == 0
        assert not group_alive(pid)
        await terminals.close()

    asyncio.run(scenario())


def test_too_many_terminals(tree: tuple[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(t, "MAX_TERMINALS", 1)

    async def scenario() -> None:
        terminals = t.Terminals("test")
        owner = object()
        await terminals.create(owner, tree[0], "sleep", ["600"])
        with pytest.raises(c.Refused, match="too many terminals"):
            await terminals.create(owner, tree[0], "sleep", ["600"])
        await terminals.close()

    asyncio.run(scenario())


def test_process_helpers(tmp_path: Path) -> None:
    assert which("sh", {"PATH": os.environ["PATH"]})
    assert which("sh", {"PATH": str(tmp_path)}) is None
    assert which(sys.executable, {}) == sys.executable
    assert which(str(tmp_path), {}) is None
    assert rss_bytes(os.getpid())
    assert tree_rss_bytes(os.getpid()) >= (rss_bytes(os.getpid()) or 0)
    assert rss_bytes(2**22 + 12345) is None

    async def scenario() -> None:
        with pytest.raises(SpawnError, match="not found on PATH"):
            await ChildProcess.spawn(["no-such-thing-xyz"], env=os.environ, cwd=None, label="x")
        child = await ChildProcess.spawn(
            [sys.executable, "-c", "import sys; sys.stderr.write('a\\nb'); sys.exit(4)"],
            env=os.environ,
            cwd=None,
            label="test child",
        )
        assert child.exit_text() == "is running" or child.returncode is not None
        assert await child.wait() == 4
        await child.stderr_done()
        assert list(child.stderr_tail) == ["a", "b"]
        assert child.exit_text() == "exited with code 4"
        sleeper = await ChildProcess.spawn(["sleep", "600"], env=os.environ, cwd=None, label="s")
        assert (sleeper.pid,) == tuple(
            p for p, _ in descendant_pids(os.getpid()) if p == sleeper.pid
        )
        await sleeper.stop(grace=0.2)
        assert sleeper.exit_text() == "was killed by SIGTERM"

    asyncio.run(scenario())
