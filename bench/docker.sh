#!/usr/bin/env bash
# Native processes against Docker containers, in one run on one `zeroku up`:
#
#   - scale-to-serving: from `zeroku ps:scale -a APP web=1` (from 0) until the frontend answers
#     200 from the new instance, p50/p90 over N rounds, for the same slug run natively and in
#     a container (stack: stacks/busybox-rootfs.sh, the app: `busybox httpd` on $PORT);
#   - memory per instance: MemAvailable before and after scaling each app to 10 instances,
#     divided by 10 (so a container's share of containerd-shim and the engine is counted);
#   - `zeroku run -a APP sh` on a pseudo-terminal: from starting the CLI until the remote
#     shell's prompt shows (bench/first_prompt.py), p50/p90 over N runs.
#
# Usage: bench/docker.sh [ROUNDS=20]     Needs the machine's Docker Engine.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
N="${1:-20}"
say() { echo "[bench/docker] $*" >&2; }

bash scripts/deps.sh >&2
docker info >/dev/null 2>&1 || { echo "bench/docker.sh: no Docker Engine answers (docker info)" >&2; exit 1; }
say "building zeroku (release)"
cargo build --quiet --release -p zeroku --bin zeroku
TARGET="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
BIN="$TARGET/release/zeroku"

WORK="$(mktemp -d /tmp/dockerbench.XXXXXX)"
chmod 711 "$WORK"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
P_API=$(free_port) P_PUB=$(free_port) P_PULL=$(free_port) P_HTTP=$(free_port)
NODE="bench$$"
UP_PID=""
zk() { "$BIN" "$@"; }
cleanup() {
  set +e
  if [ -n "$UP_PID" ]; then
    zk ps:scale -a nat web=0 >/dev/null 2>&1
    zk ps:scale -a dock web=0 >/dev/null 2>&1
    sleep 3
    kill -TERM "$UP_PID" 2>/dev/null
    wait "$UP_PID" 2>/dev/null
  fi
  docker ps -aq --filter "label=zeroku.node=$NODE" | xargs -r docker rm -f >/dev/null 2>&1
  for f in "$WORK"/data/worker/procs/*.json; do
    [ -e "$f" ] || continue
    pid="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["pid"])' "$f" 2>/dev/null)"
    [ -n "$pid" ] && kill -KILL -- "-$pid" 2>/dev/null
  done
  [ -n "${KEEP:-}" ] && echo "kept $WORK" >&2 || rm -rf "$WORK"
}
trap cleanup EXIT

cat > "$WORK/zeroku.toml" <<EOF
[master]
handler_port_min = $(( (RANDOM % 400) * 20 + 10000 ))
[worker]
node = "$NODE"
port_min = 47000
port_max = 47999
stop_grace_ms = 2000
drain_ms = 0
[frontend]
admin = ""
EOF
"$BIN" up --data "$WORK/data" --config "$WORK/zeroku.toml" --api "127.0.0.1:$P_API" \
  --pub "tcp://127.0.0.1:$P_PUB" --pull "tcp://127.0.0.1:$P_PULL" --http "127.0.0.1:$P_HTTP" \
  >"$WORK/up.log" 2>&1 &
UP_PID=$!
for _ in $(seq 100); do [ -s "$WORK/data/cli.env" ] && break; sleep 0.1; done
# shellcheck disable=SC1091
. "$WORK/data/cli.env"
for _ in $(seq 100); do zk nodes 2>/dev/null | grep -q "docker" && break; sleep 0.2; done
zk nodes | grep -q docker || { echo "the node reports no docker runtime" >&2; exit 1; }

bash stacks/busybox-rootfs.sh "$WORK/rootfs.tar" >&2
zk stacks:import zk-bench "$WORK/rootfs.tar" >/dev/null
mkdir -p "$WORK/src/public"
printf 'web: busybox httpd -f -p $PORT -h public\n' > "$WORK/src/Procfile"
echo "hello" > "$WORK/src/public/index.html"
for app in nat dock; do
  zk apps:create "$app" >/dev/null
  [ "$app" = dock ] && zk apps:settings -a dock runtime=docker stack=zk-bench >/dev/null
  zk deploy -a "$app" "$WORK/src" >/dev/null
done

now_ms() { date +%s%3N; }
instances() { zk ps -a "$1" --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))'; }
serving() { [ "$(curl -s -o /dev/null -w '%{http_code}' -H "Host: $1.localhost" "http://127.0.0.1:$P_HTTP/")" = 200 ]; }

declare -A P50 P90 MEM
for app in nat dock; do
  times=()
  for _ in $(seq "$N"); do
    zk ps:scale -a "$app" web=0 >/dev/null
    for _ in $(seq 300); do [ "$(instances "$app")" = 0 ] && ! serving "$app" && break; sleep 0.05; done
    sleep 0.3
    t0=$(now_ms)
    zk ps:scale -a "$app" web=1 >/dev/null
    until serving "$app"; do
      sleep 0.01
      [ $(( $(now_ms) - t0 )) -lt 60000 ] || { echo "$app never served" >&2; exit 1; }
    done
    times+=($(( $(now_ms) - t0 )))
  done
  read -r P50[$app] P90[$app] <<<"$(printf '%s\n' "${times[@]}" | sort -n | python3 -c '
import sys
v = [int(x) for x in sys.stdin.read().split()]
print(v[len(v) // 2], v[min(len(v) - 1, int(0.9 * len(v)))])')"
  # Memory: 10 instances.
  zk ps:scale -a "$app" web=0 >/dev/null
  sleep 3
  before=$(awk '/MemAvailable/ {print $2}' /proc/meminfo)
  zk ps:scale -a "$app" web=10 >/dev/null
  for _ in $(seq 600); do
    up=$(zk ps -a "$app" --json | python3 -c 'import json,sys; print(sum(1 for p in json.load(sys.stdin) if p["state"] == "up"))')
    [ "$up" = 10 ] && break
    sleep 0.1
  done
  sleep 3
  after=$(awk '/MemAvailable/ {print $2}' /proc/meminfo)
  MEM[$app]=$(( (before - after) / 10 ))
  zk ps:scale -a "$app" web=0 >/dev/null
  sleep 3
done

declare -A R50 R90
for app in nat dock; do
  read -r R50[$app] R90[$app] <<<"$(python3 bench/first_prompt.py "$BIN" "$app" "$N")"
done

printf '\nNative process vs Docker container, same slug (busybox httpd), %d rounds\n\n' "$N"
printf '| runtime | scale-to-serving p50 ms | p90 ms | memory per instance (MemAvailable drop / 10) | `zeroku run sh` to first prompt p50 ms | p90 ms |\n|---|---|---|---|---|---|\n'
printf '| native | %d | %d | %d KB | %d | %d |\n' "${P50[nat]}" "${P90[nat]}" "${MEM[nat]}" "${R50[nat]}" "${R90[nat]}"
printf '| docker | %d | %d | %d KB | %d | %d |\n' "${P50[dock]}" "${P90[dock]}" "${MEM[dock]}" "${R50[dock]}" "${R90[dock]}"
