#!/usr/bin/env bash
# Frontend benchmark: zeroku's HTTP edge against the real Mongrel2 (handler routes) and nginx
# (proxy route), all measured in one run with wrk, each for the same duration.
#
#   1. zeroku  + Python hello handler   (examples/python-handler/handler.py)
#   2. Mongrel2 + the same handler process (ONE process, connected to both servers' sockets),
#      its handlers over TCP as Mongrel2's docs configure them; and a second Mongrel2 with them
#      over ipc:// (the ratios to it are printed below the table)
#   3. zeroku  + Rust hello handler     (frontend/examples/rust_handler.rs)
#   4. zeroku proxy -> upstream         (upstream = nginx `return 200 "hello\n"`, run as the
#                                        app's `web` process by zeroku: bench/frontend/upstream)
#   5. nginx proxy_pass -> the same upstream instance
#
# zeroku runs as three processes, `zeroku master`, `zeroku worker` and `zeroku frontend`, so the
# frontend's CPU time is its own. For every case: req/s, p50/p99 latency and the CPU seconds per
# 1,000 requests of the server under test (utime+stime from /proc/PID/stat, summed over the
# process and its children: nginx's workers) and of the backend behind it (handler/upstream),
# with ratios to Mongrel2 (handler rows) or nginx (proxy rows); and the busy CPU time of the
# whole machine per request ("machine CPU": wrk, server, backend and the kernel's work for all
# of them), from which the table derives how far each zeroku row could go if the frontend's own
# user-space work cost nothing (its "bound" lines).
#
# Each comparison runs in ROUNDS rounds, the two sides one after the other in each round, and
# the table has the median of each figure and the median of the per-round ratios: on a shared
# 2-core VM one run of each side can differ by 20-30% from the next, and the pairing keeps a
# slow spell of the machine from landing on one side only.
#
# CALLGRIND=1 runs the zeroku frontend and Mongrel2 (TCP) under valgrind's callgrind instead and
# prints the instructions each executes per request (all threads, user space only) and the ratio:
# slow, but the same from run to run, for telling small changes apart.
#
# Usage: bench/frontend.sh [DURATION_SECONDS=10]
# Env: ROUNDS (3), CALLGRIND, WRK_THREADS (1), WRK_CONNS (8), WARMUP (2 s, unmeasured, before each case),
#      M2_PYTHON (a python3 with pyzmq; default /usr/bin/python3), KEEP=1 (keep the work dir).
# Installs wrk, nginx-light, mongrel2-core and python3-zmq with apt-get when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
START=$SECONDS
say() { echo "[$((SECONDS - START))s] $*" >&2; }
die() { echo "bench/frontend.sh: $*" >&2; exit 1; }

DURATION="${1:-10}"
ROUNDS="${ROUNDS:-3}"
THREADS="${WRK_THREADS:-1}"
CONNS="${WRK_CONNS:-8}"
WARMUP="${WARMUP:-2}"
PY="${M2_PYTHON:-/usr/bin/python3}"

