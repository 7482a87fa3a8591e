"""Server settings, with the contract's defaults (spec section 7)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

from neocode_gateway.errors import ConfigError
from neocode_gateway.limits import (
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_READ_TIMEOUT,
    DEFAULT_WRITE_TIMEOUT,
)
from neocode_gateway.protocol import DEFAULT_MAX_FRAME_BYTES

#: How long a graceful stop waits for connections to drain before aborting them.
DEFAULT_SHUTDOWN_GRACE: Final = 4.0


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """Everything the server needs to know; validated on construction."""

    max_connections: int = DEFAULT_MAX_CONNECTIONS
    read_timeout: float = DEFAULT_READ_TIMEOUT
    write_timeout: float = DEFAULT_WRITE_TIMEOUT
    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES
    shutdown_grace: float = DEFAULT_SHUTDOWN_GRACE
    insecure_skip_peer_check: bool = False

    def __post_init__(self) -> None:
        if self.max_connections < 1:
            raise ConfigError(f"max_connections must be at least 1, got {self.max_connections}")
        if self.max_frame_bytes < 1:
            raise ConfigError(f"max_frame_bytes must be at least 1, got {self.max_frame_bytes}")
        for name in ("read_timeout", "write_timeout", "shutdown_grace"):
            value = getattr(self, name)
            if not (value > 0 and math.isfinite(value)):
                raise ConfigError(f"{name} must be a positive number of seconds, got {value}")
