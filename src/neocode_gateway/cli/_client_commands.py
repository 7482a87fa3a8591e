"""Client sub-commands on the asyncio client: ``call`` and ``schema``, and the plumbing that
the terminal front-end (``run``, ``attach``, ``show``, ``compact``) shares with them.

Each command is a thin shell over :class:`~neocode_gateway.client.AsyncGatewayClient`,
so what a script sees through the CLI is exactly what the library does. The
exit code tells what happened, never a traceback:

====  ==========================================================================
0     ok
1     an error frame came back (or the gateway broke the protocol / hung up)
2     usage error
3     no gateway is reachable at the address
4     timeout (connecting, or waiting for a response)
130   interrupted (Ctrl-C)
141   standard output was closed by the reader (``| head``)
====  ==========================================================================

The commands typed most often (``ping``, ``status``, ``approve``...) are in
:mod:`neocode_gateway.cli._quick`, on a blocking stdlib-only client.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any, Final

import msgspec

from neocode_gateway.cli._common import (
    EXIT_BROKEN_PIPE,
    EXIT_ERROR_FRAME,
    EXIT_OK,
    EXIT_USAGE,
    LOG_LEVELS,
    add_address_flags,
    describe,
    fail,
    out,
    silence_stdout,
)
from neocode_gateway.cli._wording import explain
from neocode_gateway.client import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_REQUEST_TIMEOUT,
    AsyncGatewayClient,
    ClientError,
    RawResponse,
)
from neocode_gateway.protocol import Frame, encode_frame, frame_schema

CommandSpec = tuple[
    str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace, str], int]
]

#: The request fields ``call`` builds from flags (``dest`` names).
_FRAME_FLAGS: Final = ("request_id", "session_id", "run_id", "input_text", "workdir", "payload")
_UNSET: Final = object()


# -- shared plumbing ------------------------------------------------------------------------


def json_value(text: str) -> Any:
    """A flag value that must be one JSON value (strict: no NaN, no trailing data)."""
    try:
        return msgspec.json.decode(text.encode())
    except msgspec.DecodeError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON ({exc}): {text!r}") from None


def async_client(options: argparse.Namespace, *, hello: bool = True) -> AsyncGatewayClient:
    """The asyncio client the flags name (not yet connected); it names itself ``cli`` to
    the gateway unless ``hello`` is off (``call`` sends exactly the frames asked for)."""
    timeout: float | None = options.timeout
    return AsyncGatewayClient(
        options.listen or None,  # None: $NEOCODE_GATEWAY_ADDRESS, else the default
        connect_timeout=timeout or DEFAULT_CONNECT_TIMEOUT,
        request_timeout=timeout or DEFAULT_REQUEST_TIMEOUT,
        trust_any_uid=getattr(options, "trust_any_uid", False),
        client_name="cli" if hello else None,
    )


def guarded(prog: str, body: Callable[[], Awaitable[int]], options: Any = None) -> int:
    """Run the command's coroutine; turn every expected failure into one line and its code."""
    try:
        return asyncio.run(_awaited(body))
    except (ClientError, KeyboardInterrupt) as exc:
        debug = getattr(options, "log_level", LOG_LEVELS["warn"]) <= LOG_LEVELS["debug"]
        message, code = explain(exc, debug=debug)
        return fail(prog, message, code)
    except BrokenPipeError:
        silence_stdout()
        return EXIT_BROKEN_PIPE


async def _awaited(body: Callable[[], Awaitable[int]]) -> int:
    return await body()


# -- call -----------------------------------------------------------------------------------


def _call_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "action",
        metavar="ACTION",
        nargs="?",
        default=None,
        help="the request's action: ping, run, compact, cancel, list_sessions, "
        "load_session, resolve_permission",
    )
    parser.add_argument("--request-id", metavar="ID", help="request id (default: generated)")
    parser.add_argument("--session-id", metavar="ID", help="session id")
    parser.add_argument("--run-id", metavar="ID", help="run id")
    parser.add_argument("--input-text", metavar="TEXT", help="text input (for run)")
    parser.add_argument("--workdir", metavar="DIR", help="working directory override")
    parser.add_argument(
        "--payload", metavar="JSON", type=json_value, default=_UNSET, help="payload, as JSON"
    )
    parser.add_argument(
        "--frame",
        metavar="JSON|-",
        default=None,
        help="send this raw frame instead (one per line); '-' reads frames from stdin, "
        "sends them all at once and prints the responses in order",
    )
    add_address_flags(parser)
    describe(
        parser,
        "  neocode-gateway call ping\n"
        "  neocode-gateway call run --input-text 'hello' --session-id s1\n"
        "  neocode-gateway call resolve_permission "
        '--payload \'{"request_id":"p1","decision":"reject"}\'\n'
        '  neocode-gateway call --frame \'{"type":"request","action":"ping"}\'\n'
        "  cat frames.ndjson | neocode-gateway call --frame -",
    )


