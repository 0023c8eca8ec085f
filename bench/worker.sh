#!/usr/bin/env bash
# Worker benchmark: scale-to-running latency and daemon RSS.
#
# 1. `zeroku up` (master + worker in one process) on free loopback ports, with a config that only
#    raises [worker] capacity_mb so 200 instances of the default 512 MB fit. An app `bench` with
#    the Procfile `sleeper: sleep 100000`, then 100 times `zeroku ps:scale -a bench sleeper=N`
#    (N = 1..100, through the CLI binary, as a user would): the time from starting the CLI call
#    until instance bench.sleeper.N shows a pid in GET /v1/apps/bench/ps (polled every 10 ms
#    through the HTTP API with urllib, so CLI start-up is not in the polling). Then one call to
#    sleeper=200 (time until all 200 show a pid) and the RSS of the `zeroku up` process.
# 2. The same with `zeroku master` and `zeroku worker` as separate processes (the worker joins
#    with a `nodes:join-token`), reporting the master's and the worker's RSS apart.
# After the big scale, each daemon's CPU over 20 s at rest (so the worker's per 100 instances).
#
# Cleans up after itself: scales to 0, waits for the processes to go, stops the daemons and
# kills any leftover app process group (pids from <worker-data>/procs/*.json).
#
# Usage: bench/worker.sh [LATENCY_STEPS=100] [FINAL=200]     (needs python3; run as root or not)
set -euo pipefail
cd "$(dirname "$0")/.."
START=$SECONDS
say() { echo "[$((SECONDS - START))s] $*" >&2; }
STEPS="${1:-100}"
FINAL="${2:-200}"

echo "building zeroku (release)..." >&2
cargo build --quiet --release --bin zeroku
TARGET="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
BIN="$TARGET/release/zeroku"

WORK="$(mktemp -d /tmp/workerbench.XXXXXX)"
chmod 711 "$WORK" # app processes run under their own uid when we are root
DAEMONS=()
WORKER_DATA=()

