#!/usr/bin/env bash
# Add-on failover (`addons:create postgres|redis --ha`), the test a user would trust, long:
# tests/addons_ha.rs with ROUNDS failovers in a row (default 20) instead of the suite's 2, for
# PostgreSQL and for Redis. Two nodes; a writer adds increasing ids and keeps those
# acknowledged; each round kills the primary's node (its worker and servers, -9), waits for
# writes, brings the node back and waits for its old primary to be the standby again; then one
# planned `addons:failover`. On three nodes, once: a standby whose node stays away is rebuilt on
# the third, and a primary whose server cannot start fails over. The test asserts behaviour;
# this prints its figures.
#
# Usage: bench/failover.sh [ROUNDS=20]
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS="${1:-20}"
. scripts/deps.sh
LOG="$(mktemp /tmp/failover-bench.XXXXXX)"
trap 'rm -f "$LOG"' EXIT
echo "running tests/addons_ha.rs with $ROUNDS failovers (release build)" >&2
ZEROKU_HA_ROUNDS="$ROUNDS" cargo test --quiet --release --test addons_ha -- --nocapture > "$LOG" 2>&1 \
  || { tail -40 "$LOG" >&2; echo "bench/failover.sh: the test failed" >&2; exit 1; }
python3 - "$LOG" "$ROUNDS" <<'PY'
import statistics, sys
kill, demoted, switch, acked, missing = [], 0, [], 0, 0
rkill, rswitch, racked, rlost = [], [], 0, 0
rebuilt, crashed = [], []
for line in open(sys.argv[1]):
    f = line.split()
    if not f or f[0] != "FIGURE":
        continue
    if f[1] == "kill_to_writable_ms":
        kill.append(int(f[2]))
    elif f[1] == "demoted_primary_writes":
        demoted += int(f[2])
    elif f[1] == "switchover_ms":
        switch.append(int(f[2]))
    elif f[1] == "acked":
        acked, missing = int(f[2]), int(f[4])
    elif f[1] == "redis_kill_to_writable_ms":
        rkill.append(int(f[2]))
    elif f[1] == "redis_switchover_ms":
        rswitch.append(int(f[2]))
    elif f[1] == "redis_acked":
        racked, rlost = int(f[2]), int(f[4])
    elif f[1] == "standby_rebuilt_ms":
        rebuilt.append(int(f[2]))
    elif f[1] == "crashed_server_failover_ms":
        crashed.append(int(f[2]))
def span(v):
    return f"{statistics.median(v)/1000:.1f} s / {max(v)/1000:.1f} s"
print()
print(f"### Add-on failover: {sys.argv[2]} rounds each on 2 nodes (dead timeout 3 s)")
print()
print("| measure | value | goal |")
print("|---|---:|---|")
print(f"| PostgreSQL: acknowledged ids missing after all rounds | {missing} of {acked} | 0 |")
print(f"| PostgreSQL: writes accepted by a demoted primary after promotion | {demoted} | 0 |")
if kill:
    print(f"| PostgreSQL: kill → DATABASE_URL accepts writes again (p50 / max) | {span(kill)} | ≤ 15 s |")
if switch:
    print(f"| PostgreSQL: planned `addons:failover` → writable, lost writes | {switch[0]} ms, {missing} | ≤ 2 s, 0 |")
if rkill:
    print(f"| Redis: kill → the new REDIS_URL accepts writes (p50 / max) | {span(rkill)} | ≤ 15 s |")
    print(f"| Redis: acknowledged ids lost (asynchronous replication) | {rlost} of {racked} | reported |")
if rswitch:
    print(f"| Redis: planned `addons:failover` | {rswitch[0]} ms | reported |")
if rebuilt:
    print(f"| PostgreSQL, 3 nodes: standby's node killed → new standby in sync on the third | {rebuilt[0]/1000:.1f} s | reported |")
if crashed:
    print(f"| PostgreSQL, 3 nodes: primary's server cannot start → failed over | {crashed[0]/1000:.1f} s | reported |")
PY