# ---- dependencies
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"
missing=()
command -v wrk >/dev/null || missing+=(wrk)
[ -x /usr/sbin/nginx ] || missing+=(nginx-light)
{ command -v mongrel2 && command -v m2sh; } >/dev/null || missing+=(mongrel2-core)
"$PY" -c 'import zmq' 2>/dev/null || missing+=(python3-zmq)
[ -z "${CALLGRIND:-}" ] || command -v callgrind_control >/dev/null || missing+=(valgrind)
if [ ${#missing[@]} -gt 0 ]; then
  say "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get install -y "${missing[@]}" >&2 \
    || { $SUDO apt-get update >&2 && $SUDO apt-get install -y "${missing[@]}" >&2; }
fi

say "building zeroku and the rust_handler example (release)"
cargo build --quiet --release -p zeroku --bin zeroku -p zeroku-frontend --example rust_handler
TARGET="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
BIN="$TARGET/release/zeroku"
RUST_HANDLER="$TARGET/release/examples/rust_handler"

WORK="$(mktemp -d /tmp/frontendbench.XXXXXX)"
chmod 711 "$WORK" # app processes run under their own uid when we are root
PIDS=()           # everything we start ourselves, stopped in reverse order
WORKER_DATA="$WORK/worker"
URL="" TOKEN=""

stop_pid() { # pid: TERM, wait up to 5 s, KILL
  kill -TERM "$1" 2>/dev/null || return 0
  for _ in $(seq 50); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}

cleanup() {
  set +e
  trap - EXIT INT TERM
  [ -n "${WRK:-}" ] && stop_pid "$WRK"
  # The upstream app is run by the worker: scale it away while the cluster still runs.
  if [ -n "$URL" ]; then
    ZEROKU_URL="$URL" ZEROKU_TOKEN="$TOKEN" timeout 10 "$BIN" ps:scale -a upstream web=0 >/dev/null 2>&1
    for _ in $(seq 50); do compgen -G "$WORKER_DATA/procs/*.json" >/dev/null || break; sleep 0.1; done
  fi
  local i
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do stop_pid "${PIDS[i]}"; done
  # Whatever app process the worker left behind (its records: <worker-data>/procs/*.json).
  for f in "$WORKER_DATA"/procs/*.json; do
    [ -e "$f" ] || continue
    pid="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["pid"])' "$f" 2>/dev/null)"
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
      echo "killing leftover app process group $pid ($f)" >&2
      kill -KILL -- "-$pid" 2>/dev/null
    fi
  done
  if [ -n "${KEEP:-}" ]; then echo "kept $WORK (logs, configs, wrk output)" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# A port P with P..P+N-1 all free (zeroku's handler ports are handler_port_min + 2*(n-1), +1).
free_range() {
  python3 - "$1" <<'PY'
import random, socket, sys
n = int(sys.argv[1])
for _ in range(200):
    p = random.randrange(10000, 18000, 2)
    socks = []
    try:
        for q in range(p, p + n):
            s = socket.socket(); s.bind(("127.0.0.1", q)); socks.append(s)
        print(p); break
    except OSError:
        pass
    finally:
        for s in socks: s.close()
else:
    sys.exit("no free port range")
PY
}
wait_for_file() { # path seconds
  for _ in $(seq $(($2 * 10))); do [ -s "$1" ] && return 0; sleep 0.1; done
  die "timed out waiting for $1"
}
# GETs http://127.0.0.1:PORT/ with Host HOST until the body contains TEXT (each try 2 s at most:
# a reply the PUB/SUB pair drops while it is still joining never comes).
wait_http() { # port host text seconds what
  local deadline=$((SECONDS + $4)) body
  while [ $SECONDS -lt $deadline ]; do
    body="$(curl -s -m 2 -H "Host: $2" "http://127.0.0.1:$1/" || true)"
    case "$body" in *"$3"*) return 0 ;; esac
    sleep 0.2
  done
  die "$5 did not answer with \"$3\" within $4 s (last: ${body:-nothing})"
}
zk() { ZEROKU_URL="$URL" ZEROKU_TOKEN="$TOKEN" "$BIN" "$@"; }
api() { curl -sf -H "Authorization: Bearer $TOKEN" "$URL$1"; }

# CPU time (clock ticks: "user sys") of the given processes and their children, threads included.
TICKS="$(getconf CLK_TCK)"
cpu_ticks() {
  local u=0 k=0 p q s f
  for p in "$@"; do
    for q in $p $(ps -o pid= --ppid "$p" 2>/dev/null); do
      s="$(cat "/proc/$q/stat" 2>/dev/null)" || continue
      read -ra f <<< "${s##*) }" # fields from 3 (state) on: utime = f[11], stime = f[12]
      u=$((u + f[11])) k=$((k + f[12]))
    done
  done
  echo "$u $k"
}

# Busy clock ticks of the whole machine (all CPUs: user, nice, system, irq, softirq; not idle,
# iowait or steal), for the CPU per request of everything taking part: wrk, server, backend.
machine_ticks() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8}' /proc/stat; }

# One line per thread of PID: tid, name, utime, stime (ticks), for the frontend's CPU by thread.
thread_ticks() {
  local t s f comm
  for t in /proc/"$1"/task/*; do
    s="$(cat "$t/stat" 2>/dev/null)" || continue
    comm="${s#*(}"; comm="${comm%)*}"
    read -ra f <<< "${s##*) }"
    printf '%s\t%s\t%s\t%s\n' "${t##*/}" "$comm" "${f[11]}" "${f[12]}"
  done
}

# Runs wrk in the background and waits for it, so that a signal stops us at once.
WRK=""
run_wrk() { # timeout-seconds output-file wrk-args...
  local t="$1" o="$2"
  shift 2
  timeout "$t" wrk -t"$THREADS" -c"$CONNS" "$@" > "$o" &
  WRK=$!
  wait "$WRK" || die "wrk failed ($?): $(cat "$o")"
  WRK=""
}

# perf counts the servers' system calls when it can (kernel.perf_event_paranoid, root).
PERF=""
if command -v perf >/dev/null && perf stat -e raw_syscalls:sys_enter -- true >/dev/null 2>&1; then PERF=1; fi
RESULTS="$WORK/results.tsv"
: > "$RESULTS"
# measure NAME GROUP(handler|proxy) PORT HOST SERVER_PIDS BACKEND_PIDS  (pid lists space-separated)
measure() {
  local name="$1" group="$2" port="$3" host="$4" server="$5" backend="$6" out su0 ss0 su1 ss1 bu0 bs0 bu1 bs1
  if [ -n "${CALLGRIND:-}" ]; then
    # Counts are the same from round to round: the first is enough.
    if { [ "$server" = "$FRONTEND" ] || [ "$server" = "$MONGREL2" ]; } && [ "${ROUND:-1}" = 1 ]; then
      count_instructions "$name" "$port" "$host" "$server"
    fi
    return 0
  fi
  say "$name: ${WARMUP}s warm-up, ${DURATION}s measured (wrk -t$THREADS -c$CONNS)"
  run_wrk $((WARMUP + 30)) /dev/null -d"${WARMUP}s" -H "Host: $host" "http://127.0.0.1:$port/"
  local tag
  tag="$(echo "$name" | tr -c 'a-zA-Z0-9\n' '_')"
  [ "$server" = "$FRONTEND" ] && thread_ticks "$FRONTEND" > "$WORK/threads-$tag.0"
  # shellcheck disable=SC2086
  read -r su0 ss0 <<< "$(cpu_ticks $server)"; read -r bu0 bs0 <<< "$(cpu_ticks $backend)"
  local m0 m1
  m0="$(machine_ticks)"
  # System calls of the server (and its children) during the measured run, when perf can
  # count them: steadier than CPU time from run to run, and where the kernel share comes from.
  local perf_pid="" sc=0 p q pids=""
  if [ -n "$PERF" ]; then
    for p in $server; do for q in $p $(ps -o pid= --ppid "$p" 2>/dev/null); do pids="$pids${pids:+,}$q"; done; done
    perf stat -x, -e raw_syscalls:sys_enter -p "$pids" -o "$WORK/perf-$tag.txt" 2>/dev/null &
    perf_pid=$!
  fi
  run_wrk $((DURATION + 30)) "$WORK/wrk.out" -d"${DURATION}s" --latency \
    -s "$ROOT/bench/frontend/wrk-report.lua" -H "Host: $host" "http://127.0.0.1:$port/"
  out="$(cat "$WORK/wrk.out")"
  # shellcheck disable=SC2086
  read -r su1 ss1 <<< "$(cpu_ticks $server)"; read -r bu1 bs1 <<< "$(cpu_ticks $backend)"
  m1="$(machine_ticks)"
  if [ -n "$perf_pid" ]; then
    kill -INT "$perf_pid" 2>/dev/null || true
    wait "$perf_pid" 2>/dev/null || true
    sc="$(awk -F, '/raw_syscalls:sys_enter/ {print $1}' "$WORK/perf-$tag.txt" 2>/dev/null | head -1)"
    case "$sc" in '' | *[!0-9]*) sc=0 ;; esac
  fi
  [ "$server" = "$FRONTEND" ] && thread_ticks "$FRONTEND" > "$WORK/threads-$tag.1"
  printf '%s\n' "$out" > "$WORK/wrk-$tag.txt"
  local r
  r="$(printf '%s\n' "$out" | grep '^RESULT ')" || die "$name: no RESULT line from wrk:\n$out"
  printf '%s\t%s\t%s server_user=%s server_sys=%s backend_ticks=%s machine_ticks=%s syscalls=%s round=%s\n' "$name" "$group" "$r" \
    $((su1 - su0)) $((ss1 - ss0)) $((bu1 + bs1 - bu0 - bs0)) $((m1 - m0)) "$sc" "$ROUND" >> "$RESULTS"
  say "$name: $(printf '%s\n' "$out" | grep -E 'Requests/sec|Non-2xx|Socket errors' | tr -s ' ' | paste -sd';')"
}

