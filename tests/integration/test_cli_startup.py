"""The commands a person types often start in the interpreter's time: what they import.

``ping``, ``status``, ``sessions``, ``approve``, ``reject``, ``cancel`` and
``stop`` run on the blocking standard-library client; this test runs each one
for real (against a gateway, or failing against none) and lists the modules
the process loaded, so that an import of asyncio, msgspec, rich or a daemon
module cannot creep back in unnoticed. ``benchmarks/bench_startup.py``
measures the time itself.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import GatewayFactory
from tests.support import Gateway

#: What a quick command must not load (each costs milliseconds, asyncio alone ~15).
FORBIDDEN = (
    "asyncio",
    "msgspec",
    "rich",
    "uvloop",
    "dataclasses",
    "logging",
    "neocode_gateway.protocol",
    "neocode_gateway.transport",
    "neocode_gateway.server",
    "neocode_gateway.sessions",
    "neocode_gateway.store",
    "neocode_gateway.runtime",
    "neocode_gateway.client._link",
)

_PROBE = """
import json, sys
from neocode_gateway.cli import main
code = main(json.loads(sys.argv[1]))
sys.stdout.flush()
sys.stderr.write("\\nMODULES " + json.dumps(sorted(sys.modules)) + " CODE " + str(code) + "\\n")
"""


def loaded_by(*argv: str) -> tuple[set[str], int]:
    """The modules a real run of ``neocode-gateway ARGV`` had loaded at its end, and its code."""
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, json.dumps(list(argv))],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    marker = done.stderr.rpartition("\nMODULES ")[2]
    modules, _, code = marker.partition(" CODE ")
    return set(json.loads(modules)), int(code)


def baseline() -> set[str]:
    """What the interpreter itself loads here (under ``make test``, coverage's modules too)."""
    done = subprocess.run(
        [sys.executable, "-c", "import json, sys; print(json.dumps(sorted(sys.modules)))"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return set(json.loads(done.stdout))


def heavy(modules: set[str], base: set[str]) -> list[str]:
    """The forbidden modules among ``modules`` that the bare interpreter does not load."""
    return sorted(
        m for m in modules - base if any(m == f or m.startswith(f + ".") for f in FORBIDDEN)
    )


@pytest.mark.timeout(120)
def test_quick_commands_import_neither_asyncio_nor_rich_nor_the_daemon(
    gateway_factory: GatewayFactory, sock_dir: str
) -> None:
    gateway: Gateway = gateway_factory()
    at = ("--listen", gateway.path)
    runs = [
        (("ping", *at), 0),
        (("ping", "--json", *at), 0),
        (("status", *at), 0),
        (("status", "--json", *at), 0),
        (("sessions", *at), 0),
        (("approve", "p_none", *at), 1),
        (("reject", "p_none", "--json", *at), 1),
        (("cancel", "r_none", *at), 1),
        (("ping", "--listen", f"{sock_dir}/nobody.sock"), 3),
        (("stop", *at), 0),
    ]
    base = baseline()
    for argv, expected in runs:
        modules, code = loaded_by(*argv)
        assert code == expected, argv
        assert heavy(modules, base) == [], argv
    assert gateway.wait(10) == 0  # stop waited until the gateway was gone
