#!/usr/bin/env bash
# Run the shared benchmark harness (../shared/bench/run.sh) against this gateway,
# side by side with the C limit server. Extra arguments go to the harness, e.g.
#   benchmarks/run.sh --scenarios rr16,pipe16x16 --reps 3
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$HERE")"
BENCH="${BENCH_DIR:-$ROOT/../shared/bench}"
GATEWAY="${GATEWAY:-$ROOT/.venv/bin/neocode-gateway}"
[[ -x $BENCH/run.sh ]] || { echo "benchmarks/run.sh: no harness at $BENCH (set BENCH_DIR)" >&2; exit 2; }
[[ -x $GATEWAY ]] || { echo "benchmarks/run.sh: $GATEWAY not found; run make venv" >&2; exit 2; }
# The idle scenarios hold thousands of connections: the load generator needs the
# descriptors too (the gateway raises its own limit to what --max-connections needs).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
exec "$BENCH/run.sh" --label neocode-py "$@" -- \
  "$GATEWAY" --listen {SOCKET} --max-connections 20000 --log-level warn
