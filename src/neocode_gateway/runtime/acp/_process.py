"""Child processes the bridge starts: an agent, or a terminal of an agent.

Each child gets its own process group (``start_new_session``), so that
stopping it also stops whatever it started (Claude's adapter starts one
Claude Code process per session) and nothing else: signals go to that group
and to descendants recorded by pid *and* start time, never to a name. On
Linux the command runs under a shepherd (:mod:`._shepherd`): it gets a
parent-death signal and is a child subreaper, so that what the command leaves
(``setsid`` daemons included) is killed when the command ends, when the
gateway stops it, and when the gateway is killed with ``kill -9``.

The exit is the command's exit, not the end of its pipes: a descendant that
keeps stdout open must not make a crashed agent look alive (``Process.wait()``
of the stock event loop waits for the pipes too).

An agent's stderr is always read (a chatty agent must never block on a full
pipe), in linear time and bounded memory: each line goes to the log at debug
(cut to :data:`STDERR_LINE_BYTES`), and the last lines are kept for the
message of a run that the agent's death ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import sys
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from typing import Final

log = logging.getLogger("neocode_gateway.runtime.acp")

#: The stream reader's buffer (lines are longer: :mod:`._stdio` joins the pieces, bounded).
STREAM_LIMIT: Final = 1024 * 1024
#: How many stderr lines are kept for error messages.
STDERR_TAIL: Final = 50
#: Longest stderr line kept and logged (the rest of a longer line is dropped as it comes).
STDERR_LINE_BYTES: Final = 8192
#: Longest stderr line in an error message.
STDERR_LINE_CHARS: Final = 2000
#: The shepherd, where the kernel offers what it needs (Linux).
SHEPHERD: Final = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_shepherd.py")
USE_SHEPHERD: Final = sys.platform == "linux"


class SpawnError(OSError):
    """The command could not be started (not found, not executable...)."""


def which(command: str, env: Mapping[str, str]) -> str | None:
    """``command`` resolved on the ``PATH`` of ``env`` (or as given, if it has a slash)."""
    if os.sep in command:
        return command if os.access(command, os.X_OK) and os.path.isfile(command) else None
    return shutil.which(command, path=env.get("PATH", os.defpath))


class StderrTail:
    """An agent's stderr as lines, in linear time: a long line is cut as it comes, not kept."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.tail: deque[str] = deque(maxlen=STDERR_TAIL)
        self._line = bytearray()
        self._dropped = 0

    def feed(self, chunk: bytes) -> None:
        start = 0
        while True:
            end = chunk.find(b"\n", start)
            piece = memoryview(chunk)[start : len(chunk) if end < 0 else end]
            room = max(STDERR_LINE_BYTES - len(self._line), 0)
            self._line += piece[:room]
            self._dropped += max(len(piece) - room, 0)
            if end < 0:
                return
            self._emit()
            start = end + 1

    def finish(self) -> None:
        if self._line or self._dropped:
            self._emit()

    def _emit(self) -> None:
        text = self._line.decode("utf-8", "replace").rstrip("\r")
        if self._dropped:
            text += f" [... {self._dropped} more bytes]"
        self._line.clear()
        self._dropped = 0
        log.debug("%s stderr: %s", self.label, text)
        if text.strip():
            self.tail.append(text[:STDERR_LINE_CHARS])


