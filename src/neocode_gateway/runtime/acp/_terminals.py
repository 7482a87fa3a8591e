"""The terminals an agent runs (``terminal/*``): in the workdir, bounded, owned by one run.

A terminal runs its command in the workdir (or a directory inside it), in its
own process group (under a shepherd on Linux: it is killed if the gateway
dies, and what it leaves behind is killed when it exits), keeps at most
``outputByteLimit`` bytes of output (the oldest are dropped, as ACP says), and
belongs to the run that created it: another run (of another session of the
same agent) cannot see it, and it is killed and released when its run ends.
``terminal/wait_for_exit`` returns when the command exits, even if something
it started keeps its output pipe open.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import signal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from neocode_gateway.runtime.acp._files import Refused, confine
from neocode_gateway.runtime.acp._process import ChildProcess, SpawnError

log = logging.getLogger("neocode_gateway.runtime.acp")

#: Output kept per terminal when the agent names no limit, and the most it may ask for.
DEFAULT_OUTPUT_LIMIT: Final = 1024 * 1024
MAX_OUTPUT_LIMIT: Final = 16 * 1024 * 1024
#: Terminals one run may hold at once.
MAX_TERMINALS: Final = 32


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

    def get(self, terminal_id: str, owner: Any) -> Terminal:
        """The terminal ``terminal_id`` of ``owner``; :class:`Refused` if unknown (or another's)."""
        terminal = self._terminals.get(terminal_id)
        if terminal is None or owner is None or terminal.owner is not owner:
            raise Refused(f"unknown terminal {terminal_id!r}", code=-32002)
        return terminal

    def output(self, terminal_id: str, owner: Any) -> dict[str, Any]:
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

    async def wait(self, terminal_id: str, owner: Any) -> dict[str, Any]:
        """``terminal/wait_for_exit``: wait for the command to end; its exit status."""
        terminal = self.get(terminal_id, owner)
        await terminal.child.wait()
        if terminal.reader is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(terminal.reader), 1.0)
        status = terminal.exit_status()
        assert status is not None
        return status

    async def kill(self, terminal_id: str, owner: Any) -> None:
        """``terminal/kill``: stop the command (the terminal stays, for its output)."""
        terminal = self.get(terminal_id, owner)
        await terminal.child.stop(grace=1.0, close_stdin=False)

    async def release(self, terminal_id: str, owner: Any) -> None:
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
