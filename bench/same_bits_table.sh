#!/usr/bin/env bash
# The equal-bits table of docs/RESULTS.md (issue 23): on every shared model, at about 3.5 and 4.5
# written bits per weight, RTN, GPTQ and AWQ at the group sizes that land there, SpQR as its paper
# stores it (3-bit bilevel scales and zeros, leave-one-out outliers, compact outlier positions)
# with --target-bits, and AdpQ with outliers in their code slots (a second scale per group) and in
# fp16. With OLD_LLMQ (an llmq built at 736ff35, before this storage) the old SpQR (symmetric,
# 8-bit-free scales only, no leave-one-out, 32-bit row pointers) and the old AdpQ storage run too.
# Calibrated rows run $SEEDS (0 1 2) seeds (128 windows of the TinyStories train sample, each
# method's default window length) and print mean ± half the range. Columns: written bits per
# weight (the bytes of the quantized linears), perplexity (TinyStories validation prefix, all full
# windows of the model's context), vs fp32, quantization wall time (mean over seeds), peak RSS.
# Usage: [MODELS="stories260K-hf stories5M-hf"] [SEEDS="0 1 2"] [OLD_LLMQ=...] bench/same_bits_table.sh <llmq> <shared-dir>
set -euo pipefail
llmq=$1 shared=$2
old=${OLD_LLMQ:-}
eval_text="$shared/data/tinystories/TinyStories-valid-prefix.txt"
calib="$shared/data/tinystories/TinyStories-train-sample.txt"
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
j() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); exec('print(' + sys.argv[2] + ')')" "$@"; }
echo "| model | level | method | setting | bits/weight | perplexity | vs fp32 | time s | peak RSS MiB |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"
for name in ${MODELS:-stories260K-hf stories5M-hf}; do
  model="$shared/models/$name"
  "$llmq" eval ppl "$model" --data "$eval_text" --json > "$work/fp.json" 2>/dev/null
  fp=$(j "$work/fp.json" "d['perplexity']")
  for level in 3.5 4.5; do
    b=${level%.*}
    row() {  # binary, label, setting, seeds ("" = zero-shot), quantize args...
      local bin=$1 label=$2 setting=$3 seeds=$4; shift 4
      local ppls=() secs=() bits="" rss=""
      for seed in ${seeds:-none}; do
        local cal=(); [ "$seed" = none ] || cal=(--calib "$calib" --seed "$seed")
        "$bin" quantize "$@" "${cal[@]}" --json "$model" "$work/q" --overwrite > "$work/q.json" 2>/dev/null
        "$llmq" eval ppl "$work/q" --data "$eval_text" --json > "$work/e.json" 2>/dev/null
        ppls+=("$(j "$work/e.json" "d['perplexity']")")
        secs+=("$(j "$work/q.json" "d['seconds']")")
        bits=$(j "$work/q.json" "d['bits_per_weight']")
        rss=$(j "$work/q.json" "d['peak_rss_bytes'] / 2**20")
      done
      python3 - "$name" "$level" "$label" "$setting" "$fp" "$bits" "$rss" "${ppls[*]}" "${secs[*]}" <<'PY'
import statistics as st, sys
name, level, label, setting, fp, bits, rss = sys.argv[1:8]
ppl = [float(v) for v in sys.argv[8].split()]; secs = [float(v) for v in sys.argv[9].split()]
m = st.mean(ppl)
p = f"{m:.4f}" + (f" ± {(max(ppl) - min(ppl)) / 2:.4f}" if len(ppl) > 1 else "")
print(f"| {name} | ~{level} | {label} | {setting} | {float(bits):.3f} | {p} | {100 * (m / float(fp) - 1):+.2f}% | "
      f"{st.mean(secs):.1f} | {float(rss):.0f} |")
PY
    }
    seeds=${SEEDS:-0 1 2}
    row "$llmq" RTN "w$b g128" "" --method rtn --bits "$b" --group-size 128
    row "$llmq" RTN "w$b g32" "" --method rtn --bits "$b" --group-size 32
    row "$llmq" GPTQ "w$b g128" "$seeds" --method gptq --bits "$b" --group-size 128
    row "$llmq" GPTQ "w$b g32" "$seeds" --method gptq --bits "$b" --group-size 32
    row "$llmq" AWQ "w$b g128 asym" "$seeds" --method awq --bits "$b" --group-size 128 --asym
    if [ -n "$old" ]; then
      row "$old" "SpQR, old storage" "w$b g16 sym, 3-bit scales, target $level" "$seeds" --method spqr --bits "$b" --target-bits "$level"
    fi
    row "$llmq" "SpQR (paper storage)" "w$b g16 asym, 3-bit scales + zeros / 32 rows, target $level" "$seeds" --method spqr --bits "$b" --scale-group-rows 32 --target-bits "$level"
    if [ -n "$old" ]; then
      row "$old" "AdpQ 5%, old storage (fp16, 32-bit row pointers)" "w$b g128" "" --method adpq --bits "$b" --group-size 128
    fi
    row "$llmq" "AdpQ 5%, fp16 outliers" "w$b g128" "" --method adpq --bits "$b" --group-size 128 --adpq-storage fp16
    row "$llmq" "AdpQ 5%, in slots" "w$b g128" "" --method adpq --bits "$b" --group-size 128
    row "$llmq" "AdpQ 2%, in slots" "w$b g128" "" --method adpq --bits "$b" --group-size 128 --outlier-fraction 0.02
    row "$llmq" "AdpQ 2% per row, in slots" "w$b g128" "" --method adpq --bits "$b" --group-size 128 --outlier-fraction 0.02 --adpq-scope row
  done
done
