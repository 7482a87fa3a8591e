r"""The pure half of the Windows named-pipe transport: no pywin32, tested everywhere.

:mod:`neocode_gateway.transport._windows` can only run on Windows, and this
project's CI runs on Linux. So every decision that does not need a Windows
kernel lives here, where the unit tests exercise it on every platform:

* the security descriptor (SDDL) that limits the pipe to LocalSystem,
  Administrators and the user running the gateway;
* the ``CreateNamedPipe`` / ``CreateFile`` flag arithmetic, with the numeric
  values written out (the pywin32 constants are not importable on Linux, and
  spelling them out lets a test pin each bit);
* the pipe-name rules (``\\.\pipe\NAME``);
* which client SIDs the gateway accepts;
* how Win32 error codes are classified (already running, busy, absent...);
* small timing helpers for the accept and dial retry loops.

The Win32 constants below are those of the Windows SDK headers (winbase.h,
winnt.h, winerror.h); they are part of the stable Win32 ABI.
"""

from __future__ import annotations

import re
from typing import Final, Literal

from neocode_gateway.errors import AddressError

# --- CreateNamedPipe: dwOpenMode -------------------------------------------------
PIPE_ACCESS_DUPLEX: Final = 0x00000003
FILE_FLAG_FIRST_PIPE_INSTANCE: Final = 0x00080000
FILE_FLAG_OVERLAPPED: Final = 0x40000000

# --- CreateNamedPipe: dwPipeMode -------------------------------------------------
PIPE_TYPE_BYTE: Final = 0x00000000
PIPE_READMODE_BYTE: Final = 0x00000000
PIPE_WAIT: Final = 0x00000000
PIPE_REJECT_REMOTE_CLIENTS: Final = 0x00000008

# --- CreateNamedPipe: nMaxInstances ----------------------------------------------
#: The largest finite instance limit; 255 itself means "unlimited".
MAX_FINITE_PIPE_INSTANCES: Final = 254
PIPE_UNLIMITED_INSTANCES: Final = 255

# --- CreateFile (client side) ----------------------------------------------------
GENERIC_READ: Final = 0x80000000
GENERIC_WRITE: Final = 0x40000000
OPEN_EXISTING: Final = 3
SECURITY_SQOS_PRESENT: Final = 0x00100000
#: SECURITY_IDENTIFICATION is ``SecurityIdentification << 16``.
SECURITY_IDENTIFICATION: Final = 0x00010000

# --- Tokens, processes, security descriptors -------------------------------------
TOKEN_QUERY: Final = 0x0008
PROCESS_QUERY_LIMITED_INFORMATION: Final = 0x1000
SDDL_REVISION_1: Final = 1

# --- Win32 error codes (winerror.h) ----------------------------------------------
ERROR_FILE_NOT_FOUND: Final = 2
ERROR_ACCESS_DENIED: Final = 5
ERROR_BROKEN_PIPE: Final = 109
ERROR_SEM_TIMEOUT: Final = 121
ERROR_INVALID_NAME: Final = 123
ERROR_BAD_PATHNAME: Final = 161
ERROR_PIPE_BUSY: Final = 231
ERROR_NO_DATA: Final = 232
ERROR_PIPE_CONNECTED: Final = 535
ERROR_CANNOT_IMPERSONATE: Final = 1368

# --- Well-known SIDs -------------------------------------------------------------
SID_LOCAL_SYSTEM: Final = "S-1-5-18"
SID_BUILTIN_ADMINISTRATORS: Final = "S-1-5-32-544"

# --- Sizes and timings -----------------------------------------------------------
#: In/out buffer size hint for each pipe instance (the kernel may round it).
PIPE_BUFFER_SIZE: Final = 64 * 1024
#: Win32 limit on the whole pipe name, ``\\.\pipe\`` included.
MAX_PIPE_NAME_CHARS: Final = 256
PIPE_PREFIX: Final = "\\\\.\\pipe\\"
#: Bounds of the delay before retrying to create a listening instance.
ACCEPT_RETRY_MIN_DELAY: Final = 0.01
ACCEPT_RETRY_MAX_DELAY: Final = 0.5
#: Longest single ``WaitNamedPipe`` call, so a cancelled dial is not stuck for long.
MAX_WAIT_SLICE_MS: Final = 500

# S-1-<authority>-<sub>{1,15}; the authority is decimal, or 0x + 12 hex digits when
# it does not fit in 32 bits. ASCII digits only: \d would accept other scripts' digits.
_SID_RE: Final = re.compile(r"S-1-(0[xX][0-9A-Fa-f]{12}|[0-9]{1,15})((?:-[0-9]{1,10}){1,15})")
_MAX_SUBAUTHORITY: Final = 0xFFFFFFFF

DialErrorKind = Literal["busy", "absent", "denied", "other"]


