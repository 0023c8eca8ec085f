#!/usr/bin/env bash
# Long fuzzing run, kept with the other benchmarks: every cargo-fuzz target in fuzz/ for
# SECONDS each (default 300), starting from the committed seeds, then a table of target,
# seconds, executions, exec/s, corpus size and crashes. Exits non-zero on any crash and prints
# the reproducer. The work is done by scripts/fuzz.sh (see its header for the options; its
# --smoke mode is the short run for tests).
#
# Usage: bash bench/fuzz.sh [SECONDS]
exec bash "$(dirname "$0")/../scripts/fuzz.sh" "${1:-300}"
