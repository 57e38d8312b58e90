#!/bin/bash
# Regenerates docs/benchmarks.md (needs root; about 15 minutes, 10 of them the idle-wakeup window).
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "benchmarks need root: sudo make bench" >&2; exit 1; }
scripts/install-deps.sh gcc libc6-dev util-linux strace
exec /usr/bin/python3 Benchmarks/run.py --rnmd .build/release/rnmd --bench .build/release/rnm-bench \
    --out docs/benchmarks.md --idle-seconds "${RNM_BENCH_IDLE_SECONDS:-600}" "$@"
