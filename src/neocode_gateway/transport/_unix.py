"""Unix domain socket endpoint: a listener that is safe to start, and a dialer.

Safety rules (spec section 1, issues "daemon" and "peer identity"):

* the parent directory is created ``0700`` only when we create it; an existing
  directory is never chmod-ed, but it must be a real directory (not a symlink)
  owned by us or root, and if group/others may write to it it must be sticky;
  the default directory ``~/.neocode/run`` must allow no group/other access;
* the path length is checked against ``sun_path`` up front;
* concurrent starts are serialized by an ``flock`` on ``PATH.lock`` held for
  the daemon's life;
* an existing socket is removed only when stale (connect refused); a live one
  means another gateway runs there and we leave it alone;
* the socket is bound under umask 0177 and chmod-ed ``0600`` before ``listen``,
  so it never accepts a connection with looser permissions;
* at exit the socket is unlinked only if its device and inode are still ours.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import stat
from typing import TYPE_CHECKING, Any, Final

from neocode_gateway import __version__
from neocode_gateway.errors import AddressError, AlreadyRunning
from neocode_gateway.transport._address import MAX_UNIX_PATH_BYTES, default_socket_dir
from neocode_gateway.transport._base import Listener, ProtocolFactory
from neocode_gateway.transport._peercred import PeerCredentials, read_peer_credentials

if TYPE_CHECKING:
    import asyncio

    from neocode_gateway.transport._reactor import Reactor

DEFAULT_BACKLOG: Final = 4096
#: Connections asyncio accepts per wake-up where the event loop's own transports serve
#: (no epoll; uvloop uses the backlog only for listen()). Each holds a descriptor until
#: the server's cap check runs in connection_made, one or two loop iterations later, so
#: the batches in flight must fit in the spare descriptors (FD_HEADROOM): with 4096 a
#: burst hits EMFILE even under the cap, and CPython < 3.14 then retries and logs once
#: per remaining connection of the batch (gh-151615).
ACCEPT_BATCH: Final = 4
PROBE_TIMEOUT: Final = 1.0
_STALE_ERRNOS: Final = frozenset({errno.ECONNREFUSED, errno.ENOENT})


def reactor_available() -> bool:
    """Whether accepted connections can be served by our own epoll set (Linux)."""
    import select

    return hasattr(select, "epoll")


def check_path_length(path: str) -> None:
    """Refuse a path that does not fit in ``sun_path`` (instead of an obscure OSError)."""
    size = len(os.fsencode(path))
    if size > MAX_UNIX_PATH_BYTES:
        raise AddressError(
            f"socket path is too long: {path} is {size} bytes, the limit is "
            f"{MAX_UNIX_PATH_BYTES}; choose a shorter --listen path"
        )


def ensure_socket_dir(directory: str, *, strict_private: bool | None = None) -> bool:
    """Make sure ``directory`` is a safe place for the socket; return True if we created it.

    Missing components are created ``0700``. An existing directory is checked,
    never modified. ``strict_private`` (default: whether this is the default
    directory) additionally requires that group and others have no access.
    """
    directory = os.path.abspath(directory)
    if strict_private is None:
        strict_private = directory == os.path.abspath(default_socket_dir())
    # Only the socket's own directory is created; its parent must exist (a typo in
    # --listen must not grow a tree of directories), except for the default one,
    # whose parent ~/.neocode is ours to create.
    created = _make_dirs(directory, parents=strict_private)
    st = os.lstat(directory)
    if stat.S_ISLNK(st.st_mode):
        raise AddressError(
            f"socket directory {directory} is a symlink; use the real directory "
            f"{os.path.realpath(directory)} instead"
        )
    if not stat.S_ISDIR(st.st_mode):
        raise AddressError(f"socket directory {directory} exists and is not a directory")
    if created:
        return True
    me = os.geteuid()
    if st.st_uid not in (me, 0):
        raise AddressError(
            f"socket directory {directory} is owned by uid {st.st_uid}, not by you "
            f"(uid {me}) or root; use a directory you own"
        )
    mode = stat.S_IMODE(st.st_mode)
    if strict_private and mode & 0o077:
        raise AddressError(
            f"socket directory {directory} has mode {mode:04o}, which lets other users in; "
            f"fix it with: chmod 700 {directory}"
        )
    if mode & 0o022 and not mode & stat.S_ISVTX:
        raise AddressError(
            f"socket directory {directory} has mode {mode:04o}: writable by others without "
            f"the sticky bit, so another user could replace the socket; fix it with: "
            f"chmod go-w {directory} (or chmod +t {directory})"
        )
    return False


def _make_dirs(directory: str, *, parents: bool = True) -> bool:
    """Create ``directory`` (and, with ``parents``, missing parents) 0700; True if created."""
    try:
        os.lstat(directory)
    except FileNotFoundError:
        pass
    except NotADirectoryError as exc:
        raise AddressError(f"socket directory {directory}: a parent is not a directory") from exc
    else:
        return False
    parent = os.path.dirname(directory)
    if parent != directory:
        if parents:
            _make_dirs(parent)
        elif not os.path.lexists(parent):
            raise AddressError(
                f"cannot create socket directory {directory}: its parent {parent} does not "
                f"exist (create it first, or choose another --listen path)"
            )
    try:
        os.mkdir(directory, 0o700)
    except FileExistsError:
        return False
    except NotADirectoryError as exc:
        raise AddressError(f"socket directory {directory}: a parent is not a directory") from exc
    except OSError as exc:
        raise AddressError(f"cannot create socket directory {directory}: {exc.strerror}") from exc
    os.chmod(directory, 0o700)  # mkdir's mode is filtered by the umask; make it exact
    return True


def probe_socket(path: str, timeout: float = PROBE_TIMEOUT) -> str:
    """Classify an existing socket path: ``"live"``, ``"stale"`` or ``"absent"``.

    Raises :class:`AddressError` when it cannot be told (permission denied...).
    """
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(timeout)
    try:
        probe.connect(path)
    except FileNotFoundError:
        return "absent"
    except OSError as exc:
        if exc.errno in _STALE_ERRNOS:
            return "stale"
        if exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK) or isinstance(exc, TimeoutError):
            return "live"  # a live server with a full backlog
        raise AddressError(f"cannot check the existing socket {path}: {exc.strerror}") from exc
    finally:
        probe.close()
    return "live"


def read_lock_info(socket_path: str) -> dict[str, Any] | None:
    """What the gateway serving ``socket_path`` wrote in ``PATH.lock``: its pid and version.

    ``None`` if there is no readable lock file (or it is not ours). The lock
    file is only a hint for status output; the lock itself is the ``flock``.
    """
    try:
        with open(socket_path + ".lock", "rb") as lock:
            info = json.loads(lock.read(4096))
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


class UnixListener(Listener):
    """A Unix socket listener that follows every safety rule of the module docstring."""

    def __init__(
        self, path: str, *, backlog: int = DEFAULT_BACKLOG, reactor: bool | None = None
    ) -> None:
        self.address = os.path.abspath(path)
        self.backlog = backlog
        #: Serve connections from our own epoll set (:mod:`._reactor`), where there is one;
        #: ``False``: with the event loop's own transports.
        self.use_reactor = reactor_available() if reactor is None else reactor
        self._reactor: Reactor | None = None
        self.lock_path = self.address + ".lock"
        self.sock: socket.socket | None = None
        self.created_dir = False
        self._lock_fd: int | None = None
        self._identity: tuple[int, int] | None = None
        self._server: asyncio.AbstractServer | None = None

    def open(self) -> None:
        path = self.address
        check_path_length(path)
        self.created_dir = ensure_socket_dir(os.path.dirname(path))
        self._lock()
        try:
            self._clear_stale(path)
            self.sock = self._bind(path)
        except BaseException:
            self.release()
            raise

    def _lock(self) -> None:
        import fcntl  # POSIX only: imported here so the package still imports on Windows

        try:
            fd = os.open(
                self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600
            )
        except OSError as exc:
            raise AddressError(f"cannot open lock file {self.lock_path}: {exc.strerror}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise AlreadyRunning(
                self.address, f"another gateway holds the lock {self.lock_path}"
            ) from None
        except OSError as exc:  # pragma: no cover - flock on a regular file does not fail otherwise
            os.close(fd)
            raise AddressError(f"cannot lock {self.lock_path}: {exc.strerror}") from exc
        # Only now is the file written: it must be a regular file of ours with one
        # link, or a planted hard link in a shared directory would have us
        # truncate someone else's file.
        st = os.fstat(fd)
        problem = None
        if not stat.S_ISREG(st.st_mode):
            problem = "is not a regular file"
        elif st.st_uid != os.geteuid():
            problem = f"is owned by uid {st.st_uid}, not by you (uid {os.geteuid()})"
        elif st.st_nlink != 1:
            problem = f"has {st.st_nlink} hard links"
        if problem is not None:
            os.close(fd)
            raise AddressError(
                f"lock file {self.lock_path} {problem}; refusing to use it (remove it if it is "
                "not yours, or choose another --listen path)"
            )
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
            record = {"pid": os.getpid(), "version": __version__}
            os.write(fd, json.dumps(record, separators=(",", ":")).encode() + b"\n")
        self._lock_fd = fd

    def _clear_stale(self, path: str) -> None:
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return
        if stat.S_ISLNK(st.st_mode):
            raise AddressError(f"{path} is a symlink; refusing to use it as the socket")
        if not stat.S_ISSOCK(st.st_mode):
            raise AddressError(f"{path} exists and is not a socket; refusing to replace it")
        state = probe_socket(path)
        if state == "live":
            raise AlreadyRunning(path)
        if state == "stale":
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            except OSError as exc:
                raise AddressError(
                    f"a stale socket {path} (nothing answers on it) cannot be removed: "
                    f"{exc.strerror.lower() if exc.strerror else exc}; remove it as its owner, "
                    "or choose another --listen path"
                ) from None

    def _bind(self, path: str) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            old_umask = os.umask(0o177)
            try:
                sock.bind(path)
            finally:
                os.umask(old_umask)
            os.chmod(path, 0o600)
            st = os.stat(path)
            self._identity = (st.st_dev, st.st_ino)
            sock.listen(self.backlog)
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            if exc.errno == errno.EADDRINUSE:
                raise AlreadyRunning(path, "the address is in use") from exc
            raise AddressError(f"cannot listen on {path}: {exc.strerror}") from exc
        return sock

    async def start(self, protocol_factory: ProtocolFactory) -> None:
        if self.sock is None:
            raise RuntimeError("open() the listener before start()")
        import asyncio

        loop = asyncio.get_running_loop()
        if self.use_reactor:
            from neocode_gateway.transport._reactor import Reactor

            self._reactor = Reactor(loop)
            self._reactor.serve(self.sock, protocol_factory)
            return
        self._server = await loop.create_unix_server(
            protocol_factory, sock=self.sock, backlog=ACCEPT_BATCH
        )
        # create_unix_server also passed ACCEPT_BATCH to listen(): keep the kernel's
        # queue of pending connections long.
        self.sock.listen(self.backlog)

    async def adopt(
        self, sock: socket.socket, protocol_factory: ProtocolFactory
    ) -> asyncio.Protocol:
        if self._reactor is not None:
            return self._reactor.adopt(sock, protocol_factory)
        return await super().adopt(sock, protocol_factory)

    def stop_accepting(self) -> None:
        if self._reactor is not None:
            self._reactor.stop_accepting()
        if self._server is not None:
            self._server.close()

    def release(self) -> None:
        if self._identity is not None:
            try:
                st = os.stat(self.address)
            except OSError:
                pass
            else:
                if (st.st_dev, st.st_ino) == self._identity:
                    with contextlib.suppress(OSError):
                        os.unlink(self.address)
            self._identity = None
        if self._reactor is not None:
            self._reactor.close()
            self._reactor = None
        if self._server is None and self.sock is not None:
            self.sock.close()
        self.sock = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def peer_credentials(self, transport: asyncio.BaseTransport) -> PeerCredentials:
        sock = transport.get_extra_info("socket")
        return read_peer_credentials(sock)

    def describe(self) -> dict[str, object]:
        info: dict[str, object] = {"address": self.address, "transport": "unix"}
        with contextlib.suppress(OSError):
            info["mode"] = f"{stat.S_IMODE(os.stat(self.address).st_mode):04o}"
        return info