# Kills the daemons this script started, then any app process they left behind.
cleanup() {
  set +e
  [ -n "${DRIVE:-}" ] && kill -TERM "$DRIVE" 2>/dev/null
  for pid in "${DAEMONS[@]}"; do
    kill -TERM "$pid" 2>/dev/null
  done
  for pid in "${DAEMONS[@]}"; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
  done
  DAEMONS=()
  for d in "${WORKER_DATA[@]}"; do
    for f in "$d"/procs/*.json; do
      [ -e "$f" ] || continue
      pid="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["pid"])' "$f" 2>/dev/null)"
      if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        echo "killing leftover app process group $pid ($f)" >&2
        kill -KILL -- "-$pid" 2>/dev/null
      fi
    done
  done
}
trap 'cleanup; rm -rf "$WORK"' EXIT
trap 'exit 130' INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_for_file() { # path, seconds
  for _ in $(seq $(($2 * 10))); do [ -s "$1" ] && return 0; sleep 0.1; done
  echo "timed out waiting for $1" >&2; return 1
}

mkdir -p "$WORK/app"
printf 'sleeper: sleep 100000\n' > "$WORK/app/Procfile"

cat > "$WORK/drive.py" <<'PY'
"""Drives one cluster: latency of N scale steps, then one big scale, then RSS of the daemons."""
import json, math, os, random, subprocess, sys, time, urllib.request

bin_, url, token, label, steps, final = sys.argv[1:7]
steps, final = int(steps), int(final)
pids = dict(a.split("=", 1) for a in sys.argv[7:])  # name=pid of the daemons to measure
env = dict(os.environ, ZEROKU_URL=url, ZEROKU_TOKEN=token)

def api(path):
    req = urllib.request.Request(url + path, headers={"Authorization": "Bearer " + token})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())

def running():
    return {r["id"] for r in api("/v1/apps/bench/ps") if r.get("pid")}

def scale(n):
    subprocess.run([bin_, "ps:scale", "-a", "bench", f"sleeper={n}"], env=env, check=True,
                   stdout=subprocess.DEVNULL)

def wait_until(pred, timeout):
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True

def rss(pid):
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0

def pct(xs, q):
    s = sorted(xs)
    return s[max(0, math.ceil(q * len(s)) - 1)]

idle = {k: rss(v) for k, v in pids.items()}
lat, cli = [], []
rng = random.Random(1)
for n in range(1, steps + 1):
    iid = f"bench.sleeper.{n}"
    # A random pause, so the scale call does not stay in phase with the worker's 100 ms tick
    # (each step would otherwise start right after the heartbeat that ended the last one).
    time.sleep(rng.uniform(0, 0.2))
    t0 = time.monotonic()
    scale(n)
    t1 = time.monotonic()
    if not wait_until(lambda: iid in running(), 30):
        sys.exit(f"{label}: {iid} did not get a pid within 30 s")
    t2 = time.monotonic()
    cli.append((t1 - t0) * 1e3)
    lat.append((t2 - t0) * 1e3)

t0 = time.monotonic()
scale(final)
want = {f"bench.sleeper.{i}" for i in range(1, final + 1)}
ok = wait_until(lambda: want <= running(), 120)
t_final = time.monotonic() - t0
time.sleep(2)  # let heartbeats, logs and allocations settle
loaded = {k: rss(v) for k, v in pids.items()}

def cpu_ticks(pid):
    try:
        f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        return int(f[11]) + int(f[12])
    except (OSError, IndexError, ValueError):
        return 0

# At rest with `final` instances: each daemon's CPU over 20 s (% of one core).
REST = 20
hz = os.sysconf("SC_CLK_TCK")
c0 = {k: cpu_ticks(v) for k, v in pids.items()}
time.sleep(REST)
rest_cpu = {k: 100.0 * (cpu_ticks(v) - c0[k]) / hz / REST for k, v in pids.items()}

def row(name, xs):
    return (f"| {label:<28} | {name:<44} | {min(xs):7.1f} | {pct(xs, .5):7.1f} | "
            f"{pct(xs, .9):7.1f} | {pct(xs, .99):7.1f} | {max(xs):7.1f} |")

out = []
if steps:
    out.append(row(f"ps:scale N-1 -> N, pid in ps ({steps} runs)", lat))
    out.append(row("  of which the CLI call (scale + replan)", cli))
out.append(f"| {label:<28} | {f'ps:scale {steps} -> {final}: all {final} pids in ps':<44} | "
           f"{'':7} | {t_final * 1e3:7.0f} | {'':7} | {'':7} | {'':7} |" + ("" if ok else " TIMED OUT"))
for k in pids:
    out.append(f"RSS {label}: {k} {idle[k] / 1024:.1f} MiB idle (0 instances) -> "
               f"{loaded[k] / 1024:.1f} MiB with {final} instances")
for k in pids:
    out.append(f"CPU {label}: {k} at rest with {final} instances: {rest_cpu[k]:.2f}% of one core "
               f"({rest_cpu[k] * 100 / max(final, 1):.2f}% per 100 instances, {REST} s)")
print("\n".join(out))
PY

# Scales to 0 and waits until the worker has no process record left.
drain() { # url token worker-data
  ZEROKU_URL="$1" ZEROKU_TOKEN="$2" "$BIN" ps:scale -a bench sleeper=0 >/dev/null
  for _ in $(seq 600); do
    compgen -G "$3/procs/*.json" >/dev/null || return 0
    sleep 0.1
  done
  echo "processes still running 60 s after scaling to 0" >&2
}

# Creates the app and its release; waits for the node to report.
setup_app() { # url token
  ZEROKU_URL="$1" ZEROKU_TOKEN="$2" "$BIN" apps:create bench >/dev/null
  ZEROKU_URL="$1" ZEROKU_TOKEN="$2" "$BIN" releases:create -a bench "$WORK/app" >/dev/null
}

# Runs drive.py in the background and waits for it, so that a signal stops us at once.
DRIVE=""
drive() { # url token label name=pid...
  local url="$1" token="$2" label="$3"
  shift 3
  timeout 300 python3 "$WORK/drive.py" "$BIN" "$url" "$token" "$label" "$STEPS" "$FINAL" "$@" \
    >> "$RESULTS" &
  DRIVE=$!
  wait "$DRIVE"
  DRIVE=""
}

RESULTS="$WORK/results.txt"
: > "$RESULTS"

# ---- 1. zeroku up: master and worker in one process
P1=$(free_port); P2=$(free_port); P3=$(free_port)
cat > "$WORK/up.toml" <<EOF
[worker]
# 200 instances × 512 MB (the default) must fit on this one node.
capacity_mb = 1000000
EOF
say "starting zeroku up"
"$BIN" up --data "$WORK/up" --config "$WORK/up.toml" --api "127.0.0.1:$P1" \
  --pub "tcp://127.0.0.1:$P2" --pull "tcp://127.0.0.1:$P3" > "$WORK/up.log" 2>&1 &
UP=$!
DAEMONS+=("$UP")
WORKER_DATA+=("$WORK/up/worker")
wait_for_file "$WORK/up/cli.env" 30
# shellcheck disable=SC1091
URL="$(. "$WORK/up/cli.env"; echo "$ZEROKU_URL")"; TOKEN="$(. "$WORK/up/cli.env"; echo "$ZEROKU_TOKEN")"
setup_app "$URL" "$TOKEN"
say "measuring zeroku up ($STEPS scale steps, then $FINAL)"
drive "$URL" "$TOKEN" "zeroku up" "zeroku up (master+worker)=$UP"
say "scaling to 0"
drain "$URL" "$TOKEN" "$WORK/up/worker"
cleanup

# ---- 2. zeroku master + zeroku worker as separate processes
P1=$(free_port); P2=$(free_port); P3=$(free_port)
say "starting zeroku master and zeroku worker"
"$BIN" master --data "$WORK/m" --api "127.0.0.1:$P1" --pub "tcp://127.0.0.1:$P2" \
  --pull "tcp://127.0.0.1:$P3" > "$WORK/master.log" 2>&1 &
MASTER=$!
DAEMONS+=("$MASTER")
wait_for_file "$WORK/m/cli.env" 30
URL="$(. "$WORK/m/cli.env"; echo "$ZEROKU_URL")"; TOKEN="$(. "$WORK/m/cli.env"; echo "$ZEROKU_TOKEN")"
JOIN="$(ZEROKU_URL="$URL" ZEROKU_TOKEN="$TOKEN" "$BIN" nodes:join-token 2>/dev/null)"
ZEROKU_JOIN_TOKEN="$JOIN" "$BIN" worker --data "$WORK/w" --node n1 --master "$URL" \
  --capacity-mb 1000000 > "$WORK/worker.log" 2>&1 &
WORKER=$!
DAEMONS+=("$WORKER")
WORKER_DATA+=("$WORK/w")
setup_app "$URL" "$TOKEN"
say "measuring zeroku master + worker ($STEPS scale steps, then $FINAL)"
drive "$URL" "$TOKEN" "master + worker (2 procs)" "master=$MASTER" "worker=$WORKER"
say "scaling to 0"
drain "$URL" "$TOKEN" "$WORK/w"
cleanup
say "done"

echo
echo "### worker: scale-to-running latency (ms; scale through the zeroku CLI, ps polled over HTTP every 10 ms)"
echo
printf '| %-28s | %-44s | %7s | %7s | %7s | %7s | %7s |\n' setup measurement min p50 p90 p99 max
dashes() { printf -- '-%.0s' $(seq "$1"); }
printf '|%s|%s|%s:|%s:|%s:|%s:|%s:|\n' "$(dashes 30)" "$(dashes 46)" "$(dashes 8)" "$(dashes 8)" \
  "$(dashes 8)" "$(dashes 8)" "$(dashes 8)"
grep '^|' "$RESULTS"
echo
echo "### RSS (VmRSS)"
echo
grep '^RSS ' "$RESULTS" | sed 's/^RSS /- /'
echo
echo "### CPU at rest (utime+stime from /proc/PID/stat)"
echo
grep '^CPU ' "$RESULTS" | sed 's/^CPU /- /'
echo
echo "(machine: $(nproc) cores; running as $(id -un); app processes: sh -c 'sleep 100000' each)"
