"""The durable event log: sessions, events, runs and permission requests in SQLite."""

from neocode_gateway.store._open import DB_NAME, MIGRATIONS, SCHEMA_VERSION
from neocode_gateway.store._rows import (
    EventRow,
    GrantRow,
    PermissionRow,
    RunRow,
    SessionRow,
    WriteBatch,
)
from neocode_gateway.store._sqlite import Store

__all__ = [
    "DB_NAME",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "EventRow",
    "GrantRow",
    "PermissionRow",
    "RunRow",
    "SessionRow",
    "Store",
    "WriteBatch",
]
