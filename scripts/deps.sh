#!/usr/bin/env bash
# Installs the system packages zeroku needs to build and test, if missing.
# Sourced by scripts/up.sh and scripts/test.sh; safe to run again.
set -euo pipefail

need=(pkg-config iproute2 libsodium-dev libsquashfs-dev libclang-dev squashfs-tools-ng git python3 python3-venv python3-zmq mongrel2-core openssl curl openssh-client openssh-server util-linux cargo busybox-static jq postgresql redis-server redis-tools libnss-wrapper node-xterm)
# The test suite's own: a real browser for the dashboard's tests, Let's Encrypt's test CA
# (pebble) for the ACME tests (scripts/test.sh sets it).
if [ "${ZEROKU_TEST_DEPS:-}" = 1 ]; then
  need+=(chromium fonts-dejavu-core pebble)
fi
missing=()
for p in "${need[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "zeroku: installing ${missing[*]}" >&2
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  # Add-on servers are zeroku's own (one per add-on, under its worker): no system-wide
  # PostgreSQL cluster is wanted from the package.
  if [[ " ${missing[*]} " == *" postgresql "* ]]; then
    $sudo mkdir -p /etc/postgresql-common/createcluster.d
    echo "create_main_cluster = false" | $sudo tee /etc/postgresql-common/createcluster.d/zeroku.conf >/dev/null
  fi
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # Nor a system-wide Redis: the package starts one where systemd runs.
  if [[ " ${missing[*]} " == *" redis-server "* ]] && command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
    $sudo systemctl disable --now redis-server >/dev/null 2>&1 || true
  fi
fi
# zeroku needs Rust 1.80 or newer (rustup's). Debian's own cargo (installed above for the rust
# buildpack: it is what app builds use) is older, so rustup's goes first on PATH.
if [ -x "$HOME/.cargo/bin/cargo" ]; then
  export PATH="$HOME/.cargo/bin:$PATH"
fi
if ! command -v rustup >/dev/null 2>&1 && ! cargo --version 2>/dev/null | grep -qE '^cargo 1\.(8[0-9]|9[0-9]|[1-9][0-9][0-9])'; then
  echo "zeroku: needs Rust 1.80 or newer to build (found: $(cargo --version 2>/dev/null || echo none)). Install it with https://rustup.rs, then run this again." >&2
  exit 1
fi
