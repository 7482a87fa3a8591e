"""Client library: talk to a running gateway without hand-written socket code.

::

    from neocode_gateway.client import GatewayClient

    with GatewayClient() as client:                 # the default address
        print(client.ping())                        # round-trip time in seconds
        reply = client.request({"action": "ping"})  # a Frame; request_id generated

:class:`AsyncGatewayClient` is the asyncio version (many concurrent requests
on one connection); :class:`GatewayClient` drives it from blocking code. Both
use the server's own :class:`~neocode_gateway.protocol.Frame` type, and raise
the exceptions below, all subclasses of :class:`ClientError`.

The names load on first use (PEP 562): the CLI's quick commands import
:mod:`neocode_gateway.client._local` (standard library only) through this
package, and must not pay for asyncio and msgspec when they do.
"""

from __future__ import annotations

import importlib

from neocode_gateway.client._local import (
    ADDRESS_ENV,
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_REQUEST_TIMEOUT,
    client_default_address,
    new_request_id,
)
from neocode_gateway.errors import (
    ClientError,
    ConnectionClosed,
    ErrorFrameReceived,
    GatewayUnreachable,
    ProtocolViolation,
    RequestTimeout,
    UntrustedGateway,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from neocode_gateway.client._async import AsyncGatewayClient, RunStream
    from neocode_gateway.client._link import DEFAULT_MAX_RESPONSE_BYTES, raise_for_error
    from neocode_gateway.client._protocol import RawResponse
    from neocode_gateway.client._streams import EventsDropped, SlowConsumer, Subscription
    from neocode_gateway.client._sync import BlockingRunStream, GatewayClient
    from neocode_gateway.protocol import Event, Frame
    from neocode_gateway.transport import PeerCredentials

#: Name -> the module that defines it, imported when the name is first used.
_LAZY = {
    "DEFAULT_MAX_RESPONSE_BYTES": "neocode_gateway.client._link",
    "AsyncGatewayClient": "neocode_gateway.client._async",
    "RunStream": "neocode_gateway.client._async",
    "raise_for_error": "neocode_gateway.client._link",
    "RawResponse": "neocode_gateway.client._protocol",
    "EventsDropped": "neocode_gateway.client._streams",
    "SlowConsumer": "neocode_gateway.client._streams",
    "Subscription": "neocode_gateway.client._streams",
    "BlockingRunStream": "neocode_gateway.client._sync",
    "GatewayClient": "neocode_gateway.client._sync",
    "Event": "neocode_gateway.protocol",
    "Frame": "neocode_gateway.protocol",
    "PeerCredentials": "neocode_gateway.transport",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "ADDRESS_ENV",
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_MAX_RESPONSE_BYTES",
    "DEFAULT_REQUEST_TIMEOUT",
    "AsyncGatewayClient",
    "BlockingRunStream",
    "ClientError",
    "ConnectionClosed",
    "ErrorFrameReceived",
    "Event",
    "EventsDropped",
    "Frame",
    "GatewayClient",
    "GatewayUnreachable",
    "PeerCredentials",
    "ProtocolViolation",
    "RawResponse",
    "RequestTimeout",
    "RunStream",
    "SlowConsumer",
    "Subscription",
    "UntrustedGateway",
    "client_default_address",
    "new_request_id",
    "raise_for_error",
]
