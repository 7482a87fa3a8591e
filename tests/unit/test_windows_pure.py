r"""The Windows named-pipe transport, tested where CI runs (Linux).

Three parts:

* the pure helpers of ``_sddl.py`` (SDDL, flag values, pipe names, SID
  policy, error classification, timings), with exact expected values;
* ``_windows.py`` on a non-Windows platform: it imports, and every entry
  point refuses with a message that says named pipes need Windows;
* the accept loop, peer check and dialer of ``_windows.py`` driven against
  fake pywin32 modules and a fake proactor. These fakes encode how pywin32
  and the IOCP proactor are *documented* to behave; they check our state
  machine (instance before hand-off, retry at the instance cap, clean stop),
  not Windows itself, which no test here has run against.
"""

from __future__ import annotations

import asyncio
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import pytest

from neocode_gateway.errors import (
    AddressError,
    AlreadyRunning,
    GatewayUnreachable,
    PeerCredentialsUnavailable,
    TransportError,
)
from neocode_gateway.transport import _sddl, _windows
from neocode_gateway.transport._address import DEFAULT_PIPE_ADDRESS
from neocode_gateway.transport._sddl import (
    build_pipe_sddl,
    classify_dial_error,
    client_desired_access,
    client_open_flags,
    dial_error_reason,
    first_instance_conflict,
    is_allowed_sid,
    next_retry_delay,
    parse_sid,
    pipe_max_instances,
    server_pipe_mode,
    server_pipe_open_mode,
    validate_pipe_name,
    wait_slice_ms,
)

USER_SID = "S-1-5-21-3623811015-3361044348-30300820-1013"
OTHER_SID = "S-1-5-21-3623811015-3361044348-30300820-1014"
not_windows = pytest.mark.skipif(sys.platform == "win32", reason="checks the non-Windows guard")


# --- SDDL and SIDs ---------------------------------------------------------------


def test_sddl_is_exactly_the_protected_three_ace_dacl() -> None:
    assert build_pipe_sddl(USER_SID) == (f"D:P(A;;GA;;;SY)(A;;GA;;;BA)(A;;GA;;;{USER_SID})")


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "S-1",
        "S-1-5",
        "S-1-5-",
        "S-2-5-18",
        "s-1-5-18",
        " S-1-5-18",
        "S-1-5-18\n",
        "S-1-5-18)(A;;GA;;;WD",
        "S-1-5-18;",
        "WD",
        "S-1-5-4294967296",
        "S-1-5" + "-1" * 16,
        "S-1-5-\u0661\u0668",
        "S-1-281474976710656-1",
        "S-1-0x00000000000G-1",
    ],
)
def test_sddl_refuses_anything_but_a_sid(bad: str) -> None:
    with pytest.raises(ValueError, match="SID"):
        build_pipe_sddl(bad)


@pytest.mark.parametrize(
    ("sid", "parsed"),
    [
        ("S-1-5-18", (5, 18)),
        ("S-1-5-018", (5, 18)),
        ("S-1-5-32-544", (5, 32, 544)),
        ("S-1-0x000000000005-18", (5, 18)),
        ("S-1-5-4294967295", (5, 4294967295)),
        ("S-1-5" + "-1" * 15, (5, *([1] * 15))),
    ],
)
def test_parse_sid(sid: str, parsed: tuple[int, ...]) -> None:
    assert parse_sid(sid) == parsed


@pytest.mark.parametrize(
    ("client", "allowed"),
    [
        (USER_SID, True),
        ("S-1-5-18", True),
        ("S-1-5-018", True),  # same SID, other spelling
        (OTHER_SID, False),
        ("S-1-5-32-544", False),  # Administrators is a group, never a token user we accept
        ("S-1-5-19", False),  # LocalService
        ("S-1-5-20", False),  # NetworkService
        ("S-1-1-0", False),  # Everyone
        ("S-1-5-7", False),  # Anonymous
        ("not a sid", False),
        ("", False),
    ],
)
def test_is_allowed_sid(client: str, allowed: bool) -> None:
    assert is_allowed_sid(client, USER_SID) is allowed


