"""Chaos-suite fixtures: daemons with any flags and spawn options, figures, leak checks.

Every scenario runs a real daemon on a socket in its own temporary directory
(``sock_dir`` from tests/conftest.py, removed afterwards); every process it
starts is killed by pid and reaped, which :func:`no_leftover_children` checks.
The figures each scenario measures are printed, appended to a JSON-lines file
(``$NEOCODE_CHAOS_FIGURES`` or ``chaos-figures.jsonl`` in pytest's temporary
base directory) and summed up at the end of the run.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import pytest

from tests.chaos._support import Figures, child_pids
from tests.support import Gateway

#: Event loop the daemons run on (``--loop``); ``make chaos`` can set it to compare.
DAEMON_LOOP = os.environ.get("NEOCODE_CHAOS_LOOP", "auto")
_RECORDS: list[dict[str, Any]] = []


class DaemonFactory(Protocol):
    def __call__(
        self,
        *args: str,
        path: str | None = None,
        wait: bool = True,
        timeout: float = 10.0,
        loop: str | None = None,
        gateway_class: type[Gateway] = Gateway,
        **popen: Any,
    ) -> Gateway: ...


@pytest.fixture(scope="session")
def figures(tmp_path_factory: pytest.TempPathFactory) -> Figures:
    """Where scenarios record their figures for docs/reliability.md."""
    target = os.environ.get("NEOCODE_CHAOS_FIGURES")
    path = Path(target) if target else tmp_path_factory.getbasetemp() / "chaos-figures.jsonl"
    return Figures(path, _RECORDS)


@pytest.fixture
def daemons(sock_path: str) -> Iterator[DaemonFactory]:
    """Start daemons (flags, ``loop=``, Popen options such as ``preexec_fn``); all killed after."""
    started: list[Gateway] = []

    def start(
        *args: str,
        path: str | None = None,
        wait: bool = True,
        timeout: float = 10.0,
        loop: str | None = None,
        gateway_class: type[Gateway] = Gateway,
        **popen: Any,
    ) -> Gateway:
        gw = gateway_class(path or sock_path, "--loop", loop or DAEMON_LOOP, *args)
        started.append(gw)
        return gw.start(wait=wait, timeout=timeout, **popen)

    yield start
    for gw in started:
        gw.kill()
        gw.log_path.unlink(missing_ok=True)


@pytest.fixture(autouse=True)
def no_leftover_children() -> Iterator[None]:
    """Every process a scenario started is gone (killed and reaped) when it ends."""
    before = set(child_pids())
    yield
    left = set(child_pids()) - before
    assert not left, f"the scenario left child processes behind: {sorted(left)}"


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _RECORDS:
        return
    terminalreporter.section("chaos figures")
    for entry in _RECORDS:
        terminalreporter.write_line(json.dumps(entry))
