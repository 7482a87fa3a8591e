"""What an agent says about itself: its ``initialize`` answer and a session's modes.

Lenient parsers over the raw JSON (camelCase, as on the wire): a missing or
malformed part is a default, never an error, since agents and their versions
differ.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class AgentInfo:
    """What an agent's ``initialize`` answer says that the bridge uses or reports."""

    protocol_version: int | None = None
    name: str | None = None
    title: str | None = None
    version: str | None = None
    load_session: bool = False
    close_session: bool = False
    image: bool = False
    audio: bool = False
    embedded_context: bool = False
    auth_methods: tuple[str, ...] = ()

    def describe(self) -> dict[str, Any]:
        """The answer as ``agents --check`` shows it."""
        return {
            "protocol_version": self.protocol_version,
            "agent": {"name": self.name, "title": self.title, "version": self.version},
            "load_session": self.load_session,
            "prompt_capabilities": {
                "image": self.image,
                "audio": self.audio,
                "embedded_context": self.embedded_context,
            },
            "auth_methods": list(self.auth_methods),
        }


def parse_initialize(result: Any) -> AgentInfo:
    """An ``initialize`` result -> :class:`AgentInfo` (lenient: missing parts are defaults)."""
    if not isinstance(result, Mapping):
        return AgentInfo()
    caps = _mapping(result.get("agentCapabilities"))
    prompt = _mapping(caps.get("promptCapabilities"))
    session_caps = _mapping(caps.get("sessionCapabilities"))
    info = _mapping(result.get("agentInfo"))
    methods = result.get("authMethods")
    version = result.get("protocolVersion")
    return AgentInfo(
        protocol_version=version if isinstance(version, int) else None,
        name=_str(info.get("name")),
        title=_str(info.get("title")),
        version=_str(info.get("version")),
        load_session=caps.get("loadSession") is True,
        close_session=isinstance(session_caps.get("close"), Mapping),
        image=prompt.get("image") is True,
        audio=prompt.get("audio") is True,
        embedded_context=prompt.get("embeddedContext") is True,
        auth_methods=tuple(
            str(m.get("id"))
            for m in (methods if isinstance(methods, list) else [])
            if isinstance(m, Mapping) and m.get("id") is not None
        ),
    )


@dataclass(slots=True)
class Modes:
    """The session modes an agent session offers, and the current one."""

    current: str | None = None
    available: list[str] = field(default_factory=list)
    names: dict[str, str] = field(default_factory=dict)


def parse_modes(result: Any) -> Modes:
    """The ``modes`` of a ``session/new`` or ``session/load`` result (empty if none)."""
    modes = _mapping(result.get("modes")) if isinstance(result, Mapping) else {}
    available = modes.get("availableModes")
    out = Modes(current=_str(modes.get("currentModeId")))
    for mode in available if isinstance(available, list) else []:
        if isinstance(mode, Mapping) and isinstance(mode.get("id"), str):
            out.available.append(mode["id"])
            out.names[mode["id"]] = str(mode.get("name", mode["id"]))
    return out


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None
