"""Identifiers and timestamps of the sessions core.

Session, run and permission ids are ULIDs (48 bits of milliseconds, 80 random
bits, Crockford base32) behind a prefix: unique without coordination, sortable
by creation time, and safe in file names and URLs.
"""

from __future__ import annotations

import os
import time
from typing import Final

_ALPHABET: Final = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


_last = [0]


def ulid(now: float | None = None) -> str:
    """A 26-character ULID for ``now`` (seconds since the epoch; default: the clock).

    Monotonic within a process: an id made in the same millisecond as the last one
    is the last one plus one (as the ULID spec's monotonic mode), so ids sort in the
    order they were made, and so do sessions whose other sort keys tie.
    """
    millis = int((time.time() if now is None else now) * 1000)
    value = (millis << 80) | int.from_bytes(os.urandom(10), "big")
    if value >> 80 == _last[0] >> 80 and value <= _last[0]:
        value = _last[0] + 1
    _last[0] = value
    chars = []
    for _ in range(26):
        chars.append(_ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def new_id(prefix: str) -> str:
    """``PREFIX_ULID``: ``s_`` sessions, ``r_`` runs, ``p_`` permission requests."""
    return f"{prefix}_{ulid()}"


class EventClock:
    """RFC 3339 UTC timestamps with milliseconds, formatted once per second.

    Every event carries one; ``strftime`` on each of 100,000 events a second
    would be a tenth of the budget, so the seconds part is cached.
    """

    __slots__ = ("_last", "_millis", "_prefix", "_second")

    def __init__(self) -> None:
        self._second = -1
        self._millis = -1
        self._prefix = ""
        self._last = ""

    def now(self) -> str:
        """The current time as ``2026-11-24T10:00:00.123Z`` (one string per millisecond)."""
        millis = int(time.time() * 1000)
        if millis == self._millis:
            return self._last
        self._millis = millis
        second, rest = divmod(millis, 1000)
        if second != self._second:
            self._second = second
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S.", time.gmtime(second))
        self._last = f"{self._prefix}{rest:03d}Z"
        return self._last
