#!/usr/bin/env bash
# The cost of standing still: one `zeroku up` (master, worker and frontend in one process) with
# 200 instances at rest — 100 `web` (busybox httpd on $PORT), 50 `handler` (the Python
# Mongrel2-protocol example handler), 50 `other` (sleep) — measured over 30 s once every
# instance is up, twice: on a quiet host, and with 20,000 more established TCP sockets on
# loopback (10,000 connections held open by a helper). For each: the CPU time of the
# `zeroku up` process (utime+stime from /proc/PID/stat, % of one core), of which its busiest
# threads, and the TCP connections opened on the host meanwhile (/proc/net/snmp ActiveOpens:
# readiness or liveness checks would show here; the host is otherwise quiet).
#
# Usage: bench/idle.sh [SECONDS=30] [WEB=100] [HANDLERS=50] [OTHER=50]
set -euo pipefail
cd "$(dirname "$0")/.."
START=$SECONDS
say() { echo "[$((SECONDS - START))s] $*" >&2; }
SECS="${1:-30}"; WEB="${2:-100}"; HANDLERS="${3:-50}"; OTHER="${4:-50}"
TOTAL=$((WEB + HANDLERS + OTHER))
. scripts/deps.sh

say "building zeroku (release)"
cargo build --quiet --release --bin zeroku
TARGET="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
BIN="$TARGET/release/zeroku"

