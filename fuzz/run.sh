#!/usr/bin/env bash
# Builds the fuzz targets with libFuzzer's coverage on stable Rust (no sanitizer, so no
# nightly) and runs each for FUZZ_SECONDS. Usage: fuzz/run.sh [target…] (default: all).
# A crash stops the run with status 1; its input is kept as fuzz/artifacts/<target>/crash-*.
set -euo pipefail
cd "$(dirname "$0")"
seconds=${FUZZ_SECONDS:-60}
triple=$(rustc -vV | sed -n 's/^host: //p')
# cargo-fuzz's flags minus -Zsanitizer. --target keeps them off build scripts and proc macros.
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks"
export CARGO_TARGET_DIR=${FUZZ_TARGET_DIR:-$PWD/target}
cargo build --release --locked --target "$triple" --bins
targets=("$@")
[ ${#targets[@]} -gt 0 ] || mapfile -t targets < <(ls fuzz_targets | sed 's/\.rs$//')
# Seeds: the demo's policies for the config targets, fuzz/seeds/<target> for the others.
policies=../envoy-config/policies
declare -A seed=([jwt_config]=jwt [acl_config]=acl [rate_limit_config]=rate-limiting
                 [token_issuer_config]=token-issuer)
summary=()
for t in "${targets[@]}"; do
  corpus=corpus/$t artifacts=artifacts/$t
  mkdir -p "$corpus" "$artifacts"
  [ -d "seeds/$t" ] && cp -n seeds/"$t"/* "$corpus"/ 2>/dev/null || true
  [ -n "${seed[$t]:-}" ] && cp -n "$policies/${seed[$t]}"*.json "$corpus"/ || true
  log=$CARGO_TARGET_DIR/fuzz-$t.log
  echo "fuzz: $t for ${seconds}s (log: $log)"
  status=0
  "$CARGO_TARGET_DIR/$triple/release/$t" "$corpus" -max_total_time="$seconds" \
    -max_len=16384 -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$artifacts/" >"$log" 2>&1 || status=$?
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 || true)
  if [ "$status" -ne 0 ]; then
    tail -40 "$log"
    echo "fuzz: $t FAILED (status $status) after ${runs:-?} runs; input in fuzz/$artifacts/"
    exit 1
  fi
  summary+=("$(printf '  %-20s %12s runs  %s  corpus %s' "$t" "${runs:-?}" "$cov" "$(ls "$corpus" | wc -l)")")
done
echo "fuzz: no crash, ${seconds}s each"
printf '%s\n' "${summary[@]}"
