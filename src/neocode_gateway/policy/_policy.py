"""The policy: rules in order deny, then ask, then allow; a request no rule matches is asked.

This is how Claude Code orders its permission rules: a deny can never be
overridden by a broader allow, and an ask (``execute(git push *)``) still asks
where an allow (``execute(git *)``) would match. Within each verdict the rules
are tried in file order, all applicable tables together, and the first match
decides. A request has items (its locations, or the parts of its chained
command): one item matching a deny (or ask) rule is enough, while an allow
needs every item matched by some allow rule.

Everything here is pure apart from :func:`os.path.realpath` on the request's
paths and the workdir; rules are compiled once, and the rules that apply to an
(agent, workdir) pair are grouped by kind once and cached.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from neocode_gateway.policy._glob import normalise_command
from neocode_gateway.policy._load import Table, parse_tables, read_tables
from neocode_gateway.policy._paths import Location, resolve, workdir_forms
from neocode_gateway.policy._request import ToolRequest
from neocode_gateway.policy._rules import FILE_KINDS, TOOL_KINDS, VERDICTS, Rule, Verdict
from neocode_gateway.policy._shell import CommandPart, split_command

_CACHE_SIZE: Final = 256
Sourced = tuple[Rule, str]


@dataclass(frozen=True, slots=True)
class Decision:
    """What the policy says about a request.

    ``rule`` is the deciding rule as written (several, comma-separated, when
    different allow rules cover different parts), ``None`` when no rule
    matched and a person is asked by default; ``source`` is where the rule is
    (``FILE:policy[INDEX]``); ``reason`` is one line for logs and the audit.
    """

    verdict: Verdict
    rule: str | None
    reason: str
    source: str | None


@dataclass(frozen=True, slots=True)
class Items:
    """A request made matchable: its resolved locations or its command parts."""

    locations: tuple[Location, ...] = ()
    parts: tuple[CommandPart, ...] = ()
    whole: str = ""

    @property
    def labels(self) -> list[str]:
        if self.locations:
            return [loc.written for loc in self.locations]
        return [part.text for part in self.parts]


@dataclass(frozen=True, slots=True)
class Selection:
    """The rules that apply to one (agent, workdir), grouped by kind and verdict."""

    workdirs: tuple[str, ...]
    tables: tuple[Table, ...]
    by_kind: Mapping[str, Mapping[Verdict, tuple[Sourced, ...]]]


class Policy:
    """A compiled set of ``[[policy]]`` tables; :meth:`decide` is pure and fast."""

    def __init__(self, tables: Sequence[Table], source: str) -> None:
        from neocode_gateway.policy._check import find_warnings

        self.tables: tuple[Table, ...] = tuple(tables)
        self.source = source
        #: Rules that can never decide (shadowed, duplicated): for ``policy check``.
        self.warnings: list[str] = find_warnings(self.tables)
        self._cache: dict[tuple[str, str], Selection] = {}

    @classmethod
    def from_toml(cls, path: str | os.PathLike[str]) -> Policy:
        """The ``[[policy]]`` tables of a TOML file; :class:`PolicyError` names any mistake."""
        tables, where = read_tables(path)
        return cls(parse_tables(tables, where), where)

    @classmethod
    def from_tables(cls, tables: Sequence[Mapping[str, Any]], source: str = "policy") -> Policy:
        """Tables already parsed (the ``policy`` array of the gateway's configuration)."""
        return cls(parse_tables(tables, source), source)

    def select(self, agent: str, workdir: str) -> Selection:
        """The rules for this agent and workdir (cached: the workdir's real path is read once)."""
        key = (agent, workdir)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        forms = workdir_forms(workdir)
        tables = tuple(t for t in self.tables if t.applies(agent, forms))
        by_kind: dict[str, dict[Verdict, tuple[Sourced, ...]]] = {}
        for kind in TOOL_KINDS:
            by_kind[kind] = {
                verdict: tuple(
                    (rule, table.label)
                    for table in tables
                    for rule in table.rules[verdict]
                    if rule.kind in (kind, "*")
                )
                for verdict in VERDICTS
            }
        selection = Selection(forms, tables, by_kind)
        if len(self._cache) >= _CACHE_SIZE:
            self._cache.clear()
        self._cache[key] = selection
        return selection

    def items(self, request: ToolRequest, workdirs: tuple[str, ...]) -> Items:
        """Resolve the request's paths, or split its command."""
        if request.kind in FILE_KINDS:
            return Items(locations=tuple(resolve(p, workdirs) for p in request.paths))
        if request.kind == "execute" and request.command:
            return Items(
                parts=split_command(request.command), whole=normalise_command(request.command)
            )
        return Items()

    def decide(self, request: ToolRequest, *, agent: str, workdir: str) -> Decision:
        """Deny, then ask, then allow; no match: ask. ``workdir`` is the session's."""
        selection = self.select(agent, workdir)
        kind = request.kind if request.kind in TOOL_KINDS else "other"
        rules = selection.by_kind[kind]
        items = self.items(request, selection.workdirs)
        for verdict in ("deny", "ask"):
            for rule, label in rules[verdict]:
                hit = triggers(rule, items, verdict)
                if hit is not None:
                    word = "denied" if verdict == "deny" else "asked"
                    about = f" for {hit!r}" if hit else ""
                    return Decision(verdict, rule.text, f"{word} by {rule.text}{about}", label)
        covered = cover(rules["allow"], items)
        if covered is not None:
            texts = list(dict.fromkeys(rule.text for rule, _ in covered))
            labels = list(dict.fromkeys(label for _, label in covered))
            return Decision(
                "allow", ", ".join(texts), f"allowed by {', '.join(texts)}", ", ".join(labels)
            )
        return Decision("ask", None, _unmatched(request, items), None)

    def explain(self, request: ToolRequest, *, agent: str, workdir: str) -> str:
        """Several lines for a person: what the request is, which rule decides and why."""
        from neocode_gateway.policy._explain import explain

        return explain(self, request, agent=agent, workdir=workdir)


def triggers(rule: Rule, items: Items, verdict: Verdict) -> str | None:
    """For deny/ask: the item that the rule matches (``""``: the request as a whole), or None."""
    if items.locations:
        for location in items.locations:
            if rule.matches_location(location, verdict):
                return location.written
        return None
    if items.parts:
        for part in items.parts:
            if rule.matches_part(part, verdict):
                return part.text
        if len(items.parts) > 1 and rule.regex is not None and rule.regex.fullmatch(items.whole):
            return items.whole
        return None
    return "" if rule.regex is None else None


def cover(rules: Sequence[Sourced], items: Items) -> list[Sourced] | None:
    """For allow: one rule per item, every item covered; None if some item is not."""
    used: list[Sourced] = []
    if items.locations:
        for location in items.locations:
            found = next((s for s in rules if s[0].matches_location(location, "allow")), None)
            if found is None:
                return None
            used.append(found)
        return used
    if items.parts:
        for part in items.parts:
            found = next((s for s in rules if s[0].matches_part(part, "allow")), None)
            if found is None:
                return None
            used.append(found)
        return used
    found = next((s for s in rules if s[0].regex is None), None)
    return None if found is None else [found]


def _unmatched(request: ToolRequest, items: Items) -> str:
    outside = [loc.written for loc in items.locations if not loc.inside]
    if outside:
        return f"no rule allows it ({outside[0]!r} is outside the workdir): a person is asked"
    opaque = [part.text for part in items.parts if part.opaque]
    if opaque:
        return (
            f"no rule allows it ({opaque[0]!r} redirects to a file or substitutes a command, "
            "which only an exact rule allows): a person is asked"
        )
    if request.kind == "execute" and not items.parts:
        return "no rule allows it (no command to match): a person is asked"
    return "no rule matches: a person is asked"
