"""Split a shell command line into the simple commands that it chains.

A rule such as ``execute(git status *)`` must not allow ``git status; rm -rf ~``:
the command is cut at every unquoted ``;``, ``&&``, ``||``, ``|``, ``|&``,
``&`` and newline, and each part is matched on its own. This is a small lexer
that knows quotes and backslashes, not a shell: what it cannot see through it
marks **opaque** so that no wildcard allow can match it (a person is asked):

* command or process substitution (``$(...)``, backticks, ``<(...)``,
  ``>(...)``), which runs commands the pattern never saw: the part around it is
  opaque, and outside double quotes its inside (like a subshell's ``(...)``) is
  cut out as parts of its own, so that a deny sees ``rm`` in ``echo $(rm x)``;
* output redirection to a file (``> f``, ``>> f``), which writes files that the
  edit rules never saw; ``>/dev/null``, ``2>&1`` and the like stay transparent;
* unbalanced quotes: then the line is cut naively at the separators (quotes
  ignored) and every piece is opaque, so that a deny still sees each piece.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

#: Redirections that write nothing: to /dev/null or to another descriptor.
_HARMLESS_REDIRECT: Final = re.compile(r">>?\s*(?:/dev/null|&\d+|&-)(?=[\s;&|)]|\Z)")
_NAIVE_SEPARATORS: Final = re.compile(r"\|\||&&|[;|&\n]")
_ASSIGNMENT: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=(?:'[^']*'|\"[^\"]*\"|[^\s'\"])*+ ")
#: Words that only introduce the command after them (deny and ask rules look past them).
_PREFIXES: Final = frozenset(
    {"{", "}", "!", "if", "then", "else", "elif", "do", "while", "until", "time", "exec"}
    | {"command", "nohup", "sudo", "builtin"}
)


@dataclass(frozen=True, slots=True)
class CommandPart:
    """One simple command: its text (whitespace normalised) and whether a wildcard may allow it.

    ``bare`` is the text without leading ``VAR=value`` assignments and words such
    as ``sudo``, ``then`` or ``{``: deny and ask rules are matched against both,
    allow rules only against ``text``.
    """

    text: str
    opaque: bool
    bare: str


def _part(chars: list[str], opaque: bool, out: list[CommandPart]) -> None:
    text = "".join(chars).strip()
    if text:
        out.append(CommandPart(text, opaque, _bare(text)))


def _bare(text: str) -> str:
    """``text`` without leading assignments and prefix words: ``FOO=1 sudo rm x`` -> ``rm x``."""
    while True:
        match = _ASSIGNMENT.match(text)
        if match:
            text = text[match.end() :]
            continue
        word, _, rest = text.partition(" ")
        if word in _PREFIXES and rest:
            text = rest
            continue
        return text


def split_command(command: str) -> tuple[CommandPart, ...]:
    """The parts of ``command``, in order; empty when the command is blank."""
    out: list[CommandPart] = []
    chars: list[str] = []
    opaque = False
    quote = ""
    i, n = 0, len(command)
    while i < n:
        char = command[i]
        nxt = command[i + 1] if i + 1 < n else ""
        if quote == "'":
            chars.append(char)
            if char == "'":
                quote = ""
        elif char == "\\":
            if nxt == "\n":  # line continuation: a space
                if chars and chars[-1] != " ":
                    chars.append(" ")
            else:
                chars.append(char + nxt)
            i += 2
            continue
        elif quote == '"':
            chars.append(char)
            if char == '"':
                quote = ""
            elif char == "`" or (char == "$" and nxt == "("):
                opaque = True
        elif char in "'\"":
            quote = char
            chars.append(char)
        elif char.isspace() and char != "\n":
            if chars and chars[-1] != " ":
                chars.append(" ")
        elif char in ";\n" or (char == "|" and nxt != "|") or (char == "&" and nxt == "&"):
            _part(chars, opaque, out)
            chars, opaque = [], False
            i += 2 if (char == "&" or (char == "|" and nxt == "&")) else 1
            continue
        elif char == "|":  # "||"
            _part(chars, opaque, out)
            chars, opaque = [], False
            i += 2
            continue
        elif char == "&" and nxt != ">" and not (chars and chars[-1] in "<>"):
            _part(chars, opaque, out)  # "&": a background job, then the next command
            chars, opaque = [], False
        elif char == "`" or char in "()":
            # A substitution or subshell: its inside is a command of its own (a deny sees it),
            # and what it is substituted into can no longer be matched by a wildcard.
            opaque = opaque or char == "`" or bool(chars and chars[-1] in "$<>")
            _part(chars, opaque, out)
            chars, opaque = [], False
        elif char == ">":
            if not _HARMLESS_REDIRECT.match(command, i):
                opaque = True
            chars.append(char)
        else:
            chars.append(char)
        i += 1
    if quote:
        return _naive(command)
    _part(chars, opaque, out)
    return tuple(out)


def _naive(command: str) -> tuple[CommandPart, ...]:
    out: list[CommandPart] = []
    for piece in _NAIVE_SEPARATORS.split(command):
        _part(list(" ".join(piece.split())), True, out)
    return tuple(out)
