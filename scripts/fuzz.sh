#!/usr/bin/env bash
# Fuzzes every zeroku parser that takes outside input, with cargo-fuzz (libFuzzer) and
# AddressSanitizer: the wire envelope, the Mongrel2 handler protocol (replies, requests, the
# request encoder against its decoder, tnetstrings, netstrings), slug images (check and
# unpack), Procfiles, buildpack `bin/release` YAML and the TOML config files. The targets are
# in fuzz/fuzz_targets/; each one's opening comment says what it fuzzes and what must hold:
# never a panic, an abort, a sanitizer report, a timeout or runaway memory, and for slug
# unpacking nothing written outside the destination.
#
#   bash scripts/fuzz.sh --smoke     every target for 5 s (-seed=1), for the test command
#   bash scripts/fuzz.sh [SECONDS]   every target for SECONDS (default 300), then a table:
#                                    target, seconds, executions, exec/s, corpus, crashes
#
# Every run starts from the committed seeds (fuzz/seeds/<target>/), copied to a scratch
# corpus under /tmp, so the repository's seed directories never grow; corpora and crash
# artifacts stay in that scratch directory (printed at the end; a clean smoke run removes
# it). Exits non-zero if any target crashed, printing each reproducer's path and the command
# that replays it.
#
# Environment: FUZZ_JOBS (targets run at once; default: the number of cores), FUZZ_TARGETS
# (space-separated subset), FUZZ_SANITIZER (address, the default, or none), FUZZ_WORK (the
# scratch directory; kept). Needs the stable toolchain only: RUSTC_BOOTSTRAP=1 lets it take
# the -Z flags cargo-fuzz passes. cargo-fuzz is installed from crates.io if missing.
set -euo pipefail
# The whole script is one block, read before it runs: editing this file during a long run does
# not derail it.
{
cd "$(dirname "$0")/.."
root=$PWD

mode=long
secs=300
case "${1:-}" in
  --smoke) mode=smoke; secs=5 ;;
  "") ;;
  -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
  *[!0-9]*) echo "usage: bash scripts/fuzz.sh [--smoke | SECONDS]" >&2; exit 2 ;;
  *) secs=$1 ;;
esac

source scripts/deps.sh
export PATH="$HOME/.cargo/bin:$PATH"
export RUSTC_BOOTSTRAP=1
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "zeroku: installing cargo-fuzz" >&2
  cargo install cargo-fuzz --locked --quiet
fi

sanitizer=${FUZZ_SANITIZER:-address}
jobs=${FUZZ_JOBS:-$(nproc)}
targets=${FUZZ_TARGETS:-$(cd fuzz && cargo fuzz list)}
work=${FUZZ_WORK:-$(mktemp -d /tmp/zeroku-fuzz.XXXXXX)}
mkdir -p "$work"

# since T: seconds elapsed since $EPOCHREALTIME was T.
since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }

t0=$EPOCHREALTIME
if [ -z "${FUZZ_TARGETS:-}" ]; then
  (cd fuzz && cargo fuzz build --sanitizer "$sanitizer")
else
  for t in $targets; do (cd fuzz && cargo fuzz build --sanitizer "$sanitizer" "$t"); done
fi
bin="$root/fuzz/target/$(rustc -vV | sed -n 's/^host: //p')/release"
build_s=$(since "$t0")

# Per-target libFuzzer flags and sanitizer options. slug_image: libsquashfs (C) sizes some
# allocations from image fields before reading them (up to 4 GiB for a symlink target); they
# are never touched and fail cleanly once the image runs out, so there a single allocation
# behaves as in production (over 16 GiB: NULL, an error; below: goes through), and the RSS
# limit still catches memory really used. Every other target keeps libFuzzer's default: any
# one allocation over -rss_limit_mb is a finding.
flags_for() {
  case $1 in
    slug_image) echo "-malloc_limit_mb=32768" ;;
  esac
}
asan_for() {
  case $1 in
    slug_image) echo "allocator_may_return_null=1:max_allocation_size_mb=16384" ;;
  esac
}

