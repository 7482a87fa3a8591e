"""The sessions core: sessions, runs, permissions, bindings, fan-out and replay (contract v1.1)."""

from neocode_gateway.sessions._core import (
    CANCEL_GRACE,
    DEFAULT_PERMISSION_TIMEOUT,
    DEFAULT_RETENTION_DAYS,
    CoreConfig,
    RequestError,
    SessionCore,
    status_payload,
)

__all__ = [
    "CANCEL_GRACE",
    "DEFAULT_PERMISSION_TIMEOUT",
    "DEFAULT_RETENTION_DAYS",
    "CoreConfig",
    "RequestError",
    "SessionCore",
    "status_payload",
]
