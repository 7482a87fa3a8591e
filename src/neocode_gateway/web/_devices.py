"""Paired devices and one-time tokens, in one 0600 JSON file under the data directory.

Why a file and not the gateway's database: the web process is a client of the
contract and must not open the gateway's store; ``web pair`` and ``web revoke``
work with no gateway running. Tokens are 256 random bits, shown once and kept
only as SHA-256 hashes, so the file leaks no credential. Several processes use
the file (the server, ``web pair``, ``web revoke``): every change is a
read-modify-write under an ``flock``, written to a temporary file and renamed,
and the server reloads it when its stat changes, so a revocation takes effect
at the next request.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import secrets
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

FILE_NAME: Final = "web-devices.json"
SCOPES: Final = ("read", "approve", "full")
#: How long a pairing link may wait for its first use.
PAIRING_TTL: Final = 15 * 60.0
#: The link ``neocode-gateway web`` prints at start (as Jupyter's): valid for a day.
LOGIN_TTL: Final = 24 * 3600.0
DEFAULT_DEVICE_TTL: Final = 30 * 86400.0
#: ``last_used`` is written at most this often per device (no write per request).
TOUCH_EVERY: Final = 60.0
_NAME: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,39}$")
_TTL: Final = re.compile(r"^(\d+)([smhdw]?)$")
_UNITS: Final = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


class DeviceError(ValueError):
    """A bad name, scope or duration, or a device that does not exist (a clear message)."""


def new_token() -> str:
    """256 random bits, URL-safe."""
    return secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise DeviceError(
            f"invalid device name {name!r}: 1-40 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return name


def check_scope(scope: str) -> str:
    if scope not in SCOPES:
        raise DeviceError(f"invalid scope {scope!r}: one of {', '.join(SCOPES)}")
    return scope


def parse_ttl(text: str) -> float:
    """``30d``, ``12h``, ``90m``, ``3600`` (seconds), ``2w`` -> seconds."""
    match = _TTL.match(text.strip())
    if not match or int(match.group(1)) <= 0:
        raise DeviceError(f"invalid duration {text!r}: a positive number with s, m, h, d or w")
    return float(int(match.group(1)) * _UNITS[match.group(2)])


@dataclass
class Device:
    """A paired browser: its name, what it may do, until when, and its cookie's hash."""

    name: str
    scope: str
    token_hash: str
    created_at: float
    expires_at: float
    last_used: float = 0.0

    def expired(self, now: float) -> bool:
        return now >= self.expires_at


@dataclass
class Pairing:
    """A one-time link not used yet: what device its first use creates."""

    token_hash: str
    name: str
    scope: str
    device_ttl: float
    expires_at: float


@dataclass
class _Data:
    devices: dict[str, Device] = field(default_factory=dict)
    pairings: list[Pairing] = field(default_factory=list)


class DeviceStore:
    """The devices file: every method reads it fresh (or from its cache while unchanged)."""

    def __init__(self, data_dir: str | os.PathLike[str]) -> None:
        self.dir = Path(data_dir)
        self.path = self.dir / FILE_NAME
        self._lock_path = self.dir / (FILE_NAME + ".lock")
        self._cache: _Data = _Data()
        self._stamp: tuple[int, int, int] | None = None

    # -- file ---------------------------------------------------------------------------

    def _ensure_dir(self) -> None:
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[_Data]:
        """Read-modify-write under an exclusive lock; written back atomically, 0600."""
        self._ensure_dir()
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            data = self._read()
            yield data
            self._write(data)
        finally:
            os.close(fd)

    def _read(self) -> _Data:
        try:
            raw = json.loads(self.path.read_text())
        except FileNotFoundError:
            return _Data()
        except (OSError, ValueError) as exc:
            raise DeviceError(f"cannot read {self.path}: {exc}") from None
        try:
            devices = {d["name"]: Device(**d) for d in raw.get("devices", [])}
            pairings = [Pairing(**p) for p in raw.get("pairings", [])]
        except (TypeError, KeyError, AttributeError) as exc:
            raise DeviceError(f"{self.path} is not a devices file: {exc}") from None
        return _Data(devices, pairings)

    def _write(self, data: _Data) -> None:
        now = time.time()
        data.pairings = [p for p in data.pairings if p.expires_at > now]
        body: dict[str, Any] = {
            "devices": [asdict(d) for d in data.devices.values()],
            "pairings": [asdict(p) for p in data.pairings],
        }
        tmp = self.path.with_suffix(f".tmp{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(body, handle, indent=1)
        os.replace(tmp, self.path)
        self._stamp = None

    def snapshot(self) -> _Data:
        """The file's content, re-read only when its inode, size or mtime changed."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            self._cache, self._stamp = _Data(), None
            return self._cache
        stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
        if stamp != self._stamp:
            self._cache = self._read()
            self._stamp = stamp
        return self._cache

    # -- operations ---------------------------------------------------------------------

    def add_pairing(
        self,
        name: str,
        scope: str = "full",
        device_ttl: float = DEFAULT_DEVICE_TTL,
        link_ttl: float = PAIRING_TTL,
    ) -> str:
        """A one-time token whose first use pairs device ``name``; returns the token."""
        check_name(name)
        check_scope(scope)
        token = new_token()
        with self._locked() as data:
            data.pairings.append(
                Pairing(token_hash(token), name, scope, device_ttl, time.time() + link_ttl)
            )
        return token

    def redeem(self, token: str) -> tuple[Device, str] | None:
        """Use a pairing token: the new device and its cookie token, or ``None`` if invalid.

        A name already paired is replaced (pairing again is how a phone gets a new cookie).
        """
        wanted = token_hash(token)
        now = time.time()
        with self._locked() as data:
            for pairing in data.pairings:
                if secrets.compare_digest(pairing.token_hash, wanted) and pairing.expires_at > now:
                    data.pairings.remove(pairing)
                    cookie = new_token()
                    device = Device(
                        pairing.name,
                        pairing.scope,
                        token_hash(cookie),
                        now,
                        now + pairing.device_ttl,
                        now,
                    )
                    data.devices[device.name] = device
                    return device, cookie
        return None

    def device_for(self, cookie: str) -> Device | None:
        """The live device whose cookie this is (``last_used`` refreshed now and then)."""
        wanted = token_hash(cookie)
        now = time.time()
        for device in self.snapshot().devices.values():
            if secrets.compare_digest(device.token_hash, wanted):
                if device.expired(now):
                    return None
                if now - device.last_used > TOUCH_EVERY:
                    self._touch(device.name, now)
                    device.last_used = now
                return device
        return None

    def _touch(self, name: str, now: float) -> None:
        with self._locked() as data:
            if name in data.devices:
                data.devices[name].last_used = now

    def devices(self) -> list[Device]:
        return sorted(self.snapshot().devices.values(), key=lambda d: d.name)

    def revoke(self, name: str) -> Device:
        with self._locked() as data:
            device = data.devices.pop(name, None)
            data.pairings = [p for p in data.pairings if p.name != name]
        if device is None:
            raise DeviceError(f"no device named {name!r} (see: neocode-gateway web devices)")
        return device

    def live_hashes(self) -> dict[str, str]:
        """Device name -> cookie hash of the devices not expired (what open pages may keep)."""
        now = time.time()
        return {
            d.name: d.token_hash for d in self.snapshot().devices.values() if not d.expired(now)
        }
