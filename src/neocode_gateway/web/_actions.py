"""The actions a page or API client may take, each one scope-checked, with clear refusals.

The WebSocket and the JSON API both come here, so a ``read`` device is refused
the same way (403) whichever door it knocks on. Gateway errors become HTTP
statuses: an unknown session or permission 404, a run already active 409 (with
a sentence the page shows), a bad parameter 400, a gateway that is down 503.
"""

from __future__ import annotations

from typing import Any, Final

from neocode_gateway.client import AsyncGatewayClient, ErrorFrameReceived
from neocode_gateway.errors import ClientError
from neocode_gateway.web._auth import ApiError, require
from neocode_gateway.web._devices import Device
from neocode_gateway.web._render import DECISIONS

_STATUS: Final = {
    "resource_not_found": 404,
    "conflict": 409,
    "invalid_action": 400,
    "invalid_frame": 400,
    "missing_required_field": 400,
    "invalid_multimodal_payload": 400,
    "unsupported_action": 501,
}
_DECISIONS: Final = frozenset(DECISIONS.values())


def _text(params: dict[str, Any], name: str, *, required: bool = False) -> str | None:
    value = params.get(name)
    if value is None or value == "":
        if required:
            raise ApiError(400, f"missing {name}")
        return None
    if not isinstance(value, str) or len(value) > 100_000:
        raise ApiError(400, f"invalid {name}: a string is expected")
    return value


def gateway_error(exc: Exception) -> ApiError:
    """A gateway error as the page should hear it."""
    if isinstance(exc, ErrorFrameReceived):
        message = exc.message
        if exc.code == "conflict" and "active run" in message:
            message = "a run is already active in this session: wait for it or cancel it"
        elif exc.code == "resource_not_found":
            message = f"not found: {message}"
        return ApiError(_STATUS.get(exc.code, 502), message)
    return ApiError(503, f"the gateway is not reachable ({exc}); retrying")


async def perform(
    client: AsyncGatewayClient, device: Device, action: str, params: dict[str, Any]
) -> dict[str, Any]:
    """Do one state-changing action for ``device``; its result, or :class:`ApiError`."""
    require(device, action)
    try:
        if action == "resolve":
            request_id = _text(params, "request_id", required=True)
            decision = _text(params, "decision", required=True)
            if decision not in _DECISIONS:
                raise ApiError(400, f"invalid decision {decision!r}")
            assert request_id is not None
            return await client.resolve_permission(
                request_id, decision, option_id=_text(params, "option_id")
            )
        if action == "cancel":
            return await client.cancel(session_id=_text(params, "session_id", required=True))
        if action == "run":
            frame: dict[str, Any] = {
                "action": "run",
                "input_text": _text(params, "text", required=True),
            }
            for key, field in (("session_id", "session_id"), ("workdir", "workdir")):
                if (value := _text(params, key)) is not None:
                    frame[field] = value
            payload = {k: v for k in ("agent", "mode") if (v := _text(params, k)) is not None}
            if payload:
                frame["payload"] = payload
            ack = await client.request(frame)
            return {"session_id": ack.session_id, "run_id": ack.run_id}
    except ApiError:
        raise
    except (ClientError, ConnectionError) as exc:
        raise gateway_error(exc) from None
    raise ApiError(400, f"unknown action {action!r}")


async def session_meta(client: AsyncGatewayClient, session_id: str) -> dict[str, Any]:
    """A session's fields (404 when there is none), without its transcript."""
    if not session_id or len(session_id) > 200:
        raise ApiError(404, "not found: no such session")
    try:
        ack = await client.request(
            {"action": "load_session", "session_id": session_id, "payload": {"limit": 1}}
        )
    except (ClientError, ConnectionError) as exc:
        raise gateway_error(exc) from None
    meta = dict(ack.payload) if isinstance(ack.payload, dict) else {}
    meta.pop("messages", None)
    meta.pop("next_cursor", None)
    return meta
