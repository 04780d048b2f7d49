#!/usr/bin/env bash
# The bit-budget table of docs/RESULTS.md (issue 21): GPTQ with a bit budget over the linears
# (--target-bits, each linear's bits and group from the default menu, zero points) against the
# best uniform GPTQ settings at or below the same written bits, with the three sensitivities
# (weight: data-free; hessian: the float model's layer inputs; oac: output-adaptive). Calibrated
# rows run $SEEDS (0 1 2) seeds (128 windows of the TinyStories train sample; the plan's
# sensitivity pass uses the same windows) and print mean ± half the range. Columns: written bits
# per weight, the mix of bit widths chosen (last seed), perplexity (TinyStories validation prefix,
# all full windows), vs fp32, quantization wall time (plan included), peak RSS.
# --bit-estimate gptq rows: the plan's estimate is GPTQ's own error at each spec (hessian, oac).
# Usage: [MODELS="stories260K-hf stories5M-hf"] [LEVELS="2.5 3.25"] [SEEDS="0 1 2"]
#        [SENSITIVITIES="weight hessian oac"] [ESTIMATES="rtn gptq"] [UNIFORM=1] [MENU=3:64,3:128,...]
#        bench/bit_budget_table.sh <llmq> <shared-dir>
# MENU: --bit-menu for the budget rows (default: the library's menu for the level).
set -euo pipefail
llmq=$1 shared=$2
source "$(dirname "$0")/table_lib.sh"
extra="' '.join(f'w{k}:{v}' for k, v in sorted(__import__('collections').Counter(l['bit_choice'].split()[0][1:] for l in d['layers'] if 'bit_choice' in l).items())) or '-'"
echo "| model | level | method | setting | bits/weight | bit widths | perplexity | vs fp32 | time s | peak RSS MiB |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
for name in ${MODELS:-stories260K-hf stories5M-hf}; do
  start_model "$name"
  seeds=${SEEDS:-0 1 2}
  for level in ${LEVELS:-2.5 3.25}; do
    row_prefix="| $name | $level "
    [ "${UNIFORM:-1}" = 1 ] && case $level in
      2.5)  row "$llmq" "GPTQ uniform" "w2 g32 sym" "$seeds" --method gptq --bits 2 --group-size 32 --sym
            row "$llmq" "GPTQ uniform" "w2 g64 asym" "$seeds" --method gptq --bits 2 --group-size 64 --asym ;;
      3.25) row "$llmq" "GPTQ uniform" "w3 g64 sym" "$seeds" --method gptq --bits 3 --group-size 64 --sym
            row "$llmq" "GPTQ uniform" "w3 g128 asym" "$seeds" --method gptq --bits 3 --group-size 128 --asym ;;
      4.25) row "$llmq" "GPTQ uniform" "w4 g64 sym" "$seeds" --method gptq --bits 4 --group-size 64 --sym
            row "$llmq" "GPTQ uniform" "w4 g128 asym" "$seeds" --method gptq --bits 4 --group-size 128 --asym ;;
    esac
    for s in ${SENSITIVITIES:-weight hessian oac}; do
      for e in ${ESTIMATES:-rtn gptq}; do
        [ "$e" = gptq ] && [ "$s" = weight ] && continue  # GPTQ's error needs a Hessian
        label="asym menu, $s sensitivity"; [ "$e" = gptq ] && label="$label, gptq estimate"
        menu=(); [ -n "${MENU:-}" ] && menu=(--bit-menu "$MENU") && label="$label, menu $MENU"
        row "$llmq" "GPTQ, bit budget" "$label" "$seeds" --method gptq --asym --target-bits "$level" --bit-sensitivity "$s" \
          --bit-estimate "$e" "${menu[@]}"
      done
    done
  done
done
