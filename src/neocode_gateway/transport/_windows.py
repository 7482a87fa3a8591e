r"""Windows named-pipe endpoint (pywin32): a listener that is safe to start, and a dialer.

Safety rules (the Windows counterpart of ``_unix.py``):

* every pipe instance gets a protected DACL granting access to LocalSystem,
  Administrators and the user running the gateway only
  (:func:`~neocode_gateway.transport._sddl.build_pipe_sddl`);
* the first instance is created with ``FILE_FLAG_FIRST_PIPE_INSTANCE``, so if
  the name already exists (another gateway, or a squatter that created it
  first with its own DACL) :meth:`PipeListener.open` fails with
  :class:`~neocode_gateway.errors.AlreadyRunning` instead of sharing it;
* ``PIPE_REJECT_REMOTE_CLIENTS``: the pipe is local even if the DACL were not;
* the client's user SID is read from its token and must be ours or
  LocalSystem (:func:`~neocode_gateway.transport._sddl.is_allowed_sid`);
* the dialer opens the pipe at SECURITY_IDENTIFICATION level, so whoever
  serves the pipe can learn who we are but cannot act as us.

Accepting follows the pattern of asyncio's own ``start_serving_pipe``: one
instance always waits in an overlapped ``ConnectNamedPipe`` on the
ProactorEventLoop's IOCP; when a client connects, the next instance is
created first and only then is the connected one wrapped in the loop's
duplex pipe transport. ``start_serving_pipe`` itself cannot be used because
it creates its instances without a security descriptor, without the
first-instance flag and in message mode.

This module imports on every platform (the tests check that it does); the
pywin32 modules are bound only on Windows, and every entry point first checks
the platform and raises a clear error elsewhere. Everything that does not
need Windows lives in :mod:`neocode_gateway.transport._sddl`, where it is
unit-tested on Linux. The code here has not been run on Windows yet (see
``docs/windows.md``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import sys
import warnings
from collections.abc import Callable
from typing import Any, Final, Protocol, cast

from neocode_gateway.errors import (
    AddressError,
    AlreadyRunning,
    GatewayUnreachable,
    PeerCredentialsUnavailable,
    TransportError,
)
from neocode_gateway.transport._base import Listener, ProtocolFactory
from neocode_gateway.transport._peercred import PeerCredentials
from neocode_gateway.transport._sddl import (
    ERROR_CANNOT_IMPERSONATE,
    ERROR_PIPE_BUSY,
    OPEN_EXISTING,
    PIPE_BUFFER_SIZE,
    PROCESS_QUERY_LIMITED_INFORMATION,
    SDDL_REVISION_1,
    TOKEN_QUERY,
    build_pipe_sddl,
    classify_dial_error,
    client_desired_access,
    client_open_flags,
    dial_error_reason,
    first_instance_conflict,
    is_allowed_sid,
    next_retry_delay,
    pipe_max_instances,
    server_pipe_mode,
    server_pipe_open_mode,
    validate_pipe_name,
    wait_slice_ms,
    windows_required_message,
)

if sys.platform == "win32":
    import pywintypes
    import win32api
    import win32file
    import win32pipe
    import win32security
else:
    pywintypes: Any = None
    win32api: Any = None
    win32file: Any = None
    win32pipe: Any = None
    win32security: Any = None

#: A plain bool (not a ``sys.platform`` comparison at each use) so that type
#: checkers on Linux still check the Windows code paths behind the guard.
_IS_WINDOWS: bool = sys.platform == "win32"
#: Exit status when the process cannot stop impersonating a client (EX_SOFTWARE).
_REVERT_FAILED_EXIT: Final = 70
#: ``PeerCredentials.uid`` on Windows: there are no uids, the SID check stands for it.
NO_UID: Final = -1


class _PipeHandle:
    """An owned overlapped pipe HANDLE, shaped as the proactor expects (``fileno``, ``close``).

    pywin32 returns ``PyHANDLE`` objects; the IOCP proactor wants an object
    whose ``fileno()`` is the raw handle value, so the handle is detached
    from its ``PyHANDLE`` and owned here (closed exactly once).
    """

    __slots__ = ("_handle",)

    def __init__(self, handle: int) -> None:
        self._handle: int | None = handle

    @property
    def handle(self) -> int | None:
        """The raw handle, or ``None`` once closed."""
        return self._handle

    def fileno(self) -> int:
        if self._handle is None:
            raise ValueError("I/O operation on a closed pipe")
        return self._handle

    def close(self) -> None:
        handle, self._handle = self._handle, None
        if handle is not None:
            win32api.CloseHandle(handle)

    def __repr__(self) -> str:
        state = "closed" if self._handle is None else f"handle={self._handle}"
        return f"<_PipeHandle {state}>"

    def __del__(self) -> None:
        if self._handle is not None:
            warnings.warn(f"unclosed {self!r}", ResourceWarning, source=self, stacklevel=1)
            self.close()


class _Proactor(Protocol):
    """The part of ``IocpProactor`` this module uses."""

    def accept_pipe(self, pipe: _PipeHandle) -> asyncio.Future[_PipeHandle]: ...


class _MakeDuplexPipeTransport(Protocol):
    """``ProactorEventLoop._make_duplex_pipe_transport``."""

    def __call__(
        self,
        sock: _PipeHandle,
        protocol: asyncio.Protocol,
        waiter: asyncio.Future[None] | None = None,
        extra: dict[str, object] | None = None,
    ) -> asyncio.Transport: ...


def _detach(handle: Any) -> int:
    """The raw value of a handle returned by pywin32, which stops owning it.

    pywin32 returns ``PyHANDLE`` objects that close their handle when
    garbage-collected; ``Detach`` hands the raw handle over so that the
    :class:`_PipeHandle` (or the proactor transport) is its only owner.
    """
    detach = getattr(handle, "Detach", None)
    return int(detach() if detach is not None else handle)


def _require_windows(address: str) -> None:
    """Refuse, with a message that says why, to touch a named pipe outside Windows."""
    if not _IS_WINDOWS:
        raise AddressError(windows_required_message(address, sys.platform))


def _require_windows_api(what: str) -> None:
    """Refuse to call a Windows security API outside Windows (pywin32 is absent there)."""
    if not _IS_WINDOWS:
        raise TransportError(f"{what} needs Windows (this is {sys.platform})")


def _proactor_parts(loop: asyncio.AbstractEventLoop) -> tuple[_Proactor, _MakeDuplexPipeTransport]:
    """The running loop's IOCP proactor and pipe-transport factory.

    Named pipes need overlapped I/O on an I/O completion port, which only
    the ProactorEventLoop (asyncio's default on Windows) has; a selector
    loop cannot wait on a pipe handle at all.
    """
    proactor = getattr(loop, "_proactor", None)
    make = getattr(loop, "_make_duplex_pipe_transport", None)
    if proactor is None or not hasattr(proactor, "accept_pipe") or make is None:
        raise TransportError(
            f"named pipes need asyncio's ProactorEventLoop (the default on Windows); "
            f"the running loop is a {type(loop).__name__}"
        )
    return cast(_Proactor, proactor), cast(_MakeDuplexPipeTransport, make)


def _token_user_sid(token: Any) -> str:
    """The user SID of an open token handle (``TOKEN_QUERY`` access), as ``S-1-...``."""
    sid, _attributes = win32security.GetTokenInformation(token, win32security.TokenUser)
    return str(win32security.ConvertSidToStringSid(sid))


def own_user_sid() -> str:
    """The user SID of this process's token: who the pipe's DACL and SID check admit."""
    _require_windows_api("reading this process's user SID")
    try:
        token = win32security.OpenProcessToken(win32api.GetCurrentProcess(), TOKEN_QUERY)
        try:
            return _token_user_sid(token)
        finally:
            win32api.CloseHandle(token)
    except pywintypes.error as exc:
        raise TransportError(f"cannot read this process's user SID: {exc.strerror}") from exc


def process_user_sid(pid: int) -> str:
    """The user SID of process ``pid``'s primary token.

    Fallback for :func:`client_user_sid` when the pipe cannot be impersonated
    yet. It is weaker than impersonation: it names the process that
    connected, which is only the holder of the client end as long as that
    end was not handed to another process.
    """
    if not _IS_WINDOWS:
        raise PeerCredentialsUnavailable(f"reading a process's user needs Windows ({sys.platform})")
    try:
        process = win32api.OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, False, pid)
        try:
            token = win32security.OpenProcessToken(process, TOKEN_QUERY)
            try:
                return _token_user_sid(token)
            finally:
                win32api.CloseHandle(token)
        finally:
            win32api.CloseHandle(process)
    except pywintypes.error as exc:
        raise PeerCredentialsUnavailable(
            f"cannot read the user of client process {pid}: {exc.strerror}"
        ) from exc


def _revert_to_self() -> None:
    """Stop impersonating; if that fails, exit at once.

    A thread that cannot revert keeps running as the client, and everything
    the event loop does next would be done with the client's identity.
    Windows documents no safe way to continue, so the process ends.
    """
    try:
        win32security.RevertToSelf()
    except BaseException:
        os.write(
            2, b"neocode-gateway: RevertToSelf failed; exiting rather than running as a client\n"
        )
        os._exit(_REVERT_FAILED_EXIT)


def client_user_sid(pipe_handle: int, *, pid: int | None = None) -> str:
    """The user SID of the client connected to the server end ``pipe_handle``.

    The pipe is impersonated just long enough to open the thread token
    (``ImpersonateNamedPipeClient`` + ``OpenThreadToken`` + ``RevertToSelf``);
    the token is read after reverting. Clients dial at
    SECURITY_IDENTIFICATION level, which is enough to read their token.
    Windows may refuse to impersonate before anything has been read from
    the pipe (ERROR_CANNOT_IMPERSONATE); the check happens before the first
    read, so in that case the user of the client process ``pid`` is read
    instead (:func:`process_user_sid`). Raises
    :class:`~neocode_gateway.errors.PeerCredentialsUnavailable`.
    """
    if not _IS_WINDOWS:
        raise PeerCredentialsUnavailable(
            f"reading a pipe client's user needs Windows ({sys.platform})"
        )
    impersonating = False
    try:
        try:
            win32security.ImpersonateNamedPipeClient(pipe_handle)
            impersonating = True
            token = win32security.OpenThreadToken(win32api.GetCurrentThread(), TOKEN_QUERY, True)
        finally:
            if impersonating:
                _revert_to_self()
    except pywintypes.error as exc:
        if not impersonating and exc.winerror == ERROR_CANNOT_IMPERSONATE and pid:
            return process_user_sid(pid)
        raise PeerCredentialsUnavailable(
            f"cannot read the named-pipe client's token ({exc.funcname}): {exc.strerror}"
        ) from exc
    try:
        return _token_user_sid(token)
    except pywintypes.error as exc:
        raise PeerCredentialsUnavailable(
            f"cannot read the user of the named-pipe client's token: {exc.strerror}"
        ) from exc
    finally:
        win32api.CloseHandle(token)


def _pipe_of(transport: asyncio.BaseTransport) -> _PipeHandle:
    """The pipe handle behind a transport made by this module."""
    pipe = transport.get_extra_info("pipe")
    if not isinstance(pipe, _PipeHandle):
        raise PeerCredentialsUnavailable("the transport is not a named-pipe connection")
    if pipe.handle is None:
        raise PeerCredentialsUnavailable("the named-pipe connection is already closed")
    return pipe


class PipeListener(Listener):
    """A named-pipe listener that follows every safety rule of the module docstring."""

    def __init__(self, address: str, *, max_instances: int) -> None:
        self.address = validate_pipe_name(address)
        self.max_instances = pipe_max_instances(max_instances)
        self._own_sid: str | None = None
        self._security: Any = None  # PySECURITY_ATTRIBUTES with our DACL
        self._listening: _PipeHandle | None = None  # the instance waiting for a client
        self._accept_future: asyncio.Future[_PipeHandle] | None = None
        self._retry: asyncio.TimerHandle | None = None
        self._retry_delay: float | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._proactor: _Proactor | None = None
        self._make_transport: _MakeDuplexPipeTransport | None = None
        self._factory: ProtocolFactory | None = None
        self._accepting = False

    @property
    def own_sid(self) -> str | None:
        """Our user SID once :meth:`open` succeeded (the SID the DACL and peer check admit)."""
        return self._own_sid

    def open(self) -> None:
        _require_windows(self.address)
        if self._listening is not None:
            raise RuntimeError("the listener is already open")
        own = own_user_sid()
        try:
            descriptor = win32security.ConvertStringSecurityDescriptorToSecurityDescriptor(
                build_pipe_sddl(own), SDDL_REVISION_1
            )
        except pywintypes.error as exc:
            raise TransportError(
                f"cannot build the pipe's security descriptor: {exc.strerror}"
            ) from exc
        security = win32security.SECURITY_ATTRIBUTES()
        security.SECURITY_DESCRIPTOR = descriptor
        security.bInheritHandle = False
        self._own_sid = own
        self._security = security
        try:
            self._listening = self._create_instance(first=True)
        except pywintypes.error as exc:
            self._security = None
            if first_instance_conflict(exc.winerror):
                raise AlreadyRunning(
                    self.address,
                    "the pipe name is already taken, by another gateway or another program",
                ) from exc
            raise AddressError(f"cannot create named pipe {self.address}: {exc.strerror}") from exc

    def _create_instance(self, *, first: bool) -> _PipeHandle:
        """Create one pipe instance; raises ``pywintypes.error`` (ERROR_PIPE_BUSY at the cap)."""
        handle = win32pipe.CreateNamedPipe(
            self.address,
            server_pipe_open_mode(first),
            server_pipe_mode(),
            self.max_instances,
            PIPE_BUFFER_SIZE,
            PIPE_BUFFER_SIZE,
            0,  # default WaitNamedPipe timeout (50 ms); our dialer never relies on it
            self._security,
        )
        return _PipeHandle(_detach(handle))

    async def start(self, protocol_factory: ProtocolFactory) -> None:
        if self._listening is None:
            raise RuntimeError("open() the listener before start()")
        loop = asyncio.get_running_loop()
        self._proactor, self._make_transport = _proactor_parts(loop)
        self._loop = loop
        self._factory = protocol_factory
        self._accepting = True
        self._arm()

    def _arm(self) -> None:
        """Make sure one instance waits in ``ConnectNamedPipe``; retry later if none can be made."""
        if self._retry is not None:  # this call supersedes a scheduled retry
            self._retry.cancel()
            self._retry = None
        if not self._accepting or self._accept_future is not None:
            return
        assert self._proactor is not None
        if self._listening is None:
            try:
                self._listening = self._create_instance(first=False)
            except pywintypes.error as exc:
                # ERROR_PIPE_BUSY: every instance is connected (max_instances reached);
                # one frees up when a client leaves. Anything else is unexpected.
                if exc.winerror != ERROR_PIPE_BUSY:
                    self._report("cannot create a named-pipe instance", exc)
                self._schedule_retry()
                return
            self._retry_delay = None
        pipe = self._listening
        try:
            future = self._proactor.accept_pipe(pipe)
        except BrokenPipeError:
            # A client connected and already left (ERROR_NO_DATA): this instance is spent.
            self._drop_listening()
            self._call_soon(self._arm)
            return
        except OSError as exc:
            self._report("ConnectNamedPipe failed", exc)
            self._drop_listening()
            self._schedule_retry()
            return
        self._accept_future = future
        future.add_done_callback(functools.partial(self._on_accept, pipe))

    def _on_accept(self, pipe: _PipeHandle, future: asyncio.Future[_PipeHandle]) -> None:
        if self._accept_future is future:
            self._accept_future = None
        if future.cancelled():
            return  # stop_accepting() closed the instance
        if self._listening is pipe:
            self._listening = None
        error = future.exception()
        if error is not None or not self._accepting:
            pipe.close()
            if not self._accepting:
                return
            if isinstance(error, BrokenPipeError):
                self._call_soon(self._arm)  # the client left at once: nothing is wrong
            else:
                self._report("accepting a named-pipe client failed", cast(BaseException, error))
                self._schedule_retry()  # back off: an error that repeats must not spin
            return
        # Have the next instance listening before handing this one off, so that
        # a client dialing right now finds the pipe instead of ERROR_FILE_NOT_FOUND.
        self._arm()
        self._hand_off(pipe)

    def _hand_off(self, pipe: _PipeHandle) -> None:
        assert self._factory is not None
        assert self._make_transport is not None
        try:
            protocol = self._factory()
            self._make_transport(pipe, protocol, extra={"addr": self.address})
        except Exception as exc:
            pipe.close()
            self._report("cannot set up a named-pipe connection", exc)

    def _schedule_retry(self) -> None:
        if self._loop is None or not self._accepting:
            return
        self._retry_delay = next_retry_delay(self._retry_delay)
        self._retry = self._loop.call_later(self._retry_delay, self._arm)

    def _call_soon(self, callback: Callable[[], None]) -> None:
        if self._loop is not None:
            self._loop.call_soon(callback)

    def _report(self, message: str, exc: BaseException) -> None:
        if self._loop is not None:
            self._loop.call_exception_handler(
                {"message": f"{message} on {self.address}", "exception": exc, "listener": self}
            )

    def _drop_listening(self) -> None:
        pipe, self._listening = self._listening, None
        if pipe is not None:
            pipe.close()

    def stop_accepting(self) -> None:
        self._accepting = False
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        future, self._accept_future = self._accept_future, None
        if future is not None and not future.done():
            future.cancel()  # cancels the overlapped ConnectNamedPipe (CancelIoEx)
        self._drop_listening()

    def release(self) -> None:
        """Close the listening instance(s); connected clients keep theirs until they close.

        A pipe name disappears when its last instance closes, so there is
        nothing to unlink and nothing stale to clean up at the next start.
        """
        self.stop_accepting()
        self._security = None

    def peer_credentials(self, transport: asyncio.BaseTransport) -> PeerCredentials:
        """The client's pid, after checking that its user SID is ours or LocalSystem.

        Windows has no uids: ``uid`` is ``-1`` (:data:`NO_UID`), ``gid`` is
        ``None``. The identity check that a Unix server does by comparing
        uids is done here instead, on SIDs (:func:`is_allowed_sid`), so a
        client that is not allowed raises
        :class:`~neocode_gateway.errors.PeerCredentialsUnavailable` like a
        client whose identity cannot be read: both fail closed.
        """
        if not _IS_WINDOWS:
            raise PeerCredentialsUnavailable(windows_required_message(self.address, sys.platform))
        pipe = _pipe_of(transport)
        handle = pipe.fileno()
        try:
            pid = int(win32pipe.GetNamedPipeClientProcessId(handle))
        except pywintypes.error as exc:
            raise PeerCredentialsUnavailable(
                f"cannot read the named-pipe client's process id: {exc.strerror}"
            ) from exc
        own = self._own_sid
        if own is None:
            raise PeerCredentialsUnavailable("the listener is not open")
        sid = client_user_sid(handle, pid=pid)
        if not is_allowed_sid(sid, own):
            raise PeerCredentialsUnavailable(
                f"client process {pid} runs as {sid}, which is neither this user ({own}) "
                f"nor LocalSystem"
            )
        return PeerCredentials(uid=NO_UID, gid=None, pid=pid or None)

    def peer_sid(self, transport: asyncio.BaseTransport) -> str:
        """The client's user SID, unchecked (for logs and status output)."""
        if not _IS_WINDOWS:
            raise PeerCredentialsUnavailable(windows_required_message(self.address, sys.platform))
        pipe = _pipe_of(transport)
        handle = pipe.fileno()
        try:
            pid: int | None = int(win32pipe.GetNamedPipeClientProcessId(handle))
        except pywintypes.error:
            pid = None
        return client_user_sid(handle, pid=pid)

    def describe(self) -> dict[str, object]:
        return {"address": self.address, "transport": "named-pipe"}


def create_pipe_listener(address: str, *, max_instances: int) -> Listener:
    r"""The listener for a ``\\.\pipe\NAME`` address (validated here, opened by ``open()``)."""
    return PipeListener(address, max_instances=max_instances)


async def _open_client_handle(address: str, timeout: float) -> int:
    """``CreateFile`` the pipe, waiting while every instance is busy, within ``timeout``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        try:
            handle = win32file.CreateFile(
                address,
                client_desired_access(),
                0,  # no sharing
                None,  # default security attributes: the handle is not inherited
                OPEN_EXISTING,
                client_open_flags(),
                None,
            )
            return _detach(handle)
        except pywintypes.error as exc:
            if classify_dial_error(exc.winerror) != "busy":
                raise GatewayUnreachable(
                    address, dial_error_reason(exc.winerror, exc.strerror)
                ) from exc
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise GatewayUnreachable(address, f"all pipe instances stayed busy for {timeout:g} s")
        # A timeout or a pipe that went away both end the wait: the next CreateFile tells which.
        with contextlib.suppress(pywintypes.error):
            await asyncio.to_thread(win32pipe.WaitNamedPipe, address, wait_slice_ms(remaining))


async def connect_pipe(
    address: str, protocol_factory: Callable[[], asyncio.Protocol], *, timeout: float
) -> tuple[asyncio.BaseTransport, asyncio.Protocol]:
    """Dial the gateway's named pipe; return the transport once ``connection_made`` ran.

    Raises :class:`~neocode_gateway.errors.GatewayUnreachable` when no
    gateway serves ``address`` ("no such pipe"), when the pipe is not ours
    (access denied) or when every instance stayed busy for ``timeout``
    seconds; :class:`~neocode_gateway.errors.AddressError` for a malformed
    name or outside Windows.
    """
    name = validate_pipe_name(address)
    _require_windows(name)
    if timeout <= 0:
        raise ValueError(f"timeout must be positive, got {timeout}")
    loop = asyncio.get_running_loop()
    _, make_transport = _proactor_parts(loop)
    pipe = _PipeHandle(await _open_client_handle(name, timeout))
    try:
        protocol = protocol_factory()
        waiter: asyncio.Future[None] = loop.create_future()
        transport = make_transport(pipe, protocol, waiter=waiter, extra={"addr": name})
    except BaseException:
        pipe.close()
        raise
    try:
        await waiter
    except BaseException:
        transport.close()
        raise
    return transport, protocol
