"""The daemon's logs: one line each (time, level, message) on stderr, and in a rotated file.

The file is there so that a daemon started in the background by a front-end
(stderr gone to /dev/null) still tells what happened: ``gateway.log`` in the
data directory, rotated at :data:`LOG_FILE_BYTES` with :data:`LOG_FILE_BACKUPS`
old files kept. ``--log-file PATH`` moves it, ``--log-file none`` turns it off.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Final

#: The log file's name in the data directory.
LOG_FILE_NAME: Final = "gateway.log"
#: Size at which the file is rotated, and how many old files are kept.
LOG_FILE_BYTES: Final = 5 << 20
LOG_FILE_BACKUPS: Final = 3


class _Formatter(logging.Formatter):
    converter = __import__("time").gmtime

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return super().formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z"


def configure_logging(level: int) -> None:
    """Logs go to stderr, one line each: time, level, message."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter("%(asctime)s %(levelname)s %(message)s"))
    root = logging.getLogger("neocode_gateway")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
    aio = logging.getLogger("asyncio")
    aio.handlers[:] = [handler]
    aio.propagate = False


def add_log_file(path: Path) -> str | None:
    """Log to ``path`` too (rotated); the reason if it cannot be opened, else ``None``.

    A log file that cannot be written never stops the daemon: stderr still has
    the logs, and the reason is logged there once.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        import logging.handlers  # only when a file is logged to (not before the first ping)

        handler = logging.handlers.RotatingFileHandler(
            path, maxBytes=LOG_FILE_BYTES, backupCount=LOG_FILE_BACKUPS, encoding="utf-8"
        )
        os.chmod(path, 0o600)  # the log names sessions and workdirs: the owner's only
    except OSError as exc:
        return f"cannot write the log file {path}: {exc.strerror or exc}"
    handler.setFormatter(_Formatter("%(asctime)s %(levelname)s %(message)s"))
    for name in ("neocode_gateway", "asyncio"):
        logging.getLogger(name).addHandler(handler)
    return None


def close_log_files() -> None:
    """Flush and close the file handlers (the daemon is stopping)."""
    for name in ("neocode_gateway", "asyncio"):
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            if isinstance(handler, logging.FileHandler):
                logger.removeHandler(handler)
                handler.close()
