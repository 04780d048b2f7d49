#!/usr/bin/env bash
# Perplexity table for docs/RESULTS.md: every model in ../shared/models at fp32 and each method
# of $METHODS (default: rtn gptq; "method@arg@arg" passes extra arguments to that method only, e.g.
# "oac@--oac-grad@token") at each setting of $SETTINGS (default: "4 128,3 128,4 0,3 0": bits,
# group size (0 = per-channel), and "asym" for zero points), with the real bits per weight, quantization
# wall time and peak memory. Evaluation: TinyStories validation prefix, all full windows of the
# model's context (the issue-3 protocol). Calibration: TinyStories train sample with each method's
# CLI defaults (128 windows; min(2048, context) tokens, AWQ min(512, context); seed 0); rtn and
# adpq use no data.
# Usage: [MODELS=<folder glob>] [METHODS="rtn gptq awq awq+gptq adpq spqr"] [SETTINGS="4 128,3 128"] bench/ppl_table.sh <llmq-binary> <shared-dir> [extra quantize args...]
set -euo pipefail
llmq=$1 shared=$2; shift 2
extra=("$@")
methods=${METHODS:-rtn gptq}
IFS=',' read -r -a settings <<< "${SETTINGS:-4 128,3 128,4 0,3 0}"
eval_text="$shared/data/tinystories/TinyStories-valid-prefix.txt"
calib="$shared/data/tinystories/TinyStories-train-sample.txt"
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
field() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$1" "$2"; }
echo "| model | setting | method | bits/weight | perplexity | fp32 | time s | peak RSS MiB |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
for model in "$shared"/models/${MODELS:-*}/; do
  model=${model%/}; name=$(basename "$model")
  "$llmq" eval ppl "$model" --data "$eval_text" --json > "$work/fp.json" 2>/dev/null
  fp=$(field "$work/fp.json" perplexity)
  for setting in "${settings[@]}"; do
    set -- $setting; bits=$1 group=$2 sym=${3:-sym}
    label="w$bits $( [ "$group" = 0 ] && echo per-channel || echo g$group )$( [ "$sym" = asym ] && echo " asym" || true )"
    for spec in $methods; do
      IFS='@' read -r -a parts <<< "$spec"; method=${parts[0]}; margs=("${parts[@]:1}")
      calib_args=(); [ "$method" = rtn ] || [ "$method" = adpq ] || calib_args=(--calib "$calib")  # adpq: zero-shot
      "$llmq" quantize --method "$method" --bits "$bits" --group-size "$group" "--$sym" "${calib_args[@]}" ${margs[@]+"${margs[@]}"} ${extra[@]+"${extra[@]}"} --json "$model" "$work/q" > "$work/q.json" 2>/dev/null
      "$llmq" eval ppl "$work/q" --data "$eval_text" --json > "$work/e.json" 2>/dev/null
      printf "| %s | %s | %s | %.3f | %.4f | %.4f | %.1f | %.0f |\n" "$name" "$label" "${spec//@/ }" \
        "$(field "$work/q.json" bits_per_weight)" "$(field "$work/e.json" perplexity)" "$fp" \
        "$(field "$work/q.json" seconds)" \
        "$(python3 -c "import json; print(json.load(open('$work/q.json'))['peak_rss_bytes']/2**20)")"
      rm -rf "$work/q"
    done
  done
done