# run TARGET: fuzzes one target; its libFuzzer log goes to $work/logs/TARGET.log.
run() {
  local t=$1 corpus="$work/corpus/$1" art="$work/artifacts/$1" log="$work/logs/$1.log"
  mkdir -p "$corpus" "$art" "$work/logs" "$work/tmp/$1"
  cp -r "fuzz/seeds/$t/." "$corpus/"
  local start rc=0
  start=$EPOCHREALTIME
  # -timeout: one input taking this long is a hang; -rss_limit_mb also caps single mallocs.
  # TMPDIR: what a target writes (slug_image's image files) stays in the scratch directory.
  # shellcheck disable=SC2046 # flags_for prints whole flags
  TMPDIR="$work/tmp/$t" ASAN_OPTIONS="$(asan_for "$t")" "$bin/$t" $(flags_for "$t") -seed=1 -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$art/" "$corpus" >"$log" 2>&1 || rc=$?
  echo "$rc $(since "$start")" >"$work/logs/$t.rc"
}

running=0
for t in $targets; do
  if [ "$running" -ge "$jobs" ]; then
    wait -n
    running=$((running - 1))
  fi
  run "$t" &
  running=$((running + 1))
done
wait

total_s=$(since "$t0")
failed=0
printf '\n| target | seconds | executions | exec/s | corpus | crashes |\n|---|--:|--:|--:|--:|--:|\n'
for t in $targets; do
  read -r rc took <"$work/logs/$t.rc"
  log="$work/logs/$t.log"
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  corpus=$(find "$work/corpus/$t" -type f | wc -l)
  crashes=$(find "$work/artifacts/$t" -type f \( -name 'crash-*' -o -name 'oom-*' -o -name 'timeout-*' -o -name 'leak-*' \) | wc -l)
  if [ "$rc" -ne 0 ] && [ "$crashes" -eq 0 ]; then
    crashes=1 # died without an artifact (e.g. killed): see the log
  fi
  [ "$crashes" -eq 0 ] || failed=1
  printf '| %s | %.0f | %s | %s | %s | %s |\n' "$t" "$took" "${execs:-?}" "${rate:-?}" "$corpus" "$crashes"
done
printf '\nbuild %.0f s, total %.0f s (%s mode, %s s per target, %s at once, sanitizer %s)\n' \
  "$build_s" "$total_s" "$mode" "$secs" "$jobs" "$sanitizer"

if [ "$failed" -ne 0 ]; then
  echo
  for t in $targets; do
    asan=$(asan_for "$t")
    flags=$(flags_for "$t")
    for a in "$work/artifacts/$t"/*; do
      case "${a##*/}" in crash-* | oom-* | timeout-* | leak-*) ;; *) continue ;; esac
      echo "CRASH in $t: $a"
      env=${asan:+ASAN_OPTIONS=$asan }
      echo "  replay: (cd fuzz && ${env}RUSTC_BOOTSTRAP=1 cargo fuzz run --sanitizer $sanitizer $t $a${flags:+ -- $flags})"
    done
    read -r rc _ <"$work/logs/$t.rc"
    if [ "$rc" -ne 0 ]; then
      echo "--- $t (exit $rc), from $work/logs/$t.log:"
      grep -m1 -A3 -E "panicked at|ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)" "$work/logs/$t.log" || true
      echo "..."
      grep -v -E '^#[0-9]|^ +#[0-9]+ 0x' "$work/logs/$t.log" | tail -12
    fi
  done
  echo "fuzz: crashes found; corpora, artifacts and logs in $work" >&2
  exit 1
fi
if [ "$mode" = smoke ] && [ -z "${FUZZ_WORK:-}" ]; then
  chmod -R u+w "$work" 2>/dev/null || true
  rm -rf "$work"
else
  echo "corpora and logs in $work"
fi
echo "fuzz: ${mode} run clean"
exit 0
}
