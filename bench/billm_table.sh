#!/usr/bin/env bash
# The binary-weights table of docs/RESULTS.md (issue 21): on every shared model, BiLLM and
# BiLLM+OAC against 1-bit RTN and GPTQ (GPTQ's min/max grid at 1 bit, zero points, groups of 128),
# and the uniform grids at the bits BiLLM really stores (2-bit and 3-bit GPTQ). Calibrated rows run
# $SEEDS (0 1 2) seeds (128 windows of the TinyStories train sample) and print mean ± half the
# range. Columns: written bits per weight (every byte of the quantized linears), bits as the BiLLM
# paper counts them (1 + salient share + 1 / block: no levels, no split bitmap), perplexity
# (TinyStories validation prefix, all full windows), vs fp32, quantization wall time (mean over
# seeds), peak RSS.
# Usage: [MODELS="stories260K-hf stories5M-hf"] [SEEDS="0 1 2"] bench/billm_table.sh <llmq> <shared-dir>
set -euo pipefail
llmq=$1 shared=$2
source "$(dirname "$0")/table_lib.sh"
extra="f\"{d['billm']['paper_bits_per_weight']:.3f}\" if 'billm' in d else '-'"
echo "| model | method | setting | bits/weight | paper's count | perplexity | vs fp32 | time s | peak RSS MiB |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"
for name in ${MODELS:-stories260K-hf stories5M-hf}; do
  start_model "$name"
  row_prefix="| $name "
  seeds=${SEEDS:-0 1 2}
  row "$llmq" RTN "w1 g128 asym" "" --method rtn --bits 1 --group-size 128 --asym
  row "$llmq" GPTQ "w1 g128 asym" "$seeds" --method gptq --bits 1 --group-size 128 --asym
  row "$llmq" BiLLM "blocks of 128" "$seeds" --method billm
  row "$llmq" BiLLM "blocks of 128, Hessian-weighted searches" "$seeds" --method billm --billm-weighted-search
  row "$llmq" BiLLM "one block per row (--group-size 0)" "$seeds" --method billm --group-size 0
  row "$llmq" BiLLM+OAC "blocks of 128" "$seeds" --method billm+oac
  row "$llmq" GPTQ "w2 g128 asym" "$seeds" --method gptq --bits 2 --group-size 128 --asym
  row "$llmq" GPTQ "w3 g128" "$seeds" --method gptq --bits 3 --group-size 128
done
