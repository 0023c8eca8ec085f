#!/usr/bin/env bash
# Chaos: tests/chaos.rs for many rounds (the suite runs 3). Each round makes a change (a config
# var or a scale) while a random daemon (master, a worker, the frontend) is killed with SIGKILL
# at a random moment and started again, under a steady client; then checks that every
# acknowledged change is there, that the app's processes are exactly those `ps` lists (none
# twice, none outside it), that the edge answered no 5xx outside the kill-to-settled windows,
# and that the master left no build files behind. Prints a table of the rounds.
#
# Usage: bench/chaos.sh [ROUNDS=30]   (ZEROKU_CHAOS_SEED=N replays a run)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/deps.sh
ZEROKU_CHAOS_ROUNDS="${1:-30}" cargo test --quiet --test chaos -- --nocapture 2>&1 \
  | grep -E '^(chaos:|\||[0-9]+ requests|test result|thread|  )'