# CALLGRIND=1: instructions per request of the frontend (under callgrind) for one case.
INSTRUCTIONS="$WORK/instructions.tsv"
count_instructions() { # name port host pid (the frontend, or Mongrel2 under callgrind)
  say "$1: ${WARMUP}s warm-up, ${DURATION}s counted under callgrind (wrk -t$THREADS -c$CONNS)"
  run_wrk $((WARMUP + 60)) /dev/null -d"${WARMUP}s" -H "Host: $3" "http://127.0.0.1:$2/"
  local dir="$WORK"
  [ "$4" = "$FRONTEND" ] || dir="$WORK/mongrel2"
  callgrind_control -z "$4" > /dev/null
  run_wrk $((DURATION + 60)) "$WORK/wrk.out" -d"${DURATION}s" \
    -s "$ROOT/bench/frontend/wrk-report.lua" -H "Host: $3" "http://127.0.0.1:$2/"
  rm -f "$dir"/callgrind.out.*
  callgrind_control -d "$4" > /dev/null
  local f ir n
  f="$(ls -t "$dir"/callgrind.out.* | head -1)"
  # (KEEP=1: each case's profile stays, for callgrind_annotate)
  [ -z "${KEEP:-}" ] || cp "$f" "$WORK/profile-${1//[^a-zA-Z0-9]/_}.callgrind"
  ir="$(callgrind_annotate "$f" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')"
  n="$(sed -n 's/.*requests=\([0-9]*\).*/\1/p' "$WORK/wrk.out")"
  printf '%s\t%s\t%s\n' "$1" "$n" "$ir" >> "$INSTRUCTIONS"
}

