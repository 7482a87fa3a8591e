"""The gateway's defaults (limits, timeouts, where its files are), dependency-free.

The protocol (frame size), the server (connections, deadlines) and the daemon's
flags read them from here; the daemon's flags are parsed before asyncio or
msgspec are imported (its first ping is answered meanwhile), so this module
imports nothing.
"""

from __future__ import annotations

from typing import Final

#: Largest frame accepted, without its newline (contract v1: 1 MiB).
DEFAULT_MAX_FRAME_BYTES: Final = 1 << 20
#: Concurrent connections; extra ones are closed at once.
DEFAULT_MAX_CONNECTIONS: Final = 128
#: Seconds a started frame may take to complete; an idle connection's life.
DEFAULT_READ_TIMEOUT: Final = 30.0
#: Seconds a client may go without reading its answers.
DEFAULT_WRITE_TIMEOUT: Final = 30.0
#: Where the configuration file is looked for when ``--config`` is not given.
DEFAULT_CONFIG_PATH: Final = "~/.neocode/gateway.toml"
#: Where the event log (and the web page's devices file) live.
DEFAULT_DATA_DIR: Final = "~/.neocode/gateway"
#: Seconds a permission request waits for an answer before it is rejected.
DEFAULT_PERMISSION_TIMEOUT: Final = 600.0
#: Days events (and permission decisions) are kept; 0 keeps them for ever.
DEFAULT_RETENTION_DAYS: Final = 30
