"""The session core's memory and housekeeping, in-process (no sockets): what stays behind.

* ``sessions``: N sessions, each made by a run, bound and unbound by a subscriber; the
  Python heap the core still holds afterwards (tracemalloc), and how many sessions its
  cache keeps;
* ``retention``: one retention pass over those N sessions with nothing to delete (the
  query that finds old events), in ms.

Bounded in count; a temporary data directory. Usage::

    .venv/bin/python benchmarks/bench_core.py [--sessions 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import shutil
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from neocode_gateway.protocol import parse_frame, utc_timestamp
from neocode_gateway.runtime import EchoRuntime, RuntimeSet
from neocode_gateway.sessions import CoreConfig, SessionCore
from neocode_gateway.store import Store


class _Subscriber:
    """The smallest subscriber: it takes every frame at once."""

    bound = False
    closed = False
    pending_bytes = 0

    def send(self, data: bytes, *, mark: Any = None, replay: bool = False) -> bool:
        return True

    def oldest_pending_age(self, now: float) -> float:
        return 0.0

    def delivered(self, key: str) -> int | None:
        return None

    def forget_mark(self, key: str) -> None:
        return None

    async def drain(self) -> bool:
        return True

    def after_answer(self, callback: Callable[[], None]) -> None:
        callback()

    def close_with_error(self, data: bytes) -> None:
        return None

    def add_close_callback(self, callback: Callable[[Any], None]) -> None:
        return None


async def scenario(count: int) -> dict[str, float]:
    directory = Path(tempfile.mkdtemp(prefix="ngw-bench-", dir="/tmp"))
    try:
        store = Store.open(directory / "data")
        runtimes = RuntimeSet(default="echo")
        echo = EchoRuntime()
        runtimes.add("echo", echo)
        core = SessionCore(
            store,
            runtimes,
            CoreConfig(data_dir=directory / "data", default_workdir="/", event_retention_days=0),
        )
        await core.start()
        sub = _Subscriber()
        gc.collect()
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        for index in range(count):
            line = msgspec.json.encode(
                {"type": "request", "action": "run", "request_id": f"r{index}", "input_text": "hi"}
            )
            answer = await core.run(parse_frame(line), sub)  # type: ignore[misc]
            session_id = msgspec.json.decode(answer)["session_id"]
            while core.runs.active:
                await asyncio.sleep(0)
            unbind = msgspec.json.encode(
                {"type": "request", "action": "unbind_stream", "session_id": session_id}
            )
            core.unbind_stream(parse_frame(unbind), sub)
        await asyncio.sleep(0.01)
        echo_sessions = len(echo._sessions)
        echo._sessions.clear()  # the demo runtime's own state, not the core's
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        cached = len(core.cache)
        start = time.perf_counter()
        found = store.sessions_with_events_before(utc_timestamp(time.time() - 86400))
        retention_ms = (time.perf_counter() - start) * 1000
        await core.shutdown()
        store.close()
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    return {
        "sessions": count,
        "heap_left_mib": (after - before) / (1 << 20),
        "cached_sessions": cached,
        "echo_sessions": echo_sessions,
        "retention_query_ms": retention_ms,
        "retention_found": len(found),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=20_000)
    args = parser.parse_args()
    result = asyncio.run(scenario(args.sessions))
    print("RESULT core " + " ".join(f"{k}={v:.4g}" for k, v in result.items()))


if __name__ == "__main__":
    main()