# ---- zeroku: master, worker and frontend as separate processes
HPORT="$(free_range 4)"
P_API=$(free_port); P_PUB=$(free_port); P_PULL=$(free_port); P_HTTP=$(free_port); P_ADMIN=$(free_port)
cat > "$WORK/zeroku.toml" <<EOF
[master]
# The handler app's two ports (requests, replies), bound by the frontend.
handler_port_min = $HPORT
EOF
say "starting zeroku master, worker and frontend"
"$BIN" master --data "$WORK/master" --config "$WORK/zeroku.toml" --api "127.0.0.1:$P_API" \
  --pub "tcp://127.0.0.1:$P_PUB" --pull "tcp://127.0.0.1:$P_PULL" > "$WORK/master.log" 2>&1 &
PIDS+=($!)
wait_for_file "$WORK/master/cli.env" 30
# shellcheck disable=SC1091
URL="$(. "$WORK/master/cli.env"; echo "$ZEROKU_URL")"; TOKEN="$(. "$WORK/master/cli.env"; echo "$ZEROKU_TOKEN")"
# A join token each (they work once), given in the environment, never on a command line.
ZEROKU_JOIN_TOKEN="$(zk nodes:join-token 2>/dev/null)" \
  "$BIN" worker --data "$WORKER_DATA" --config "$WORK/zeroku.toml" --node n1 --master "$URL" \
  > "$WORK/worker.log" 2>&1 &
PIDS+=($!)
# The frontend shares node n1's host: handlers reach it over ipc://, as they do in `zeroku up`.
# shellcheck disable=SC2086
ZEROKU_JOIN_TOKEN="$(zk nodes:join-token 2>/dev/null)" ZEROKU_FRONTEND_NODE=n1 \
  ${CALLGRIND:+valgrind --tool=callgrind --dump-instr=no --callgrind-out-file=$WORK/callgrind.out.%p} \
  "$BIN" frontend --data "$WORK/frontend" --config "$WORK/zeroku.toml" --name edge --master "$URL" \
  --http "127.0.0.1:$P_HTTP" --admin "127.0.0.1:$P_ADMIN" > "$WORK/frontend.log" 2>&1 &
FRONTEND=$!
PIDS+=($FRONTEND)

# The handler app: a `handler` process type scaled to 0, so the route and its sockets exist
# but zeroku runs nothing; we run the handlers ourselves.
mkdir -p "$WORK/hello"
printf 'handler: sleep 100000\n' > "$WORK/hello/Procfile"
zk apps:create hello >/dev/null
zk releases:create -a hello "$WORK/hello" >/dev/null
zk ps:scale -a hello handler=0 >/dev/null
# The upstream app: nginx on $PORT (bench/frontend/upstream), temp files under $WORK.
mkdir -m 1777 "$WORK/upstream-tmp"
zk apps:create upstream >/dev/null
zk config:set -a upstream "BENCH_TMP=$WORK/upstream-tmp" >/dev/null
zk releases:create -a upstream bench/frontend/upstream >/dev/null
zk ps:scale -a upstream web=1 >/dev/null