def test_is_allowed_sid_refuses_an_invalid_own_sid() -> None:
    with pytest.raises(ValueError, match="SID"):
        is_allowed_sid(USER_SID, "me")


# --- Flags -----------------------------------------------------------------------


def test_open_mode_of_the_first_instance() -> None:
    # PIPE_ACCESS_DUPLEX | FILE_FLAG_OVERLAPPED | FILE_FLAG_FIRST_PIPE_INSTANCE
    assert server_pipe_open_mode(True) == 0x40080003


def test_open_mode_of_further_instances() -> None:
    assert server_pipe_open_mode(False) == 0x40000003
    assert server_pipe_open_mode(True) & ~server_pipe_open_mode(False) == 0x00080000


def test_pipe_mode_is_blocking_byte_mode_local_only() -> None:
    # PIPE_TYPE_BYTE | PIPE_READMODE_BYTE | PIPE_WAIT are all 0; REJECT_REMOTE is 8.
    assert server_pipe_mode() == 0x00000008


def test_client_flags() -> None:
    # FILE_FLAG_OVERLAPPED | SECURITY_SQOS_PRESENT | SECURITY_IDENTIFICATION
    assert client_open_flags() == 0x40110000
    assert client_desired_access() == 0xC0000000


@pytest.mark.parametrize(
    ("requested", "expected"), [(1, 1), (128, 128), (254, 254), (255, 255), (10_000, 255)]
)
def test_pipe_max_instances(requested: int, expected: int) -> None:
    assert pipe_max_instances(requested) == expected


@pytest.mark.parametrize("requested", [0, -1])
def test_pipe_max_instances_refuses_nonpositive(requested: int) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        pipe_max_instances(requested)


# --- Pipe names ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "canonical"),
    [
        (DEFAULT_PIPE_ADDRESS, DEFAULT_PIPE_ADDRESS),
        (r"\\.\PIPE\neocode-gateway", DEFAULT_PIPE_ADDRESS),
        (r"\\.\Pipe\x", r"\\.\pipe\x"),
        (r"\\.\pipe\with space and.dots-ok", r"\\.\pipe\with space and.dots-ok"),
        ("\\\\.\\pipe\\" + "n" * (256 - 9), "\\\\.\\pipe\\" + "n" * (256 - 9)),
    ],
)
def test_validate_pipe_name_accepts(address: str, canonical: str) -> None:
    assert validate_pipe_name(address) == canonical


@pytest.mark.parametrize(
    ("address", "why"),
    [
        ("", "not a local named pipe"),
        ("neocode-gateway", "not a local named pipe"),
        ("/tmp/gateway.sock", "not a local named pipe"),
        (r"\\server\pipe\neocode-gateway", "not a local named pipe"),
        (r"\\?\pipe\neocode-gateway", "not a local named pipe"),
        (r"\\.\pipe", "not a local named pipe"),
        ("\\\\.\\pipe\\", "empty"),
        (r"\\.\pipe\a\b", "contains"),
        (r"\\.\pipe\a/b", "contains"),
        ("\\\\.\\pipe\\a\0b", "contains"),
        (r"\\.\pipe\.", "normalization"),
        (r"\\.\pipe\..", "normalization"),
        (r"\\.\pipe\gateway.", "normalization"),
        (r"\\.\pipe\gateway ", "normalization"),
        ("\\\\.\\pipe\\" + "n" * (257 - 9), "too long"),
    ],
)
def test_validate_pipe_name_refuses(address: str, why: str) -> None:
    with pytest.raises(AddressError, match=why):
        validate_pipe_name(address)


# --- Error classification and timings --------------------------------------------


@pytest.mark.parametrize(("winerror", "conflict"), [(5, True), (231, True), (2, False), (0, False)])
def test_first_instance_conflict(winerror: int, conflict: bool) -> None:
    assert first_instance_conflict(winerror) is conflict


