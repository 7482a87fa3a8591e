"""Modes an editor chose with ``session/set_mode``, waiting for the session's next run.

The contract sets a session's mode only with a run (``payload.mode``), so the
front door keeps the choice until its next prompt. Kept in memory only, a
choice would be lost between processes: acpx runs ``set-mode`` in one front
door process and the next prompt in another. So the choices live in a small
JSON file of the user's (``~/.neocode/acp-front/modes.json``, 0600), keyed by
gateway address and session, written atomically; whichever front door sends
the session's next run takes the choice out. A workaround, until the contract
has an action that sets a session's mode.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from typing import Any


def default_path() -> str:
    return os.path.join(os.path.expanduser("~"), ".neocode", "acp-front", "modes.json")


class PendingModes:
    """``(address, session) -> mode`` in a JSON file; every failure means "none"."""

    def __init__(self, address: str, path: str | None = None) -> None:
        self.address = address
        self.path = path or default_path()

    def _read(self) -> dict[str, Any]:
        try:
            with open(self.path, encoding="utf-8") as file:
                value = json.load(file)
        except (OSError, ValueError):
            return {}
        return value if isinstance(value, dict) else {}

    def _write(self, value: dict[str, Any]) -> None:
        directory = os.path.dirname(self.path)
        with contextlib.suppress(OSError):
            os.makedirs(directory, mode=0o700, exist_ok=True)
            fd, temp = tempfile.mkstemp(dir=directory, prefix=".modes-")
            with os.fdopen(fd, "w", encoding="utf-8") as file:
                json.dump(value, file)
            os.replace(temp, self.path)

    def _key(self, session_id: str) -> str:
        return f"{self.address}#{session_id}"

    def put(self, session_id: str, mode: str) -> None:
        value = self._read()
        value[self._key(session_id)] = mode
        self._write(value)

    def take(self, session_id: str) -> str | None:
        value = self._read()
        mode = value.pop(self._key(session_id), None)
        if mode is not None:
            self._write(value)
        return mode if isinstance(mode, str) else None