def parse_sid(sid: str) -> tuple[int, ...]:
    """Parse a string SID into ``(authority, sub1, sub2, ...)``; ValueError if it is not one.

    Parsing (rather than comparing strings) makes ``S-1-5-018`` equal to
    ``S-1-5-18`` and refuses anything that could smuggle SDDL syntax
    (``)``, ``;``...) into a security descriptor.
    """
    match = _SID_RE.fullmatch(sid)
    if match is None:
        raise ValueError(f"not a Windows SID (expected S-1-...): {sid!r}")
    authority_text, tail = match.groups()
    authority = (
        int(authority_text, 0) if authority_text[:2] in ("0x", "0X") else int(authority_text)
    )
    if authority >= 1 << 48:
        raise ValueError(f"SID identifier authority out of range: {sid!r}")
    subs = tuple(int(part) for part in tail[1:].split("-"))
    if any(sub > _MAX_SUBAUTHORITY for sub in subs):
        raise ValueError(f"SID sub-authority out of range: {sid!r}")
    return (authority, *subs)


def build_pipe_sddl(user_sid: str) -> str:
    """The SDDL of every pipe instance: full access for SY, BA and ``user_sid``, nobody else.

    ``D:P`` makes the DACL protected, so nothing is inherited from a parent
    and no ACE other than these three applies; no ACE carries inheritance
    flags, and there is no ACE for Everyone, Anonymous or NETWORK, so a
    process of another (non-admin) user cannot even open the pipe. ``GA``
    (generic all) is needed by the owner to create further instances.
    """
    parse_sid(user_sid)  # refuse anything that is not exactly a SID
    return f"D:P(A;;GA;;;SY)(A;;GA;;;BA)(A;;GA;;;{user_sid})"


def is_allowed_sid(client_sid: str, own_sid: str) -> bool:
    """Whether a client whose token user is ``client_sid`` may talk to a gateway run by ``own_sid``.

    This is the Windows counterpart of the Unix "peer uid equals our uid"
    check: the listener reads the user SID from the client's token (see
    ``client_user_sid`` in ``_windows.py``) and allows only our own user and
    LocalSystem (``S-1-5-18``, services acting for the machine). Other
    users, even administrators that the DACL lets open the pipe, are refused:
    the DACL keeps strangers out, this check keeps the gateway per-user.
    A ``client_sid`` that is not a SID is refused; an invalid ``own_sid`` is a
    programming error and raises ValueError.
    """
    own = parse_sid(own_sid)
    try:
        client = parse_sid(client_sid)
    except ValueError:
        return False
    return client in (own, parse_sid(SID_LOCAL_SYSTEM))


def server_pipe_open_mode(first: bool) -> int:
    """``dwOpenMode`` of ``CreateNamedPipe``: duplex, overlapped, first-instance for the first.

    Overlapped I/O is what the proactor (IOCP) event loop needs.
    ``FILE_FLAG_FIRST_PIPE_INSTANCE`` on the first instance makes creation
    fail if the name already exists, so a second gateway or a squatter that
    grabbed the name first is detected instead of silently sharing the pipe.
    """
    mode = PIPE_ACCESS_DUPLEX | FILE_FLAG_OVERLAPPED
    if first:
        mode |= FILE_FLAG_FIRST_PIPE_INSTANCE
    return mode


def server_pipe_mode() -> int:
    """``dwPipeMode`` of ``CreateNamedPipe``: a blocking-mode byte stream, local clients only.

    Frames are newline-delimited, so byte mode matches the Unix socket
    stream exactly. ``PIPE_WAIT`` is "blocking" mode, which is what
    overlapped I/O expects (``PIPE_NOWAIT`` is a legacy mode). The remote
    rejection keeps SMB clients from other machines out even if the DACL
    would let them in.
    """
    return PIPE_TYPE_BYTE | PIPE_READMODE_BYTE | PIPE_WAIT | PIPE_REJECT_REMOTE_CLIENTS


def client_open_flags() -> int:
    """``dwFlagsAndAttributes`` of the client's ``CreateFile``.

    Overlapped for the proactor loop. ``SECURITY_SQOS_PRESENT |
    SECURITY_IDENTIFICATION`` lets the server learn who we are but never act
    as us: a process that squatted the pipe name cannot use our token to
    reach resources on our behalf.
    """
    return FILE_FLAG_OVERLAPPED | SECURITY_SQOS_PRESENT | SECURITY_IDENTIFICATION


def client_desired_access() -> int:
    """``dwDesiredAccess`` of the client's ``CreateFile``: read and write."""
    return GENERIC_READ | GENERIC_WRITE