ROUTE=""
for _ in $(seq 100); do
  ROUTE="$(api /v1/routes | python3 -c '
import json, sys
for a in json.load(sys.stdin)["apps"]:
    if a["app"] == "hello" and a.get("handler"):
        print(a["handler"]["send_port"], a["handler"]["recv_port"])' 2>/dev/null || true)"
  [ -n "$ROUTE" ] && break
  sleep 0.1
done
[ -n "$ROUTE" ] || die "no handler route for app hello in GET /v1/routes"
# Handlers on the frontend's node use its ipc:// sockets in the app's directory (this script runs
# its handlers itself, as root).
ZK_SEND="ipc://$WORK/frontend/handlers/hello/send"
ZK_RECV="ipc://$WORK/frontend/handlers/hello/recv"
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$P_HTTP") 2>/dev/null && break; sleep 0.1; done

# ---- Mongrel2 with one handler route at /: handlers over TCP (as its docs configure it), and a
# second server with them over ipc:// (as zeroku's handlers on its node are)
# start_mongrel2 DIR SEND_SPEC RECV_SPEC IDENT: sets M2_HTTP (its port) and M2_PID
start_mongrel2() {
  local dir="$1"
  mkdir -p "$dir/run" "$dir/logs" "$dir/tmp"
  M2_HTTP=$(free_port)
  sed -e "s#@DIR@#$dir#g" -e "s#@HTTP_PORT@#$M2_HTTP#g" -e "s#@SEND_SPEC@#$2#g" \
    -e "s#@RECV_SPEC@#$3#g" -e "s#@IDENT@#$4#g" bench/frontend/mongrel2.conf.in > "$dir/mongrel2.conf"
  (cd "$dir" && LOGNAME="${LOGNAME:-root}" m2sh load -config mongrel2.conf -db config.sqlite > m2sh.log 2>&1) \
    || die "m2sh load failed: $(cat "$dir/m2sh.log")"
  # shellcheck disable=SC2086
  (cd "$dir" && exec ${5:+valgrind --tool=callgrind --dump-instr=no --callgrind-out-file=$dir/callgrind.out.%p} \
    mongrel2 config.sqlite f400bf85-4538-4f7a-8908-67e313d515c2 > mongrel2.out 2>&1) &
  M2_PID=$!
  PIDS+=($M2_PID)
  for _ in $(seq 300); do (exec 3<>"/dev/tcp/127.0.0.1/$M2_HTTP") 2>/dev/null && break; sleep 0.1; done
  kill -0 "$M2_PID" 2>/dev/null || die "mongrel2 exited: $(cat "$dir/mongrel2.out")"
}
M2_SEND=$(free_port); M2_RECV=$(free_port)
M2_TCP=("tcp://127.0.0.1:$M2_SEND" "tcp://127.0.0.1:$M2_RECV")
M2_IPC=("ipc://$WORK/mongrel2-ipc/run/send" "ipc://$WORK/mongrel2-ipc/run/recv")
# (Under CALLGRIND=1 the TCP one runs under callgrind too: its instructions per request.)
start_mongrel2 "$WORK/mongrel2" "${M2_TCP[0]}" "${M2_TCP[1]}" 34f9ceee-cd52-4b7f-b197-88bf2f0ec378 "${CALLGRIND:-}"
MONGREL2=$M2_PID; M2_HTTP_TCP=$M2_HTTP
if [ -z "${CALLGRIND:-}" ]; then
  start_mongrel2 "$WORK/mongrel2-ipc" "${M2_IPC[0]}" "${M2_IPC[1]}" 5b1c0f7e-2d6a-4f0b-9a51-7c3e8d2f4a10
  MONGREL2_IPC=$M2_PID; M2_HTTP_IPC=$M2_HTTP
fi

# ---- ONE Python handler process, connected to zeroku's and the Mongrel2s' sockets at once
say "starting one python handler for zeroku ($ZK_SEND, $ZK_RECV) and Mongrel2 (${M2_TCP[*]}; ${M2_IPC[*]})"
M2_SEND_SPEC="$ZK_SEND ${M2_TCP[0]}${MONGREL2_IPC:+ ${M2_IPC[0]}}" \
  M2_RECV_SPEC="$ZK_RECV ${M2_TCP[1]}${MONGREL2_IPC:+ ${M2_IPC[1]}}" \
  M2_SENDER_ID=bench-python-handler \
  "$PY" examples/python-handler/handler.py > "$WORK/python-handler.log" 2>&1 &
