"""Fixtures: temporary socket directories and real gateway processes, always cleaned up."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from collections.abc import Callable, Iterator

import pytest

from tests.fakes import FakeServer, Handler
from tests.support import Gateway, remove_made_dirs, short_tmpdir


@pytest.fixture
def sock_dir() -> Iterator[str]:
    """A fresh short directory under /tmp, removed after the test."""
    path = short_tmpdir()
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def sock_path(sock_dir: str) -> str:
    """A socket path inside :func:`sock_dir`."""
    return f"{sock_dir}/gw.sock"


GatewayFactory = Callable[..., Gateway]


@pytest.fixture
def gateway_factory(sock_path: str) -> Iterator[GatewayFactory]:
    """Start gateways (``factory(*flags, path=..., wait=True)``); all are killed afterwards."""
    started: list[Gateway] = []

    def factory(
        *args: str,
        path: str | None = None,
        wait: bool = True,
        env: dict[str, str] | None = None,
        timeout: float = 10.0,
    ) -> Gateway:
        gw = Gateway(path or sock_path, *args, env=env)
        started.append(gw)
        return gw.start(wait=wait, timeout=timeout)

    yield factory
    for gw in started:
        # A graceful stop lets the daemon write its coverage data; kill is the fallback.
        with contextlib.suppress(subprocess.TimeoutExpired, AssertionError):
            gw.stop(timeout=8)
        gw.cleanup()


@pytest.fixture
def gateway(gateway_factory: GatewayFactory) -> Gateway:
    """One running gateway on :func:`sock_path` with default flags."""
    return gateway_factory()


@pytest.fixture
def fake_server() -> Iterator[Callable[[Handler], FakeServer]]:
    """Start small misbehaving servers (:mod:`tests.fakes`); all are stopped afterwards."""
    servers: list[FakeServer] = []

    def start(handler: Handler) -> FakeServer:
        server = FakeServer(handler)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Leave nothing in /tmp: the data directories (each with a SQLite log), sockets and
    logs the tests made, including those of gateways a test did not clean up."""
    remove_made_dirs()
