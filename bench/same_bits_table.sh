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
source "$(dirname "$0")/table_lib.sh"
echo "| model | level | method | setting | bits/weight | perplexity | vs fp32 | time s | peak RSS MiB |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"
for name in ${MODELS:-stories260K-hf stories5M-hf}; do
  start_model "$name"
  for level in 3.5 4.5; do
    b=${level%.*}
    row_prefix="| $name | ~$level "
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
