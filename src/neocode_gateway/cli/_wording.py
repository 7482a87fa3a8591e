"""What a client command says when something went wrong: one line, with the next step.

The gateway's error frames are for programs (a stable ``code``, a terse
contract ``message``); a person needs to know what is missing and what to
type next. :func:`explain` turns every exception a client command can meet
into that line and its exit code. The ``code`` is kept where programs look:
in ``--json`` output, and in the line at ``--log-level debug``.

Standard library only: the quick commands (``ping``, ``approve``...) and the
asyncio ones share it.
"""

from __future__ import annotations

from neocode_gateway.cli._common import (
    EXIT_ERROR_FRAME,
    EXIT_INTERRUPTED,
    EXIT_TIMEOUT,
    EXIT_UNREACHABLE,
)
from neocode_gateway.errors import (
    ClientError,
    ErrorFrameReceived,
    GatewayUnreachable,
    RequestTimeout,
)

#: Contract messages (exact) → what to say instead.
_MESSAGES = {
    "unknown mode": "the agent has no such mode (neocode-gateway agents --check lists each "
    "agent's modes)",
    "unknown agent": "no such agent (neocode-gateway agents lists the configured ones)",
    "permission already resolved": "that permission request was already answered",
    "session already has an active run": "the session is busy with a run (wait for its end, "
    "or neocode-gateway cancel --session ID)",
    "workdir cannot change within a session": "a session keeps its working directory (start a "
    "new session for another directory)",
    "agent cannot change within a session": "a session keeps its agent (start a new session "
    "for another agent)",
    "compact is not supported by this agent": "this session's agent cannot compact its context",
    "invalid workdir": "the working directory does not exist on the gateway's machine",
    "too many stream bindings": "too many clients follow sessions on this connection",
}

#: ``unknown KIND: ID`` (resource_not_found) → what to say, by KIND.
_NOT_FOUND = {
    "session": "no session {0} (neocode-gateway sessions lists them)",
    "run": "no run {0} (it may have ended; neocode-gateway cancel --session ID cancels a "
    "session's active run)",
    "permission request": "no permission request {0} (answered already, or its run ended)",
}


def humane(exc: ErrorFrameReceived) -> str:
    """The error frame as a person should read it (without the code)."""
    message = exc.message
    if message in _MESSAGES:
        return _MESSAGES[message]
    if exc.code == "resource_not_found" and message.startswith("unknown "):
        kind, _, ident = message.removeprefix("unknown ").partition(": ")
        template = _NOT_FOUND.get(kind)
        if template is not None:
            return template.format(ident)
    if message.endswith("has no active run"):
        return f"{message} (nothing to cancel)"
    if exc.code == "internal_error":
        return f"the gateway failed: {message} (its log says more: gateway.log in its data dir)"
    return f"the gateway refused the request: {message}"


def explain(exc: BaseException, *, debug: bool = False) -> tuple[str, int]:
    """The error line for ``exc`` (a client error, or Ctrl-C) and the exit code."""
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted", EXIT_INTERRUPTED
    if isinstance(exc, GatewayUnreachable):
        return str(exc), EXIT_UNREACHABLE
    if isinstance(exc, RequestTimeout):
        return str(exc), EXIT_TIMEOUT
    if isinstance(exc, ErrorFrameReceived):
        text = humane(exc)
        if debug:
            text += f" [{exc.code}: {exc.message}]"
        return text, EXIT_ERROR_FRAME
    if isinstance(exc, ClientError):
        return str(exc), EXIT_ERROR_FRAME
    raise TypeError(f"not a client error: {exc!r}")  # pragma: no cover - a bug


def error_json(exc: BaseException) -> dict[str, object]:
    """``{"ok": false, "code": ..., "message": ...}`` for ``--json`` output."""
    if isinstance(exc, ErrorFrameReceived):
        return {"ok": False, "code": exc.code, "message": exc.message, "hint": humane(exc)}
    message, _ = explain(exc)
    return {"ok": False, "code": None, "message": message}
