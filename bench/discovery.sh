#!/usr/bin/env bash
# Service discovery (zeroku.toml): how soon requiring instances hear of a provider change.
#
# A master and two workers (nodes a and b) on this machine, default timings. `billing`
# provides `api` from its web processes (one on each node); `shop`, on node a, requires it
# with on_change = "signal:HUP" and logs the time each HUP arrives (from its file).
#
#   1. a provider stops cleanly (ps:scale billing web=1): from the command to shop's HUP
#   2. the provider node is lost (its worker and its processes are killed -9): from the kill
#      to shop's HUP, against the dead timeout
#   3. bench_master --discovery: 1,000 requiring instances on 10 simulated nodes (real CURVE
#      bus, real master library) told of one change: time, and bytes on the bus
#
# Usage: bench/discovery.sh [ROUNDS=3]. Prints a table; asserts nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
START=$SECONDS
say() { echo "[$((SECONDS - START))s] $*" >&2; }
die() { echo "bench/discovery.sh: $*" >&2; exit 1; }
ROUNDS="${1:-3}"
. scripts/deps.sh

say "building zeroku and bench_master (release)"
cargo build --quiet --release -p zeroku --bin zeroku -p zeroku-master --example bench_master
TARGET="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
BIN="$TARGET/release/zeroku"

