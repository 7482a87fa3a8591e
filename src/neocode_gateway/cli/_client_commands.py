"""Client sub-commands: ``ping``, ``call``, ``status`` and ``schema``.

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
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import stat
import sys
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any, Final

import msgspec

from neocode_gateway.cli._common import (
    EXIT_OK,
    EXIT_USAGE,
    fail,
    non_empty,
    non_negative_int,
    non_negative_seconds,
)
from neocode_gateway.cli._common import positive_seconds as _positive_seconds
from neocode_gateway.client import (
    ADDRESS_ENV,
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_REQUEST_TIMEOUT,
    AsyncGatewayClient,
    ClientError,
    ErrorFrameReceived,
    GatewayUnreachable,
    RawResponse,
    RequestTimeout,
    client_default_address,
)
from neocode_gateway.protocol import Frame, encode_frame, frame_schema
from neocode_gateway.transport import default_address, is_pipe_address, read_lock_info

CommandSpec = tuple[
    str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace, str], int]
]

EXIT_ERROR_FRAME: Final = 1
EXIT_UNREACHABLE: Final = 3
EXIT_TIMEOUT: Final = 4
EXIT_INTERRUPTED: Final = 130
EXIT_BROKEN_PIPE: Final = 141

EXIT_CODES_HELP: Final = (
    "exit codes: 0 ok, 1 an error frame came back (or the gateway broke the protocol),\n"
    "            2 usage error, 3 no gateway reachable, 4 timeout, 130 interrupted"
)

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


def _add_address_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--listen",
        metavar="ADDRESS",
        type=non_empty,
        default=None,
        help=f"socket path or pipe name of the gateway (default: ${ADDRESS_ENV}, "
        f"else {default_address()})",
    )
    parser.add_argument(
        "--trust-any-uid",
        action="store_true",
        help="talk to a gateway even if it runs as another user (it would see your requests)",
    )
    parser.add_argument(
        "--timeout",
        metavar="S",
        type=_positive_seconds,
        default=None,
        help=f"seconds to wait for the connection and for each response (default: "
        f"{DEFAULT_CONNECT_TIMEOUT:g} to connect, {DEFAULT_REQUEST_TIMEOUT:g} per request)",
    )


def _describe(parser: argparse.ArgumentParser, examples: str) -> None:
    parser.epilog = f"examples:\n{examples}\n\n{EXIT_CODES_HELP}"


def _client(options: argparse.Namespace) -> AsyncGatewayClient:
    timeout: float | None = options.timeout
    return AsyncGatewayClient(
        options.listen or None,  # None: $NEOCODE_GATEWAY_ADDRESS, else the default
        connect_timeout=timeout or DEFAULT_CONNECT_TIMEOUT,
        request_timeout=timeout or DEFAULT_REQUEST_TIMEOUT,
        trust_any_uid=getattr(options, "trust_any_uid", False),
    )


def _out(line: str) -> None:
    """One line on stdout, flushed now so that pipes see each line as it happens."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _out_json(value: dict[str, Any]) -> None:
    _out(json.dumps(value))


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush cannot fail again."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, ValueError, OSError):
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)


#: What to try next, after the contract's fixed error messages that have an obvious next step.
_HINTS: Final = {
    "unknown agent": " (neocode-gateway status lists the gateway's runtimes)",
    "unknown mode": " (neocode-gateway agents --check lists each agent's modes)",
}


def _guarded(prog: str, body: Callable[[], Awaitable[int]]) -> int:
    """Run the command's coroutine; turn every expected failure into its exit code."""
    try:
        return asyncio.run(_awaited(body))
    except GatewayUnreachable as exc:
        return fail(prog, str(exc), EXIT_UNREACHABLE)
    except RequestTimeout as exc:
        return fail(prog, str(exc), EXIT_TIMEOUT)
    except ErrorFrameReceived as exc:
        hint = _HINTS.get(exc.message, "")
        return fail(
            prog, f"the gateway answered with an error frame: {exc}{hint}", EXIT_ERROR_FRAME
        )
    except ClientError as exc:
        return fail(prog, str(exc), EXIT_ERROR_FRAME)
    except KeyboardInterrupt:
        return fail(prog, "interrupted", EXIT_INTERRUPTED)
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_BROKEN_PIPE


async def _awaited(body: Callable[[], Awaitable[int]]) -> int:
    return await body()


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


# -- ping -----------------------------------------------------------------------------------


