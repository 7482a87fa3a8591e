"""The asyncio server: accept, limits, timeouts and shutdown, independent of actions."""

from neocode_gateway.limits import (
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_READ_TIMEOUT,
    DEFAULT_WRITE_TIMEOUT,
)
from neocode_gateway.server._config import DEFAULT_SHUTDOWN_GRACE, ServerConfig
from neocode_gateway.server._connection import Connection, Handler, HandlerResult
from neocode_gateway.server._server import RateLimitedLog, Server

__all__ = [
    "DEFAULT_MAX_CONNECTIONS",
    "DEFAULT_READ_TIMEOUT",
    "DEFAULT_SHUTDOWN_GRACE",
    "DEFAULT_WRITE_TIMEOUT",
    "Connection",
    "Handler",
    "HandlerResult",
    "RateLimitedLog",
    "Server",
    "ServerConfig",
]
