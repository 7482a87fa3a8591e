"""The exception tree of neocode-gateway: one root, named by condition.

::

    GatewayError                      root of everything this package raises
    ├── ConfigError                   a configuration value is invalid (CLI exit 2)
    ├── FrameError                    a frame breaks the v1 contract (carries the error code)
    ├── TransportError                an endpoint cannot be used
    │   ├── AddressError              the address is unusable: too long, not a socket,
    │   │                             parent not a directory, insecure directory, ...
    │   ├── AlreadyRunning            another gateway serves the address (CLI exit 3)
    │   └── PeerCredentialsUnavailable  the platform cannot tell who is connecting
    ├── StoreError                    the event log (SQLite) failed
    │   └── StoreOpenError            the database cannot be opened at start (CLI exit 1)
    ├── RuntimeFailure                a runtime (agent) could not do what was asked
    │   ├── RunFailed                 a run ended in error (carries its run_error code)
    │   ├── ModeUnknown               the agent has no such session mode
    │   └── CompactUnsupported        the runtime cannot compact
    └── ClientError                   raised by the client library
        ├── GatewayUnreachable        nothing accepts connections at the address
        │   └── UntrustedGateway      the gateway runs as another user (refused by default)
        ├── ErrorFrameReceived        the gateway answered with an error frame
        ├── ProtocolViolation         the gateway sent a line that is not a valid frame
        ├── RequestTimeout            no answer within the timeout (also a TimeoutError)
        └── ConnectionClosed          the connection ended before the answer came

This module has no dependencies so that every layer can import it.
"""

from __future__ import annotations


class GatewayError(Exception):
    """Root of every exception raised on purpose by neocode-gateway."""


class ConfigError(GatewayError):
    """A configuration value is invalid; the message names the setting."""


class FrameError(GatewayError):
    """A frame violates the v1 contract.

    ``code`` is one of the stable error codes, ``message`` the human-readable
    text of the contract; ``fatal`` means the connection must be closed after
    the error frame (the stream can no longer be trusted). ``action`` and
    ``request_id`` are the request's own values, echoed in the error frame.
    """

    __slots__ = ("action", "code", "fatal", "message", "request_id")

    def __init__(
        self,
        code: str,
        message: str,
        *,
        fatal: bool = False,
        action: str | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.fatal = fatal
        self.action = action
        self.request_id = request_id


class TransportError(GatewayError):
    """An endpoint cannot be listened on or dialed."""


class AddressError(TransportError):
    """The address cannot be used as given; the message says why and how to fix it."""


class AlreadyRunning(TransportError):
    """Another gateway already serves this address."""

    def __init__(self, address: str, detail: str = "") -> None:
        text = f"a gateway is already running at {address}"
        super().__init__(f"{text} ({detail})" if detail else text)
        self.address = address


class PeerCredentialsUnavailable(TransportError):
    """The credentials of a connecting peer cannot be read on this platform."""


class StoreError(GatewayError):
    """The event log could not be read or written; the message says why."""


class StoreOpenError(StoreError):
    """The database cannot be opened at start: corrupt, newer schema, read-only, disk full..."""


class RuntimeFailure(GatewayError):
    """Base of the errors a runtime raises for the sessions core to report."""


class RunFailed(RuntimeFailure):
    """A run could not complete: ``code`` is ``runtime_error`` or ``runtime_unavailable``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class ModeUnknown(RuntimeFailure):
    """The agent does not offer the session mode that was asked for."""


class CompactUnsupported(RuntimeFailure):
    """The runtime (agent) cannot compact a session."""


class ClientError(GatewayError):
    """Base of the errors raised by :mod:`neocode_gateway.client`."""


class GatewayUnreachable(ClientError):
    """No gateway accepts connections at ``address``; ``reason`` is the OS reason."""

    def __init__(self, address: str, reason: str) -> None:
        super().__init__(
            f"no gateway is listening at {address} ({reason}); start one with: neocode-gateway"
        )
        self.address = address
        self.reason = reason


class UntrustedGateway(GatewayUnreachable):
    """The process serving the address runs as another user: it would see our requests."""

    def __init__(self, address: str, uid: int, our_uid: int) -> None:
        ClientError.__init__(
            self,
            f"the gateway at {address} runs as uid {uid}, not as you (uid {our_uid}) or root; "
            "refusing to talk to it (trust_any_uid=True, or --trust-any-uid, allows it)",
        )
        self.address = address
        self.reason = f"runs as uid {uid}"
        self.uid = uid


class ErrorFrameReceived(ClientError):
    """The gateway answered with an error frame; branch on ``code``, never on ``message``."""

    def __init__(
        self, code: str, message: str, *, action: str | None = None, request_id: str | None = None
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.action = action
        self.request_id = request_id


class ProtocolViolation(ClientError):
    """The gateway sent something that is not a valid v1 frame."""


class RequestTimeout(ClientError, TimeoutError):
    """The operation did not complete within its timeout."""


class ConnectionClosed(ClientError):
    """The connection closed before the expected response arrived."""
