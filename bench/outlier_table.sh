#!/usr/bin/env bash
# The activation-outlier table of docs/RESULTS.md (docs/OUTLIERS.md): every shared model as it is
# and with injected outlier channels (llmq-outliers, k = $K (64), $CHANNELS (2) residual-stream and
# 2 down_proj-input channels per layer), evaluated at fp32, W8A8 per-token (RTN w8 per-channel,
# no smoothing), SmoothQuant W8A8, LLM.int8 per call and calibrated, each with fp32 and integer
# outliers. Calibrated rows run $SEEDS (0 1 2) calibration seeds (128 windows of the TinyStories
# train sample, seq-len 256) and print mean and spread. Columns: perplexity (TinyStories
# validation prefix, all full windows of the model's context), vs fp32, the share of outlier
# columns per call (llmq eval ppl --json), bits per weight, and eval tokens/s relative to the W8A8
# row of the same model, measured right after it (a noisy ratio: these models are tiny; the kernel
# numbers are BM_Int8Outliers in llmq-bench).
# Usage: [MODELS="stories260K-hf stories5M-hf"] [SEEDS="0 1 2"] bench/outlier_table.sh <llmq> <llmq-outliers> <shared-dir>
set -euo pipefail
llmq=$1 outliers=$2 shared=$3
eval_text="$shared/data/tinystories/TinyStories-valid-prefix.txt"
calib="$shared/data/tinystories/TinyStories-train-sample.txt"
K=${K:-64} CHANNELS=${CHANNELS:-2}
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
j() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); exec('print(' + sys.argv[2] + ')')" "$@"; }
echo "| model | activations | method | perplexity | vs fp32 | outlier columns / call | bits/weight | eval speed vs W8A8 |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
for name in ${MODELS:-stories260K-hf stories5M-hf}; do
  src="$shared/models/$name"
  "$outliers" "$src" "$work/inj" --k "$K" --hidden-channels "$CHANNELS" --intermediate-channels "$CHANNELS" > /dev/null
  for variant in original "k=$K, $CHANNELS+$CHANNELS channels"; do
    model=$src; [ "$variant" = original ] || model=$work/inj
    "$llmq" eval ppl "$model" --data "$eval_text" --json > "$work/fp.json" 2>/dev/null
    fp=$(j "$work/fp.json" "d['perplexity']")
    printf "| %s | %s | fp32 | %.4f | | | 32 | |\n" "$name" "$variant" "$fp"
    w8a8_tps=""
    row() {  # label, seeds ("" = zero-shot), quantize args...
      local label=$1 seeds=$2; shift 2
      local ppls=() shares=() bits="" tps=()
      for seed in ${seeds:-none}; do
        local cal=(); [ "$seed" = none ] || cal=(--calib "$calib" --seq-len 256 --seed "$seed")
        "$llmq" quantize "$@" "${cal[@]}" --json "$model" "$work/q" --overwrite > "$work/q.json" 2>/dev/null
        "$llmq" eval ppl "$work/q" --data "$eval_text" --json > "$work/e.json" 2>/dev/null
        ppls+=("$(j "$work/e.json" "d['perplexity']")")
        shares+=("$(j "$work/e.json" "d.get('activation_outliers', {}).get('outlier_column_share', 0)")")
        tps+=("$(j "$work/e.json" "d['tokens_per_second']")")
        bits=$(j "$work/q.json" "d['bits_per_weight']")
      done
      python3 - "$name" "$variant" "$label" "$fp" "$bits" "${w8a8_tps:-0}" "${ppls[*]}" "${shares[*]}" "${tps[*]}" <<'PY'
import statistics as st, sys
name, variant, label, fp, bits, w8 = sys.argv[1:7]
ppl = [float(v) for v in sys.argv[7].split()]; share = [float(v) for v in sys.argv[8].split()]
tps = [float(v) for v in sys.argv[9].split()]
m = st.mean(ppl)
p = f"{m:.4f}" + (f" ± {(max(ppl) - min(ppl)) / 2:.4f} ({len(ppl)} seeds)" if len(ppl) > 1 else "")
speed = f"{st.mean(tps) / float(w8):.2f}x" if float(w8) > 0 else "1.00x"
print(f"| {name} | {variant} | {label} | {p} | {100 * (m / float(fp) - 1):+.2f}% | "
      f"{100 * st.mean(share):.2f}% | {float(bits):.3f} | {speed} |")
PY
      [ -n "$w8a8_tps" ] || w8a8_tps=$(python3 -c "import statistics as s,sys; print(s.mean(map(float, sys.argv[1:])))" "${tps[@]}")
    }
    row "W8A8 per-token" "" --method rtn --bits 8 --group-size 0 --int8-activations
    row "SmoothQuant W8A8" "${SEEDS:-0 1 2}" --method smoothquant
    row "LLM.int8, per call" "" --method llm.int8
    row "LLM.int8, per call, integer outliers" "" --method llm.int8 --integer-outliers
    row "LLM.int8, calibrated" "${SEEDS:-0 1 2}" --method llm.int8
    row "LLM.int8, calibrated, integer outliers" "${SEEDS:-0 1 2}" --method llm.int8 --integer-outliers
  done
  rm -rf "$work/inj"
done