def pipe_max_instances(requested: int) -> int:
    """``nMaxInstances`` for a listener asked to allow ``requested`` instances.

    Windows accepts 1..254 as a limit and 255 as "unlimited"; a request above
    254 becomes unlimited, and the server's own connection cap then applies.
    """
    if requested < 1:
        raise ValueError(f"max_instances must be at least 1, got {requested}")
    if requested > MAX_FINITE_PIPE_INSTANCES:
        return PIPE_UNLIMITED_INSTANCES
    return requested


def validate_pipe_name(address: str) -> str:
    r"""Check that ``address`` is a local pipe name ``\\.\pipe\NAME``; return it canonical.

    The prefix is matched case-insensitively (as Windows does) and returned
    as ``\\.\pipe\``. NAME must be non-empty, without ``\`` or ``/`` (Win32
    turns ``/`` into ``\`` in ``\\.\`` paths), not ``.`` or ``..`` and not
    ending in a dot or a space (path normalization would silently change
    such a name), without NUL; the whole name is at most 256 characters.
    Raises :class:`AddressError` with the reason and an example otherwise.
    """
    example = r"for example \\.\pipe\neocode-gateway"
    if not address.lower().startswith(PIPE_PREFIX):
        raise AddressError(
            f"{address!r} is not a local named pipe: it must start with \\\\.\\pipe\\ ({example})"
        )
    name = address[len(PIPE_PREFIX) :]
    if not name:
        raise AddressError(f"the pipe name is empty in {address!r} ({example})")
    bad = next((c for c in ("\\", "/", "\0") if c in name), None)
    if bad is not None:
        raise AddressError(
            f"pipe name {name!r} contains {bad!r}; a pipe name is one component after "
            f"\\\\.\\pipe\\ ({example})"
        )
    if name in (".", "..") or name.endswith((".", " ")):
        raise AddressError(
            f"pipe name {name!r} would be altered by Windows path normalization "
            f"(it is '.' or '..' or ends with a dot or space); choose another name"
        )
    canonical = PIPE_PREFIX + name
    if len(canonical) > MAX_PIPE_NAME_CHARS:
        raise AddressError(
            f"pipe name is too long: {len(canonical)} characters, the Windows limit is "
            f"{MAX_PIPE_NAME_CHARS}; choose a shorter name"
        )
    return canonical


def first_instance_conflict(winerror: int) -> bool:
    """Whether creating the *first* instance failed because the pipe name is taken.

    With ``FILE_FLAG_FIRST_PIPE_INSTANCE`` an existing pipe of that name
    yields ERROR_ACCESS_DENIED (whoever owns it, us included) and a pipe at
    its instance limit yields ERROR_PIPE_BUSY: both mean another gateway (or
    a squatter) serves the name, never that we lack a privilege.
    """
    return winerror in (ERROR_ACCESS_DENIED, ERROR_PIPE_BUSY)


def classify_dial_error(winerror: int) -> DialErrorKind:
    """What a client ``CreateFile`` failure means: retry, no gateway, not ours, or other."""
    if winerror == ERROR_PIPE_BUSY:
        return "busy"
    if winerror in (ERROR_FILE_NOT_FOUND, ERROR_BAD_PATHNAME, ERROR_INVALID_NAME):
        return "absent"
    if winerror == ERROR_ACCESS_DENIED:
        return "denied"
    return "other"


def dial_error_reason(winerror: int, strerror: str | None) -> str:
    """The ``reason`` of :class:`~neocode_gateway.errors.GatewayUnreachable` for a dial error."""
    kind = classify_dial_error(winerror)
    if kind == "absent":
        return "no such pipe"
    if kind == "denied":
        return "access denied: the pipe belongs to another user or was created by another program"
    if kind == "busy":
        return "all pipe instances are busy"
    text = (strerror or "").strip().rstrip(".")
    return f"{text} (winerror {winerror})" if text else f"winerror {winerror}"


def next_retry_delay(previous: float | None) -> float:
    """Exponential back-off (doubling, clamped) for retrying a listening-instance creation."""
    if previous is None:
        return ACCEPT_RETRY_MIN_DELAY
    return min(max(previous * 2, ACCEPT_RETRY_MIN_DELAY), ACCEPT_RETRY_MAX_DELAY)


def wait_slice_ms(remaining: float) -> int:
    """Milliseconds for one ``WaitNamedPipe`` call given ``remaining`` seconds of the budget.

    Never 0: ``WaitNamedPipe(name, 0)`` means NMPWAIT_USE_DEFAULT_WAIT, not
    "do not wait". Capped so that a cancelled dial returns promptly (the
    call blocks a worker thread and cannot be interrupted).
    """
    millis = int(remaining * 1000)
    return max(1, min(millis, MAX_WAIT_SLICE_MS))


def windows_required_message(address: str, platform: str) -> str:
    """The error text for a pipe address used where named pipes do not exist."""
    return (
        f"{address} is a Windows named pipe, and named pipes need Windows (this is {platform}); "
        f"use a Unix socket path instead"
    )
