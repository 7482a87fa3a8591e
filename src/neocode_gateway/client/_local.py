"""What every client shares, in the standard library only: where, whom to trust, one exchange.

The asyncio client (:mod:`neocode_gateway.client._async`) and the CLI's quick
commands (``ping``, ``status``, ``approve``...) both take the address, the
server-uid trust rule and the wording of their errors from here. This module
imports neither asyncio nor msgspec, so a command that sends one request and
prints one answer starts in the time of the interpreter plus a socket, not in
the time of the daemon's libraries.

:class:`BlockingConnection` is that one-request client: a blocking Unix socket
with a deadline on every step, the same checks and the same exceptions as
:class:`~neocode_gateway.client.AsyncGatewayClient`, and nothing else (no
pipelining, no event streams: those need the asyncio client).
"""

from __future__ import annotations

import itertools
import json
import os
import socket
import struct
import sys
import time

from neocode_gateway.errors import (
    ConnectionClosed,
    ErrorFrameReceived,
    GatewayUnreachable,
    ProtocolViolation,
    RequestTimeout,
    UntrustedGateway,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Final, Self

#: Seconds to wait for the connection to be established.
DEFAULT_CONNECT_TIMEOUT: Final = 3.0
#: Seconds to wait for the response to one request.
DEFAULT_REQUEST_TIMEOUT: Final = 30.0
#: The environment variable that names the gateway's address for every client.
ADDRESS_ENV: Final = "NEOCODE_GATEWAY_ADDRESS"
#: Longest response line accepted (a long ``load_session`` answer can be large).
MAX_RESPONSE_BYTES: Final = 64 << 20
#: Same as :data:`neocode_gateway.transport.DEFAULT_PIPE_ADDRESS` (kept equal by a unit
#: test): importing the transport package would load asyncio.
DEFAULT_PIPE_ADDRESS: Final = r"\\.\pipe\neocode-gateway"
_PIPE_PREFIX: Final = "\\\\.\\pipe\\"
_QUOTE_BYTES: Final = 80
_UCRED: Final = struct.Struct("=iII")

_ids: Final = itertools.count(1)


def is_pipe_address(address: str) -> bool:
    r"""Whether ``address`` names a Windows named pipe (``\\.\pipe\NAME``)."""
    return address.lower().startswith(_PIPE_PREFIX)


def default_address() -> str:
    """The daemon's default address (the transport's, without importing it)."""
    if sys.platform == "win32":
        return DEFAULT_PIPE_ADDRESS
    return os.path.join(os.path.expanduser("~"), ".neocode", "run", "gateway.sock")


def client_default_address() -> str:
    """Where clients connect by default: ``$NEOCODE_GATEWAY_ADDRESS``, else the daemon's default."""
    return os.environ.get(ADDRESS_ENV, "").strip() or default_address()


def new_request_id() -> str:
    """A request id unique within this process: ``c<pid>-<counter>``."""
    return f"c{os.getpid()}-{next(_ids)}"


def os_reason(exc: OSError) -> str:
    """The OS reason of a failed connect, as the error messages print it."""
    if exc.errno:
        return os.strerror(exc.errno).lower()
    return str(exc) or type(exc).__name__


def check_trusted(address: str, peer_uid: int | None, trust_any_uid: bool) -> None:
    """Refuse a gateway run by another user (it would read every request we send).

    Root and ourselves are trusted; where the OS cannot tell (``peer_uid`` is
    ``None``), the socket directory's permissions are the guard.
    """
    me = os.geteuid() if hasattr(os, "geteuid") else None
    if peer_uid is None or me is None or trust_any_uid or peer_uid in (me, 0):
        return
    raise UntrustedGateway(address, peer_uid, me)


def quote(line: bytes) -> str:
    """A short, printable excerpt of ``line`` for error messages."""
    text = line[:_QUOTE_BYTES].decode("utf-8", "replace")
    return repr(text + ("..." if len(line) > _QUOTE_BYTES else ""))


def peer_ids(sock: socket.socket) -> tuple[int | None, int | None]:
    """(pid, uid) of the process at the other end of a Unix socket, where the OS tells.

    Linux answers through ``SO_PEERCRED`` here; elsewhere the transport's
    reader (which knows the BSD ways) is loaded, a cost only those platforms pay.
    """
    if sys.platform.startswith("linux"):
        try:
            raw = sock.getsockopt(socket.SOL_SOCKET, getattr(socket, "SO_PEERCRED", 17), 12)
        except OSError:
            return None, None
        pid, uid, _ = _UCRED.unpack_from(raw)
        return pid or None, uid
    try:  # pragma: no cover - not Linux
        from neocode_gateway.transport import read_peer_credentials

        creds = read_peer_credentials(sock)
    except Exception:  # pragma: no cover - not Linux: the directory's rules are the guard
        return None, None
    return creds.pid, creds.uid  # pragma: no cover


class BlockingConnection:
    """One blocking connection to a gateway on a Unix socket: requests, one at a time.

    ``with BlockingConnection(address) as conn: conn.request("status")``.
    Raises what the asyncio client raises, with the same messages:
    :class:`GatewayUnreachable` (:class:`UntrustedGateway`),
    :class:`RequestTimeout`, :class:`ErrorFrameReceived`,
    :class:`ProtocolViolation`, :class:`ConnectionClosed`.
    """

    def __init__(
        self,
        address: str | None = None,
        *,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
        trust_any_uid: bool = False,
        client_name: str | None = None,
        device: str | None = None,
    ) -> None:
        self.address = address or client_default_address()
        self.connect_timeout = connect_timeout
        self.request_timeout = request_timeout
        self.trust_any_uid = trust_any_uid
        #: Said to the gateway (``hello``, contract v1.2) with the first request: who decides.
        self.client_name = client_name
        self.device = device
        self._said_hello = False
        #: (pid, uid) of the gateway process, once connected (``None`` where unknown).
        self.peer_pid: int | None = None
        self.peer_uid: int | None = None
        self._sock: socket.socket | None = None
        self._buffer = b""
        self._received_any = False

    def connect(self) -> Self:
        """Connect, and check who serves the address."""
        if is_pipe_address(self.address):
            raise GatewayUnreachable(self.address, "named pipes need the asyncio client")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.connect_timeout)
        try:
            sock.connect(self.address)
        except TimeoutError:
            sock.close()
            raise RequestTimeout(
                f"could not connect to the gateway at {self.address} "
                f"within {self.connect_timeout:g} s"
            ) from None
        except OSError as exc:
            sock.close()
            raise GatewayUnreachable(self.address, os_reason(exc)) from None
        self.peer_pid, self.peer_uid = peer_ids(sock)
        try:
            check_trusted(self.address, self.peer_uid, self.trust_any_uid)
        except UntrustedGateway:
            sock.close()
            raise
        self._sock = sock
        return self

    def close(self) -> None:
        """Close the connection (a no-op if closed)."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> Self:
        return self.connect()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(
        self,
        action: str,
        *,
        timeout: float | None = None,
        **fields: Any,
    ) -> dict[str, Any]:
        """Send one request (fields that are ``None`` are left out); its response frame.

        An error frame raises :class:`ErrorFrameReceived`.
        """
        key = new_request_id()
        frame = {"type": "request", "action": action, "request_id": key}
        frame.update({k: v for k, v in fields.items() if v is not None})
        data = json.dumps(frame, separators=(",", ":")).encode()
        if self.client_name and not self._said_hello:
            # Pipelined before the first request, its answer skipped: no extra round trip.
            self._said_hello = True
            payload = {"client": self.client_name}
            if self.device:
                payload["device"] = self.device
            hello = {"type": "request", "action": "hello", "request_id": new_request_id()}
            hello["payload"] = payload  # type: ignore[assignment]
            data = json.dumps(hello, separators=(",", ":")).encode() + b"\n" + data
        response = self._exchange(data, key, timeout)
        error = response.get("error")
        if response.get("type") == "error":
            if not isinstance(error, dict):
                raise ProtocolViolation("the gateway sent an error frame without error")
            raise ErrorFrameReceived(
                str(error.get("code")),
                str(error.get("message")),
                action=response.get("action"),
                request_id=response.get("request_id"),
            )
        return response

    def payload(self, action: str, **fields: Any) -> dict[str, Any]:
        """The ``payload`` of the answer to one request (``{}`` if it has none)."""
        payload = self.request(action, **fields).get("payload")
        return payload if isinstance(payload, dict) else {}

    def ping(self, *, timeout: float | None = None) -> float:
        """Ping the gateway; the round-trip time in seconds."""
        start = time.perf_counter()
        reply = self.request("ping", timeout=timeout)
        elapsed = time.perf_counter() - start
        if reply.get("type") != "ack":
            raise ProtocolViolation(f"the gateway answered ping with a {reply.get('type')} frame")
        return elapsed

    # -- the wire ------------------------------------------------------------------------

    def _exchange(self, data: bytes, key: str, timeout: float | None) -> dict[str, Any]:
        sock = self._sock
        if sock is None:
            raise RuntimeError("not connected: use 'with BlockingConnection()' first")
        wait = self.request_timeout if timeout is None else timeout
        deadline = time.monotonic() + wait
        try:
            sock.settimeout(wait)
            sock.sendall(data + b"\n")
            while True:
                frame = self._frame(sock, deadline)
                request_id = frame.get("request_id")
                if request_id == key or (not request_id and frame.get("type") != "event"):
                    return frame
        except TimeoutError:
            raise RequestTimeout(
                f"no response to request {key!r} from the gateway at {self.address} "
                f"within {wait:g} s"
            ) from None
        except (ConnectionResetError, BrokenPipeError):
            raise ConnectionClosed(f"{self._hung_up()} ({self.address})") from None

    def _frame(self, sock: socket.socket, deadline: float) -> dict[str, Any]:
        """The next line from the gateway, decoded; the deadline bounds the whole wait."""
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            sock.settimeout(left)
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionClosed(f"{self._hung_up()} ({self.address})")
            self._received_any = True
            self._buffer += chunk
            if len(self._buffer) > MAX_RESPONSE_BYTES and b"\n" not in self._buffer:
                raise ProtocolViolation(
                    f"the gateway sent a line longer than {MAX_RESPONSE_BYTES} bytes"
                )
        line, _, self._buffer = self._buffer.partition(b"\n")
        try:
            frame = json.loads(line)
        except (ValueError, RecursionError) as exc:
            raise ProtocolViolation(
                f"the gateway sent a line that is not a valid frame ({exc}): {quote(line)}"
            ) from None
        if not isinstance(frame, dict):
            raise ProtocolViolation(f"the gateway sent a line that is not a frame: {quote(line)}")
        return frame

    def _hung_up(self) -> str:
        if self._received_any:
            return "the gateway closed the connection"
        return "the gateway closed the connection (it may be at its connection limit)"
