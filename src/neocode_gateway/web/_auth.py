"""Who is asking: the device behind a request's cookie, and what its scope lets it do.

A credential is a device cookie (HttpOnly, SameSite=Strict, Secure under TLS)
obtained by redeeming a one-time token at ``/?token=...``. Scopes are ordered:
``read`` watches, ``approve`` also answers permissions and cancels, ``full``
also starts runs. The cookie's name carries the port, so that two servers on
one host (cookies ignore ports) do not overwrite each other's.
"""

from __future__ import annotations

from typing import Final

from starlette.requests import HTTPConnection

from neocode_gateway.web._devices import Device, DeviceStore

RANK: Final = {"read": 0, "approve": 1, "full": 2}
#: What each action needs.
NEEDS: Final = {"resolve": "approve", "cancel": "approve", "run": "full", "create": "full"}


class ApiError(Exception):
    """An answer the page or API client gets as ``{"error": message}`` with an HTTP status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def cookie_name(port: int) -> str:
    return f"ngw_{port}"


def allows(scope: str, action: str) -> bool:
    return RANK.get(scope, -1) >= RANK[NEEDS.get(action, "read")]


def require(device: Device, action: str) -> None:
    """Refuse (403) an action the device's scope does not cover."""
    if not allows(device.scope, action):
        needed = NEEDS.get(action, "read")
        raise ApiError(
            403, f"device {device.name!r} has scope {device.scope!r}; this needs {needed!r}"
        )


def device_of(conn: HTTPConnection, store: DeviceStore, port: int) -> Device | None:
    """The live device of this request's cookie, or ``None`` (no, unknown or expired cookie)."""
    token = conn.cookies.get(cookie_name(port))
    if not token or len(token) > 200:
        return None
    return store.device_for(token)
