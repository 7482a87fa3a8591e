"""Client sub-commands (ping, call, status, schema): filled in by the client layer."""

from __future__ import annotations

import argparse
from collections.abc import Callable

CommandSpec = tuple[
    str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace, str], int]
]


def commands() -> dict[str, CommandSpec]:
    """Name → (help line, add_arguments, run)."""
    return {}
