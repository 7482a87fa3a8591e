"""What a browser must not be able to do to the page: an ASGI middleware in front of it all.

- **DNS rebinding**: a ``Host`` header that is not an address we serve on is
  refused (421) before anything else, so a hostile name pointed at 127.0.0.1
  reaches nothing.
- **CSRF and cross-site WebSocket**: a request that changes state (any method
  but GET/HEAD/OPTIONS) and every WebSocket handshake must carry an ``Origin``
  equal to the page's own; a missing one is refused too (browsers always send
  it there). The SameSite=Strict cookie is a second wall, not the only one.
- **Framing and inline script**: every response carries a Content-Security-Policy
  without ``unsafe-inline`` (scripts and styles only from our own files),
  ``frame-ancestors 'none'`` and ``X-Frame-Options: DENY``, ``nosniff`` and
  ``no-referrer`` (the pairing token must not leak through a Referer).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Any, Final

from starlette.types import ASGIApp, Message, Receive, Scope, Send

CSP: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; manifest-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "form-action 'self'; object-src 'none'"
)
SECURITY_HEADERS: Final = [
    (b"content-security-policy", CSP.encode()),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
]
_SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def split_host(value: str) -> tuple[str, int | None]:
    """``host:port`` / ``[v6]:port`` / ``host`` -> (host lower-cased, port or None)."""
    value = value.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        host, rest = value[1 : end if end > 0 else None], value[end + 1 :] if end > 0 else ""
        port = rest[1:] if rest.startswith(":") else ""
    elif value.count(":") == 1:
        host, port = value.split(":")
    else:
        host, port = value, ""
    return host, int(port) if port.isdigit() else None


class HostPolicy:
    """Which ``Host`` values name this server.

    Bound to one address: that address, and ``localhost`` when it is a loopback
    one. Bound to every interface (``0.0.0.0``, ``::``): any IP literal (a phone
    on the LAN types one), ``localhost``, and the names given with
    ``--allow-host``. A DNS name is never accepted unless listed: DNS rebinding
    needs a name.
    """

    def __init__(self, bind_host: str, port: int, extra_names: Iterable[str] = ()) -> None:
        self.bind_host = bind_host.strip("[]").lower()
        self.port = port
        self.names = {n.lower() for n in extra_names}
        address = ipaddress.ip_address(self.bind_host) if _is_ip(self.bind_host) else None
        self.wildcard = address is not None and address.is_unspecified
        if (address is not None and address.is_loopback) or self.wildcard:
            self.names.add("localhost")
        if address is None:
            self.names.add(self.bind_host)

    def allows(self, header: str) -> bool:
        host, port = split_host(header)
        if port is not None and port != self.port:
            return False
        if host in self.names:
            return True
        if not _is_ip(host):
            return False
        if self.wildcard:
            return True
        return ipaddress.ip_address(host) == ipaddress.ip_address(self.bind_host)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return str(value.decode("latin-1"))
    return None


class GuardMiddleware:
    """Refuse foreign Hosts and Origins; add the security headers to every response."""

    def __init__(self, app: ASGIApp, hosts: HostPolicy, *, tls: bool) -> None:
        self.app = app
        self.hosts = hosts
        self.scheme = "https" if tls else "http"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        host = _header(scope, b"host") or ""
        if not self.hosts.allows(host):
            await self._refuse(scope, send, 421, "this server does not answer to that Host name")
            return
        websocket = scope["type"] == "websocket"
        if websocket or scope.get("method", "GET") not in _SAFE_METHODS:
            origin = _header(scope, b"origin")
            expected = f"{'wss' if websocket else self.scheme}://{host}".lower()
            expected_http = f"{self.scheme}://{host}".lower()
            if origin is None or origin.lower() not in (expected, expected_http):
                await self._refuse(scope, send, 403, "cross-origin request refused")
                return
        if websocket:
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = dict(message)
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)

        await self.app(scope, receive, send_with_headers)

    async def _refuse(self, scope: Scope, send: Send, status: int, text: str) -> None:
        body = (text + "\n").encode()
        headers: list[tuple[bytes, bytes]] = [
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", str(len(body)).encode()),
            *SECURITY_HEADERS,
        ]
        start: dict[str, Any] = {"status": status, "headers": headers}
        if scope["type"] == "websocket":
            # Denied before accept: the handshake gets this HTTP response (ASGI extension),
            # or a plain 403 from servers without it.
            if "websocket.http.response" in scope.get("extensions", {}):
                await send({"type": "websocket.http.response.start", **start})
                await send({"type": "websocket.http.response.body", "body": body})
            else:
                await send({"type": "websocket.close", "code": 1008})
            return
        await send({"type": "http.response.start", **start})
        await send({"type": "http.response.body", "body": body})
