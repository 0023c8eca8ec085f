#!/usr/bin/env bash
# Checks that zeroku's parts stand on each other the way docs/architecture.md says, and names
# every edge that came back:
#
# 1. Between crates: a worker node and the edge link no master or builder code, and neither
#    links the other; the shared crates (zeroku-client, zeroku-slug) link none of the parts.
# 2. Inside zeroku-master: the layers run one way, store -> scheduler -> cluster ->
#    builds/git/keys/restarts -> api. A module may use modules of its own layer and below, never above.
#
# Run by scripts/test.sh; `bash scripts/check-layers.sh` on its own takes a few seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

fail=0

# --- 1. crate edges -------------------------------------------------------------------------
# crate: the crates it must not depend on, even as a dev-dependency.
forbidden=(
  "zeroku-worker: zeroku-master zeroku-builder zeroku-frontend"
  "zeroku-frontend: zeroku-master zeroku-builder zeroku-worker"
  "zeroku-client: zeroku-master zeroku-builder zeroku-worker zeroku-frontend zeroku-slug rusqlite zmq"
  "zeroku-slug: zeroku-master zeroku-builder zeroku-worker zeroku-frontend zeroku-client hyper zmq"
  "zeroku-builder: zeroku-master zeroku-worker zeroku-frontend"
  "zeroku-metrics: zeroku-master zeroku-builder zeroku-worker zeroku-frontend zeroku-client zeroku-conf zeroku-slug rusqlite zmq"
)
for rule in "${forbidden[@]}"; do
  crate="${rule%%:*}"
  tree="$(cargo tree --quiet -p "$crate" --edges normal,build,dev --prefix none 2>&1)" || {
    echo "check-layers: cannot read the dependency tree of $crate:" >&2
    echo "$tree" >&2
    exit 2
  }
  for bad in ${rule#*:}; do
    if grep -qE "^$bad v" <<<"$tree"; then
      echo "check-layers: $crate depends on $bad, which it must not; the path:" >&2
      cargo tree --quiet -p "$crate" --edges normal,build,dev -i "$bad" 2>&1 | sed 's/^/    /' >&2
      fail=1
    fi
  done
done

# --- 2. layers inside zeroku-master ---------------------------------------------------------
# module: layer. A module may import `crate::<m>` only where layer(m) <= its own layer. The
# crate root (lib.rs, `run`) is the top; `crate::<item>` that is not a module is the root's.
declare -A layer=(
  [store]=0 [settings]=0 [exe]=0 [live]=0 [stacks]=0 [logbook]=0 [terminal]=0 [bus]=0 [peers]=0 [dirs]=0 [certs]=0
  [scheduler]=1 [routes]=1 [addons]=1 [discovery]=1
  [cluster]=2
  [builds]=3 [periodic]=3 [git]=3 [keys]=3 [restarts]=3 [drains]=3 [backups]=3 [schedule]=3 [moves]=3 [failover]=3 [metrics]=3 [alerts]=3 [acme]=3
  [api]=4 [views]=4 [error]=4 [ui]=4
  [lib]=5
)
names=(store scheduler cluster "builds/git/keys/restarts/drains" api root)
src=procd-master/src
for f in "$src"/*.rs "$src"/*/*.rs; do
  [ -e "$f" ] || continue
  rel="${f#"$src"/}"
  mod="${rel%%/*}"
  mod="${mod%.rs}"
  [ "$mod" = mod ] && mod="$(basename "$(dirname "$f")")"
  if [ -z "${layer[$mod]+x}" ]; then
    echo "check-layers: $f is a module of zeroku-master with no layer: add it to scripts/check-layers.sh" >&2
    fail=1
    continue
  fi
  mine=${layer[$mod]}
  # Every `crate::name` the file uses, comments aside.
  while read -r used; do
    [ "$used" = "$mod" ] && continue
    [ "$used" = self ] && continue
    theirs=${layer[$used]:-5}
    if [ "$theirs" -gt "$mine" ]; then
      line="$(grep -nE "crate::$used\b" "$f" | grep -vE '^[0-9]+:\s*//' | head -1)"
      echo "check-layers: zeroku-master's $mod (layer ${names[$mine]}) uses crate::$used (layer ${names[$theirs]}), above it: $f:${line%%:*}" >&2
      fail=1
    fi
  done < <(grep -vE '^\s*//' "$f" | grep -oE 'crate::[a-z_]+' | sed 's/crate:://' | sort -u)
done

if [ "$fail" -ne 0 ]; then
  echo "check-layers: the layers above are broken; see docs/architecture.md (Crates)" >&2
  exit 1
fi
echo "check-layers: crate edges and zeroku-master's layers are as documented"
