"""The quick commands on a named pipe (Windows): the asyncio client behind the blocking API.

:class:`~neocode_gateway.client._local.BlockingConnection` speaks only Unix
sockets; a pipe needs the overlapped I/O of the asyncio client. This adapter
gives the quick commands the same few methods over
:class:`~neocode_gateway.client.GatewayClient`, so the commands have one
implementation and Windows pays the asyncio import that it needs anyway.
"""

from __future__ import annotations

from typing import Any, Self

from neocode_gateway.client import DEFAULT_CONNECT_TIMEOUT, DEFAULT_REQUEST_TIMEOUT, GatewayClient
from neocode_gateway.client._local import BlockingConnection


class PipeConnection(BlockingConnection):  # pragma: no cover - Windows
    """:class:`BlockingConnection`'s methods, over the asyncio client."""

    def __init__(self, address: str, timeout: float | None, trust_any_uid: bool) -> None:
        super().__init__(address, trust_any_uid=trust_any_uid)
        self._client = GatewayClient(
            address,
            connect_timeout=timeout or DEFAULT_CONNECT_TIMEOUT,
            request_timeout=timeout or DEFAULT_REQUEST_TIMEOUT,
            trust_any_uid=trust_any_uid,
        )

    def connect(self) -> Self:
        self._client.connect()
        peer = self._client.peer
        if peer is not None:
            self.peer_pid, self.peer_uid = peer.pid, peer.uid
        return self

    def close(self) -> None:
        self._client.close()

    def request(
        self, action: str, *, timeout: float | None = None, **fields: Any
    ) -> dict[str, Any]:
        import msgspec

        frame = {"action": action, **{k: v for k, v in fields.items() if v is not None}}
        reply = self._client.request(frame, timeout=timeout)
        value = msgspec.to_builtins(reply)
        return value if isinstance(value, dict) else {}

    def ping(self, *, timeout: float | None = None) -> float:
        return self._client.ping(timeout=timeout)
