#!/usr/bin/env bash
# Push-to-live: from the start of `git push` to the first HTTP response from the new version,
# over N pushes per app, for three apps from examples/:
#
#   static     examples/static-site   (static buildpack: no process, served from the slug)
#   procfile   examples/python-web    (procfile buildpack: a $PORT web process)
#   python     examples/python-app    (python buildpack: venv + pip, the venv cached)
#
# Each push changes one file (a version marker the app serves), commits, pushes, then polls
# the frontend every 20 ms until the marker shows. The first push of each app (which fills the
# build cache) is not counted. Also: the slug's size against `tar czf` of the same built tree
# (sqfs2tar | gzip -6, from squashfs-tools-ng).
#
# Usage: bench/push.sh [PUSHES=10]     Env: APPS="static procfile python" (which to measure)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
N="${1:-10}"
APPS="${APPS:-static procfile python}"
say() { echo "[bench/push] $*" >&2; }

bash scripts/deps.sh >&2
say "building zeroku (release)"
cargo build --quiet --release -p zeroku --bin zeroku
TARGET="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
BIN="$TARGET/release/zeroku"

WORK="$(mktemp -d /tmp/pushbench.XXXXXX)"
chmod 711 "$WORK"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
P_API=$(free_port) P_PUB=$(free_port) P_PULL=$(free_port) P_HTTP=$(free_port)
UP_PID=""
cleanup() {
  set +e
  if [ -n "$UP_PID" ]; then
    for app in $APPS; do zk ps:scale -a "$app" web=0 >/dev/null 2>&1; done
    sleep 1
    kill -TERM "$UP_PID" 2>/dev/null
    wait "$UP_PID" 2>/dev/null
  fi
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
port_min = 46000
port_max = 46999
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
zk() { "$BIN" "$@"; }
for _ in $(seq 100); do zk nodes 2>/dev/null | grep -q " up" && break; sleep 0.1; done

export GIT_AUTHOR_NAME=bench GIT_AUTHOR_EMAIL=bench@example.test
export GIT_COMMITTER_NAME=bench GIT_COMMITTER_EMAIL=bench@example.test HOME="$WORK"

# app example file-with-marker marker-template(sed: @V@)
setup() {
  local app="$1" ex="$2"
  zk apps:create "$app" >/dev/null
  cp -a "$ROOT/examples/$ex" "$WORK/$app"
  git -C "$WORK/$app" init -q -b main
  git -C "$WORK/$app" add -A
  git -C "$WORK/$app" commit -qm "v0"
  url="$(zk apps:info -a "$app" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["git_url"])')"
  git -C "$WORK/$app" remote add zeroku "$url"
}

# Sets the version marker the app serves.
mark() {
  local app="$1" v="$2"
  case "$app" in
    static) echo "<h1>version $v</h1>" > "$WORK/$app/index.html" ;;
    procfile) sed -i "s/^INSTANCE = .*/INSTANCE = \"version $v\"/" "$WORK/$app/app.py" ;;
    python) echo "$v" > "$WORK/$app/VERSION" ;;
  esac
}

now_ms() { date +%s%3N; }
declare -A RESULTS BUILD SLUG TGZ
for app in $APPS; do
  case "$app" in static) ex=static-site ;; procfile) ex=python-web ;; python) ex=python-app ;; esac
  setup "$app" "$ex"
  times=()
  builds=()
  for i in $(seq 0 "$N"); do
    mark "$app" "$i"
    git -C "$WORK/$app" commit -qam "v$i"
    t0=$(now_ms)
    out="$(git -C "$WORK/$app" push -q zeroku main 2>&1)" || { echo "$out" >&2; exit 1; }
    until curl -s -H "Host: $app.localhost" "http://127.0.0.1:$P_HTTP/" | grep -q "version $i"; do
      sleep 0.02
      [ $(( $(now_ms) - t0 )) -lt 120000 ] || { echo "$app: version $i never served" >&2; exit 1; }
    done
    t1=$(now_ms)
    if [ "$i" -gt 0 ]; then
      times+=($((t1 - t0)))
      builds+=("$(echo "$out" | sed -n 's/.*deployed in \([0-9.]*\)s.*/\1/p')")
    fi
  done
  RESULTS[$app]="$(printf '%s\n' "${times[@]}" | sort -n | python3 -c '
import sys
v = [int(x) for x in sys.stdin.read().split()]
p = lambda q: v[min(len(v) - 1, int(q * len(v)))]
print("%d %d %d %d" % (p(0.5), p(0.9), v[0], v[-1]))')"
  BUILD[$app]="$(printf '%s\n' "${builds[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')"
  sha="$(zk releases -a "$app" --json | python3 -c 'import json,sys; r=max(json.load(sys.stdin), key=lambda r: r["version"]); print(r["slug_sha256"])')"
  slug="$WORK/data/slugs/$sha.sqfs"
  SLUG[$app]=$(stat -c %s "$slug")
  TGZ[$app]=$(sqfs2tar "$slug" 2>/dev/null | gzip -6 | wc -c)
done

printf '\nPush-to-live over %d pushes per app (ms from `git push` to the new version answering)\n\n' "$N"
printf '| app | p50 | p90 | min | max | build+release p50 (s, from the push output) | slug (bytes) | tar czf of the same tree (bytes) |\n'
printf '|---|---|---|---|---|---|---|---|\n'
for app in $APPS; do
  read -r p50 p90 mn mx <<<"${RESULTS[$app]}"
  printf '| %s | %d | %d | %d | %d | %s | %d | %d |\n' "$app" "$p50" "$p90" "$mn" "$mx" \
    "${BUILD[$app]}" "${SLUG[$app]}" "${TGZ[$app]}"
done
