#!/usr/bin/env bash
# Master benchmark: places 100,000 instances (1,000 apps × 100) over 5,000 nodes with the real
# store/scheduler/cluster, publishes every node list over real ZMQ PUB to 10 SUB sockets in a
# child process, and prints a table (full replan, scheduler alone, an incremental +1 scale,
# bytes per list, master RSS), then the master at rest for 30 s with every node heartbeating over
# the bus, at 1 s and at the pace it asks for. Extra args go to the example, e.g.
# `bench/master.sh --nodes 500`.
#
# Usage: bench/master.sh [--nodes N] [--apps N] [--web N] [--worker N] [--sockets N] [--env N] [--rest SECS]
set -euo pipefail
cd "$(dirname "$0")/.."
echo "building bench_master (release)..." >&2
cargo build --quiet --release -p zeroku-master --example bench_master
TARGET="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
exec timeout 600 "$TARGET/release/examples/bench_master" "$@"