@pytest.mark.parametrize(
    ("winerror", "kind", "reason"),
    [
        (231, "busy", "all pipe instances are busy"),
        (2, "absent", "no such pipe"),
        (161, "absent", "no such pipe"),
        (123, "absent", "no such pipe"),
        (5, "denied", "access denied: the pipe belongs to another user"),
        (1450, "other", "Insufficient system resources (winerror 1450)"),
    ],
)
def test_dial_errors(winerror: int, kind: str, reason: str) -> None:
    assert classify_dial_error(winerror) == kind
    assert dial_error_reason(winerror, "Insufficient system resources.").startswith(reason)


def test_dial_error_reason_without_text() -> None:
    assert dial_error_reason(1450, None) == "winerror 1450"
    assert dial_error_reason(1450, "  ") == "winerror 1450"


def test_next_retry_delay_doubles_and_clamps() -> None:
    delays = [next_retry_delay(None)]
    for _ in range(10):
        delays.append(next_retry_delay(delays[-1]))
    assert delays[0] == _sddl.ACCEPT_RETRY_MIN_DELAY
    assert delays[1] == 2 * _sddl.ACCEPT_RETRY_MIN_DELAY
    assert delays == sorted(delays)
    assert delays[-1] == _sddl.ACCEPT_RETRY_MAX_DELAY
    assert next_retry_delay(0.0) == _sddl.ACCEPT_RETRY_MIN_DELAY


@pytest.mark.parametrize(
    ("remaining", "millis"), [(-1.0, 1), (0.0, 1), (0.0004, 1), (0.25, 250), (10.0, 500)]
)
def test_wait_slice_is_never_zero_and_capped(remaining: float, millis: int) -> None:
    assert wait_slice_ms(remaining) == millis


# --- _windows.py outside Windows -------------------------------------------------


def test_windows_module_imports_everywhere() -> None:
    assert callable(_windows.create_pipe_listener)
    assert callable(_windows.connect_pipe)


def test_listener_describe_and_address_canonical() -> None:
    listener = _windows.create_pipe_listener(r"\\.\PIPE\neocode-gateway", max_instances=8)
    assert isinstance(listener, _windows.PipeListener)
    assert listener.address == DEFAULT_PIPE_ADDRESS
    assert listener.max_instances == 8
    assert listener.describe() == {"address": DEFAULT_PIPE_ADDRESS, "transport": "named-pipe"}


def test_create_listener_routes_pipe_addresses_here() -> None:
    from neocode_gateway.transport import create_listener

    listener = create_listener(DEFAULT_PIPE_ADDRESS, max_connections=16)
    assert isinstance(listener, _windows.PipeListener)
    assert listener.max_instances == 17  # the cap plus the one the server refuses


def test_listener_refuses_a_bad_name_up_front() -> None:
    with pytest.raises(AddressError, match="contains"):
        _windows.create_pipe_listener(r"\\.\pipe\a\b", max_instances=1)


@not_windows
def test_open_outside_windows_says_named_pipes_need_windows() -> None:
    listener = _windows.create_pipe_listener(DEFAULT_PIPE_ADDRESS, max_instances=4)
    with pytest.raises(AddressError, match="named pipes need Windows") as info:
        listener.open()
    assert isinstance(info.value, TransportError)
    assert sys.platform in str(info.value)
    listener.release()
    listener.release()  # idempotent, even never opened


@not_windows
def test_connect_outside_windows_says_named_pipes_need_windows() -> None:
    async def dial() -> None:
        await _windows.connect_pipe(DEFAULT_PIPE_ADDRESS, asyncio.Protocol, timeout=1.0)

    with pytest.raises(AddressError, match="named pipes need Windows"):
        asyncio.run(dial())


@not_windows
def test_peer_credentials_outside_windows_fail_closed() -> None:
    listener = _windows.PipeListener(DEFAULT_PIPE_ADDRESS, max_instances=1)
    with pytest.raises(PeerCredentialsUnavailable, match="need Windows"):
        listener.peer_credentials(asyncio.Transport())
    with pytest.raises(PeerCredentialsUnavailable, match="needs Windows"):
        _windows.client_user_sid(1)
    with pytest.raises(TransportError, match="needs Windows"):
        _windows.own_user_sid()


