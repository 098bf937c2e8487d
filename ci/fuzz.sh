#!/usr/bin/env bash
# Fuzzes every parser target in fuzz/ for a bounded time (docs/RELIABILITY.md "Fuzzing"). Not part of
# ci/test.sh: CI runs it separately (the stable replay of the seeds and kept crash artifacts is in
# `cargo test -p vmbgp-fuzz-replay`, which ci/test.sh runs).
#
#   ci/fuzz.sh                      # every target, 60 s each
#   FUZZ_SECONDS=180 ci/fuzz.sh bmp_stream profile
#
# Environment:
#   FUZZ_SECONDS     time per target (libFuzzer -max_total_time), default 60
#   FUZZ_TIMEOUT     seconds one input may take before it counts as a hang (-timeout), default 10
#   FUZZ_RSS_MB      memory limit (-rss_limit_mb; also the largest single allocation), default 2048
#   FUZZ_SANITIZER   address (default) or none (faster; the project's own code has no unsafe)
#   FUZZ_FRESH=1     start from the committed seeds only (drop fuzz/scratch/<target>/ first)
#   FUZZ_TARGET_DIR  the nightly build's target directory, default fuzz/target
#
# Each target fuzzes a scratch corpus fuzz/scratch/<target>/ (gitignored; kept between runs) seeded
# from the committed seeds fuzz/corpus/<target>/, which libFuzzer only reads. A crash, hang or
# out-of-memory input is written to fuzz/artifacts/<target>/: keep it there as a regression input (the
# replay test runs it) once understood. Builds and runs with nice -n 10 under the nightly toolchain, in
# fuzz/target (never the stable build's target directory). Exits non-zero if any target failed.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${FUZZ_SECONDS:-60}"
timeout="${FUZZ_TIMEOUT:-10}"
rss_mb="${FUZZ_RSS_MB:-2048}"
sanitizer="${FUZZ_SANITIZER:-address}"
target_dir="${FUZZ_TARGET_DIR:-fuzz/target}"

section() { printf '\n==> %s\n' "$*"; }

if ! cargo +nightly --version >/dev/null 2>&1; then
  echo "ci/fuzz.sh needs the nightly toolchain: rustup toolchain install nightly" >&2
  exit 2
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  section "installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi

if [ "$#" -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(cargo +nightly fuzz list)
fi

section "build (nightly, sanitizer ${sanitizer})"
nice -n 10 cargo +nightly fuzz build --sanitizer "$sanitizer" --target-dir "$target_dir"

declare -a summary=()
failed=0
for t in "${targets[@]}"; do
  seeds="fuzz/corpus/$t"
  if [ -z "$(ls -A "$seeds" 2>/dev/null)" ]; then
    echo "no seeds in $seeds" >&2
    summary+=("$t|-|-|-|no seeds")
    failed=1
    continue
  fi
  scratch="fuzz/scratch/$t"
  [ "${FUZZ_FRESH:-0}" = 1 ] && rm -rf "$scratch"
  mkdir -p "$scratch" "fuzz/artifacts/$t"
  log="fuzz/scratch/$t.log"
  section "fuzz $t for ${seconds}s"
  start=$(date +%s)
  set +e
  nice -n 10 cargo +nightly fuzz run --sanitizer "$sanitizer" --target-dir "$target_dir" "$t" \
    "$scratch" "$seeds" -- \
    -max_total_time="$seconds" -timeout="$timeout" -rss_limit_mb="$rss_mb" \
    -print_final_stats=1 2>&1 | tee "$log" |
    grep -E '^(#[0-9]+ +(INITED|DONE)|Done [0-9]+ runs|==[0-9]+==|SUMMARY|Test unit written|.*panicked at|stat::number_of_executed_units)'
  status=${PIPESTATUS[0]}
  set -e
  elapsed=$(( $(date +%s) - start ))
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  corpus=$(find "$scratch" -type f | wc -l)
  if [ "$status" -eq 0 ]; then
    result="ok"
  else
    result="FAILED (exit $status; see $log and fuzz/artifacts/$t/)"
    failed=1
  fi
  summary+=("$t|${execs:-?}|${elapsed}s|$corpus|$result")
done

section "summary"
printf '%-18s %14s %8s %8s  %s\n' target executions time corpus result
for row in "${summary[@]}"; do
  IFS='|' read -r t execs elapsed corpus result <<<"$row"
  printf '%-18s %14s %8s %8s  %s\n' "$t" "$execs" "$elapsed" "$corpus" "$result"
done
if [ "$failed" -ne 0 ]; then
  echo
  echo "A target failed. Reproduce: cargo +nightly fuzz run --target-dir $target_dir <target> fuzz/artifacts/<target>/<file>"
  echo "(the stable replay: cargo test -p vmbgp-fuzz-replay). Minimize: cargo +nightly fuzz tmin <target> <file>."
  exit 1
fi
