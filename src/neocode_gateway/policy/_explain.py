"""``policy explain``: the decision on one request, in words, with the rules that nearly matched.

Meant for a person tuning the file: it shows how the request was seen
(resolved paths, outside the workdir or not, the parts of a chained command,
which parts are opaque), which tables apply, the decision and its rule, and a
few rules of the same kind that did not match, so a typo in a glob is easy to
spot.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from neocode_gateway.policy._request import ToolRequest
from neocode_gateway.policy._rules import TOOL_KINDS

if TYPE_CHECKING:
    from neocode_gateway.policy._policy import Policy

_NEAR_MISSES: Final = 5


def explain(policy: Policy, request: ToolRequest, *, agent: str, workdir: str) -> str:
    """The text of ``policy explain`` (no trailing newline)."""
    selection = policy.select(agent, workdir)
    kind = request.kind if request.kind in TOOL_KINDS else "other"
    items = policy.items(request, selection.workdirs)
    lines = [f"request: {kind} (agent {agent}, workdir {selection.workdirs[-1]})"]
    for location in items.locations:
        where = (
            "inside the workdir: " + ", ".join(repr(r) for r in location.relative)
            if location.inside
            else "OUTSIDE the workdir (no allow rule can match)"
        )
        lines.append(f"  path {location.written!r} -> {', '.join(location.absolute)} ({where})")
    for part in items.parts:
        note = " (opaque: only an exact allow rule can match)" if part.opaque else ""
        lines.append(f"  command part {part.text!r}{note}")
    if kind == "execute" and not items.parts:
        lines.append("  no command line (only bare execute rules can match)")
    applying = ", ".join(t.label for t in selection.tables) or "none"
    lines.append(f"tables that apply: {applying}")
    decision = policy.decide(request, agent=agent, workdir=workdir)
    lines.append(f"decision: {decision.verdict.upper()}: {decision.reason}")
    if decision.source:
        lines.append(f"  rule {decision.rule} in {decision.source}")
    deciding = set((decision.rule or "").split(", "))
    misses: list[str] = []
    for table in policy.tables:
        applies = table in selection.tables
        for verdict, rules in table.rules.items():
            for position, rule in enumerate(rules):
                if rule.kind not in (kind, "*") or rule.text in deciding:
                    continue
                why = "did not decide" if applies else "its table does not apply here"
                misses.append(f"  {table.label}.{verdict}[{position}] {rule.text!r}: {why}")
    if misses:
        lines.append("other rules of this kind:")
        lines.extend(misses[:_NEAR_MISSES])
        if len(misses) > _NEAR_MISSES:
            lines.append(f"  ... and {len(misses) - _NEAR_MISSES} more")
    return "\n".join(lines)
