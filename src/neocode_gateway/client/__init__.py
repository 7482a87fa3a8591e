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
"""

from neocode_gateway.client._async import (
    ADDRESS_ENV,
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_MAX_RESPONSE_BYTES,
    DEFAULT_REQUEST_TIMEOUT,
    AsyncGatewayClient,
    RunStream,
    client_default_address,
    new_request_id,
    raise_for_error,
)
from neocode_gateway.client._protocol import RawResponse
from neocode_gateway.client._streams import EventsDropped, SlowConsumer, Subscription
from neocode_gateway.client._sync import BlockingRunStream, GatewayClient
from neocode_gateway.errors import (
    ClientError,
    ConnectionClosed,
    ErrorFrameReceived,
    GatewayUnreachable,
    ProtocolViolation,
    RequestTimeout,
    UntrustedGateway,
)
from neocode_gateway.protocol import Event, Frame
from neocode_gateway.transport import PeerCredentials

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
