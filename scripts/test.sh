#!/usr/bin/env bash
# Runs every check and test: `bash scripts/test.sh`.
set -euo pipefail
cd "$(dirname "$0")/.."
ZEROKU_TEST_DEPS=1 source scripts/deps.sh
bash scripts/check-layers.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace --all-targets
# Every parser that takes outside input, fuzzed for 5 s each (bench/fuzz.sh runs it for longer).
bash scripts/fuzz.sh --smoke
