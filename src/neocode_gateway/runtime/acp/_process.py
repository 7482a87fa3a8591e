"""Child processes the bridge starts: an agent, or a terminal of an agent.

Each child gets its own process group (``start_new_session``), so that
stopping it also stops whatever it started (Claude's adapter starts one
Claude Code process per session) and nothing else: signals go to that group
and to descendants recorded by pid *and* start time, never to a name.

An agent's stderr is always read (a chatty agent must never block on a full
pipe): each line goes to the log at debug, and the last lines are kept for the
message of a run that the agent's death ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Final

log = logging.getLogger("neocode_gateway.runtime.acp")

#: The agent's stdout line limit (the SDK's default of 64 KiB is too small for real agents).
STDIO_LIMIT: Final = 64 * 1024 * 1024
#: How many stderr lines are kept for error messages.
STDERR_TAIL: Final = 50
#: Longest stderr line kept (longer ones are cut; the log gets them whole at debug).
STDERR_LINE_CHARS: Final = 2000


class SpawnError(OSError):
    """The command could not be started (not found, not executable...)."""


def which(command: str, env: Mapping[str, str]) -> str | None:
    """``command`` resolved on the ``PATH`` of ``env`` (or as given, if it has a slash)."""
    if os.sep in command:
        return command if os.access(command, os.X_OK) and os.path.isfile(command) else None
    return shutil.which(command, path=env.get("PATH", os.defpath))


class ChildProcess:
    """A started child in its own process group, with its stderr drained."""

    def __init__(self, process: asyncio.subprocess.Process, label: str) -> None:
        self.process = process
        self.pid = process.pid
        self.label = label
        self.stderr_tail: deque[str] = deque(maxlen=STDERR_TAIL)
        self._stderr_task: asyncio.Task[None] | None = None
        if process.stderr is not None:
            self._stderr_task = asyncio.get_running_loop().create_task(
                self._drain(process.stderr), name=f"{label} stderr"
            )

    @classmethod
    async def spawn(
        cls,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        cwd: str | None,
        label: str,
        stderr_to_stdout: bool = False,
        stdin: bool = True,
    ) -> ChildProcess:
        """Start ``argv`` (``argv[0]`` looked up on ``env['PATH']``); :class:`SpawnError` if not."""
        program = which(argv[0], env)
        if program is None:
            raise SpawnError(f"{argv[0]!r} not found on PATH")
        try:
            process = await asyncio.create_subprocess_exec(
                program,
                *argv[1:],
                stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT if stderr_to_stdout else asyncio.subprocess.PIPE,
                env=dict(env),
                cwd=cwd,
                start_new_session=True,
                limit=STDIO_LIMIT,
            )
        except OSError as exc:
            raise SpawnError(f"{argv[0]!r} cannot be started ({exc.strerror or exc})") from None
        return cls(process, label)

    @property
    def returncode(self) -> int | None:
        """The exit status (negative: killed by that signal), ``None`` while running."""
        return self.process.returncode

    async def wait(self) -> int:
        """Wait for the exit (the event loop reaps the child: no zombie)."""
        return await self.process.wait()

    async def stderr_done(self, timeout: float = 1.0) -> None:
        """Let the stderr reader take what the process wrote before it exited."""
        if self._stderr_task is not None:
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(self._stderr_task), timeout)

    def exit_text(self) -> str:
        """How the process ended, in words."""
        code = self.returncode
        if code is None:
            return "is running"
        if code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            return f"was killed by {name}"
        return f"exited with code {code}"

    async def _drain(self, stream: asyncio.StreamReader) -> None:
        pending = b""
        try:
            while True:
                chunk = await stream.read(65536)
                if not chunk:
                    break
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    self._line(line)
                if len(pending) > STDIO_LIMIT:
                    self._line(pending)
                    pending = b""
        except (OSError, ValueError):  # pragma: no cover - the pipe broke
            pass
        if pending:
            self._line(pending)

    def _line(self, raw: bytes) -> None:
        text = raw.decode("utf-8", "replace").rstrip("\r")
        log.debug("%s stderr: %s", self.label, text)
        if text.strip():
            self.stderr_tail.append(text[:STDERR_LINE_CHARS])

    def signal_group(self, signum: int) -> None:
        """Send ``signum`` to the child's process group (its own: ``start_new_session``)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signum)

    async def stop(self, grace: float = 3.0, *, close_stdin: bool = True) -> None:
        """Stop the child and everything it started: stdin EOF, SIGTERM, then SIGKILL.

        Each step waits up to ``grace`` seconds for the child to exit. Then the
        rest of its process group, and descendants that left the group, are
        killed, so that no orphan outlives it.
        """
        descendants = descendant_pids(self.pid)
        if self.returncode is None and close_stdin and self.process.stdin is not None:
            with contextlib.suppress(OSError, RuntimeError):
                self.process.stdin.close()
            await self._wait(grace)
        if self.returncode is None:
            descendants |= descendant_pids(self.pid)
            self.signal_group(signal.SIGTERM)
            await self._wait(grace)
        if self.returncode is None:
            descendants |= descendant_pids(self.pid)
            self.signal_group(signal.SIGKILL)
            await self._wait(grace)
        if group_alive(self.pid):  # what it started outlives it: TERM, then KILL
            self.signal_group(signal.SIGTERM)
            await self._wait_group(grace)
        self.kill_leftovers(descendants)
        await self._wait_group(grace)
        await self.stderr_done(timeout=grace)
        if self._stderr_task is not None and not self._stderr_task.done():
            self._stderr_task.cancel()

    def kill_leftovers(self, descendants: set[tuple[int, int]] | None = None) -> None:
        """SIGKILL what is left of the child's group and its recorded descendants."""
        self.signal_group(signal.SIGKILL)
        for pid, started in descendants or ():
            if _start_time(pid) == started:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)

    async def _wait_group(self, timeout: float) -> None:
        """Poll (bounded) until nothing is left in the child's process group."""
        deadline = asyncio.get_running_loop().time() + timeout
        delay = 0.005
        while group_alive(self.pid) and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.1)

    async def _wait(self, timeout: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.process.wait(), timeout)