PYH=$!
PIDS+=($PYH)
wait_http "$P_HTTP" hello.localhost "Hello from python-handler" 30 "zeroku + python handler"
wait_http "$M2_HTTP_TCP" localhost "Hello from python-handler" 60 "Mongrel2 + python handler"
[ -z "${MONGREL2_IPC:-}" ] || wait_http "$M2_HTTP_IPC" localhost "Hello from python-handler" 30 "Mongrel2 (ipc) + python handler"

for ROUND in $(seq "$ROUNDS"); do
  measure "zeroku + Python handler" handler "$P_HTTP" hello.localhost "$FRONTEND" "$PYH"
  measure "Mongrel2 + Python handler" handler "$M2_HTTP_TCP" localhost "$MONGREL2" "$PYH"
  [ -z "${MONGREL2_IPC:-}" ] \
    || measure "Mongrel2 (ipc) + Python handler" handler "$M2_HTTP_IPC" localhost "$MONGREL2_IPC" "$PYH"
done
stop_pid "$PYH"
stop_pid "$MONGREL2"
[ -z "${MONGREL2_IPC:-}" ] || stop_pid "$MONGREL2_IPC"

# ---- the Rust handler, connected to zeroku only
M2_SEND_SPEC="$ZK_SEND" M2_RECV_SPEC="$ZK_RECV" \
  M2_SENDER_ID=bench-rust-handler "$RUST_HANDLER" > "$WORK/rust-handler.log" 2>&1 &
RH=$!
PIDS+=($RH)
wait_http "$P_HTTP" hello.localhost "Hello from Rust" 30 "zeroku + rust handler"
for ROUND in $(seq "$ROUNDS"); do
  measure "zeroku + Rust handler" handler "$P_HTTP" hello.localhost "$FRONTEND" "$RH"
done
stop_pid "$RH"

# ---- proxies: the upstream app's one instance, behind zeroku and behind nginx
UP_PORT="" UP_PID=""
for _ in $(seq 300); do
  read -r UP_PORT UP_PID <<< "$(zk ps -a upstream --json | python3 -c '
import json, sys
for i in json.load(sys.stdin):
    if i.get("state") == "up" and i.get("port") and i.get("pid"):
        print(i["port"], i["pid"])' 2>/dev/null || true)"
  [ -n "$UP_PORT" ] && break
  sleep 0.1
done
[ -n "$UP_PORT" ] || die "the upstream app's web instance did not come up: $(zk ps -a upstream 2>&1)"
wait_http "$UP_PORT" upstream "hello" 30 "the upstream (nginx on \$PORT $UP_PORT)"
wait_http "$P_HTTP" upstream.localhost "hello" 30 "zeroku proxy"
NG="$WORK/nginx-proxy"
mkdir -p "$NG"
NG_HTTP=$(free_port)
sed -e "s#@DIR@#$NG#g" -e "s#@HTTP_PORT@#$NG_HTTP#g" -e "s#@UPSTREAM_PORT@#$UP_PORT#g" \
  bench/frontend/nginx-proxy.conf.in > "$NG/nginx.conf"
/usr/sbin/nginx -p "$NG" -e "$NG/error.log" -c "$NG/nginx.conf" > "$NG/out.log" 2>&1 &
NGINX=$!
PIDS+=($NGINX)
wait_http "$NG_HTTP" upstream.localhost "hello" 30 "nginx proxy"

for ROUND in $(seq "$ROUNDS"); do
  measure "zeroku proxy -> nginx upstream" proxy "$P_HTTP" upstream.localhost "$FRONTEND" "$UP_PID"
  measure "nginx proxy_pass -> same upstream" proxy "$NG_HTTP" upstream.localhost "$NGINX" "$UP_PID"
done
say "done"

