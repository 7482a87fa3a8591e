"""Which runtimes exist: the built-in ones, and third parties' through entry points.

A third-party package adds a runtime by declaring, in its ``pyproject.toml``::

    [project.entry-points."neocode_gateway.runtimes"]
    myagent = "mypackage.runtime:create"   # create(options: RuntimeOptions) -> Runtime

Entry points are only looked up when a name is not built in (or when listing),
so the gateway's start pays nothing for them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from neocode_gateway.errors import ConfigError
from neocode_gateway.runtime._port import Runtime, RuntimeOptions

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint

log = logging.getLogger("neocode_gateway.runtime")

RuntimeFactory = Callable[[RuntimeOptions], Runtime]
ENTRY_POINT_GROUP: Final = "neocode_gateway.runtimes"


def _echo(options: RuntimeOptions) -> Runtime:
    from neocode_gateway.runtime._echo import EchoRuntime

    return EchoRuntime()


BUILTIN: Final[dict[str, RuntimeFactory]] = {"echo": _echo}


def entry_points(group: str) -> list[EntryPoint]:
    """The installed entry points of ``group`` (importlib.metadata, loaded only now)."""
    from importlib.metadata import entry_points as installed

    return list(installed(group=group))


def available_runtimes() -> dict[str, str]:
    """Every runtime name that can be created, and where it comes from."""
    found = dict.fromkeys(BUILTIN, "built-in")
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        found.setdefault(entry.name, entry.value)
    return found


def create_runtime(name: str, options: RuntimeOptions) -> Runtime:
    """A new runtime called ``name``; ``ConfigError`` if there is none or it cannot be made."""
    factory = BUILTIN.get(name)
    source = "built-in"
    if factory is None:
        matches = [e for e in entry_points(group=ENTRY_POINT_GROUP) if e.name == name]
        if not matches:
            known = ", ".join(sorted(available_runtimes()))
            raise ConfigError(f"unknown runtime {name!r} (known: {known}, or none)")
        source = matches[0].value
        try:
            factory = matches[0].load()
        except Exception as exc:
            raise ConfigError(f"runtime {name!r} ({source}) cannot be loaded: {exc}") from None
    try:
        runtime = factory(options)
    except ConfigError:
        raise
    except Exception as exc:
        raise ConfigError(f"runtime {name!r} ({source}) failed to start: {exc}") from None
    if not isinstance(runtime, Runtime):
        raise ConfigError(f"runtime {name!r} ({source}) did not return a Runtime")
    return runtime


class RuntimeSet:
    """The gateway's live runtimes by name, and the default one for new sessions."""

    def __init__(self, default: str) -> None:
        self.default = default
        self._runtimes: dict[str, Runtime] = {}

    def add(self, name: str, runtime: Runtime) -> None:
        """Add a runtime under ``name`` (a configured agent, or a created one)."""
        self._runtimes[name] = runtime

    def get(self, name: str) -> Runtime | None:
        """The runtime called ``name``, if there is one."""
        return self._runtimes.get(name)

    def names(self) -> list[str]:
        """The names of the runtimes, in the order they were added."""
        return list(self._runtimes)

    async def start_all(self) -> None:
        """Start every runtime (cheap: agents start on first use)."""
        for runtime in self._runtimes.values():
            await runtime.start()

    async def close_all(self) -> None:
        """Close every runtime at once (an agent may take its grace periods to stop; the
        shutdown waits for the slowest, not for their sum), even if some fail (logged)."""

        async def close(name: str, runtime: Runtime) -> None:
            try:
                await runtime.close()
            except Exception:
                log.exception("runtime %s failed to close", name)

        await asyncio.gather(*(close(n, r) for n, r in self._runtimes.items()))