def _ping_arguments(parser: argparse.ArgumentParser) -> None:
    _add_address_flags(parser)
    parser.add_argument(
        "--count",
        "-c",
        metavar="N",
        type=non_negative_int,
        default=1,
        help="pings to send on one connection; 0 pings until Ctrl-C (default: 1)",
    )
    parser.add_argument(
        "--interval",
        "-i",
        metavar="S",
        type=non_negative_seconds,
        default=None,
        help="seconds between pings (default: 1 with --count 0, else 0)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON lines instead of text")
    _describe(
        parser,
        "  neocode-gateway ping\n"
        "  neocode-gateway ping --count 0                 # like ping(8): until Ctrl-C\n"
        "  neocode-gateway ping --count 5 --interval 0.2 --listen /tmp/gw.sock\n"
        "  neocode-gateway ping --json --timeout 0.5",
    )


def run_ping(options: argparse.Namespace, prog: str) -> int:
    """``neocode-gateway ping``: one line per ping; a summary at the end or on Ctrl-C."""
    address = options.listen or client_default_address()
    if not options.json:
        return _guarded(prog, lambda: _ping(options, prog))

    async def with_json_failures() -> int:
        try:
            return await _ping(options, prog)
        except (GatewayUnreachable, RequestTimeout) as exc:
            reason = exc.reason if isinstance(exc, GatewayUnreachable) else str(exc)
            _out_json({"address": address, "reachable": False, "error": reason})
            raise

    return _guarded(prog, with_json_failures)


async def _ping(options: argparse.Namespace, prog: str) -> int:
    client = _client(options)
    address = client.address
    rtts: list[float] = []
    sent = 0
    interval = options.interval
    if interval is None:
        interval = 1.0 if options.count == 0 else 0.0
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    with contextlib.suppress(NotImplementedError, RuntimeError):
        loop.add_signal_handler(signal.SIGINT, stop.set)
    try:
        async with client:
            while options.count == 0 or sent < options.count:
                if stop.is_set():
                    break
                sent += 1
                ping = asyncio.ensure_future(client.ping())
                stopped = asyncio.ensure_future(stop.wait())
                await asyncio.wait({ping, stopped}, return_when=asyncio.FIRST_COMPLETED)
                stopped.cancel()
                if not ping.done():  # Ctrl-C while waiting for the answer
                    ping.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await ping
                    break
                try:
                    rtt = ping.result()
                except RequestTimeout as exc:
                    if options.json:
                        _out_json(
                            {"address": address, "seq": sent, "ok": False, "error": "timeout"}
                        )
                    fail(prog, str(exc))
                else:
                    rtts.append(rtt)
                    if options.json:
                        _out_json({"address": address, "seq": sent, "ok": True, "rtt_ms": _ms(rtt)})
                    else:
                        _out(f"pong from {address}: seq={sent} time={rtt * 1000:.2f} ms")
                if interval and (options.count == 0 or sent < options.count):
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), interval)
    finally:
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.remove_signal_handler(signal.SIGINT)
    _ping_summary(options, address, sent, rtts, interrupted=stop.is_set())
    if stop.is_set():
        return EXIT_OK if rtts else 1
    return EXIT_OK if len(rtts) == sent else EXIT_TIMEOUT