if [ -n "${CALLGRIND:-}" ]; then
  echo
  echo "### frontend instructions per request (callgrind, all threads, user space; wrk -t$THREADS -c$CONNS -d${DURATION}s)"
  echo
  echo "| setup | requests | instructions / request | × Mongrel2 |"
  echo "|---|---:|---:|---:|"
  M2_IR="$(awk -F'\t' '/^Mongrel2/ && $2 > 0 {print int($3 / $2); exit}' "$INSTRUCTIONS")"
  while IFS=$'\t' read -r name n ir; do
    printf '| %s | %s | %s | %s |\n' "$name" "$n" "$(( ir / n ))" \
      "$(python3 -c "import sys; m=int(sys.argv[2] or 0); print(f'{int(sys.argv[1]) / m:.2f}' if m else '-')" "$(( ir / n ))" "$M2_IR")"
  done < "$INSTRUCTIONS"
  exit 0
fi

# ---- the table
python3 - "$RESULTS" "$TICKS" "$DURATION" "$THREADS" "$CONNS" "$WORK" <<'PY'
import os, re, sys
path, ticks, duration, threads, conns, work = sys.argv[1], int(sys.argv[2]), *sys.argv[3:]
import statistics
runs = {}  # name -> [per-round figures], in the order the cases ran
for line in open(path):
    name, group, result = line.rstrip("\n").split("\t")
    kv = dict(x.split("=") for x in result.split()[1:])
    su, ss = int(kv["server_user"]), int(kv["server_sys"])
    n = int(kv["requests"])
    runs.setdefault(name, []).append(dict(
        name=name, group=group, n=n, round=int(kv.get("round", 1)),
        rps=n / (int(kv["duration_us"]) / 1e6),
        p50=int(kv["p50_us"]) / 1e3, p99=int(kv["p99_us"]) / 1e3,
        cpu=(su + ss) / ticks / n * 1000 if n else float("nan"),
        sys_share=ss / (su + ss) if su + ss else 0,
        bcpu=int(kv["backend_ticks"]) / ticks / n * 1000 if n else float("nan"),
        ucpu=su / ticks / n * 1000 if n else float("nan"),
        mcpu=int(kv.get("machine_ticks", 0)) / ticks / n * 1000 if n else float("nan"),
        errors=int(kv["socket_errors"]) + int(kv["status_errors"]),
        sc=int(kv["syscalls"]) / n if n and int(kv["syscalls"]) else float("nan"),
    ))
KEYS = ("rps", "p50", "p99", "cpu", "sys_share", "bcpu", "mcpu", "sc")
rows = []
for name, rs in runs.items():
    r = {k: statistics.median(x[k] for x in rs) for k in KEYS}
    r.update(name=name, group=rs[0]["group"], errors=sum(x["errors"] for x in rs), runs=rs)
    rows.append(r)
ref = {"handler": next((r for r in rows if r["name"].startswith("Mongrel2")), None),
       "proxy": next((r for r in rows if r["name"].startswith("nginx")), None)}

def paired_runs(r):
    """(r's run, the reference's figures to compare it with) per round: the reference's run of
    the same round, or its medians for a case that ran while the reference did not (the Rust
    handler)."""
    b = ref[r["group"]]
    by_round = {x["round"]: x for x in b["runs"]}
    paired = r["name"].split(" ")[-1] == b["name"].split(" ")[-1]  # same handler/upstream
    return [(x, by_round.get(x["round"], b) if paired else b) for x in r["runs"]]

def round_ratios(r, k):
    """r's figure over the reference's, per round."""
    return [x[k] / y[k] for x, y in paired_runs(r) if y[k]]

def ratio(r, k):
    b = ref[r["group"]]
    if b is None:
        return "-"
    if b is r:
        return "1.00"
    rr = round_ratios(r, k)
    return f"{statistics.median(rr):.2f}" if rr else "-"

print()
print(f"### frontend: wrk -t{threads} -c{conns} -d{duration}s, GET /, median of {len(next(iter(runs.values())))} rounds "
      "(ratios: median of the per-round ratios, handler rows to Mongrel2, proxy rows to nginx)")
