"""Rule specifiers compiled to regular expressions once, when the policy is loaded.

Evaluating a request then costs one ``fullmatch`` per candidate rule, which
keeps a decision with hundreds of rules in the tens of microseconds. Two
languages are compiled here:

* **path globs** (gitignore-like): ``**`` as a whole segment is any number of
  segments (zero included), ``*`` any characters within a segment, ``?`` one
  character within a segment; everything else, ``[`` included, is literal (so
  that ``app/[id]/page.tsx`` needs no escaping). A glob with no ``/`` (except a
  trailing one) matches a base name at any depth, as ``.gitignore`` does: the
  deny ``edit(.env*)`` also protects ``config/.env.local``. A trailing ``/``
  means the directory and everything under it.
* **command patterns**: ``*`` is any characters, spaces included; runs of
  whitespace are one space; the pattern matches the whole command, and a
  trailing `` *`` also matches nothing, so ``git diff *`` covers ``git diff``.
"""

from __future__ import annotations

import os
import re
from typing import Final

_SPACES: Final = re.compile(r"\s+")
_SLASHES: Final = re.compile(r"/{2,}")


def _segment(text: str) -> str:
    out: list[str] = []
    for char in text:
        if char == "*":
            if not out or out[-1] != "[^/]*":  # "**" inside a segment is one "*"
                out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        else:
            out.append(re.escape(char))
    return "".join(out)


def is_absolute_glob(glob: str) -> bool:
    """Absolute globs (``/...`` or ``~...``) match absolute paths, inside the workdir or not."""
    return glob.startswith(("/", "~"))


def normalise_glob(glob: str) -> str:
    """The glob as it will be matched: ``~`` expanded, ``./`` and doubled slashes dropped."""
    text = os.path.expanduser(glob) if glob.startswith("~") else glob
    text = _SLASHES.sub("/", text)
    while text.startswith("./"):
        text = text[2:]
    if text.endswith("/") and text != "/":
        text += "**"
    return text


def glob_regex(glob: str) -> re.Pattern[str]:
    """Compile a path glob (already :func:`normalise_glob`-ed) to an anchored regex."""
    anywhere = "/" not in glob
    segments = glob.split("/")
    out: list[str] = []
    need_sep = False
    for index, segment in enumerate(segments):
        last = index == len(segments) - 1
        if segment == "**":
            if last:
                out.append("(?:/.*)?" if need_sep else ".*")
            else:
                out.append(("/" if need_sep else "") + "(?:.*/)?")
                need_sep = False
                continue
        else:
            if need_sep:
                out.append("/")
            out.append(_segment(segment))
        need_sep = True
    body = "".join(out)
    if anywhere and glob != "**":
        body = "(?:.*/)?" + body
    return re.compile(body, re.DOTALL)


def normalise_command(text: str) -> str:
    """Whitespace runs become one space, ends are stripped: how commands and patterns compare."""
    return _SPACES.sub(" ", text).strip()


def command_regex(pattern: str) -> re.Pattern[str]:
    """Compile a command pattern (already :func:`normalise_command`-ed) to an anchored regex."""
    tail = ""
    if pattern.endswith(" *"):
        pattern, tail = pattern[:-2], "(?: .*)?"
    body = ".*".join(re.escape(piece) for piece in pattern.split("*"))
    return re.compile(body + tail, re.DOTALL)


def has_wildcard(pattern: str) -> bool:
    """Whether a command pattern can match more than one command."""
    return "*" in pattern