def _ping_summary(
    options: argparse.Namespace,
    address: str,
    sent: int,
    rtts: list[float],
    *,
    interrupted: bool = False,
) -> None:
    low = _ms(min(rtts)) if rtts else None
    avg = _ms(sum(rtts) / len(rtts)) if rtts else None
    high = _ms(max(rtts)) if rtts else None
    mdev = None
    if rtts:
        mean = sum(rtts) / len(rtts)
        mdev = _ms((sum((r - mean) ** 2 for r in rtts) / len(rtts)) ** 0.5)
    if options.json:
        _out_json(
            {
                "address": address,
                "sent": sent,
                "received": len(rtts),
                "min_ms": low,
                "avg_ms": avg,
                "max_ms": high,
                "mdev_ms": mdev,
            }
        )
    elif sent > 1 or options.count != 1 or interrupted:
        loss = 100.0 * (sent - len(rtts)) / sent if sent else 0.0
        _out(f"--- {address} ping statistics ---")
        _out(f"{sent} transmitted, {len(rtts)} received, {loss:.0f}% loss")
        if rtts:
            _out(f"rtt min/avg/max/mdev = {low:.3f}/{avg:.3f}/{high:.3f}/{mdev:.3f} ms")


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
    _add_address_flags(parser)
    _describe(
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
    return _guarded(prog, lambda: _call(options))


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
    async with _client(options) as client:
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
            _out(response.line.decode("utf-8", "replace"))
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


# -- status ---------------------------------------------------------------------------------


def _status_arguments(parser: argparse.ArgumentParser) -> None:
    _add_address_flags(parser)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    _describe(
        parser,
        "  neocode-gateway status\n  neocode-gateway status --json --listen /tmp/gw.sock",
    )


def run_status(options: argparse.Namespace, prog: str) -> int:
    """``neocode-gateway status``: does a gateway answer, and who runs it."""
    address = options.listen or client_default_address()
    if not is_pipe_address(address):
        address = os.path.abspath(address)
    options.listen = address
    if not options.json:
        return _guarded(prog, lambda: _status(options))

    async def with_json_failures() -> int:
        try:
            return await _status(options)
        except (GatewayUnreachable, RequestTimeout) as exc:
            reason = exc.reason if isinstance(exc, GatewayUnreachable) else str(exc)
            _out_json({"address": address, "reachable": False, "reason": reason})
            raise

    return _guarded(prog, with_json_failures)


async def _status(options: argparse.Namespace) -> int:
    client = _client(options)
    address = client.address
    gateway: dict[str, Any] = {}
    async with client:
        rtt = await client.ping()
        peer = client.peer
        try:
            gateway = await client.status()
        except ErrorFrameReceived:
            gateway = {}  # an older gateway without the status action
    info: dict[str, Any] = {"address": address, "reachable": True}
    info["transport"] = "pipe" if is_pipe_address(address) else "unix"
    lock = None if is_pipe_address(address) else read_lock_info(address)
    lock_pid = lock.get("pid") if lock else None
    same_process = peer is None or peer.pid is None or lock_pid == peer.pid
    version = lock.get("version") if lock and same_process else None
    info["version"] = version if isinstance(version, str) else None
    info["pid"] = peer.pid if peer is not None and peer.pid is not None else lock_pid
    info["uid"] = peer.uid if peer is not None else None
    info["mode"] = _socket_mode(address)
    info["rtt_ms"] = _ms(rtt)
    for key in (
        "uptime_s",
        "default_runtime",
        "runtimes",
        "data_dir",
        "sessions",
        "active_runs",
        "connections",
        "bindings",
        "pending_permissions",
        "agents",
    ):
        if key in gateway:
            info[key] = gateway[key]
    if info["version"] is None and isinstance(gateway.get("version"), str):
        info["version"] = gateway["version"]
    if options.json:
        _out_json(info)
    else:
        shown = dict(info, reachable="yes", rtt_ms=f"{rtt * 1000:.2f} ms")
        agents = shown.pop("agents", None)
        for key, value in shown.items():
            _out(f"{key.removesuffix('_ms')}: {'unknown' if value is None else value}")
        for name, agent in (agents or {}).items():
            _out(f"agent {name}: {_describe_agent(agent)}")
    return EXIT_OK


def _describe_agent(agent: Any) -> str:
    """``running (pid 4242, 2 live sessions, 412 MiB)`` or ``not running``."""
    if not isinstance(agent, dict) or not agent.get("running"):
        return "not running (starts with its first run)"
    live = agent.get("live_sessions", 0)
    details = [f"pid {agent.get('pid')}", f"{live} live session{'' if live == 1 else 's'}"]
    if isinstance(agent.get("rss_bytes"), int):
        details.append(f"{agent['rss_bytes'] / 2**20:.0f} MiB")
    return f"running ({', '.join(details)})"


def _socket_mode(address: str) -> str | None:
    if is_pipe_address(address):
        return None
    try:
        return f"{stat.S_IMODE(os.stat(address).st_mode):04o}"
    except OSError:
        return None


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
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    return EXIT_OK


def commands() -> dict[str, CommandSpec]:
    """Name → (help line, add_arguments, run)."""
    return {
        "ping": ("check that a gateway answers, and how fast", _ping_arguments, run_ping),
        "call": ("send request frames, print the responses", _call_arguments, run_call),
        "status": (
            "show whether a gateway answers, and who runs it",
            _status_arguments,
            run_status,
        ),
        "schema": ("print the JSON Schema of the frame", _schema_arguments, run_schema),
    }