def test_start_before_open_is_a_programming_error() -> None:
    listener = _windows.PipeListener(DEFAULT_PIPE_ADDRESS, max_instances=1)
    with pytest.raises(RuntimeError, match="open"):
        asyncio.run(listener.start(asyncio.Protocol))


def test_a_selector_loop_is_refused() -> None:
    async def parts() -> None:
        _windows._proactor_parts(asyncio.get_running_loop())

    with pytest.raises(TransportError, match="ProactorEventLoop"):
        asyncio.run(parts())


# --- _windows.py against fake pywin32 ----------------------------------------------


class FakeWinError(Exception):
    """Shaped like ``pywintypes.error``: winerror, funcname, strerror."""

    def __init__(self, winerror: int, funcname: str, strerror: str) -> None:
        super().__init__(winerror, funcname, strerror)
        self.winerror = winerror
        self.funcname = funcname
        self.strerror = strerror


class FakePyHandle:
    def __init__(self, value: int) -> None:
        self.value = value

    def Detach(self) -> int:
        return self.value


@dataclass
class FakeWin32:
    """Records calls; tests set the ``*_errors`` queues to make calls fail."""

    events: list[tuple[Any, ...]] = field(default_factory=list)
    closed: list[Any] = field(default_factory=list)
    next_handle: int = 100
    create_errors: list[int | None] = field(default_factory=list)
    createfile_errors: list[int | None] = field(default_factory=list)
    impersonate_error: int | None = None
    thread_sid: str = USER_SID
    process_sid: str = USER_SID
    client_pid: int = 4242
    TokenUser: int = 1

    error = FakeWinError

    # win32pipe
    def CreateNamedPipe(self, name: str, open_mode: int, pipe_mode: int, *rest: Any) -> Any:
        code = self.create_errors.pop(0) if self.create_errors else None
        if code is not None:
            self.events.append(("create-failed", open_mode, code))
            raise FakeWinError(code, "CreateNamedPipe", "fake failure")
        self.next_handle += 1
        self.events.append(("create", self.next_handle, open_mode, pipe_mode, *rest))
        return FakePyHandle(self.next_handle)

    def GetNamedPipeClientProcessId(self, handle: int) -> int:
        return self.client_pid

    def WaitNamedPipe(self, name: str, millis: int) -> None:
        self.events.append(("wait", millis))
        time.sleep(min(millis, 5) / 1000)

    # win32file
    def CreateFile(self, name: str, access: int, share: int, *rest: Any) -> Any:
        _sa, disp, flags, _template = rest
        code = self.createfile_errors.pop(0) if self.createfile_errors else None
        self.events.append(("createfile", name, access, share, disp, flags, code))
        if code is not None:
            raise FakeWinError(code, "CreateFile", "fake failure")
        return FakePyHandle(7)

    # win32api
    def CloseHandle(self, handle: Any) -> None:
        self.closed.append(handle)

    def GetCurrentProcess(self) -> str:
        return "self-process"

    def GetCurrentThread(self) -> str:
        return "self-thread"

    def OpenProcess(self, access: int, inherit: bool, pid: int) -> str:
        self.events.append(("openprocess", access, pid))
        return f"process-{pid}"

    # win32security
    def OpenProcessToken(self, process: str, access: int) -> str:
        return f"token-of-{process}"

    def OpenThreadToken(self, thread: str, access: int, as_self: bool) -> str:
        self.events.append(("openthreadtoken", access, as_self))
        return "thread-token"

    def GetTokenInformation(self, token: str, kind: int) -> tuple[str, int]:
        if token == "thread-token":
            return self.thread_sid, 0
        if token == "token-of-self-process":
            return USER_SID, 0
        return self.process_sid, 0

    def ConvertSidToStringSid(self, sid: str) -> str:
        return sid

    def ImpersonateNamedPipeClient(self, handle: int) -> None:
        if self.impersonate_error is not None:
            raise FakeWinError(self.impersonate_error, "ImpersonateNamedPipeClient", "no")
        self.events.append(("impersonate", handle))

    def RevertToSelf(self) -> None:
        self.events.append(("revert",))

    def ConvertStringSecurityDescriptorToSecurityDescriptor(self, sddl: str, rev: int) -> Any:
        self.events.append(("sddl", sddl, rev))
        return ("sd", sddl)

    def SECURITY_ATTRIBUTES(self) -> Any:
        return type("SA", (), {})()


