#!/usr/bin/env bash
# Runs every libFuzzer target for SECONDS each from its seed corpus (tests/fuzz/corpus/<target>) and
# the regression inputs of crashes that were fixed (tests/fuzz/regressions/<target>, replayed first).
# New inputs go to a scratch corpus, not into the repository. Prints executions per target; exits 1
# on the first crash, leak or timeout (the input is kept as crash-*/leak-*/timeout-* in the
# scratch folder, printed).
#
#   tests/fuzz/run.sh <build-dir> [SECONDS=15] [RUNS]
# With RUNS the run is bounded and seeded: libFuzzer's seed is fixed and it stops after RUNS inputs (or
# SECONDS); coverage still varies a little between runs (threads, heap addresses), so a gate run is
# close to, not exactly, what the same local command does.
# FUZZ_TARGETS="a b" limits the targets.
set -euo pipefail
build=${1:?build dir (configured with -DLLMQ_FUZZ=ON)}; secs=${2:-15}; runs=${3:-}
bounded=()
[ -n "$runs" ] && bounded=(-runs="$runs" -seed=1)
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/llmq-fuzz-run.XXXXXX")
status=0
for t in ${FUZZ_TARGETS:-safetensors config tokenizer_json quantization_config calibration checkpoint gguf hf_checkpoint}; do
  bin="$build/bin/fuzz_$t"
  [ -x "$bin" ] || bin=$(find "$build" -name "fuzz_$t" -type f -perm -u+x | head -1)
  [ -x "$bin" ] || { echo "missing fuzz_$t in $build"; exit 1; }
  mkdir -p "$work/$t"
  seeds=("$here/corpus/$t")
  [ -d "$here/regressions/$t" ] && seeds+=("$here/regressions/$t")
  log="$work/$t.log"
  if ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
     "$bin" -max_total_time="$secs" "${bounded[@]}" -timeout=20 -rss_limit_mb=3072 -max_len=65536 -print_final_stats=1 \
       -artifact_prefix="$work/$t-" "$work/$t" "${seeds[@]}" > "$log" 2>&1; then
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 || true)
    echo "fuzz_$t: ${secs} s, $execs executions, $cov, corpus $(ls "$work/$t" | wc -l) new inputs"
  else
    echo "fuzz_$t: FAILED (log and input in $work)"; tail -40 "$log"; status=1
  fi
done
[ "$status" = 0 ] && rm -rf "$work"
exit "$status"
