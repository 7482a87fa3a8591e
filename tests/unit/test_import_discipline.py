"""Client commands stay cheap to start: they never import the daemon's modules."""

from __future__ import annotations

import subprocess
import sys

# Not sqlite3: coverage, which measures these subprocesses under `make test`, imports it.
HEAVY = (
    "neocode_gateway.server",
    "neocode_gateway.sessions",
    "neocode_gateway.store",
    "uvloop",
    "rich",
)


def _loaded_after(code: str) -> set[str]:
    probe = f"import sys\n{code}\nprint('\\n'.join(sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=30
    ).stdout
    return set(out.split())


def test_ping_command_imports_no_daemon_module() -> None:
    loaded = _loaded_after("from neocode_gateway.cli import build_parser\nbuild_parser('ping')")
    assert not [m for m in HEAVY if m in loaded]


def test_front_end_commands_import_rich_only_when_rendering() -> None:
    loaded = _loaded_after("from neocode_gateway.cli import build_parser\nbuild_parser('run')")
    assert not [m for m in HEAVY if m in loaded]


def test_the_daemon_parses_its_flags_and_opens_its_socket_before_the_heavy_imports() -> None:
    """The daemon answers its first ping while asyncio, msgspec and the core load: its
    flags, its module and the transport import none of them (cli/_early.py)."""
    loaded = _loaded_after(
        "from neocode_gateway.cli import build_parser\n"
        "build_parser('serve')\n"
        "import neocode_gateway.cli._daemon, neocode_gateway.cli._early\n"
        "import neocode_gateway.transport"
    )
    heavy = ("asyncio", "msgspec", *HEAVY)  # (coverage itself imports sqlite3 and dataclasses)
    assert not [m for m in heavy if m in loaded]
    assert "importlib.metadata" not in loaded  # entry points are read only when needed


def test_the_cli_knows_the_contracts_decided_by_values() -> None:
    from neocode_gateway.cli._approvals import DECIDED_BY
    from neocode_gateway.protocol import DECIDED_BY as CONTRACT

    assert set(DECIDED_BY) == CONTRACT