class FakeProactor:
    def __init__(self, loop: asyncio.AbstractEventLoop, win: FakeWin32) -> None:
        self.loop = loop
        self.win = win
        self.pending: list[tuple[Any, asyncio.Future[Any]]] = []

    def accept_pipe(self, pipe: Any) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = self.loop.create_future()
        self.win.events.append(("accept", pipe.fileno()))
        self.pending.append((pipe, future))
        return future


class FakeTransport(asyncio.Transport):
    def __init__(self, pipe: Any, extra: dict[str, object]) -> None:
        super().__init__({"pipe": pipe, **extra})


@pytest.fixture
def win(monkeypatch: pytest.MonkeyPatch) -> FakeWin32:
    fake = FakeWin32()
    for name in ("pywintypes", "win32api", "win32file", "win32pipe", "win32security"):
        monkeypatch.setattr(_windows, name, fake)
    monkeypatch.setattr(_windows, "_IS_WINDOWS", True)
    return fake


def install_proactor(
    monkeypatch: pytest.MonkeyPatch, win: FakeWin32, loop: asyncio.AbstractEventLoop
) -> tuple[FakeProactor, list[Any]]:
    proactor = FakeProactor(loop, win)
    made: list[Any] = []

    def make(pipe: Any, protocol: Any, waiter: Any = None, extra: Any = None) -> Any:
        win.events.append(("transport", pipe.fileno()))
        transport = FakeTransport(pipe, extra or {})
        made.append((pipe, protocol, transport))
        if waiter is not None:
            loop.call_soon(waiter.set_result, None)
        return transport

    monkeypatch.setattr(_windows, "_proactor_parts", lambda _loop: (proactor, make))
    return proactor, made


def opened(win: FakeWin32, max_instances: int = 4) -> _windows.PipeListener:
    listener = _windows.PipeListener(DEFAULT_PIPE_ADDRESS, max_instances=max_instances)
    listener.open()
    return listener


def test_open_creates_the_first_instance_with_our_dacl(win: FakeWin32) -> None:
    listener = opened(win)
    assert listener.own_sid == USER_SID
    assert ("sddl", build_pipe_sddl(USER_SID), 1) in win.events
    creates = [e for e in win.events if e[0] == "create"]
    assert len(creates) == 1
    _, _handle, open_mode, pipe_mode, max_instances, out_size, in_size, _timeout, sa = creates[0]
    assert open_mode == server_pipe_open_mode(True)
    assert pipe_mode == server_pipe_mode()
    assert max_instances == 4
    assert out_size == in_size == _sddl.PIPE_BUFFER_SIZE
    assert sa.SECURITY_DESCRIPTOR[1] == build_pipe_sddl(USER_SID)
    assert sa.bInheritHandle is False
    assert win.closed == ["token-of-self-process"]  # our token, closed after use
    listener.release()
    assert win.closed[1:] == [creates[0][1]]
    listener.release()
    assert win.closed[1:] == [creates[0][1]]


@pytest.mark.parametrize("code", [5, 231])
def test_open_when_the_name_is_taken_is_already_running(win: FakeWin32, code: int) -> None:
    win.create_errors = [code]
    with pytest.raises(AlreadyRunning, match="already running"):
        opened(win)


def test_open_with_another_error_is_an_address_error(win: FakeWin32) -> None:
    win.create_errors = [123]
    with pytest.raises(AddressError, match="cannot create named pipe"):
        opened(win)


