"""Run the web server: where it may listen, the start-up link, and uvicorn.

Secure by default: loopback only. A non-loopback address (a phone on the LAN)
is refused unless TLS files are given, or ``--insecure-lan`` says the user
accepts cookies and tokens in clear on the network (a warning is printed). The
socket is bound here before anything else, so ``--bind 127.0.0.1:0`` works and
the printed link names the real port.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import os
import socket
import ssl
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from neocode_gateway.web._devices import LOGIN_TTL, DeviceStore
from neocode_gateway.web._guard import split_host

DEFAULT_PORT: Final = 8780
STATE_FILE: Final = "web-server.json"


class BindError(ValueError):
    """An address the server must not or cannot listen on (a clear sentence)."""


@dataclass
class ServeOptions:
    bind: str
    address: str
    data_dir: Path
    certfile: str | None = None
    keyfile: str | None = None
    insecure_lan: bool = False
    allow_hosts: tuple[str, ...] = ()
    open_browser: bool = False


def parse_bind(text: str) -> tuple[str, int]:
    host, port = split_host(text)
    if text.strip().isdigit():
        host, port = "127.0.0.1", int(text)
    host = host or "127.0.0.1"
    if port is None:
        if ":" in text.strip("[]") and not text.startswith("["):
            raise BindError(f"invalid --bind {text!r}: write an IPv6 address as [ADDR]:PORT")
        port = DEFAULT_PORT
    if not 0 <= port <= 65535:
        raise BindError(f"invalid port in --bind {text!r}")
    if host == "localhost":
        host = "127.0.0.1"
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise BindError(
            f"invalid --bind {text!r}: give an IP address (127.0.0.1, [::1], 0.0.0.0 or a "
            "LAN address), not a host name"
        ) from None
    return host, port


def is_loopback(host: str) -> bool:
    return ipaddress.ip_address(host).is_loopback


def check_exposure(host: str, opts: ServeOptions, warn: Callable[[str], None]) -> None:
    """Refuse a LAN address without TLS, unless the user insisted (then warn)."""
    if (opts.certfile is None) != (opts.keyfile is None):
        raise BindError("--certfile and --keyfile go together")
    if is_loopback(host) or opts.certfile:
        return
    if not opts.insecure_lan:
        raise BindError(
            f"refusing to serve on {host}, which is not a loopback address, without TLS: "
            "give --certfile and --keyfile, or use an SSH tunnel or Tailscale (docs/web.md), "
            "or pass --insecure-lan to accept that anyone on the network can read the traffic"
        )
    warn(
        f"WARNING: serving on {host} without TLS (--insecure-lan): anyone on this network "
        "can read the pages, the pairing links and the cookies"
    )


def open_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise BindError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def base_url(host: str, port: int, tls: bool) -> str:
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    shown = f"[{shown}]" if ":" in shown else shown
    return f"{'https' if tls else 'http'}://{shown}:{port}"


def write_state(data_dir: Path, url: str) -> Path:
    """Where ``web pair`` finds the server's address (0600, removed at exit)."""
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = data_dir / STATE_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump({"url": url, "pid": os.getpid()}, handle)
    return path


def read_state_url(data_dir: Path) -> str | None:
    try:
        state = json.loads((data_dir / STATE_FILE).read_text())
    except (OSError, ValueError):
        return None
    url = state.get("url") if isinstance(state, dict) else None
    return url if isinstance(url, str) else None


def serve(opts: ServeOptions, out: Callable[[str], None], warn: Callable[[str], None]) -> int:
    """Bind, print the one-time link, serve until interrupted; the exit code."""
    import secrets

    import uvicorn

    from neocode_gateway.web._app import build_app
    from neocode_gateway.web._hub import Hub

    host, port = parse_bind(opts.bind)
    check_exposure(host, opts, warn)
    if opts.certfile:
        for path in (opts.certfile, opts.keyfile):
            if not path or not os.path.isfile(path):
                raise BindError(f"TLS file not found: {path}")
        try:
            ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(
                opts.certfile, opts.keyfile
            )
        except (ssl.SSLError, OSError) as exc:
            raise BindError(f"cannot use the TLS files: {exc}") from None
    sock = open_socket(host, port)
    port = sock.getsockname()[1]
    tls = opts.certfile is not None
    store = DeviceStore(opts.data_dir)
    hub = Hub(opts.address, store)
    app = build_app(store, hub, bind_host=host, port=port, tls=tls, allow_hosts=opts.allow_hosts)
    url = base_url(host, port, tls)
    name = f"browser-{secrets.token_hex(2)}"
    token = store.add_pairing(name, "full", link_ttl=LOGIN_TTL)
    state = write_state(opts.data_dir, url)
    login = f"{url}/?token={token}"
    out(f"neocode-gateway web: serving {url} (gateway: {opts.address})")
    out(f"open this link to use the page (one use, pairs device {name}, scope full):")
    out(f"    {login}")
    out("more devices: neocode-gateway web pair --name NAME [--scope read|approve|full]")
    if opts.open_browser:
        import webbrowser

        webbrowser.open(login)
    config = uvicorn.Config(
        app,
        log_level="warning",
        ws="websockets-sansio",
        lifespan="on",
        ssl_certfile=opts.certfile,
        ssl_keyfile=opts.keyfile,
        timeout_graceful_shutdown=2,
        ws_max_size=1 << 20,
    )
    server = uvicorn.Server(config)
    try:
        asyncio.run(server.serve(sockets=[sock]))
    except KeyboardInterrupt:
        pass
    finally:
        sock.close()
        with contextlib.suppress(OSError):
            state.unlink()
    return 0


def stderr(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()
