"""Cost of one policy decision with 200 rules (mixed kinds, globs, command patterns).

Pure CPU plus ``os.path.realpath`` on the request's paths (the workdir is a real
temporary directory with a few files, so realpath does its real work). The
rules are compiled once; the (agent, workdir) selection is cached, as it is in
the daemon. Prints the median microseconds per request over ``--reps`` rounds
of ``--requests`` mixed requests (file requests with 1-2 paths, single and
chained commands, other kinds). Goal: <= 50 us. Usage::

    .venv/bin/python benchmarks/bench_policy.py [--requests 5000] [--reps 7]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import tempfile
import time
from typing import Any

from neocode_gateway.policy import Policy, ToolRequest

FILE_KINDS = ["read", "edit", "delete", "move", "search"]
DIRS = ["src", "lib", "docs", "tests", "build", "scripts", "config", "app", "pkg", "web"]
EXTS = ["py", "md", "ts", "json", "toml", "txt", "rs", "go"]
TOOLS = ["git", "npm", "make", "cargo", "pytest", "ls", "cat", "grep", "docker", "kubectl"]
SUBS = ["status", "diff", "log", "push", "run", "build", "test", "install", "exec", "show"]


def tables(rng: random.Random) -> list[dict[str, Any]]:
    """Four tables, 200 rules in all: 60% file globs, 35% command patterns, 5% bare kinds."""
    out: list[dict[str, Any]] = []
    for index in range(4):
        table: dict[str, Any] = {"allow": [], "ask": [], "deny": []}
        if index == 1:
            table["agents"] = ["claude"]
        if index == 2:
            table["workdirs"] = ["/tmp/**"]
        for _ in range(50):
            roll = rng.random()
            if roll < 0.60:
                kind = rng.choice(FILE_KINDS)
                glob = rng.choice(
                    [
                        f"{rng.choice(DIRS)}/**",
                        f"*.{rng.choice(EXTS)}",
                        f"{rng.choice(DIRS)}/*.{rng.choice(EXTS)}",
                        f"**/{rng.choice(DIRS)}/**",
                        f".env{rng.randrange(100)}*",
                    ]
                )
                rule = f"{kind}({glob})"
            elif roll < 0.95:
                tool, sub = rng.choice(TOOLS), rng.choice(SUBS)
                rule = rng.choice(
                    [f"execute({tool} {sub})", f"execute({tool} {sub} *)", f"execute({tool} *)"]
                )
            else:
                rule = rng.choice(["think", "fetch", "other"])
            verdict = rng.choices(["allow", "ask", "deny"], weights=[6, 2, 2])[0]
            table[verdict].append(rule)
        out.append(table)
    return out


def requests(rng: random.Random, count: int) -> list[ToolRequest]:
    out: list[ToolRequest] = []
    for _ in range(count):
        roll = rng.random()
        if roll < 0.5:
            paths = tuple(
                f"{rng.choice(DIRS)}/{rng.choice(DIRS)}/f{rng.randrange(50)}.{rng.choice(EXTS)}"
                for _ in range(rng.choice([1, 1, 2]))
            )
            out.append(ToolRequest(rng.choice(FILE_KINDS), paths=paths))
        elif roll < 0.9:
            parts = [
                f"{rng.choice(TOOLS)} {rng.choice(SUBS)} --flag{rng.randrange(9)} arg"
                for _ in range(rng.choice([1, 1, 1, 2, 3]))
            ]
            out.append(ToolRequest("execute", command=" && ".join(parts)))
        else:
            out.append(ToolRequest(rng.choice(["think", "fetch", "other"])))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--reps", type=int, default=7)
    args = parser.parse_args()
    rng = random.Random(20)
    workdir = tempfile.mkdtemp(prefix="bench-policy-", dir="/tmp")
    try:
        for name in DIRS:
            os.makedirs(os.path.join(workdir, name, "src"))
        os.symlink(os.path.join(workdir, "src"), os.path.join(workdir, "lib", "link"))
        start = time.perf_counter()
        policy = Policy.from_tables(tables(rng), "bench")
        load_ms = (time.perf_counter() - start) * 1e3
        rules = sum(len(r) for t in policy.tables for r in t.rules.values())
        batch = requests(rng, args.requests)
        verdicts: dict[str, int] = {}
        per_request: list[float] = []
        for _ in range(args.reps):
            start = time.perf_counter()
            for request in batch:
                decision = policy.decide(request, agent="claude", workdir=workdir)
                verdicts[decision.verdict] = verdicts.get(decision.verdict, 0) + 1
            per_request.append((time.perf_counter() - start) / len(batch) * 1e6)
    finally:
        shutil.rmtree(workdir)
    us = statistics.median(per_request)
    warnings = len(policy.warnings)
    print(f"rules={rules} load_ms={load_ms:.1f} warnings={warnings} verdicts={verdicts}")
    print(f"RESULT policy us_per_request={us:.1f}")


if __name__ == "__main__":
    main()
