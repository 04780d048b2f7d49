#!/usr/bin/env bash
# Perplexity table for docs/RESULTS.md: every model in ../shared/models at fp32, RTN and GPTQ
# (4-bit g128, 3-bit g128, 4-bit per-channel, 3-bit per-channel; symmetric), with
# quantization wall time and peak memory. Evaluation: TinyStories validation prefix, all full
# windows of the model's context (the issue-3 protocol). Calibration: TinyStories train sample,
# GPTQ defaults (128 windows x min(2048, context), seed 0, damp 0.01).
# Usage: bench/ppl_table.sh <llmq-binary> <shared-dir> [extra quantize args...]
set -euo pipefail
llmq=$1 shared=$2; shift 2
eval_text="$shared/data/tinystories/TinyStories-valid-prefix.txt"
calib="$shared/data/tinystories/TinyStories-train-sample.txt"
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
field() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$1" "$2"; }
echo "| model | setting | bpw | fp32 ppl | RTN ppl | GPTQ ppl | RTN time s | GPTQ time s | GPTQ peak RSS MiB |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"
for model in "$shared"/models/*/; do
  model=${model%/}; name=$(basename "$model")
  "$llmq" eval ppl "$model" --data "$eval_text" --json > "$work/fp.json" 2>/dev/null
  fp=$(field "$work/fp.json" perplexity)
  for setting in "4 128" "3 128" "4 0" "3 0"; do
    set -- $setting; bits=$1 group=$2
    label="w$bits $( [ "$group" = 0 ] && echo per-channel || echo g$group )"
    "$llmq" quantize --method rtn --bits "$bits" --group-size "$group" --json "$model" "$work/rtn" > "$work/rq.json" 2>/dev/null
    "$llmq" quantize --method gptq --bits "$bits" --group-size "$group" --calib "$calib" --json "$model" "$work/gptq" > "$work/gq.json" 2>/dev/null
    "$llmq" eval ppl "$work/rtn" --data "$eval_text" --json > "$work/r.json" 2>/dev/null
    "$llmq" eval ppl "$work/gptq" --data "$eval_text" --json > "$work/g.json" 2>/dev/null
    printf "| %s | %s | %.3f | %.4f | %.4f | %.4f | %.2f | %.2f | %.0f |\n" "$name" "$label" \
      "$(field "$work/gq.json" bits_per_weight)" "$fp" "$(field "$work/r.json" perplexity)" "$(field "$work/g.json" perplexity)" \
      "$(field "$work/rq.json" seconds)" "$(field "$work/gq.json" seconds)" \
      "$(python3 -c "import json; print(json.load(open('$work/gq.json'))['peak_rss_bytes']/2**20)")"
    rm -rf "$work/rtn" "$work/gptq"
  done
done
