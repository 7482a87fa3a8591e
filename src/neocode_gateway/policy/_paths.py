"""Where a request's path really is, relative to the workdir: every form the agent might act on.

An agent may open the path as written (the kernel then follows symlinks and
``..`` component by component) or normalise it first (``..`` dropped lexically,
as ``path.resolve`` in Node does, then symlinks followed). Those can differ
(``link/..``), so a location keeps every form: the lexical absolute path and
both real paths (:func:`os.path.realpath`, the only I/O of the policy). A deny
or ask rule triggers on **any** form, an allow needs **every** form inside the
workdir and matching: whichever way the agent resolves the path, an allow never
lets it reach a file outside the workdir or behind a symlink that escapes it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Location:
    """One requested path, resolved.

    ``absolute``: the distinct absolute forms; ``relative``: the workdir-relative
    forms of those that are inside the workdir (``""`` for the workdir itself);
    ``inside``: every form is inside the workdir.
    """

    written: str
    absolute: tuple[str, ...]
    relative: tuple[str, ...]
    inside: bool


def workdir_forms(workdir: str) -> tuple[str, ...]:
    """The workdir as given (absolute, lexically normal) and its real path, without duplicates."""
    lexical = os.path.normpath(os.path.abspath(os.path.expanduser(workdir)))
    real = os.path.realpath(lexical)
    return (lexical,) if real == lexical else (lexical, real)


def _relative(path: str, workdirs: tuple[str, ...]) -> str | None:
    for base in workdirs:
        if path == base:
            return ""
        prefix = base if base.endswith("/") else base + "/"
        if path.startswith(prefix):
            return path[len(prefix) :]
    return None


def resolve(path: str, workdirs: tuple[str, ...]) -> Location:
    """Resolve ``path`` (absolute, or relative to the workdir ``workdirs[0]``) to a Location."""
    written = [path]
    if path.startswith("~"):  # the agent's tool may expand it, or take it literally
        written.append(os.path.expanduser(path))
    forms: list[str] = []
    for item in written:
        joined = os.path.join(workdirs[0], item)
        lexical = os.path.normpath(joined)
        for raw in (lexical, os.path.realpath(joined), os.path.realpath(lexical)):
            # POSIX keeps a leading "//" lexically; here it is "/".
            form = "/" + raw.lstrip("/") if raw.startswith("//") else raw
            if form not in forms:
                forms.append(form)
    relative: list[str] = []
    inside = True
    for form in forms:
        rel = _relative(form, workdirs)
        if rel is None:
            inside = False
        elif rel not in relative:
            relative.append(rel)
    return Location(path, tuple(forms), tuple(relative), inside)
