"""The client side of ACP that the bridge serves: files and terminals, inside the workdir.

An agent may ask its client to read or write a file (``fs/*``) or to run a
command (``terminal/*``). The bridge does so only inside the session's
workdir: every path is resolved (symlinks followed, ``..`` collapsed) before
it is checked, and a path that lands outside is refused with a JSON-RPC
error. Terminals run in the workdir (or a directory inside it), in their own
process group, keep at most ``outputByteLimit`` bytes of output (the oldest
are dropped, as ACP says), and are killed and released when their run ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from neocode_gateway.runtime.acp._process import ChildProcess, SpawnError

log = logging.getLogger("neocode_gateway.runtime.acp")

#: Output kept per terminal when the agent names no limit, and the most it may ask for.
DEFAULT_OUTPUT_LIMIT: Final = 1024 * 1024
MAX_OUTPUT_LIMIT: Final = 16 * 1024 * 1024
#: The largest file ``fs/read_text_file`` returns.
MAX_READ_BYTES: Final = 32 * 1024 * 1024
#: Terminals one agent session may hold at once.
MAX_TERMINALS: Final = 32


class Refused(Exception):
    """A request the client side will not serve; becomes a JSON-RPC error for the agent."""

    def __init__(self, message: str, code: int = -32602) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def confine(workdir: str, path: str) -> str:
    """``path`` resolved (symlinks too), if it is ``workdir`` or inside it; else :class:`Refused`.

    ACP paths are absolute; a relative one is taken relative to the workdir.
    """
    if not isinstance(path, str) or not path or "\0" in path:
        raise Refused("invalid path")
    root = os.path.realpath(workdir)
    resolved = os.path.realpath(os.path.join(root, path))
    if resolved != root and not resolved.startswith(root.rstrip(os.sep) + os.sep):
        raise Refused(f"{path}: outside the session's workdir {root}")
    return resolved


def read_text(workdir: str, path: str, line: int | None = None, limit: int | None = None) -> str:
    """``fs/read_text_file``: the file's text, from 1-based ``line``, at most ``limit`` lines."""
    resolved = confine(workdir, path)
    try:
        with open(resolved, "rb") as handle:
            raw = handle.read(MAX_READ_BYTES + 1)
    except FileNotFoundError:
        raise Refused(f"{path}: no such file", code=-32002) from None
    except IsADirectoryError:
        raise Refused(f"{path}: is a directory") from None
    except OSError as exc:
        raise Refused(f"{path}: cannot be read ({exc.strerror or exc})") from None
    if len(raw) > MAX_READ_BYTES:
        raise Refused(f"{path}: larger than {MAX_READ_BYTES} bytes")
    text = raw.decode("utf-8", "replace")
    if line is None and limit is None:
        return text
    lines = text.splitlines(keepends=True)
    start = max((line or 1) - 1, 0)
    end = len(lines) if limit is None else start + max(limit, 0)
    return "".join(lines[start:end])


def write_text(workdir: str, path: str, content: str) -> None:
    """``fs/write_text_file``: create or replace the file (and its missing directories)."""
    resolved = confine(workdir, path)
    parent = os.path.dirname(resolved)
    try:
        os.makedirs(parent, exist_ok=True)
        # The directories just made are inside the workdir; check again in case one is a link.
        confine(workdir, parent)
        with open(resolved, "w", encoding="utf-8") as handle:
            handle.write(content)
    except IsADirectoryError:
        raise Refused(f"{path}: is a directory") from None
    except OSError as exc:
        raise Refused(f"{path}: cannot be written ({exc.strerror or exc})") from None


@dataclass(eq=False)
class Terminal:
    """One command an agent runs through ``terminal/create``."""

    id: str
    child: ChildProcess
    limit: int
    owner: Any  # what the terminal belongs to (the bridge's run), released with it
    output: bytearray = field(default_factory=bytearray)
    truncated: bool = False
    reader: asyncio.Task[None] | None = None

    def add(self, chunk: bytes) -> None:
        self.output += chunk
        if len(self.output) > self.limit:
            cut = len(self.output) - self.limit
            # Never cut inside a UTF-8 sequence: skip continuation bytes.
            while cut < len(self.output) and (self.output[cut] & 0xC0) == 0x80:
                cut += 1
            del self.output[:cut]
            self.truncated = True

    def exit_status(self) -> dict[str, Any] | None:
        code = self.child.returncode
        if code is None:
            return None
        if code < 0:
            import signal

            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = str(-code)
            return {"exitCode": None, "signal": name}
        return {"exitCode": code, "signal": None}


