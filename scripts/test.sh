#!/usr/bin/env bash
# Runs every check and test: `bash scripts/test.sh`.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh
bash scripts/check-layers.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace --all-targets
