"""Readers of the configuration file's values: each checks one key, or says what is wrong
in one line naming the file and the key (:class:`~neocode_gateway.errors.ConfigError`)."""

from __future__ import annotations

import math
import os
import shlex
from collections.abc import Mapping, Sequence
from typing import Any

from neocode_gateway.errors import ConfigError


def idle(table: Mapping[str, Any], name: str, where: str, key: str) -> float | None:
    """An idle timeout in seconds: 0 (never) or more."""
    value = table.get(name)
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not (value >= 0 and math.isfinite(value))
    ):
        raise ConfigError(
            f"{where}: {key}.{name}: expected seconds (0 for never), got {show(value)}"
        )
    return float(value)


def command(value: Any, where: str, key: str) -> tuple[str, ...]:
    if isinstance(value, str):
        try:
            argv = shlex.split(value)
        except ValueError as exc:
            raise ConfigError(f"{where}: {key}: cannot be split ({exc})") from None
    elif isinstance(value, list) and all(isinstance(item, str) for item in value):
        argv = list(value)
    else:
        raise ConfigError(f"{where}: {key}: expected a list of strings, got {show(value)}")
    if not argv or not argv[0].strip():
        raise ConfigError(f"{where}: {key}: is empty")
    if any("\0" in item for item in argv):
        raise ConfigError(f"{where}: {key}: contains a NUL character")
    return tuple(argv)


def no_unknown(table: Mapping[str, Any], known: Sequence[str], where: str, prefix: str) -> None:
    for key in table:
        if key not in known:
            raise ConfigError(f"{where}: {prefix}{key}: unknown key (known: {', '.join(known)})")


def directory(data: Mapping[str, Any], key: str, where: str) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}: {key}: expected a non-empty path string, got {show(value)}")
    return os.path.expanduser(value)


def seconds(data: Mapping[str, Any], key: str, where: str) -> float | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{where}: {key}: expected a number of seconds, got {show(value)}")
    if not (value > 0 and math.isfinite(value)):
        raise ConfigError(f"{where}: {key}: expected a positive number of seconds, got {value!r}")
    return float(value)


def count(
    data: Mapping[str, Any], key: str, where: str, *, minimum: int, prefix: str = ""
) -> int | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(
            f"{where}: {prefix}{key}: expected an integer >= {minimum}, got {show(value)}"
        )
    return value


def show(value: Any) -> str:
    kind = {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "an array",
        dict: "a table",
    }.get(type(value), type(value).__name__)
    text = repr(value)
    return f"{kind} ({text[:40]}{'...' if len(text) > 40 else ''})"
