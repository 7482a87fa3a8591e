"""The files an agent may read and write (``fs/*``): regular files inside the workdir only.

Every path is resolved (symlinks followed, ``..`` collapsed) and checked to
be the workdir or inside it. Then it is opened one component at a time from
the workdir with ``O_NOFOLLOW``, so that a link swapped in between the check
and the open is refused instead of followed out of the workdir, and the
opened descriptor must be a regular file: a FIFO (which would block a thread
for ever), a device or a socket is refused. Opens are non-blocking for that
reason. Every failure, a path that vanished included, is a :class:`Refused`.
"""

from __future__ import annotations

import contextlib
import os
import stat
from typing import Final

#: The largest file ``fs/read_text_file`` returns.
MAX_READ_BYTES: Final = 32 * 1024 * 1024
_DIR_FLAGS: Final = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS: Final = os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK


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


def open_beneath(workdir: str, resolved: str, flags: int, *, make_dirs: bool = False) -> int:
    """Open ``resolved`` (checked by :func:`confine`) from the workdir, following no link.

    ``make_dirs`` creates missing directories on the way (each one opened
    again without following links). Raises ``OSError`` (``ELOOP`` or
    ``ENOTDIR`` for a link that appeared).
    """
    root = os.path.realpath(workdir)
    relative = os.path.relpath(resolved, root)
    parts = [] if relative == "." else relative.split(os.sep)
    if not parts or any(p in ("", ".", "..") for p in parts):
        raise IsADirectoryError(resolved)
    dir_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for name in parts[:-1]:
            try:
                fd = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
            except FileNotFoundError:
                if not make_dirs:
                    raise
                with contextlib.suppress(FileExistsError):
                    os.mkdir(name, 0o777, dir_fd=dir_fd)
                fd = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
            os.close(dir_fd)
            dir_fd = fd
        return os.open(parts[-1], flags | _FILE_FLAGS, 0o666, dir_fd=dir_fd)
    finally:
        os.close(dir_fd)


def read_text(workdir: str, path: str, line: int | None = None, limit: int | None = None) -> str:
    """``fs/read_text_file``: the file's text, from 1-based ``line``, at most ``limit`` lines."""
    resolved = confine(workdir, path)
    try:
        fd = open_beneath(workdir, resolved, os.O_RDONLY)
        with os.fdopen(fd, "rb") as handle:
            _regular(path, os.fstat(fd).st_mode)
            raw = handle.read(MAX_READ_BYTES + 1)
    except FileNotFoundError:
        raise Refused(f"{path}: no such file", code=-32002) from None
    except IsADirectoryError:
        raise Refused(f"{path}: is a directory") from None
    except OSError as exc:
        raise Refused(f"{path}: cannot be read ({_why(exc)})") from None
    if raw is None or len(raw) > MAX_READ_BYTES:
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
    try:
        fd = open_beneath(workdir, resolved, os.O_WRONLY | os.O_CREAT, make_dirs=True)
        with os.fdopen(fd, "wb") as handle:
            _regular(path, os.fstat(fd).st_mode)
            os.set_blocking(fd, True)
            os.ftruncate(fd, 0)
            handle.write(content.encode("utf-8"))
    except IsADirectoryError:
        raise Refused(f"{path}: is a directory") from None
    except OSError as exc:
        raise Refused(f"{path}: cannot be written ({_why(exc)})") from None


def _regular(path: str, mode: int) -> None:
    if stat.S_ISDIR(mode):
        raise IsADirectoryError(path)
    if not stat.S_ISREG(mode):
        raise Refused(f"{path}: not a regular file")


def _why(exc: OSError) -> str:
    import errno

    if exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.EMLINK):
        return "a link inside the path, which is not followed"
    if exc.errno == errno.ENXIO:
        return "not a regular file"
    return exc.strerror or str(exc)