WORK="$(mktemp -d /tmp/idlebench.XXXXXX)"
chmod 711 "$WORK"
UP=""; HOLD=""
cleanup() {
  set +e
  # shellcheck disable=SC2086
  [ -n "$HOLD" ] && kill $HOLD 2>/dev/null
  if [ -n "$UP" ]; then
    ZEROKU_URL="$URL" ZEROKU_TOKEN="$TOKEN" "$BIN" ps:scale -a idle web=0 handler=0 other=0 >/dev/null 2>&1
    for _ in $(seq 300); do compgen -G "$WORK/up/worker/procs/*.json" >/dev/null || break; sleep 0.1; done
    kill -TERM "$UP" 2>/dev/null
    for _ in $(seq 100); do kill -0 "$UP" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$UP" 2>/dev/null
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

mkdir -p "$WORK/app/public"
echo ok > "$WORK/app/public/index.html"
cp examples/python-handler/handler.py "$WORK/app/handler.py"
cat > "$WORK/app/Procfile" <<'EOF'
web: exec busybox httpd -f -p $PORT -h public
handler: exec python3 handler.py
other: exec sleep 100000
EOF
cat > "$WORK/up.toml" <<'EOF'
[worker]
capacity_mb = 1000000
EOF
P1=$(free_port); P2=$(free_port); P3=$(free_port); P4=$(free_port)
say "starting zeroku up"
"$BIN" up --data "$WORK/up" --config "$WORK/up.toml" --api "127.0.0.1:$P1" \
  --pub "tcp://127.0.0.1:$P2" --pull "tcp://127.0.0.1:$P3" --http "127.0.0.1:$P4" --admin "" \
  > "$WORK/up.log" 2>&1 &
UP=$!
for _ in $(seq 300); do [ -s "$WORK/up/cli.env" ] && break; sleep 0.1; done
URL="$(. "$WORK/up/cli.env"; echo "$ZEROKU_URL")"; TOKEN="$(. "$WORK/up/cli.env"; echo "$ZEROKU_TOKEN")"
z() { ZEROKU_URL="$URL" ZEROKU_TOKEN="$TOKEN" "$BIN" "$@"; }
for _ in $(seq 100); do z apps >/dev/null 2>&1 && break; sleep 0.2; done
z apps:create idle >/dev/null
z releases:create -a idle "$WORK/app" >/dev/null
z ps:scale -a idle "web=$WEB" "handler=$HANDLERS" "other=$OTHER" >/dev/null
say "waiting for $TOTAL instances to be up"
for i in $(seq 600); do
  up="$(z ps -a idle --json | python3 -c 'import json,sys; print(sum(1 for p in json.load(sys.stdin) if p["state"] == "up"))')"
  [ "$up" -ge "$TOTAL" ] && break
  [ "$i" -eq 600 ] && { echo "only $up of $TOTAL up after 120 s" >&2; exit 1; }
  sleep 0.2
done
sleep 5 # let the last heartbeats and route updates pass

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
opens() { awk '/^Tcp:/ { if (h) { print $6; exit } h = 1 }' /proc/net/snmp; }
# CPU of each thread over the window: "name ticks", busiest first.
threads_before() { for t in /proc/"$UP"/task/*; do echo "$(basename "$t") $(awk '{print $14 + $15}' "$t/stat" 2>/dev/null)"; done; }
measure() { # label
  local hz t0 t1 o0 o1 before
  hz=$(getconf CLK_TCK)
  before="$(threads_before)"
  t0=$(ticks "$UP"); o0=$(opens)
  sleep "$SECS"
  t1=$(ticks "$UP"); o1=$(opens)
  local busiest
  busiest="$(while read -r tid tk; do
      now=$(awk '{print $14 + $15}' "/proc/$UP/task/$tid/stat" 2>/dev/null || echo "$tk")
      name=$(cat "/proc/$UP/task/$tid/comm" 2>/dev/null || echo "?")
      echo "$((now - tk)) $name"
    done <<< "$before" | sort -rn | head -3 | awk -v hz="$hz" -v s="$SECS" '{printf "%s %.2f%%, ", $2, 100 * $1 / hz / s}')"
  printf '| %s | %d | %.2f%% | %d | %s |\n' "$1" "$TOTAL" \
    "$(echo "100 * ($t1 - $t0) / $hz / $SECS" | bc -l)" "$((o1 - o0))" "${busiest%, }"
}

ROWS=()
say "measuring at rest, quiet host (${SECS} s)"
ROWS+=("$(measure "quiet host ($(ss -Htn state established | wc -l) established sockets)")")

say "opening 10,000 loopback connections (20,000 sockets)"
# Two helpers of 5,000 connections each (10,000 sockets: under a 20,000 open files limit).
cat > "$WORK/hold.py" <<'PY'
import resource, socket, sys, time
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen(4096)
port = srv.getsockname()[1]
held = []
for _ in range(5000):
    c = socket.create_connection(("127.0.0.1", port))
    s, _ = srv.accept()
    held += [c, s]
open(sys.argv[1], "w").write("ready")
time.sleep(100000)
PY
python3 "$WORK/hold.py" "$WORK/hold1.ready" &
HOLD="$!"
python3 "$WORK/hold.py" "$WORK/hold2.ready" &
HOLD="$HOLD $!"
for _ in $(seq 600); do [ -s "$WORK/hold1.ready" ] && [ -s "$WORK/hold2.ready" ] && break; sleep 0.1; done
[ -s "$WORK/hold1.ready" ] && [ -s "$WORK/hold2.ready" ] || { echo "the helpers could not open their connections" >&2; exit 1; }
sleep 2
ROWS+=("$(measure "20,000 more sockets ($(ss -Htn state established | wc -l) established)")")

# How long from a handler connecting its sockets to the worker counting it up (the
# readiness check: sock_diag of the process's own sockets, every 100 ms tick while
# something starts): a handler that logs the time right after connecting, scaled 0 -> 1
# ten times, against the first time `ps` shows it up (polled every 10 ms).
say "handler connect -> up, 10 rounds"
# shellcheck disable=SC2086
[ -n "$HOLD" ] && kill $HOLD 2>/dev/null; HOLD=""
mkdir -p "$WORK/happ"
cat > "$WORK/happ/h.py" <<'HPY'
import os, time, zmq
ctx = zmq.Context()
pull, pub = ctx.socket(zmq.PULL), ctx.socket(zmq.PUB)
for ep in os.environ["M2_SEND_SPEC"].split():
    pull.connect(ep)
for ep in os.environ["M2_RECV_SPEC"].split():
    pub.connect(ep)
print("connected %.6f" % time.time(), flush=True)
while True:
    pull.recv()
HPY
echo 'handler: exec python3 h.py' > "$WORK/happ/Procfile"
z apps:create hconn >/dev/null
z releases:create -a hconn "$WORK/happ" >/dev/null
HUP="$(ZEROKU_URL="$URL" ZEROKU_TOKEN="$TOKEN" BIN="$BIN" timeout 300 python3 - <<'HPY'
import json, os, re, subprocess, time, urllib.request
url, token, bin_ = os.environ["ZEROKU_URL"], os.environ["ZEROKU_TOKEN"], os.environ["BIN"]
def ps():
    req = urllib.request.Request(url + "/v1/apps/hconn/ps", headers={"Authorization": "Bearer " + token})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())
def scale(n):
    subprocess.run([bin_, "ps:scale", "-a", "hconn", f"handler={n}"], check=True, stdout=subprocess.DEVNULL)
gaps = []
for r in range(10):
    scale(1)
    deadline = time.time() + 60
    while time.time() < deadline:
        p = [x for x in ps() if x.get("state") == "up" and x.get("pid")]
        if p:
            t_up = time.time()
            break
        time.sleep(0.01)
    else:
        raise SystemExit("the handler never came up")
    logs = subprocess.run([bin_, "logs", "-a", "hconn", "-n", "200"], capture_output=True, text=True).stdout
    stamps = [float(m) for m in re.findall(r"connected (\d+\.\d+)", logs)]
    gaps.append((t_up - max(stamps)) * 1000)
    scale(0)
    while ps():
        time.sleep(0.05)
gaps.sort()
print(f"{gaps[len(gaps) // 2]:.0f} ms p50, {gaps[-1]:.0f} ms max")
HPY
)" || HUP="not measured"
z ps:scale -a hconn handler=0 >/dev/null 2>&1 || true

echo
echo "### at rest: one \`zeroku up\`, $WEB web + $HANDLERS handler + $OTHER other instances, ${SECS} s"
echo
echo "| host | instances | \`zeroku up\` CPU (% of one core) | TCP connections opened on the host | busiest threads |"
echo "|---|---:|---:|---:|---|"
printf '%s\n' "${ROWS[@]}"
echo
echo "handler connecting -> counted up (10 rounds, \`ps\` polled every 10 ms): $HUP"
say "done"