# -- /proc (Linux): descendants and memory --------------------------------------------------


def _stat(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            raw = handle.read().decode("ascii", "replace")
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its last ')'.
    return raw[raw.rfind(")") + 2 :].split()


def _start_time(pid: int) -> int | None:
    fields = _stat(pid)
    return int(fields[19]) if fields and len(fields) > 19 else None


def descendant_pids(root: int) -> set[tuple[int, int]]:
    """Every living descendant of ``root`` as (pid, start time), from /proc (empty elsewhere)."""
    try:
        entries = [int(name) for name in os.listdir("/proc") if name.isdigit()]
    except OSError:  # pragma: no cover - no /proc
        return set()
    children: dict[int, list[int]] = {}
    for pid in entries:
        fields = _stat(pid)
        if fields and len(fields) > 1:
            children.setdefault(int(fields[1]), []).append(pid)
    found: set[tuple[int, int]] = set()
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), ()):
            started = _start_time(child)
            if started is not None and (child, started) not in found:
                found.add((child, started))
                todo.append(child)
    return found


def rss_bytes(pid: int) -> int | None:
    """Resident memory of one process (Linux), ``None`` if it is gone."""
    try:
        with open(f"/proc/{pid}/status", "rb") as handle:
            for line in handle:
                if line.startswith(b"VmRSS:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        return None
    return 0


def tree_rss_bytes(pid: int) -> int:
    """Resident memory of a process and all its descendants (Linux; 0 if unknown)."""
    total = rss_bytes(pid) or 0
    for child, _ in descendant_pids(pid):
        total += rss_bytes(child) or 0
    return total


def group_alive(pgid: int) -> bool:
    """Whether any process is left in process group ``pgid`` (zombies count as gone)."""
    try:
        entries = [name for name in os.listdir("/proc") if name.isdigit()]
    except OSError:  # pragma: no cover - no /proc
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        return True
    for name in entries:
        try:
            with open(f"/proc/{name}/stat", "rb") as handle:
                raw = handle.read().decode("ascii", "replace")
        except OSError:
            continue
        fields = raw[raw.rfind(")") + 2 :].split()
        if len(fields) > 2 and fields[2] == str(pgid) and fields[0] != "Z":
            return True
    return False
