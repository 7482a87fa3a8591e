"""A tiny parent for each agent and terminal (Linux): nothing they start outlives them.

Run as ``python -I -S _shepherd.py GATEWAY_PID GRACE PROGRAM ARGV0 ARGS...`` (the
gateway does it, :mod:`._process`). Why a process of its own, and not the
gateway: a ``kill -9`` of the gateway must still stop the agent's children and
the terminals, and only something alive can do that.

* ``PR_SET_PDEATHSIG``: the kernel sends it SIGTERM when the gateway dies
  (however it dies); it is set here, after ``fork``, in a process with one
  thread, never in a ``preexec_fn`` of the threaded gateway;
* ``PR_SET_CHILD_SUBREAPER``: what the command starts and abandons (a
  ``setsid`` daemon, the children of a crashed agent) is re-parented to the
  shepherd, not to init, so it can still be found and killed;
* it waits for the command; when the command exits (or was told to stop and
  the grace passed), every process left in its tree is killed and reaped, and
  the shepherd exits as the command did (same code, or killed by the same
  signal), so that the gateway sees the command's own exit.

It imports nothing from the gateway (it starts in a few milliseconds) and
holds none of the command's pipes: the gateway sees end-of-file as soon as
the command and what it left are gone.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import time

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
WATCHED = {signal.SIGCHLD, *STOP_SIGNALS}


def _prctl(option: int, value: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(option, value, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), f"prctl({option})")


def _tree(root: int) -> list[int]:
    """Every living descendant of ``root`` (from /proc), children first found first."""
    parents: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as handle:
                raw = handle.read().decode("ascii", "replace")
        except OSError:
            continue
        fields = raw[raw.rfind(")") + 2 :].split()
        if len(fields) > 1 and fields[0] != "Z":
            parents.setdefault(int(fields[1]), []).append(int(name))
    found: list[int] = []
    todo = [root]
    while todo:
        for child in parents.get(todo.pop(), ()):
            found.append(child)
            todo.append(child)
    return found


def _kill_tree(signum: int) -> None:
    for pid in _tree(os.getpid()):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signum)


def _reap() -> list[tuple[int, int]]:
    reaped: list[tuple[int, int]] = []
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return reaped
        if pid == 0:
            return reaped
        reaped.append((pid, status))


def _clean_up() -> None:
    """SIGKILL and reap everything left below the shepherd (bounded: 5 s)."""
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline:
        _kill_tree(signal.SIGKILL)
        _reap()
        if not _tree(os.getpid()):
            return
        signal.sigtimedwait({signal.SIGCHLD}, 0.05)


def _exit_like(status: int) -> None:
    if os.WIFSIGNALED(status):
        signum = os.WTERMSIG(status)
        for sig in WATCHED:
            signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, set())
        try:
            import resource

            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # no core of the shepherd
        except (ImportError, OSError, ValueError):
            pass
        os.kill(os.getpid(), signum)
        os._exit(128 + signum)
    os._exit(os.WEXITSTATUS(status) if os.WIFEXITED(status) else 1)


def main(argv: list[str]) -> None:
    parent, grace, program, command = int(argv[1]), float(argv[2]), argv[3], argv[4:]
    signal.pthread_sigmask(signal.SIG_BLOCK, WATCHED)
    _prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # the gateway died before the signal was armed
        os._exit(1)
    _prctl(PR_SET_CHILD_SUBREAPER, 1)
    pid = os.fork()
    if pid == 0:
        signal.pthread_sigmask(signal.SIG_SETMASK, set())
        try:
            os.execv(program, command)
        except OSError as exc:
            os.write(2, f"{program}: cannot be started ({exc.strerror})\n".encode())
        os._exit(127)
    # The command's stdio are its own: hold none of them.
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)
    status: int | None = None
    deadline: float | None = None
    while status is None:
        timeout = None if deadline is None else max(deadline - time.monotonic(), 0.0)
        if timeout == 0.0:
            _kill_tree(signal.SIGKILL)  # the grace is over
            deadline = time.monotonic() + 60.0
            continue
        info = (
            signal.sigwaitinfo(WATCHED)
            if timeout is None
            else signal.sigtimedwait(WATCHED, timeout)
        )
        if info is not None and info.si_signo in STOP_SIGNALS and deadline is None:
            # The gateway signals the whole group when it stops the command; when it died
            # (the parent-death signal), the shepherd tells the group itself. Either way the
            # command has the grace, then everything is killed.
            if os.getppid() != parent:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(os.getpid(), signal.SIGTERM)
            deadline = time.monotonic() + grace
        for child, child_status in _reap():
            if child == pid:
                status = child_status
    _clean_up()
    _exit_like(status)


if __name__ == "__main__":
    main(sys.argv)
