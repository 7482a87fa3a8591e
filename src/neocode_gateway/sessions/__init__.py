"""The sessions core: sessions, runs, permissions, bindings, fan-out and replay (contract v1.1).

It imports nothing of the server: it answers and pushes to :class:`Subscriber`
objects, which the server's connection (and any other front-end's adapter)
satisfies structurally.
"""

from neocode_gateway.limits import DEFAULT_PERMISSION_TIMEOUT, DEFAULT_RETENTION_DAYS
from neocode_gateway.sessions._core import (
    CANCEL_GRACE,
    Answer,
    CoreConfig,
    SessionCore,
    status_payload,
)
from neocode_gateway.sessions._subscriber import Subscriber
from neocode_gateway.sessions._wire import RequestError

__all__ = [
    "CANCEL_GRACE",
    "DEFAULT_PERMISSION_TIMEOUT",
    "DEFAULT_RETENTION_DAYS",
    "Answer",
    "CoreConfig",
    "RequestError",
    "SessionCore",
    "Subscriber",
    "status_payload",
]