print()
print("| setup | req/s | × | p50 ms | × | p99 ms | × | server CPU s / 1k req | × | server syscalls / req | × | backend CPU s / 1k req | machine CPU s / 1k req | errors |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for r in rows:
    print(f"| {r['name']} | {r['rps']:,.0f} | {ratio(r, 'rps')} | {r['p50']:.2f} | {ratio(r, 'p50')} | "
          f"{r['p99']:.2f} | {ratio(r, 'p99')} | {r['cpu']:.3f} | {ratio(r, 'cpu')} | "
          f"{r['sc']:.2f} | {ratio(r, 'sc')} | {r['bcpu']:.3f} | {r['mcpu']:.3f} | {r['errors']} |")
print()
for r in rows:
    if ref[r["group"]] is not None and ref[r["group"]] is not r:
        fmt = lambda k: " ".join(f"{x:.2f}" for x in round_ratios(r, k))
        print(f"- {r['name']}, per round: req/s × {fmt('rps')}; CPU / req × {fmt('cpu')}")
# The same against Mongrel2 with its handlers over ipc:// (as zeroku's on its node are).
ipc = next((r for r in rows if r["name"].startswith("Mongrel2 (ipc)")), None)
if ipc is not None:
    by_round = {x["round"]: x for x in ipc["runs"]}
    for r in rows:
        if r["group"] != "handler" or not r["name"].startswith("zeroku"):
            continue
        rr = [(x, by_round.get(x["round"], ipc)) for x in r["runs"]]
        cpu = [x["cpu"] / y["cpu"] for x, y in rr if y["cpu"]]
        rps = [x["rps"] / y["rps"] for x, y in rr if y["rps"]]
        sc = [x["sc"] / y["sc"] for x, y in rr if y["sc"] and y["sc"] == y["sc"]]
        if cpu:
            print(f"- {r['name']} vs Mongrel2 over ipc://: req/s × {statistics.median(rps):.2f}, "
                  f"CPU / req × {statistics.median(cpu):.2f} (per round {' '.join(f'{c:.2f}' for c in cpu)})"
                  + (f", syscalls / req × {statistics.median(sc):.2f}" if sc else ""))

# Headroom: what the same rounds would have shown had the zeroku frontend's user-space work cost
# nothing, its kernel work (sockets, wake-ups), the backend's and wrk's CPU unchanged, and the
# machine as busy. On a machine where all CPUs are shared by wrk, server and backend, req/s is
# the machine's busy CPU over the CPU all of them spend per request ("machine CPU"), so
# req/s could grow at most by machine / (machine - frontend user).
for r in rows:
    b = ref[r["group"]]
    if b is None or b is r or not r["name"].startswith("zeroku"):
        continue
    up, down = [], []
    for x, y in paired_runs(r):
        if x["mcpu"] > x["ucpu"] > 0 and y["rps"] and y["cpu"]:
            up.append(x["rps"] / y["rps"] * x["mcpu"] / (x["mcpu"] - x["ucpu"]))
            down.append((x["cpu"] - x["ucpu"]) / y["cpu"])
    if up:
        fmt = lambda v: " ".join(f"{z:.2f}" for z in v)
        print(f"- {r['name']}, bound with no frontend user-space CPU: req/s × ≤ {fmt(up)} "
              f"(median {statistics.median(up):.2f}); CPU / req × ≥ {fmt(down)} (median {statistics.median(down):.2f})")

# Where each server's CPU went: user vs kernel, and for zeroku by thread. libzmq's I/O threads
# inherit the name of the thread that created the context (a tokio worker, here).
def snap(f):
    out = {}
    for line in open(f):
        tid, comm, u, k = line.rstrip("\n").split("\t")
        out[tid] = (comm, int(u), int(k))
    return out
print()
for r in rows:
    note = f"- {r['name']}: server CPU {1 - r['sys_share']:.0%} user, {r['sys_share']:.0%} kernel"
    tag = re.sub(r"[^a-zA-Z0-9]", "_", r["name"])
    f0, f1 = f"{work}/threads-{tag}.0", f"{work}/threads-{tag}.1"
    if os.path.exists(f0) and os.path.exists(f1):
        a, b = snap(f0), snap(f1)
        d = []
        for tid, (comm, u, k) in b.items():
            _, u0, k0 = a.get(tid, (comm, 0, 0))
            if u - u0 + k - k0 > 0:
                d.append((u - u0 + k - k0, u - u0, comm, tid))
        total = sum(x[0] for x in d) or 1
        d.sort(reverse=True)
        note += "; by thread (share, of it kernel): " + ", ".join(
            f"{comm}[{tid}] {t / total:.0%} ({(t - u) / t:.0%})" for t, u, comm, tid in d)
    print(note)
PY
echo
echo "(server = the \`zeroku frontend\` process, \`mongrel2\`, or nginx master + workers; backend = the"
echo "handler process or the upstream nginx. machine: $(nproc) cores; load average before the table:"
echo "$(cut -d' ' -f1-3 /proc/loadavg); running as $(id -un))"
