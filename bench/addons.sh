#!/usr/bin/env bash
# Add-ons on this machine: one `zeroku up`, an app, PostgreSQL and Redis add-ons.
#
#   1. `addons:create postgres` until the app's DATABASE_URL answers `SELECT 1` (ROUNDS add-ons,
#      the median), and the same for redis (`PING`)
#   2. a backup of a ~100 MB database (pgbench -i -s 7) with `pg:backups:capture`, and its
#      restore with `pg:backups:restore`; against the floor: pg_dump -Fc / pg_restore run by
#      hand on the same data with the options zeroku uses
#   3. the memory (RSS, all its processes) of an idle add-on server of each kind
#
# Usage: bench/addons.sh [ROUNDS=3] [SCALE=7]
set -euo pipefail
cd "$(dirname "$0")/.."
START=$SECONDS
say() { echo "[$((SECONDS - START))s] $*" >&2; }
ROUNDS="${1:-3}"; SCALE="${2:-7}"
. scripts/deps.sh

say "building zeroku (release)"
cargo build --quiet --release --bin zeroku
TARGET="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
BIN="$TARGET/release/zeroku"
PGBIN="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)"

WORK="$(mktemp -d /tmp/addonbench.XXXXXX)"
chmod 711 "$WORK"
UP=""
cleanup() {
  set +e
  if [ -n "$UP" ]; then
    # The add-ons first: their servers stop with the worker's list.
    for a in $(z addons -a bench --json 2>/dev/null | python3 -c 'import json,sys; print(" ".join(a["name"] for a in json.load(sys.stdin)))'); do
      z addons:destroy "$a" -a bench --confirm "$a" >/dev/null 2>&1
    done
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
now() { date +%s.%N; }
since() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.2f}')" "$1" "$(now)"; }
median() { python3 -c 'import statistics,sys; print(f"{statistics.median(float(x) for x in sys.argv[1:]):.2f}")' "$@"; }

P1=$(free_port); P2=$(free_port); P3=$(free_port); P4=$(free_port)
say "starting zeroku up"
"$BIN" up --data "$WORK/up" --api "127.0.0.1:$P1" --pub "tcp://127.0.0.1:$P2" \
  --pull "tcp://127.0.0.1:$P3" --http "127.0.0.1:$P4" --admin "" > "$WORK/up.log" 2>&1 &
UP=$!
for _ in $(seq 300); do [ -s "$WORK/up/cli.env" ] && break; sleep 0.1; done
URL="$(. "$WORK/up/cli.env"; echo "$ZEROKU_URL")"; TOKEN="$(. "$WORK/up/cli.env"; echo "$ZEROKU_TOKEN")"
z() { ZEROKU_URL="$URL" ZEROKU_TOKEN="$TOKEN" "$BIN" "$@"; }
for _ in $(seq 100); do z nodes --json 2>/dev/null | grep -q '"up"' && break; sleep 0.2; done
mkdir -p "$WORK/app"
printf 'worker: exec sleep 100000\n' > "$WORK/app/Procfile"
z apps:create bench >/dev/null
z releases:create -a bench "$WORK/app" >/dev/null

# "postgres://user:pass@host:port/db" -> environment for libpq, and the pieces.
pgenv() { python3 - "$1" <<'PY'
import sys, urllib.parse
u = urllib.parse.urlsplit(sys.argv[1])
print(f"PGPASSWORD={u.password} PGHOST={u.hostname} PGPORT={u.port} PGUSER={u.username} PGDATABASE={u.path[1:]}")
PY
}
rdenv() { python3 - "$1" <<'PY'
import sys, urllib.parse
u = urllib.parse.urlsplit(sys.argv[1])
print(f"REDISCLI_AUTH={u.password} H={u.hostname} P={u.port}")
PY
}
var() { z config -a bench --json | python3 -c "import json,sys; print(json.load(sys.stdin).get('$1', ''))"; }

pg_times=(); rd_times=()
for r in $(seq "$ROUNDS"); do
  say "round $r: addons:create postgres / redis until they answer"
  t0=$(now)
  z addons:create postgres -a bench --as "PG$r" --no-wait >/dev/null 2>&1
  u="$(var "PG${r}_URL")"
  until env $(pgenv "$u") PGCONNECT_TIMEOUT=2 psql -X -qAt -c 'SELECT 1' >/dev/null 2>&1; do sleep 0.05; done
  pg_times+=("$(since "$t0")")
  t0=$(now)
  z addons:create redis -a bench --as "RD$r" --no-wait >/dev/null 2>&1
  u="$(var "RD${r}_URL")"
  eval "$(rdenv "$u")"
  until REDISCLI_AUTH="$REDISCLI_AUTH" redis-cli --no-auth-warning -h "$H" -p "$P" PING 2>/dev/null | grep -q PONG; do sleep 0.05; done
  rd_times+=("$(since "$t0")")
