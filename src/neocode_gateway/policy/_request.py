"""What is being asked: a tool request, built from a contract ``tool_call``.

The policy sees only the kind, the paths and the command line; the title is
kept for messages, and for the kinds with no specifier it is what a grant
remembers. :func:`request_from_tool_call` maps what real agents send:

* Claude Code (through the ACP adapter): ``Bash`` has ``raw_input.command``
  (a string), ``Write``/``Edit``/``Read`` have ``raw_input.file_path`` and usually
  ``locations``; the title of a Bash call is the command in backticks.
* Codex: ``raw_input.command`` is often an argv such as ``["bash", "-lc",
  "git status"]``: a shell wrapper with ``-c``/``-lc`` is unwrapped to its
  script, so that the rule ``execute(git status)`` sees ``git status``; any
  other argv is joined with :func:`shlex.join`.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from neocode_gateway.policy._rules import TOOL_KINDS

_SHELLS: Final = frozenset({"sh", "bash", "zsh", "dash", "ksh", "fish"})
_SHELL_FLAGS: Final = frozenset({"-c", "-lc", "-cl", "-ic", "-ci"})
_PATH_KEYS: Final = ("file_path", "path", "notebook_path")


@dataclass(frozen=True, slots=True)
class ToolRequest:
    """One tool call to decide: ``kind`` is a contract tool kind (unknown ones are ``other``).

    ``paths`` are absolute or relative to the session's workdir; ``command`` is
    the shell command line of an ``execute`` request.
    """

    kind: str
    paths: tuple[str, ...] = ()
    command: str | None = None
    title: str = ""


def request_from_tool_call(tool_call: Mapping[str, Any]) -> ToolRequest:
    """The request of a ``permission_request`` event's ``tool_call`` (any missing field is fine)."""
    kind = tool_call.get("tool_kind")
    if not isinstance(kind, str) or kind not in TOOL_KINDS:
        kind = "other"
    title = tool_call.get("title")
    title = title if isinstance(title, str) else ""
    raw = tool_call.get("raw_input")
    raw_input: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
    paths: list[str] = []
    locations = tool_call.get("locations")
    if isinstance(locations, list):
        for item in locations:
            path = item.get("path") if isinstance(item, Mapping) else None
            if isinstance(path, str) and path and path not in paths:
                paths.append(path)
    if not paths:
        for key in _PATH_KEYS:
            value = raw_input.get(key)
            if isinstance(value, str) and value:
                paths.append(value)
                break
    command: str | None = None
    if kind == "execute":
        command = _command(raw_input.get("command"))
        if command is None and title:
            command = title.strip()
            if len(command) >= 2 and command[0] == command[-1] == "`":
                command = command[1:-1]
    return ToolRequest(kind=kind, paths=tuple(paths), command=command, title=title)


def _command(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, list) and value and all(isinstance(item, str) for item in value):
        argv: list[str] = value
        if len(argv) == 3 and os.path.basename(argv[0]) in _SHELLS and argv[1] in _SHELL_FLAGS:
            return argv[2]
        return shlex.join(argv)
    return None
