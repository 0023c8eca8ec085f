#!/usr/bin/env bash
# Runs every benchmark in turn: slug pack/unpack, master placement + publishing, worker latency,
# the HTTP frontend against Mongrel2 and nginx.
# Each prints its own table; a failing bench does not stop the others (the exit status says).
set -uo pipefail
cd "$(dirname "$0")/.."
status=0
for b in slug master worker frontend push docker; do
  echo
  echo "================ bench/$b.sh ================"
  bash "bench/$b.sh" || { echo "bench/$b.sh FAILED" >&2; status=1; }
done
exit $status
