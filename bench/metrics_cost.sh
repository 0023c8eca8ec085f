#!/usr/bin/env bash
# What the frontend's metrics cost per request (the issue's goal: at most 3% of the frontend's
# CPU per request): the one call a request makes, `Metrics::observe`, a million times across
# 100 apps (frontend/examples/metrics_cost.rs, release build): wall time per call, and under
# callgrind the instructions per call, next to the frontend's instructions per request that
# `CALLGRIND=1 bash bench/frontend.sh` measures (FRONTEND_IR: 21,520 with a handler, 38,416
# proxied, on the last run). The once-a-minute report to the master reads the same counters and adds nothing
# per request.
#
# Usage: bench/metrics_cost.sh   Env: FRONTEND_IR (default 21520)
set -euo pipefail
cd "$(dirname "$0")/.."
FRONTEND_IR="${FRONTEND_IR:-21520}"
command -v valgrind >/dev/null || { sudo_=""; [ "$(id -u)" = 0 ] || sudo_=sudo; $sudo_ apt-get install -y -qq valgrind >/dev/null; }
cargo build --quiet --release -p zeroku-frontend --example metrics_cost
TARGET="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
BIN="$TARGET/release/examples/metrics_cost"
WALL="$("$BIN" 1000000)"
OUT="$(mktemp -d /tmp/metricscost.XXXXXX)"
trap 'rm -rf "$OUT"' EXIT
valgrind --tool=callgrind --callgrind-out-file="$OUT/cg.out" \
  --toggle-collect='zeroku_frontend::metrics::Metrics::observe*' "$BIN" 100000 > /dev/null 2>&1
IR="$(callgrind_annotate "$OUT/cg.out" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')"
python3 - "$WALL" "$IR" "$FRONTEND_IR" <<'PY'
import sys
wall, ir, fe = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
ns = float(dict(kv.split("=") for kv in wall.split())["ns_per_call"])
per = ir / 100000
print("| measure | value |")
print("|---|---:|")
print(f"| Metrics::observe, wall time per call (release) | {ns:.1f} ns |")
print(f"| Metrics::observe, instructions per call (callgrind) | {per:.0f} |")
print(f"| the frontend's instructions per request (CALLGRIND=1 bench/frontend.sh) | {fe:,} |")
print(f"| metrics' share of a request's instructions | {100*per/fe:.2f}% (goal <= 3%) |")
PY
