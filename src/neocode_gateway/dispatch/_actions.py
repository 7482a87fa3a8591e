"""The v1.1 actions: which core method answers which action, and ``status``.

With a runtime, every action of the contract is answered by the sessions
core. With ``--runtime none`` the gateway is exactly v1: only ``ping`` and
``status`` are answered, everything else is ``unsupported_action``.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from neocode_gateway.dispatch._registry import Dispatcher
from neocode_gateway.protocol import Frame, encode_frame
from neocode_gateway.server import Connection
from neocode_gateway.sessions import SessionCore, status_payload


def install(
    dispatcher: Dispatcher, core: SessionCore | None, connection_count: Callable[[], int]
) -> None:
    """Register the core's handlers (when there is a core) and ``status`` (always)."""
    started = time.monotonic()

    def status(frame: Frame, conn: Connection) -> bytes:
        return encode_frame(
            Frame(
                type="ack",
                action="status",
                request_id=frame.request_id,
                payload=status_payload(core, connection_count(), started),
            )
        )

    dispatcher.register("status", status)
    if core is None:
        return
    dispatcher.register("run", core.run)
    dispatcher.register("cancel", core.cancel)
    dispatcher.register("resolve_permission", core.resolve_permission)
    dispatcher.register("list_sessions", core.list_sessions)
    dispatcher.register("load_session", core.load_session)
    dispatcher.register("compact", core.compact)
    dispatcher.register("bind_stream", core.bind_stream)
    dispatcher.register("unbind_stream", core.unbind_stream)
    dispatcher.register("create_session", core.create_session)
    dispatcher.register("delete_session", core.delete_session)
    dispatcher.register("set_mode", core.set_mode)
    dispatcher.register("hello", core.hello)
    dispatcher.register("list_pending", core.list_pending)
    dispatcher.register("list_grants", core.list_grants)
    dispatcher.register("revoke_grant", core.revoke_grant)
    dispatcher.register("audit", core.audit)