done

say "idle memory"
sleep 5
rss_of_port() { # all processes of the uid that listens on port $1, kB
  local pid uid
  pid="$(ss -Hltnp "sport = :$1" | grep -o 'pid=[0-9]*' | head -1 | cut -d= -f2)"
  uid="$(ps -o uid= -p "$pid" | tr -d ' ')"
  ps -u "$uid" -o rss= | awk '{s += $1} END {print s}'
}
PG1="$(var PG1_URL)"; RD1="$(var RD1_URL)"
pg_port="$(python3 -c 'import sys,urllib.parse; print(urllib.parse.urlsplit(sys.argv[1]).port)' "$PG1")"
rd_port="$(python3 -c 'import sys,urllib.parse; print(urllib.parse.urlsplit(sys.argv[1]).port)' "$RD1")"
pg_rss="$(rss_of_port "$pg_port")"; rd_rss="$(rss_of_port "$rd_port")"

say "loading pgbench scale $SCALE into PG1"
env $(pgenv "$PG1") "$PGBIN/pgbench" -q -i -s "$SCALE" > "$WORK/pgbench.log" 2>&1
size_mb="$(env $(pgenv "$PG1") psql -X -qAt -c 'SELECT round(pg_database_size(current_database()) / 1048576.0)')"
PGNAME="$(z addons -a bench --json | python3 -c 'import json,sys; print(next(a["name"] for a in json.load(sys.stdin) if any(t["as"] == "PG1_URL" for t in a["attachments"])))')"

b_times=(); r_times=(); fb_times=(); fr_times=()
for r in $(seq "$ROUNDS"); do
  say "round $r: backup and restore, zeroku and by hand"
  t0=$(now); out="$(z pg:backups:capture "$PGNAME" -a bench)"; b_times+=("$(since "$t0")")
  id="${out%%:*}"
  t0=$(now); z pg:backups:restore "$id" "$PGNAME" -a bench --confirm bench >/dev/null 2>&1; r_times+=("$(since "$t0")")
  t0=$(now); env $(pgenv "$PG1") "$PGBIN/pg_dump" --format=custom -f "$WORK/hand.dump"; fb_times+=("$(since "$t0")")
  t0=$(now); env $(pgenv "$PG1") "$PGBIN/pg_restore" --clean --if-exists --no-owner --no-acl \
    --single-transaction --exit-on-error -d "$(env $(pgenv "$PG1") sh -c 'echo $PGDATABASE')" "$WORK/hand.dump"
  fr_times+=("$(since "$t0")")
done
dump_mb="$(python3 -c "import os; print(round(os.path.getsize('$WORK/hand.dump') / 1048576, 1))")"
rows="$(env $(pgenv "$PG1") psql -X -qAt -c 'SELECT count(*) FROM pgbench_accounts')"

echo
echo "### add-ons on $(nproc) cores: median of $ROUNDS rounds (database: pgbench -s $SCALE, ${size_mb} MB on disk, $rows accounts, a ${dump_mb} MB dump)"
echo
echo "| measure | zeroku | by hand (floor) | goal |"
echo "|---|---|---|---|"
echo "| addons:create postgres → DATABASE_URL answers SELECT 1 | $(median "${pg_times[@]}") s | - | ≤ 5 s |"
echo "| addons:create redis → REDIS_URL answers PING | $(median "${rd_times[@]}") s | - | - |"
echo "| backup of the ${size_mb} MB database (pg:backups:capture) | $(median "${b_times[@]}") s | $(median "${fb_times[@]}") s (pg_dump -Fc) | ≤ 5 s |"
echo "| restore of it (pg:backups:restore) | $(median "${r_times[@]}") s | $(median "${fr_times[@]}") s (pg_restore) | ≤ 5 s |"
echo "| idle PostgreSQL add-on, RSS of all its processes | $((pg_rss / 1024)) MB | - | reported |"
echo "| idle Redis add-on, RSS | $((rd_rss / 1024)) MB | - | reported |"
echo
echo "per round: create pg ${pg_times[*]}; create redis ${rd_times[*]}; backup ${b_times[*]} (hand ${fb_times[*]}); restore ${r_times[*]} (hand ${fr_times[*]})"
