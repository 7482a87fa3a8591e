"""Reading ``[[policy]]`` tables: every mistake is one :class:`PolicyError` line naming where.

The tables usually live in the gateway's configuration file::

    [[policy]]
    agents   = ["claude", "codex"]         # optional: which agents (default all)
    workdirs = ["~/code/**"]               # optional: which workdirs (default all)
    allow = ["read", "search", "execute(git status)", "edit(src/**)"]
    ask   = ["execute(git push *)"]
    deny  = ["edit(.env*)", "execute(rm -rf *)"]

Only the ``policy`` key of the file is read here; the rest belongs to
:mod:`neocode_gateway.config`. A message looks like
``gateway.toml: policy[0].deny[1] "edit(.env*": unbalanced parentheses``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from neocode_gateway.errors import ConfigError
from neocode_gateway.policy._glob import glob_regex, is_absolute_glob, normalise_glob
from neocode_gateway.policy._rules import VERDICTS, Rule, RuleSyntaxError, Verdict, parse_rule

_KEYS: Final = ("agents", "workdirs", "allow", "ask", "deny")


class PolicyError(ConfigError):
    """A policy table or rule is malformed; the message is one line naming file, rule and fault."""


@dataclass(frozen=True, slots=True)
class Table:
    """One ``[[policy]]`` table, compiled.

    ``agents``/``workdirs`` are ``None`` when the table applies to all;
    ``label`` is ``SOURCE:policy[INDEX]``, what decisions cite.
    """

    index: int
    label: str
    agents: frozenset[str] | None
    workdirs: tuple[str, ...] | None
    workdir_regexes: tuple[re.Pattern[str], ...]
    rules: Mapping[Verdict, tuple[Rule, ...]]

    def applies(self, agent: str, workdirs: Sequence[str]) -> bool:
        """Whether the table's scope covers this agent and this workdir (in any of its forms)."""
        if self.agents is not None and agent not in self.agents:
            return False
        if not self.workdir_regexes:
            return True
        return any(rx.fullmatch(form) for rx in self.workdir_regexes for form in workdirs)


def read_tables(path: str | os.PathLike[str]) -> tuple[list[Any], str]:
    """The ``policy`` array of a TOML file (empty if absent) and the file's name for messages."""
    import tomllib

    where = os.fspath(path)
    try:
        with open(os.path.expanduser(where), "rb") as file:
            raw = file.read()
    except FileNotFoundError:
        raise PolicyError(f"{where}: no such file") from None
    except OSError as exc:
        raise PolicyError(f"{where}: cannot be read ({exc.strerror or exc})") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise PolicyError(f"{where}: not UTF-8 text ({exc.reason})") from None
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(f"{where}: not valid TOML ({exc})") from None
    tables = data.get("policy", [])
    if not isinstance(tables, list):
        raise PolicyError(f"{where}: policy: expected an array of tables ([[policy]])")
    return tables, where


def parse_tables(tables: Sequence[Any], source: str) -> list[Table]:
    """Compile every table; :class:`PolicyError` on the first mistake."""
    return [_table(index, table, source) for index, table in enumerate(tables)]


def _table(index: int, table: Any, source: str) -> Table:
    where = f"{source}: policy[{index}]"
    if not isinstance(table, Mapping):
        raise PolicyError(f"{where}: expected a table ([[policy]]), got {type(table).__name__}")
    for key in table:
        if key not in _KEYS:
            raise PolicyError(f"{where}.{key}: unknown key (known: {', '.join(_KEYS)})")
    agents = _strings(table, "agents", where)
    workdirs = _strings(table, "workdirs", where)
    regexes: list[re.Pattern[str]] = []
    for position, glob in enumerate(workdirs or ()):
        if not is_absolute_glob(glob):
            raise PolicyError(
                f"{where}.workdirs[{position}] {glob!r}: must be absolute (start with / or ~)"
            )
        regexes.append(glob_regex(normalise_glob(glob)))
    rules: dict[Verdict, tuple[Rule, ...]] = {}
    for verdict in VERDICTS:
        texts = _strings(table, verdict, where) or []
        compiled: list[Rule] = []
        for position, text in enumerate(texts):
            try:
                compiled.append(parse_rule(text))
            except RuleSyntaxError as exc:
                raise PolicyError(f"{where}.{verdict}[{position}] {text!r}: {exc}") from None
        rules[verdict] = tuple(compiled)
    return Table(
        index=index,
        label=f"{source}:policy[{index}]",
        agents=None if agents is None else frozenset(agents),
        workdirs=None if workdirs is None else tuple(workdirs),
        workdir_regexes=tuple(regexes),
        rules=rules,
    )


def _strings(table: Mapping[str, Any], key: str, where: str) -> list[str] | None:
    value = table.get(key)
    if value is None:
        return None
    if not isinstance(value, list):
        raise PolicyError(f"{where}.{key}: expected an array of strings, got {_kind(value)}")
    for position, item in enumerate(value):
        if not isinstance(item, str):
            raise PolicyError(
                f"{where}.{key}[{position}]: expected a string, got {_kind(item)} ({item!r})"
            )
        if not item.strip():
            raise PolicyError(f"{where}.{key}[{position}]: is empty")
    return list(value)


def _kind(value: Any) -> str:
    return {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "an array",
        dict: "a table",
    }.get(type(value), type(value).__name__)
