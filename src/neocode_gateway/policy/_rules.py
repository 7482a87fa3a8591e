"""One rule: its grammar, its compiled form, and whether it matches one item of a request.

Grammar: ``KIND`` or ``KIND(SPECIFIER)``, where KIND is a tool kind of the
contract or ``*`` (every kind, no specifier). The file kinds (``read``,
``edit``, ``delete``, ``move``, ``search``) take a path glob, ``execute`` a
command pattern (see :mod:`._glob`); the others take none: a specifier there
could never be checked, so it is an error rather than a rule that silently
matches everything.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final, Literal

from neocode_gateway.policy._glob import (
    command_regex,
    glob_regex,
    has_wildcard,
    is_absolute_glob,
    normalise_command,
    normalise_glob,
)
from neocode_gateway.policy._paths import Location
from neocode_gateway.policy._shell import CommandPart

#: The ``tool_kind`` values of the contract (protocol.TOOL_KINDS, copied: no msgspec import).
TOOL_KINDS: Final = frozenset(
    {"read", "edit", "delete", "move", "search", "execute", "think", "fetch", "other"}
)
#: Kinds whose specifier is a glob over the request's locations.
FILE_KINDS: Final = frozenset({"read", "edit", "delete", "move", "search"})
Verdict = Literal["allow", "deny", "ask"]
VERDICTS: Final[tuple[Verdict, ...]] = ("deny", "ask", "allow")

_SYNTAX: Final = re.compile(r"\s*([A-Za-z_*][A-Za-z0-9_*-]*)\s*(?:\((.*)\))?\s*\Z", re.DOTALL)


class RuleSyntaxError(ValueError):
    """A rule's text is malformed; the message says what is wrong (without where)."""


@dataclass(frozen=True, slots=True)
class Rule:
    """A parsed, compiled rule.

    ``text`` is the rule as written (for messages and decisions); ``spec`` its
    normalised specifier (``None`` for a bare kind); ``broad`` says it matches
    every request of its kind that it may match at all (bare, ``**`` or ``*``),
    which is what the shadowing warnings look for.
    """

    text: str
    kind: str
    spec: str | None
    regex: re.Pattern[str] | None
    absolute: bool = False
    wildcard: bool = False

    @property
    def broad(self) -> bool:
        return self.spec is None or self.spec in ("**", "*")

    def matches_location(self, location: Location, verdict: Verdict) -> bool:
        """Whether this rule matches one location (allow needs every form, others any)."""
        if verdict == "allow" and not location.inside:
            return False
        if self.regex is None:
            return True
        forms = location.absolute if self.absolute else location.relative
        if verdict == "allow":
            return bool(forms) and all(self.regex.fullmatch(form) for form in forms)
        return any(self.regex.fullmatch(form) for form in forms)

    def matches_part(self, part: CommandPart, verdict: Verdict) -> bool:
        """Whether this rule matches one simple command (allow: no wildcard over opaque text)."""
        if self.regex is None:
            return True
        if verdict == "allow":
            if part.opaque and self.wildcard:
                return False
            return self.regex.fullmatch(part.text) is not None
        return (
            self.regex.fullmatch(part.text) is not None
            or self.regex.fullmatch(part.bare) is not None
        )


def parse_rule(text: object) -> Rule:
    """Parse and compile one rule; :class:`RuleSyntaxError` says what is wrong."""
    if not isinstance(text, str):
        raise RuleSyntaxError(f"expected a string, got {type(text).__name__}")
    if text.count("(") != text.count(")") or ("(" in text and not text.rstrip().endswith(")")):
        raise RuleSyntaxError("unbalanced parentheses")
    match = _SYNTAX.match(text)
    if match is None:
        raise RuleSyntaxError("expected KIND or KIND(SPECIFIER)")
    kind, raw = match.group(1), match.group(2)
    if kind != "*" and kind not in TOOL_KINDS:
        known = ", ".join(sorted(TOOL_KINDS))
        raise RuleSyntaxError(f"unknown kind {kind!r} (known: {known}, or *)")
    if raw is None:
        return Rule(text, kind, None, None)
    spec = raw.strip()
    if not spec:
        raise RuleSyntaxError("empty specifier (write the bare kind to match everything)")
    if kind in FILE_KINDS:
        glob = normalise_glob(spec)
        return Rule(text, kind, glob, glob_regex(glob), absolute=is_absolute_glob(spec))
    if kind == "execute":
        pattern = normalise_command(spec)
        return Rule(text, kind, pattern, command_regex(pattern), wildcard=has_wildcard(pattern))
    takes = "read, edit, delete, move, search and execute do"
    raise RuleSyntaxError(f"kind {kind!r} takes no specifier (only {takes})")