def test_accept_creates_the_next_instance_before_the_hand_off(
    win: FakeWin32, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        proactor, made = install_proactor(monkeypatch, win, loop)
        listener = opened(win)
        await listener.start(asyncio.Protocol)
        first_pipe, first_future = proactor.pending[0]
        first_future.set_result(first_pipe)
        await asyncio.sleep(0)
        kinds = [e[0] for e in win.events]
        assert kinds.index("transport") > kinds.index("create", kinds.index("accept"))
        second = [e for e in win.events if e[0] == "create"][1]
        assert second[2] == server_pipe_open_mode(False)
        assert [p.fileno() for p, _ in proactor.pending] == [first_pipe.fileno(), second[1]]
        assert made[0][0] is first_pipe
        assert made[0][2].get_extra_info("addr") == DEFAULT_PIPE_ADDRESS
        listener.stop_accepting()
        assert proactor.pending[1][1].cancelled()
        assert second[1] in win.closed
        assert first_pipe.fileno() not in win.closed  # the connection belongs to its transport
        listener.release()
        first_pipe.close()

    asyncio.run(scenario())


def test_at_the_instance_cap_the_next_instance_is_retried(
    win: FakeWin32, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        proactor, made = install_proactor(monkeypatch, win, loop)
        listener = opened(win, max_instances=1)
        await listener.start(asyncio.Protocol)
        win.create_errors = [231, 231]
        pipe, future = proactor.pending[0]
        future.set_result(pipe)
        await asyncio.sleep(0)
        assert len(made) == 1  # the client is served although no instance could be made
        assert len(proactor.pending) == 1
        await asyncio.sleep(4 * _sddl.ACCEPT_RETRY_MIN_DELAY + 0.05)
        assert len(proactor.pending) == 2  # third attempt succeeded
        listener.release()
        pipe.close()

    asyncio.run(scenario())


def test_a_client_that_left_before_accept_completes_is_dropped(
    win: FakeWin32, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        errors: list[dict[str, Any]] = []
        loop.set_exception_handler(lambda _loop, context: errors.append(context))
        proactor, made = install_proactor(monkeypatch, win, loop)
        listener = opened(win)
        await listener.start(asyncio.Protocol)
        pipe, future = proactor.pending[0]
        future.set_exception(BrokenPipeError())
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert made == []
        assert errors == []
        assert pipe.handle is None
        assert len(proactor.pending) == 2
        listener.release()

    asyncio.run(scenario())


def test_peer_credentials_allow_our_user(win: FakeWin32) -> None:
    listener = opened(win)
    pipe = _windows._PipeHandle(55)
    creds = listener.peer_credentials(FakeTransport(pipe, {}))
    assert (creds.uid, creds.gid, creds.pid) == (-1, None, 4242)
    assert ("impersonate", 55) in win.events
    assert win.events.index(("revert",)) > win.events.index(("impersonate", 55))
    assert ("openthreadtoken", _sddl.TOKEN_QUERY, True) in win.events
    assert "thread-token" in win.closed
    assert listener.peer_sid(FakeTransport(pipe, {})) == USER_SID
    pipe.close()
    listener.release()


def test_peer_credentials_refuse_another_user(win: FakeWin32) -> None:
    listener = opened(win)
    win.thread_sid = OTHER_SID
    pipe = _windows._PipeHandle(55)
    with pytest.raises(PeerCredentialsUnavailable, match="neither this user"):
        listener.peer_credentials(FakeTransport(pipe, {}))
    assert ("revert",) in win.events
    pipe.close()
    listener.release()


def test_peer_credentials_fall_back_to_the_process_token(win: FakeWin32) -> None:
    listener = opened(win)
    win.impersonate_error = _sddl.ERROR_CANNOT_IMPERSONATE
    pipe = _windows._PipeHandle(55)
    assert listener.peer_credentials(FakeTransport(pipe, {})).pid == 4242
    assert ("openprocess", _sddl.PROCESS_QUERY_LIMITED_INFORMATION, 4242) in win.events
    assert ("revert",) not in win.events
    win.process_sid = OTHER_SID
    with pytest.raises(PeerCredentialsUnavailable, match="neither this user"):
        listener.peer_credentials(FakeTransport(pipe, {}))
    win.impersonate_error = _sddl.ERROR_ACCESS_DENIED
    with pytest.raises(PeerCredentialsUnavailable, match="ImpersonateNamedPipeClient"):
        listener.peer_credentials(FakeTransport(pipe, {}))
    pipe.close()
    listener.release()


def test_peer_credentials_of_a_foreign_transport(win: FakeWin32) -> None:
    listener = opened(win)
    with pytest.raises(PeerCredentialsUnavailable, match="not a named-pipe"):
        listener.peer_credentials(asyncio.Transport())
    closed = _windows._PipeHandle(9)
    closed.close()
    with pytest.raises(PeerCredentialsUnavailable, match="closed"):
        listener.peer_credentials(FakeTransport(closed, {}))
    listener.release()


def test_connect_waits_while_busy_then_connects(
    win: FakeWin32, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        _, made = install_proactor(monkeypatch, win, loop)
        win.createfile_errors = [231, None]
        transport, protocol = await _windows.connect_pipe(
            r"\\.\PIPE\neocode-gateway", asyncio.Protocol, timeout=2.0
        )
        assert isinstance(protocol, asyncio.Protocol)
        assert transport.get_extra_info("addr") == DEFAULT_PIPE_ADDRESS
        calls = [e for e in win.events if e[0] in ("createfile", "wait")]
        assert [c[0] for c in calls] == ["createfile", "wait", "createfile"]
        assert calls[0][1:6] == (
            DEFAULT_PIPE_ADDRESS,
            client_desired_access(),
            0,
            _sddl.OPEN_EXISTING,
            client_open_flags(),
        )
        assert 1 <= calls[1][1] <= _sddl.MAX_WAIT_SLICE_MS
        made[0][0].close()

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("code", "reason"), [(2, "no such pipe"), (5, "access denied"), (1450, "winerror 1450")]
)
def test_connect_failures_are_unreachable(
    win: FakeWin32, monkeypatch: pytest.MonkeyPatch, code: int, reason: str
) -> None:
    async def scenario() -> None:
        install_proactor(monkeypatch, win, asyncio.get_running_loop())
        win.createfile_errors = [code]
        await _windows.connect_pipe(DEFAULT_PIPE_ADDRESS, asyncio.Protocol, timeout=1.0)

    with pytest.raises(GatewayUnreachable, match=reason) as info:
        asyncio.run(scenario())
    assert info.value.address == DEFAULT_PIPE_ADDRESS


def test_connect_gives_up_when_busy_past_the_timeout(
    win: FakeWin32, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def scenario() -> None:
        install_proactor(monkeypatch, win, asyncio.get_running_loop())
        win.createfile_errors = [231] * 10_000
        await _windows.connect_pipe(DEFAULT_PIPE_ADDRESS, asyncio.Protocol, timeout=0.05)

    with pytest.raises(GatewayUnreachable, match="stayed busy"):
        asyncio.run(scenario())


def test_connect_refuses_a_nonpositive_timeout(win: FakeWin32) -> None:
    with pytest.raises(ValueError, match="timeout"):
        asyncio.run(_windows.connect_pipe(DEFAULT_PIPE_ADDRESS, asyncio.Protocol, timeout=0))


def test_an_accept_error_is_reported_and_retried_later(
    win: FakeWin32, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        errors: list[dict[str, Any]] = []
        loop.set_exception_handler(lambda _loop, context: errors.append(context))
        proactor, made = install_proactor(monkeypatch, win, loop)
        listener = opened(win)
        await listener.start(asyncio.Protocol)
        pipe, future = proactor.pending[0]
        future.set_exception(OSError(22, "fake ConnectNamedPipe failure"))
        await asyncio.sleep(0)
        assert pipe.handle is None
        assert made == []
        assert len(errors) == 1
        assert "accepting a named-pipe client failed" in errors[0]["message"]
        assert len(proactor.pending) == 1  # not at once: after a back-off
        await asyncio.sleep(_sddl.ACCEPT_RETRY_MIN_DELAY + 0.05)
        assert len(proactor.pending) == 2
        listener.release()
        assert proactor.pending[1][1].cancelled()

    asyncio.run(scenario())