class _Protocol(asyncio.subprocess.SubprocessStreamProtocol):
    """The stock protocol, plus a future set when the process itself exits."""

    def __init__(self, limit: int, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(limit=limit, loop=loop)
        self.exited: asyncio.Future[None] = loop.create_future()

    def process_exited(self) -> None:
        super().process_exited()
        if not self.exited.done():
            self.exited.set_result(None)


class ChildProcess:
    """A started child in its own process group, with its stderr drained."""

    def __init__(
        self, process: asyncio.subprocess.Process, exited: asyncio.Future[None], label: str
    ) -> None:
        self.process = process
        self.pid = process.pid
        self.label = label
        self._exited = exited
        self._stderr = StderrTail(label)
        self.stderr_tail = self._stderr.tail
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
        grace: float = 3.0,
    ) -> ChildProcess:
        """Start ``argv`` (``argv[0]`` looked up on ``env['PATH']``); :class:`SpawnError` if not.

        ``grace``: how long the shepherd lets the command stop after SIGTERM.
        """
        program = which(argv[0], env)
        if program is None:
            raise SpawnError(f"{argv[0]!r} not found on PATH")
        command = [program, *argv[1:]]
        if USE_SHEPHERD:
            command = [sys.executable, "-I", "-S", SHEPHERD, str(os.getpid()), f"{grace:g}"]
            command += [program, program, *argv[1:]]
        loop = asyncio.get_running_loop()
        made: list[_Protocol] = []

        def factory() -> _Protocol:
            made.append(_Protocol(STREAM_LIMIT, loop))
            return made[-1]

        try:
            transport, protocol = await loop.subprocess_exec(
                factory,
                *command,
                stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT if stderr_to_stdout else asyncio.subprocess.PIPE,
                env=dict(env),
                cwd=cwd,
                start_new_session=True,
            )
        except OSError as exc:
            raise SpawnError(f"{argv[0]!r} cannot be started ({exc.strerror or exc})") from None
        process = asyncio.subprocess.Process(transport, protocol, loop)
        return cls(process, made[0].exited, label)

    @property
    def returncode(self) -> int | None:
        """The exit status (negative: killed by that signal), ``None`` while running."""
        return self.process.returncode

    async def wait(self) -> int:
        """Wait for the exit of the process itself (not of its pipes); the loop reaps it."""
        await asyncio.shield(self._exited)
        code = self.process.returncode
        assert code is not None
        return code

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
        with contextlib.suppress(OSError, ValueError):
            while chunk := await stream.read(65536):
                self._stderr.feed(chunk)
        self._stderr.finish()

    def signal_group(self, signum: int) -> None:
        """Send ``signum`` to the child's process group (its own: ``start_new_session``)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signum)

    def close_stdin(self) -> None:
        """End-of-file on the child's stdin, now: unsent data is dropped (never waited for)."""
        stdin = self.process.stdin
        if stdin is not None and not stdin.transport.is_closing():
            with contextlib.suppress(OSError, RuntimeError):
                stdin.transport.abort()

    async def stop(self, grace: float = 3.0, *, close_stdin: bool = True) -> None:
        """Stop the child and everything it started, within ``grace`` seconds and a bit.

        Stdin EOF (two thirds of the grace), SIGTERM to the group (the rest),
        then SIGKILL; then the rest of its process group, and descendants that
        left the group, are killed, so that no orphan outlives it. Every wait
        is bounded.
        """
        descendants = descendant_pids(self.pid)
        if self.returncode is None and close_stdin and self.process.stdin is not None:
            self.close_stdin()
            await self._wait(grace * 2 / 3)
        if self.returncode is None:
            descendants |= descendant_pids(self.pid)
            self.signal_group(signal.SIGTERM)
            await self._wait(grace / 3 if close_stdin else grace)
        if self.returncode is None:
            descendants |= descendant_pids(self.pid)
            self.signal_group(signal.SIGKILL)
            await self._wait(1.0)
        self.kill_leftovers(descendants)
        await self._wait_group(1.0)
        await self.stderr_done(timeout=0.5)
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
            await asyncio.wait_for(self.wait(), timeout)


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


def join_tail(lines: Iterable[str], limit: int = 20, max_chars: int = 4000) -> str:
    """The last ``limit`` lines of an agent's stderr for an error message (bounded)."""
    chosen: Sequence[str] = list(lines)[-limit:]
    text = "\n".join(chosen)
    if len(text) > max_chars:
        text = "..." + text[-max_chars:]
    return text
