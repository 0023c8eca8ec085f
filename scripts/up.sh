#!/usr/bin/env bash
# Builds zeroku and starts a single-node cluster: `bash scripts/up.sh`.
# Extra arguments go to `zeroku up` (e.g. --data /tmp/zk --api 127.0.0.1:7070).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh
cargo build --release --bin zeroku
echo "zeroku: binary at $(pwd)/target/release/zeroku (add it to PATH for the tour)" >&2
exec target/release/zeroku up "$@"
