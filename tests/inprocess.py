"""A gateway in the test's own process: the core on a real socket and a real SQLite file,
with a hand on the store and the runtime where a test needs one."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from neocode_gateway.dispatch import Dispatcher, install
from neocode_gateway.runtime import EchoRuntime, Runtime, RuntimeSet
from neocode_gateway.server import Server, ServerConfig
from neocode_gateway.sessions import CoreConfig, SessionCore
from neocode_gateway.store import Store
from neocode_gateway.transport import UnixListener

Serving = tuple[Store, SessionCore, Server, UnixListener]


async def serve(work: Path, runtime: Runtime | None = None, **config: Any) -> Serving:
    """A store in ``work/data``, the core (echo, or ``runtime``), a server on ``work/gw.sock``."""
    store = Store.open(work / "data")
    runtimes = RuntimeSet(default="echo")
    runtimes.add("echo", runtime or EchoRuntime())
    core = SessionCore(
        store, runtimes, CoreConfig(data_dir=work / "data", default_workdir="/", **config)
    )
    dispatcher = Dispatcher()
    listener = UnixListener(str(work / "gw.sock"))
    listener.open()
    server = Server(listener, dispatcher, ServerConfig())
    await core.start()
    server.add_sweep_hook(core.tick)
    install(dispatcher, core, lambda: len(server.connections))
    await server.start()
    return store, core, server, listener


async def stop(store: Store, core: SessionCore, server: Server, listener: UnixListener) -> None:
    await server.shutdown()
    await core.shutdown()
    listener.release()
    store.close()


def line(**frame: Any) -> bytes:
    """One request frame, encoded."""
    return msgspec.json.encode({"type": "request", **frame}) + b"\n"


async def read_until(
    reader: asyncio.StreamReader, done: Callable[[dict[str, Any]], bool]
) -> list[dict[str, Any]]:
    """Frames read until one satisfies ``done`` (each within 10 s)."""
    frames: list[dict[str, Any]] = []
    while not frames or not done(frames[-1]):
        raw = await asyncio.wait_for(reader.readline(), 10)
        assert raw, "the gateway closed the connection"
        frames.append(msgspec.json.decode(raw))
    return frames


def ended(frame: dict[str, Any]) -> bool:
    """Whether ``frame`` is a run's terminal event."""
    payload = frame.get("payload")
    return isinstance(payload, dict) and payload.get("event_type") in ("run_done", "run_error")
