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
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_REQUEST_TIMEOUT,
    AsyncGatewayClient,
    new_request_id,
    raise_for_error,
)
from neocode_gateway.client._protocol import RawResponse
from neocode_gateway.client._sync import GatewayClient
from neocode_gateway.errors import (
    ClientError,
    ConnectionClosed,
    ErrorFrameReceived,
    GatewayUnreachable,
    ProtocolViolation,
    RequestTimeout,
)
from neocode_gateway.protocol import Frame
from neocode_gateway.transport import PeerCredentials

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_REQUEST_TIMEOUT",
    "AsyncGatewayClient",
    "ClientError",
    "ConnectionClosed",
    "ErrorFrameReceived",
    "Frame",
    "GatewayClient",
    "GatewayUnreachable",
    "PeerCredentials",
    "ProtocolViolation",
    "RawResponse",
    "RequestTimeout",
    "new_request_id",
    "raise_for_error",
]
