"""``neocode-gateway web``: the web page, and its devices (``pair``, ``devices``, ``revoke``).

The server and its dependencies (Starlette, uvicorn, markdown-it-py) load only
when it runs, and only from ``neocode_gateway.web``; ``pair``, ``devices`` and
``revoke`` need no gateway and no server: they edit the devices file, which a
running server re-reads.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

from neocode_gateway.cli._common import (
    EXIT_BROKEN_PIPE,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    fail,
    non_empty,
)
from neocode_gateway.limits import DEFAULT_DATA_DIR

CommandSpec = tuple[
    str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace, str], int]
]
HELP = "serve the web page (sessions, transcripts, approvals) to browsers and phones"
#: The daemon's default data directory: the devices file lives beside the event log.
_MISSING = (
    "the web page needs its extra: pip install 'neocode-gateway[web]' (starlette, uvicorn, "
    "websockets, markdown-it-py, segno)"
)


def _data_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir",
        metavar="DIR",
        default=None,
        help=f"where the devices file lives (default: the gateway's, {DEFAULT_DATA_DIR})",
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--bind",
        metavar="HOST:PORT",
        default="127.0.0.1:8780",
        help="where to serve (default: 127.0.0.1:8780; port 0 picks a free one)",
    )
    parser.add_argument("--open", action="store_true", help="open the page in a browser")
    parser.add_argument("--certfile", metavar="PATH", default=None, help="TLS certificate (PEM)")
    parser.add_argument("--keyfile", metavar="PATH", default=None, help="TLS private key (PEM)")
    parser.add_argument(
        "--insecure-lan",
        action="store_true",
        help="allow a non-loopback address without TLS (prints a warning)",
    )
    parser.add_argument(
        "--allow-host",
        metavar="NAME",
        action="append",
        default=[],
        help="a host name browsers may use for this server (e.g. a Tailscale name); "
        "repeatable. IP addresses need no listing",
    )
    parser.add_argument(
        "--listen",
        metavar="ADDRESS",
        type=non_empty,
        default=None,
        help="the gateway's socket (default: $NEOCODE_GATEWAY_ADDRESS, else the default)",
    )
    parser.add_argument(
        "--no-autostart",
        action="store_true",
        help="do not start a gateway when none answers (the page waits for one)",
    )
    _data_dir(parser)
    sub = parser.add_subparsers(dest="web_command", metavar="{pair,devices,revoke}")
    pair = sub.add_parser("pair", help="print a one-time pairing link and its QR code")
    pair.add_argument("--name", required=True, type=non_empty, help="the device's name")
    pair.add_argument(
        "--scope",
        choices=("read", "approve", "full"),
        default="approve",
        help="read: watch; approve: also answer permissions and cancel; full: also start "
        "runs (default: approve)",
    )
    pair.add_argument("--ttl", default="30d", help="how long the device stays paired (30d)")
    pair.add_argument("--url", default=None, help="the server's address (default: the running one)")
    pair.add_argument("--no-qr", action="store_true", help="print the link only")
    _data_dir(pair)
    devices = sub.add_parser("devices", help="list the paired devices")
    _data_dir(devices)
    revoke = sub.add_parser("revoke", help="end a device now (its open pages are closed)")
    revoke.add_argument("name", help="the device's name")
    _data_dir(revoke)
    parser.epilog = (
        "examples:\n"
        "  neocode-gateway web --open\n"
        "  neocode-gateway web pair --name phone --scope approve\n"
        "  neocode-gateway web devices\n"
        "  neocode-gateway web revoke phone\n"
        "See docs/web.md (TLS, LAN, SSH port-forward, Tailscale)."
    )


def _dir(options: argparse.Namespace) -> Path:
    return Path(os.path.expanduser(options.data_dir or DEFAULT_DATA_DIR))


def _ago(ts: float) -> str:
    if not ts:
        return "never"
    seconds = max(0, int(time.time() - ts))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


def _pair(options: argparse.Namespace, prog: str) -> int:
    from neocode_gateway.web._devices import DeviceStore, parse_ttl
    from neocode_gateway.web._serve import DEFAULT_PORT, read_state_url

    store = DeviceStore(_dir(options))
    ttl = parse_ttl(options.ttl)
    token = store.add_pairing(options.name, options.scope, device_ttl=ttl)
    url = options.url or read_state_url(store.dir) or f"http://127.0.0.1:{DEFAULT_PORT}"
    link = f"{url.rstrip('/')}/?token={token}"
    print(
        f"pairing link for device {options.name} (scope {options.scope}; works once, "
        "for 15 minutes):"
    )
    print(f"    {link}")
    if not options.no_qr:
        import segno

        segno.make(link, error="l").terminal(out=sys.stdout, compact=True)
    if url.startswith(("http://127.", "http://[::1]")):
        print(
            "note: the server listens on loopback only; a phone reaches it through an SSH "
            "tunnel, Tailscale, or --bind with TLS (docs/web.md)"
        )
    return 0


def _devices(options: argparse.Namespace, prog: str) -> int:
    from neocode_gateway.web._devices import DeviceStore

    devices = DeviceStore(_dir(options)).devices()
    if not devices:
        print("no paired devices (pair one with: neocode-gateway web pair --name NAME)")
        return 0
    now = time.time()
    print(f"{'NAME':<24} {'SCOPE':<8} {'LAST USED':<12} EXPIRES")
    for d in devices:
        left = d.expires_at - now
        expires = (
            "expired" if left <= 0 else f"in {int(left // 86400)}d {int(left % 86400 // 3600)}h"
        )
        print(f"{d.name:<24} {d.scope:<8} {_ago(d.last_used):<12} {expires}")
    return 0


def _revoke(options: argparse.Namespace, prog: str) -> int:
    from neocode_gateway.web._devices import DeviceStore

    device = DeviceStore(_dir(options)).revoke(options.name)
    print(f"revoked device {device.name}: its cookie no longer works and its open pages close")
    return 0


def _serve(options: argparse.Namespace, prog: str) -> int:
    import asyncio

    from neocode_gateway.client import client_default_address
    from neocode_gateway.client._autostart import GatewayDown, ensure_gateway
    from neocode_gateway.web._serve import ServeOptions, serve, stderr

    address = options.listen or client_default_address()
    if not options.no_autostart:
        args = ["--data-dir", options.data_dir] if options.data_dir else []
        try:
            asyncio.run(
                ensure_gateway(address, daemon_args=args, note=lambda t: stderr(f"{prog}: {t}"))
            )
        except GatewayDown as exc:
            return fail(prog, str(exc))
    opts = ServeOptions(
        bind=options.bind,
        address=address,
        data_dir=_dir(options),
        certfile=options.certfile,
        keyfile=options.keyfile,
        insecure_lan=options.insecure_lan,
        allow_hosts=tuple(options.allow_host),
        open_browser=options.open,
    )

    def out(text: str) -> None:
        print(text, flush=True)

    return serve(opts, out, stderr)


def run(options: argparse.Namespace, prog: str) -> int:
    try:
        import markdown_it  # noqa: F401
        import starlette  # noqa: F401
    except ImportError:
        return fail(prog, _MISSING)
    from neocode_gateway.web._devices import DeviceError
    from neocode_gateway.web._serve import BindError

    action = {"pair": _pair, "devices": _devices, "revoke": _revoke}.get(
        options.web_command or "", _serve
    )
    try:
        return action(options, prog)
    except (DeviceError, BindError) as exc:
        return fail(prog, str(exc), EXIT_USAGE)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return EXIT_BROKEN_PIPE


def commands() -> dict[str, CommandSpec]:
    return {"web": (HELP, add_arguments, run)}