WORK="$(mktemp -d /tmp/discoverybench.XXXXXX)"
chmod 711 "$WORK"
PIDS=()
kill_apps() { # worker data dir: every app process group it started
  local f pid
  for f in "$1"/procs/*.json; do
    [ -e "$f" ] || continue
    pid="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["pid"])' "$f" 2>/dev/null)" || continue
    [ -n "$pid" ] && kill -KILL -- "-$pid" 2>/dev/null || true
  done
}
cleanup() {
  set +e
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
  for _ in $(seq 50); do
    alive=0
    for p in "${PIDS[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ $alive = 0 ] && break
    sleep 0.1
  done
  for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null; done
  kill_apps "$WORK/a"; kill_apps "$WORK/b"
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
now() { python3 -c 'import time; print(f"{time.time():.3f}")'; }
median() { python3 -c 'import statistics,sys; print(f"{statistics.median(float(x) for x in sys.argv[1:]):.2f}")' "$@"; }
z() { ZEROKU_URL="$URL" ZEROKU_TOKEN="$TOKEN" "$BIN" "$@"; }
wait_for() { # seconds what command...
  local t="$1" what="$2"; shift 2
  for _ in $(seq $((t * 10))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  die "timed out waiting for $what"
}

P1=$(free_port); P2=$(free_port); P3=$(free_port)
say "starting zeroku master and workers a, b"
"$BIN" master --data "$WORK/m" --api "127.0.0.1:$P1" --pub "tcp://127.0.0.1:$P2" \
  --pull "tcp://127.0.0.1:$P3" > "$WORK/master.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 300); do [ -s "$WORK/m/cli.env" ] && break; sleep 0.1; done
URL="$(. "$WORK/m/cli.env"; echo "$ZEROKU_URL")"; TOKEN="$(. "$WORK/m/cli.env"; echo "$ZEROKU_TOKEN")"
DEAD_MS="$(curl -s "$URL/v1/status" -H "Authorization: Bearer $TOKEN" | python3 -c 'import json,sys; print(json.load(sys.stdin)["dead_after_ms"])')"
start_worker() { # node
  ZEROKU_JOIN_TOKEN="$(z nodes:join-token 2>/dev/null)" "$BIN" worker --data "$WORK/$1" --node "$1" \
    --master "$URL" >> "$WORK/worker-$1.log" 2>&1 &
  WPID=$!
  disown "$WPID" # (no "Killed" notice when node b is lost)
  PIDS+=($WPID)
}
start_worker a; WA=$WPID
start_worker b; WB=$WPID
nodes_up() { [ "$(z nodes --json | python3 -c 'import json,sys; print(sum(n["state"] == "up" for n in json.load(sys.stdin)))')" = "$1" ]; }
wait_for 30 "two nodes up" nodes_up 2

mkdir -p "$WORK/billing" "$WORK/shop/bin"
printf 'web: exec python3 -m http.server $PORT\n' > "$WORK/billing/Procfile"
printf '[provides.api]\n' > "$WORK/billing/zeroku.toml"
printf 'worker: exec python3 bin/shop.py\n' > "$WORK/shop/Procfile"
printf '[requires.api]\napp = "billing"\non_change = "signal:HUP"\n' > "$WORK/shop/zeroku.toml"
cat > "$WORK/shop/bin/shop.py" <<'EOF'
import os, signal, time
def hup(*_):
    with open(os.environ["ZEROKU_REQUIRE_API_FILE"]) as f:
        n = len(f.read().split())
    print(f"hup {time.time():.3f} {n}", flush=True)
signal.signal(signal.SIGHUP, hup)
print("start", flush=True)
while True:
    time.sleep(3600)
EOF
z apps:create billing >/dev/null; z apps:create shop >/dev/null
z deploy -a billing "$WORK/billing" >/dev/null
z deploy -a shop "$WORK/shop" >/dev/null
# shop on node a only: b is the one that goes.
z nodes:drain b >/dev/null
z ps:scale -a shop worker=1 >/dev/null
ups() { z ps -a "$1" --json | python3 -c 'import json,sys; print(sum(p["state"] == "up" for p in json.load(sys.stdin)))'; }
is_up() { [ "$(ups "$1")" = "$2" ]; }
wait_for 60 "shop up" is_up shop 1
z nodes:undrain b >/dev/null
hups() { z logs -a shop -n 10000 --source app 2>/dev/null | grep -c ' hup ' || true; }
last_hup() { z logs -a shop -n 10000 --source app 2>/dev/null | grep ' hup ' | tail -1 | awk '{print $(NF-1), $NF}'; }
wait_hup() { # count-before seconds -> "time providers" of the new HUP
  for _ in $(seq $(($2 * 20))); do
    [ "$(hups)" -gt "$1" ] && { last_hup; return 0; }
    sleep 0.05
  done
  die "no HUP within $2 s"
}
two_providers() { # billing web=2, one on each node (placed afresh: spread over both)
  z ps:scale -a billing web=0 >/dev/null
  wait_for 60 "no provider" is_up billing 0
  z ps:scale -a billing web=2 >/dev/null
  wait_for 60 "two providers up" is_up billing 2
  local b; b="$(z ps -a billing --json | python3 -c 'import json,sys; print(len({p["node"] for p in json.load(sys.stdin)}))')"
  [ "$b" = 2 ] || die "billing's two web processes are not on two nodes"
  sleep 1.5 # shop hears of the second one
}

stop_ms=(); lost_ms=()
for r in $(seq "$ROUNDS"); do
  say "round $r: a provider stops cleanly"
  two_providers
  n=$(hups); t0=$(now)
  z ps:scale -a billing web=1 >/dev/null
  read -r t k <<< "$(wait_hup "$n" 10)"
  stop_ms+=("$(python3 -c "print(round(($t - $t0) * 1000))")")
  say "  told in ${stop_ms[-1]} ms ($k provider left)"

  say "round $r: the node of a provider is lost"
  two_providers
  n=$(hups); t0=$(now)
  kill -KILL "$WB"; kill_apps "$WORK/b"
  read -r t k <<< "$(wait_hup "$n" 30)"
  lost_ms+=("$(python3 -c "print(round(($t - $t0) * 1000))")")
  say "  told in ${lost_ms[-1]} ms ($k provider left; dead timeout $DEAD_MS ms)"
  start_worker b; WB=$WPID
  wait_for 30 "node b back" nodes_up 2
done

say "bench_master --discovery (1,000 requiring instances on 10 simulated nodes)"
SIM="$("$TARGET/release/examples/bench_master" --discovery 2>/dev/null | sed -n 's/^| *\(.*[^ ]\) *| *\(.*[^ ]\) *|$/\1\t\2/p')"
sim() { printf '%s\n' "$SIM" | grep -F "$1" | head -1 | cut -f2; }

echo
echo "### discovery: requirers told of a provider change (on_change = signal:HUP; median of $ROUNDS)"
echo
echo "| measure | value | goal |"
echo "|---|---:|---|"
echo "| provider stops cleanly (\`ps:scale\`) → requirer's HUP | $(median "${stop_ms[@]}") ms (${stop_ms[*]}) | ≤ 1 s |"
echo "| provider's node lost (kill -9) → requirer's HUP | $(median "${lost_ms[@]}") ms (${lost_ms[*]}) | ≤ dead timeout ($DEAD_MS ms) + 1 s |"
echo "| 1,000 requirers on 10 simulated nodes: heartbeat → every node has its list | $(sim 'every node') | reported |"
echo "| … bytes on the bus for that one change | $(sim 'bytes on the bus') | reported |"
