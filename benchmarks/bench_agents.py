"""Real agents behind the acp runtime: start time, session cost, memory per live session.

Usage (from the repository root, node and npm needed)::

    .venv/bin/python -m benchmarks.bench_agents [--sessions 4] [--agents claude,codex] [--rounds 3]

Installs the pinned adapters into ``.cache/agents`` if need be (as the tests
do), points each agent at a mock of its model API on 127.0.0.1 (nothing
leaves the machine), and for each agent, ``--rounds`` times:

* starts a fresh :class:`AcpRuntime` and measures the agent's start to its
  ``initialize`` answer;
* opens ``--sessions`` gateway sessions one after the other, each with one
  short turn, and measures ``session/new`` + the turn, and the resident memory
  of the agent's whole process tree after each one;
* closes the runtime (stdin closed, SIGTERM, SIGKILL) and measures that.

Prints one table per agent (medians over the rounds) and a JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.agents import mock_anthropic, mock_openai
from tests.agents.real import claude_setup, codex_setup, installed_agents, without_sandbox_flag
from tests.agents.support import FakeSession, FakeSink

from neocode_gateway.runtime import RunInput, RuntimeOptions
from neocode_gateway.runtime.acp import AcpRuntime

SETUPS = {"claude": (mock_anthropic.start, claude_setup), "codex": (mock_openai.start, codex_setup)}


async def one_round(name: str, bin_dir: Path, sessions: int) -> dict[str, Any]:
    start_mock, make = SETUPS[name]
    mock = start_mock(0)
    scratch = tempfile.mkdtemp(prefix="ngw-bench-", dir="/tmp")
    try:
        setup = make(bin_dir, Path(scratch, "home"), mock.url)
        workdir = os.path.realpath(Path(scratch))
        runtime = AcpRuntime(name, setup.config, RuntimeOptions(Path(workdir), workdir))
        turns: list[float] = []
        rss: list[int] = []
        for n in range(sessions):
            began = time.monotonic()
            session = FakeSession(f"s{n}", workdir)
            reason = await runtime.prompt(session, RunInput(f"r{n}", text="hello"), FakeSink())
            assert reason == "end_turn", reason
            turns.append(time.monotonic() - began)
            rss.append(runtime.stats()["rss_bytes"])
        started_in = runtime.stats()["started_in_s"]
        began = time.monotonic()
        await runtime.close()
        closed_in = time.monotonic() - began
    finally:
        mock.stop()
        shutil.rmtree(scratch, ignore_errors=True)
    return {"start_s": started_in, "turns_s": turns, "rss": rss, "close_s": closed_in}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--agents", default="claude,codex")
    options = parser.parse_args()
    try:
        bin_dir = installed_agents()
    except BaseException as exc:  # pytest's skip/fail outside pytest
        sys.stderr.write(f"bench_agents: cannot install the agents: {exc}\n")
        return 1
    results: dict[str, Any] = {}
    with without_sandbox_flag():
        for name in options.agents.split(","):
            rounds = [
                asyncio.run(one_round(name, bin_dir, options.sessions))
                for _ in range(options.rounds)
            ]
            start = statistics.median(r["start_s"] for r in rounds)
            first = statistics.median(r["turns_s"][0] for r in rounds)
            later = (
                statistics.median(t for r in rounds for t in r["turns_s"][1:])
                if options.sessions > 1
                else None
            )
            rss = [statistics.median(r["rss"][n] for r in rounds) for n in range(options.sessions)]
            close = statistics.median(r["close_s"] for r in rounds)
            per_session = (
                (rss[-1] - rss[0]) / (options.sessions - 1) if options.sessions > 1 else None
            )
            results[name] = {
                "start_to_initialize_s": round(start, 3),
                "first_session_and_turn_s": round(first, 3),
                "next_session_and_turn_s": round(later, 3) if later is not None else None,
                "rss_mib_by_sessions": [round(r / 2**20) for r in rss],
                "rss_mib_per_extra_session": round(per_session / 2**20) if per_session else None,
                "close_s": round(close, 3),
            }
            row = results[name]
            print(
                f"{name}: start to initialize {row['start_to_initialize_s']}s; "
                f"first session+turn {row['first_session_and_turn_s']}s; "
                f"next session+turn {row['next_session_and_turn_s']}s; "
                f"close {row['close_s']}s"
            )
            print(
                f"  RSS of the agent's process tree with 1..{options.sessions} live sessions: "
                f"{row['rss_mib_by_sessions']} MiB "
                f"(+{row['rss_mib_per_extra_session']} MiB per extra session)"
            )
    print(json.dumps({"bench": "agents", "rounds": options.rounds, "results": results}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