def run_call(options: argparse.Namespace, prog: str) -> int:
    """``neocode-gateway call``: send frames, print each response as one JSON line."""
    given = [name for name in _FRAME_FLAGS if _is_set(options, name)]
    if options.frame is not None:
        if options.action is not None or given:
            flags = ", ".join(
                (["ACTION"] if options.action is not None else [])
                + [f"--{name.replace('_', '-')}" for name in given]
            )
            return fail(prog, f"--frame cannot be combined with {flags} (see --help)", EXIT_USAGE)
        if options.frame != "-" and not _frame_lines(options.frame):
            return fail(prog, "--frame is blank (see --help)", EXIT_USAGE)
    elif options.action is None:
        return fail(prog, "an ACTION or --frame is required (see --help)", EXIT_USAGE)
    return guarded(prog, lambda: _call(options), options)


def _is_set(options: argparse.Namespace, name: str) -> bool:
    value = getattr(options, name)
    return value is not _UNSET and value is not None


def _frame_lines(text: str) -> list[bytes]:
    return [line.encode() for line in text.splitlines() if line.strip()]


def _build_frame(options: argparse.Namespace) -> Frame:
    payload = options.payload if options.payload is not _UNSET else None
    return Frame(
        type="request",
        action=options.action,
        request_id=options.request_id or None,
        run_id=options.run_id,
        session_id=options.session_id,
        input_text=options.input_text,
        workdir=options.workdir,
        payload=payload,
    )


async def _call(options: argparse.Namespace) -> int:
    async with async_client(options, hello=False) as client:
        lines: AsyncIterator[bytes]
        if options.frame is None:
            frame = client.prepare(_build_frame(options))
            lines = _iterate([encode_frame(frame)])
        elif options.frame == "-":
            lines = _stdin_lines()
        else:
            lines = _iterate(_frame_lines(options.frame))
        return await _relay(client, lines)


async def _iterate(items: Iterable[bytes]) -> AsyncIterator[bytes]:
    for item in items:
        yield item


async def _stdin_lines() -> AsyncIterator[bytes]:
    """Non-blank lines of stdin as they arrive, exactly as given.

    A daemon thread reads, so a terminal or a slow pipe never blocks the
    event loop, and a pending read never keeps the process alive at exit.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[bytes | None] = asyncio.Queue()
    stream = getattr(sys.stdin, "buffer", None)

    def post(item: bytes | None) -> None:
        # RuntimeError: the loop already ended (Ctrl-C); nobody waits for the line.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(queue.put_nowait, item)

    def pump() -> None:
        try:
            if stream is not None:
                for raw in stream:
                    post(raw)
            else:
                for text in sys.stdin:
                    post(text.encode())
        except (OSError, ValueError):  # pragma: no cover - stdin closed under us
            pass
        finally:
            post(None)

    threading.Thread(target=pump, name="neocode-gateway-stdin", daemon=True).start()
    while (line := await queue.get()) is not None:
        if line.strip():
            yield line


async def _relay(client: AsyncGatewayClient, lines: AsyncIterator[bytes]) -> int:
    """Send every line as soon as it is read; print the responses in request order."""
    inflight: asyncio.Queue[asyncio.Future[RawResponse] | None] = asyncio.Queue()

    async def produce() -> None:
        try:
            async for line in lines:
                inflight.put_nowait(asyncio.ensure_future(client.request_line(line)))
        finally:
            inflight.put_nowait(None)

    producer = asyncio.ensure_future(produce())
    errors = 0
    try:
        while (pending := await inflight.get()) is not None:
            response = await pending
            out(response.line.decode("utf-8", "replace"))
            errors += response.is_error
        await producer
    finally:
        producer.cancel()
        while not inflight.empty():
            left = inflight.get_nowait()
            if left is None:
                continue
            if not left.done():
                left.cancel()
            elif not left.cancelled():
                left.exception()  # retrieved: it failed after the first failure we report
    return EXIT_ERROR_FRAME if errors else EXIT_OK


# -- schema ---------------------------------------------------------------------------------


def schema_text() -> str:
    """The JSON Schema of the frame, exactly as ``docs/frame.schema.json`` holds it."""
    return json.dumps(frame_schema(), indent=2, sort_keys=True) + "\n"


def _schema_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = "the committed copy is docs/frame.schema.json (regenerate: make schema)"


def run_schema(options: argparse.Namespace, prog: str) -> int:
    """``neocode-gateway schema``: print the JSON Schema generated from the frame types."""
    try:
        sys.stdout.write(schema_text())
        sys.stdout.flush()
    except BrokenPipeError:
        silence_stdout()
        return EXIT_BROKEN_PIPE
    return EXIT_OK


def commands() -> dict[str, CommandSpec]:
    """Name → (help line, add_arguments, run)."""
    return {
        "call": ("send request frames, print the responses", _call_arguments, run_call),
        "schema": ("print the JSON Schema of the frame", _schema_arguments, run_schema),
    }
