"""Warnings for ``policy check``: rules that are valid but can never decide anything.

A rule never decides when a rule tried before it matches every request that
it matches: ``ask = ["execute"]`` makes every ``execute(...)`` allow dead, a
``deny`` of ``edit(**)`` every edit allow, and a rule written twice is dead the
second time. The check is conservative: it only reports what is certain from
the text (same kind or ``*``, a bare or all-matching specifier, or the same
specifier), in a table whose scope (agents, workdirs) covers the dead rule's.
These are warnings, not errors: the policy is still safe, only not what was
meant.
"""

from __future__ import annotations

from collections.abc import Sequence

from neocode_gateway.policy._load import Table
from neocode_gateway.policy._rules import VERDICTS, Rule, Verdict

_ORDER = {verdict: rank for rank, verdict in enumerate(VERDICTS)}


def _scope_covers(outer: Table, inner: Table) -> bool:
    if outer.agents is not None and (inner.agents is None or not inner.agents <= outer.agents):
        return False
    return outer.workdirs is None or (
        inner.workdirs is not None and set(inner.workdirs) <= set(outer.workdirs)
    )


def _rule_covers(first: Rule, later: Rule, later_verdict: Verdict) -> bool:
    if first.kind not in ("*", later.kind):
        return False
    if first.spec is None:
        return True
    if first.kind == later.kind and first.spec == later.spec and first.absolute == later.absolute:
        return True
    # A relative "**" or an "*" command matches everything an allow may match (inside paths).
    return later_verdict == "allow" and first.broad and not first.absolute


def find_warnings(tables: Sequence[Table]) -> list[str]:
    """One line per dead rule, and per rule written in another tool's syntax."""
    entries = [
        (table, verdict, position, rule)
        for table in tables
        for verdict in VERDICTS
        for position, rule in enumerate(table.rules[verdict])
    ]
    # Try order: verdict first, then file order (table, then position).
    entries.sort(key=lambda e: (_ORDER[e[1]], e[0].index, e[2]))
    out: list[str] = []
    for index, (table, verdict, position, rule) in enumerate(entries):
        where = f"{table.label}.{verdict}[{position}] {rule.text!r}"
        if rule.kind == "execute" and rule.spec is not None and rule.spec.endswith(":*"):
            fixed = rule.spec[:-2].rstrip() + " *"
            out.append(
                f"{where}: ':*' is Claude Code's prefix syntax; here it matches a literal ':' "
                f"(write 'execute({fixed})')"
            )
        for other, other_verdict, other_position, first in entries[:index]:
            if _scope_covers(other, table) and _rule_covers(first, rule, verdict):
                what = (
                    "is a duplicate of"
                    if first.text.strip() == rule.text.strip()
                    else "is shadowed by"
                )
                out.append(
                    f"{where} never decides: it {what} "
                    f"{other.label}.{other_verdict}[{other_position}] {first.text!r}"
                )
                break
    return out
