"""Who is connected: clients name themselves (``hello``, contract v1.2), decisions name them.

A front-end says what it is (``cli``, ``acp``, ``web``, ...) and, optionally,
which device it runs for (a phone's name, say). The gateway shows connected
clients in ``status`` and writes the name into the audit of every permission a
client decides. A client that never says ``hello`` is ``unknown``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from neocode_gateway.protocol import INVALID_ACTION, MISSING_REQUIRED_FIELD, Frame, codes
from neocode_gateway.sessions._subscriber import Subscriber
from neocode_gateway.sessions._wire import RequestError, ack, opt_str, payload_of

if TYPE_CHECKING:
    from neocode_gateway.sessions._core import SessionCore

UNKNOWN: Final = "unknown"
NAME_MAX: Final = 64
DEVICE_MAX: Final = 128


class ClientInfo:
    """What a client said of itself, and when."""

    __slots__ = ("device", "name", "since")

    def __init__(self, name: str, device: str | None, since: str) -> None:
        self.name = name
        self.device = device
        self.since = since

    @property
    def label(self) -> str:
        """``cli`` or ``web (pixel-7)``: how the audit names it."""
        return f"{self.name} ({self.device})" if self.device else self.name

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"client": self.name, "since": self.since}
        if self.device:
            out["device"] = self.device
        return out


class Clients:
    """The clients that named themselves, by subscriber."""

    __slots__ = ("_core", "by_sub")

    def __init__(self, core: SessionCore) -> None:
        self._core = core
        self.by_sub: dict[Subscriber, ClientInfo] = {}

    def hello(self, frame: Frame, sub: Subscriber) -> bytes:
        """``hello``: ``payload.client`` (a short name), optional ``payload.device``."""
        payload = payload_of(frame)
        name = opt_str(payload, "client")
        if name is None:
            raise RequestError(MISSING_REQUIRED_FIELD, codes.msg_missing_field("payload.client"))
        device = opt_str(payload, "device")
        if len(name) > NAME_MAX or not name.isprintable():
            raise RequestError(INVALID_ACTION, codes.msg_invalid_payload_field("client"))
        if device is not None and (len(device) > DEVICE_MAX or not device.isprintable()):
            raise RequestError(INVALID_ACTION, codes.msg_invalid_payload_field("device"))
        if sub not in self.by_sub:
            sub.add_close_callback(self._gone)
        info = ClientInfo(name.strip(), device.strip() if device else None, self._core.now())
        self.by_sub[sub] = info
        return ack(frame, info.describe())

    def _gone(self, sub: Subscriber) -> None:
        self.by_sub.pop(sub, None)

    def info(self, sub: Subscriber) -> ClientInfo | None:
        """What the client on ``sub`` said of itself (``None``: it said nothing)."""
        return self.by_sub.get(sub)

    def label(self, sub: Subscriber) -> str:
        """How the audit names whoever sent a request on ``sub``."""
        info = self.by_sub.get(sub)
        return info.label if info is not None else UNKNOWN

    def listing(self, connections: int) -> dict[str, Any]:
        """``status``'s ``clients`` (who said hello) and ``unidentified`` (who did not)."""
        named = [info.describe() for info in self.by_sub.values()]
        return {"clients": named, "unidentified": max(0, connections - len(named))}