class Terminals:
    """The terminals of one agent process, by id."""

    def __init__(self, label: str) -> None:
        self._label = label
        self._terminals: dict[str, Terminal] = {}
        self._ids = itertools.count(1)

    def __len__(self) -> int:
        return len(self._terminals)

    async def create(
        self,
        owner: Any,
        workdir: str,
        command: str,
        args: Sequence[str] = (),
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        limit: int | None = None,
    ) -> str:
        """Start ``command args`` in ``cwd`` (inside the workdir); its id."""
        if sum(1 for t in self._terminals.values() if t.owner is owner) >= MAX_TERMINALS:
            raise Refused(f"too many terminals (at most {MAX_TERMINALS})")
        where = confine(workdir, cwd) if cwd else os.path.realpath(workdir)
        if not os.path.isdir(where):
            raise Refused(f"{cwd or workdir}: not a directory")
        size = DEFAULT_OUTPUT_LIMIT if limit is None else min(max(limit, 0), MAX_OUTPUT_LIMIT)
        full_env = dict(os.environ)
        full_env.update(env or {})
        terminal_id = f"term-{next(self._ids)}"
        try:
            child = await ChildProcess.spawn(
                [command, *args],
                env=full_env,
                cwd=where,
                label=f"{self._label} {terminal_id}",
                stderr_to_stdout=True,
                stdin=False,
            )
        except SpawnError as exc:
            raise Refused(f"terminal: {exc}") from None
        terminal = Terminal(terminal_id, child, size, owner)
        terminal.reader = asyncio.get_running_loop().create_task(
            self._read(terminal), name=f"{self._label} {terminal_id} output"
        )
        self._terminals[terminal_id] = terminal
        log.debug(
            "%s: %s started %r in %s (pid %d)", self._label, terminal_id, command, where, child.pid
        )
        return terminal_id

    async def _read(self, terminal: Terminal) -> None:
        stream = terminal.child.process.stdout
        assert stream is not None
        with contextlib.suppress(OSError, ValueError):
            while chunk := await stream.read(65536):
                terminal.add(chunk)

    def get(self, terminal_id: str, owner: Any = None) -> Terminal:
        """The terminal ``terminal_id`` (of ``owner``, if given); :class:`Refused` if unknown."""
        terminal = self._terminals.get(terminal_id)
        if terminal is None or (owner is not None and terminal.owner is not owner):
            raise Refused(f"unknown terminal {terminal_id!r}", code=-32002)
        return terminal

    def output(self, terminal_id: str, owner: Any = None) -> dict[str, Any]:
        """``terminal/output``: what it printed so far (within its limit) and its exit status."""
        terminal = self.get(terminal_id, owner)
        result: dict[str, Any] = {
            "output": terminal.output.decode("utf-8", "replace"),
            "truncated": terminal.truncated,
        }
        status = terminal.exit_status()
        if status is not None:
            result["exitStatus"] = status
        return result

    async def wait(self, terminal_id: str, owner: Any = None) -> dict[str, Any]:
        """``terminal/wait_for_exit``: wait for the command to end; its exit status."""
        terminal = self.get(terminal_id, owner)
        await terminal.child.wait()
        if terminal.reader is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(terminal.reader), 1.0)
        status = terminal.exit_status()
        assert status is not None
        return status

    async def kill(self, terminal_id: str, owner: Any = None) -> None:
        """``terminal/kill``: stop the command (the terminal stays, for its output)."""
        terminal = self.get(terminal_id, owner)
        await terminal.child.stop(grace=1.0, close_stdin=False)

    async def release(self, terminal_id: str, owner: Any = None) -> None:
        """``terminal/release``: stop the command if it still runs, and forget the terminal."""
        terminal = self.get(terminal_id, owner)
        self._terminals.pop(terminal_id, None)
        await self._dispose(terminal)

    async def release_owned_by(self, owner: Any) -> None:
        """Kill and release every terminal of ``owner`` (its run ended)."""
        mine = [t for t in self._terminals.values() if t.owner is owner]
        for terminal in mine:
            self._terminals.pop(terminal.id, None)
        await asyncio.gather(*(self._dispose(t) for t in mine), return_exceptions=True)

    async def close(self) -> None:
        """Kill and release every terminal."""
        everything = list(self._terminals.values())
        self._terminals.clear()
        await asyncio.gather(*(self._dispose(t) for t in everything), return_exceptions=True)

    @staticmethod
    async def _dispose(terminal: Terminal) -> None:
        await terminal.child.stop(grace=1.0, close_stdin=False)
        if terminal.reader is not None and not terminal.reader.done():
            terminal.reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await terminal.reader
