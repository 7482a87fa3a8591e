"""Test support for the web page: a real ``neocode-gateway web`` process, devices, a browser.

How a browser is found (``make test`` documents the same order): ``$NEOCODE_CHROMIUM``,
then ``/usr/bin/chromium`` (Debian's), then ``chromium`` or ``chromium-browser`` on PATH.
Playwright's own browser download is never used. Without any, the browser tests are
skipped with one reason.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import MADE_DIRS, short_tmpdir, wait_for

WEB_CMD = [sys.executable, "-m", "neocode_gateway", "web"]
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str | None:
    """The browser the tests drive, or ``None``."""
    env = os.environ.get("NEOCODE_CHROMIUM")
    if env:
        return env if os.access(env, os.X_OK) else None
    if os.access("/usr/bin/chromium", os.X_OK):
        return "/usr/bin/chromium"
    return shutil.which("chromium") or shutil.which("chromium-browser")


NO_BROWSER = (
    "no Chromium for the web page's browser tests: set NEOCODE_CHROMIUM, or install Debian's "
    "chromium (make dev does it when run as root with apt-get)"
)


class WebServer:
    """A ``neocode-gateway web`` process on a free loopback port; stopped by its pid."""

    def __init__(self, gateway_path: str, data_dir: str | None = None, *args: str) -> None:
        self.gateway_path = gateway_path
        self.data_dir = data_dir or short_tmpdir("ngw-web-")
        self.args = list(args)
        self.proc: subprocess.Popen[str] | None = None
        self.lines: list[str] = []
        self.url = ""
        self.login = ""
        self._reader: threading.Thread | None = None

    def start(self, timeout: float = 20.0) -> WebServer:
        argv = [*WEB_CMD, "--bind", "127.0.0.1:0", "--listen", self.gateway_path]
        argv += ["--data-dir", self.data_dir, *self.args]
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

        def ready() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None and not self.login:
                raise AssertionError(f"web exited {self.proc.returncode}: {self.output()}")
            return bool(self.login)

        wait_for(ready, timeout, what="the web server's link")
        self.url = self.login.split("/?token=")[0]
        return self

    def _read(self) -> None:
        assert self.proc is not None
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            if "?token=" in line and not self.login:
                self.login = line.strip()

    def output(self) -> str:
        return "".join(self.lines)

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def stop(self) -> None:
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=8)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)

    def pair(self, name: str, scope: str = "full") -> str:
        """A one-time link for a new device, made with the CLI as a user would."""
        out = subprocess.run(
            [
                *WEB_CMD,
                "pair",
                "--name",
                name,
                "--scope",
                scope,
                "--no-qr",
                "--data-dir",
                self.data_dir,
            ],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        ).stdout
        return next(w for w in out.split() if "?token=" in w)

    def cookie_for(self, link: str) -> dict[str, str]:
        """Redeem a link over HTTP; the device cookie (for the JSON API tests)."""
        import httpx

        response = httpx.get(link, timeout=10)
        assert response.status_code == 200, response.text
        name = f"ngw_{self.port}"
        return {name: response.cookies[name]}

    def headers(self, **extra: str) -> dict[str, str]:
        return {"Origin": self.url, **extra}


@contextlib.contextmanager
def web_server(gateway_path: str, *args: str) -> Iterator[WebServer]:
    server = WebServer(gateway_path, None, *args)
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture
def browser() -> Iterator[Any]:
    """A headless Debian Chromium driven by Playwright (sync API); closed afterwards."""
    path = chromium_path()
    if path is None:
        pytest.skip(NO_BROWSER)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def register(path: str | Path) -> None:
    MADE_DIRS.append(str(path))
