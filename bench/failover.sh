#!/usr/bin/env bash
# PostgreSQL add-on failover (`addons:create postgres --ha`), the test a user would trust, long:
# tests/addons_ha.rs with ROUNDS failovers in a row (default 20) instead of the suite's 2. Two
# nodes; a writer inserts increasing ids and keeps those acknowledged; each round kills the
# primary's node (its worker and servers, -9), waits for writes, brings the node back and waits
# for its old primary to be the synchronous standby again; then one planned `addons:failover`.
# The test asserts behaviour; this prints its figures.
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
print()
print(f"### PostgreSQL failover: {sys.argv[2]} rounds on 2 nodes (dead timeout 3 s)")
print()
print("| measure | value | goal |")
print("|---|---:|---|")
print(f"| acknowledged ids missing after all rounds | {missing} of {acked} | 0 |")
print(f"| writes accepted by a demoted primary after promotion | {demoted} | 0 |")
if kill:
    print(f"| kill → DATABASE_URL accepts writes again (p50 / max) | {statistics.median(kill)/1000:.1f} s / {max(kill)/1000:.1f} s | ≤ 15 s |")
if switch:
    print(f"| planned `addons:failover` → writable, lost writes | {switch[0]} ms, {missing} | ≤ 2 s, 0 |")
print("| Redis failover | not built (Redis add-ons have no replicas yet) | ≤ 15 s |")
PY
