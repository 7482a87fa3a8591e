"""Request logging at debug level: one line per answered request, with its outcome and time."""

from __future__ import annotations

import logging
import time

from neocode_gateway.protocol import Frame

log = logging.getLogger("neocode_gateway.server")


def log_request(conn_id: int, frame: Frame, reply: bytes, start: float) -> None:
    """``conn 3 run request_id=q1 session=s_... -> ack in 0.21 ms`` (or ``-> error CODE``)."""
    outcome = "ack"
    if reply.startswith(b'{"type":"error"'):
        marker = reply.find(b'"code":"')
        outcome = "error " + reply[marker + 8 : reply.find(b'"', marker + 8)].decode()
    log.debug(
        "conn %d %s request_id=%s session=%s -> %s in %.2f ms",
        conn_id,
        frame.action,
        frame.request_id,
        frame.session_id,
        outcome,
        (time.perf_counter() - start) * 1000,
    )
