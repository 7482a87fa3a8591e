"""The Starlette application: the page, its assets, the JSON API and the WebSocket.

Nothing is served without a credential but the stylesheet (the 401 page uses
it) and the token exchange itself. Every asset comes from the package
(``static/``): no build step, nothing fetched from elsewhere, the page works
offline. The JSON API mirrors what the page does over its WebSocket, for
scripts and for tests; both go through the same scope checks.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from html import escape
from pathlib import Path
from typing import Any, Final

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from neocode_gateway.errors import ClientError
from neocode_gateway.web._actions import gateway_error, perform, session_meta
from neocode_gateway.web._auth import ApiError, cookie_name, device_of
from neocode_gateway.web._bridge import PageBridge
from neocode_gateway.web._devices import Device, DeviceStore
from neocode_gateway.web._guard import GuardMiddleware, HostPolicy
from neocode_gateway.web._hub import Hub

STATIC: Final = Path(__file__).with_name("static")
_TYPES: Final = {
    ".js": "text/javascript",
    ".css": "text/css",
    ".svg": "image/svg+xml",
    ".html": "text/html",
    ".json": "application/manifest+json",
}
_PUBLIC: Final = frozenset({"style.css", "icon.svg"})
PAIR_HELP: Final = (
    "To use this page, pair this browser. On the machine that runs the gateway:"
    "<pre>neocode-gateway web pair --name phone --scope approve</pre>"
    "then open the link it prints, or scan its QR code. (The link printed when "
    "<code>neocode-gateway web</code> started pairs the first browser.)"
)


def _page(
    title: str, body: str, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    html = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<link rel="stylesheet" href="/static/style.css"><title>{escape(title)}</title>'
        f'{(headers or {}).pop("_head", "")}</head><body class="plain"><main>'
        f"<h1>{escape(title)}</h1>{body}</main></body></html>"
    )
    return HTMLResponse(html, status, headers={"cache-control": "no-store", **(headers or {})})


class WebApp:
    """Routes bound to one device store, hub and port."""

    def __init__(self, store: DeviceStore, hub: Hub, port: int, *, tls: bool) -> None:
        self.store, self.hub, self.port, self.tls = store, hub, port, tls

    def device(self, request: Request | WebSocket) -> Device | None:
        return device_of(request, self.store, self.port)

    # -- pages --------------------------------------------------------------------------

    async def index(self, request: Request) -> Response:
        token = request.query_params.get("token")
        if token is not None:
            return self._redeem(token)
        if self.device(request) is None:
            return unauthorized(request)
        return FileResponse(STATIC / "index.html", headers={"cache-control": "no-store"})

    def _redeem(self, token: str) -> Response:
        redeemed = self.store.redeem(token) if 0 < len(token) <= 200 else None
        if redeemed is None:
            return _page(
                "This link is not valid",
                "<p>The pairing link is malformed, expired or was already used (each link "
                f"works once).</p><p>{PAIR_HELP}</p>",
                401,
            )
        device, cookie = redeemed
        # A page, not a redirect: its refresh is a same-site navigation, so the Strict
        # cookie set here is sent with it, wherever the link was opened from.
        response = _page(
            "Paired",
            f"<p>This browser is now the device <b>{escape(device.name)}</b> "
            f'(scope {escape(device.scope)}). <a href="/">Open the gateway</a>.</p>',
            headers={"_head": '<meta http-equiv="refresh" content="0;url=/">'},
        )
        response.set_cookie(
            cookie_name(self.port),
            cookie,
            max_age=max(1, int(device.expires_at - device.created_at)),
            path="/",
            httponly=True,
            samesite="strict",
            secure=self.tls,
        )
        return response

    async def static(self, request: Request) -> Response:
        name = str(request.path_params["name"])
        path = (STATIC / name).resolve()
        if STATIC.resolve() not in path.parents or not path.is_file():
            return Response("not found\n", 404, media_type="text/plain")
        if name not in _PUBLIC and self.device(request) is None:
            return Response("not paired\n", 401, media_type="text/plain")
        media = _TYPES.get(path.suffix, "application/octet-stream")
        return FileResponse(path, media_type=media, headers={"cache-control": "no-cache"})

    # -- the JSON API -------------------------------------------------------------------

    async def api(self, request: Request) -> Response:
        device = self.device(request)
        if device is None:
            return JSONResponse({"error": "not paired or revoked; " + _PAIR_TEXT}, 401)
        try:
            return JSONResponse(await self._api(request, device))
        except ApiError as exc:
            return JSONResponse({"error": exc.message}, exc.status)
        except (ClientError, ConnectionError) as exc:
            error = gateway_error(exc)
            return JSONResponse({"error": error.message}, error.status)

    async def _api(self, request: Request, device: Device) -> dict[str, Any]:
        what = str(request.path_params["what"])
        if what == "me":
            return {"device": device.name, "scope": device.scope}
        client = await self.hub.shared(device.name)
        if request.method == "GET":
            if what == "sessions":
                return await client.list_sessions(limit=500)
            if what.startswith("sessions/"):
                return await session_meta(client, what.removeprefix("sessions/"))
            if what == "pending":
                reply = await client.request({"action": "list_pending"})
                return reply.payload if isinstance(reply.payload, dict) else {}
            raise ApiError(404, f"no such API: {what}")
        params = await _json_body(request)
        if what.startswith("permissions/"):
            params["request_id"] = what.removeprefix("permissions/")
            result = await perform(client, device, "resolve", params)
            self.hub.poke()
            return result
        if what.startswith("sessions/") and what.endswith("/cancel"):
            params["session_id"] = what.removeprefix("sessions/").removesuffix("/cancel")
            return await perform(client, device, "cancel", params)
        if what == "runs":
            return await perform(client, device, "run", params)
        raise ApiError(404, f"no such API: {request.method} {what}")

    # -- the WebSocket ------------------------------------------------------------------

    async def websocket(self, ws: WebSocket) -> None:
        device = self.device(ws)
        if device is None:
            await ws.accept()
            await ws.close(code=4401, reason="not paired or revoked")
            return
        await PageBridge(ws, device, self.hub).serve()


_PAIR_TEXT: Final = "pair with: neocode-gateway web pair --name NAME"


def unauthorized(request: Request) -> Response:
    if request.url.path.startswith("/api/"):
        return JSONResponse({"error": "not paired; " + _PAIR_TEXT}, 401)
    return _page("Not paired", f"<p>{PAIR_HELP}</p>", 401)


async def _json_body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw:
        return {}
    if len(raw) > 1_000_000:
        raise ApiError(413, "request body too large")
    try:
        value = json.loads(raw)
    except ValueError:
        raise ApiError(400, "the body is not JSON") from None
    if not isinstance(value, dict):
        raise ApiError(400, "the body must be a JSON object")
    return value


def build_app(
    store: DeviceStore,
    hub: Hub,
    *,
    bind_host: str,
    port: int,
    tls: bool,
    allow_hosts: tuple[str, ...] = (),
) -> Any:
    """The ASGI application: the guard in front of the routes."""
    web = WebApp(store, hub, port, tls=tls)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        hub.start()
        yield
        await hub.stop()

    routes: list[Any] = [
        Route("/", web.index),
        Route("/static/{name:path}", web.static),
        Route("/api/{what:path}", web.api, methods=["GET", "POST"]),
        WebSocketRoute("/ws", web.websocket),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    return GuardMiddleware(app, HostPolicy(bind_host, port, allow_hosts), tls=tls)
