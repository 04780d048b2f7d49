#!/usr/bin/env bash
# GGUF table for docs/RESULTS.md (issue 18): for each model of ../shared/models and GGUF type of
# $TYPES, llama.cpp's own quantizer (llama_model_quantize of llmq's f32 export, no importance
# matrix) against llmq's methods of $METHODS on the same grids (`quantize --gguf-type`, then
# `export gguf`), every file evaluated by llama.cpp itself (tests/llamacpp/llamacpp_client) on the
# same ids: the TinyStories validation prefix tokenized by llama.cpp, windows of 256 tokens, the
# first $CHUNKS. Calibrated methods run with seeds $SEEDS (TinyStories train sample, 128 windows
# of 256 tokens); the table gives each seed's perplexity and their mean.
# BUDGETS="weight hessian oac" adds, after each method's row, the same method with a bit budget
# (issue 21: --target-bits at the bits per weight the recipe's linears wrote, each linear choosing
# its ggml type, --bit-sensitivity S; weight only for rtn, which has no calibration data).
# Usage: [TYPES="q4_0 q4_k_m q3_k_m q2_k"] [METHODS="rtn gptq awq+gptq oac"] [SEEDS="0 1 2"] [CHUNKS=400]
#        [BUDGETS=] [MODELS="*"] bench/gguf_table.sh <llmq-binary> <llamacpp_client> <shared-dir>
set -euo pipefail
llmq=$1 client=$2 shared=$3
types=${TYPES:-q4_0 q4_k_m q3_k_m q2_k}
methods=${METHODS:-rtn gptq awq+gptq oac}
seeds=${SEEDS:-0 1 2}
chunks=${CHUNKS:-400}
eval_text="$shared/data/tinystories/TinyStories-valid-prefix.txt"
calib="$shared/data/tinystories/TinyStories-train-sample.txt"
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
declare -A ftype=([q4_0]=2 [q4_1]=3 [q5_0]=8 [q5_1]=9 [q8_0]=7 [q2_k]=10 [q3_k_s]=11 [q3_k_m]=12 [q3_k_l]=13
                  [q4_k_s]=14 [q4_k_m]=15 [q5_k_s]=16 [q5_k_m]=17 [q6_k]=18)
ppl() { "$client" ppl "$1" "$work/ids.bin" 256 "$chunks" | python3 -c "import json,sys; print('%.4f' % json.load(sys.stdin)['perplexity'])"; }
echo "| model | type | bytes (llama.cpp / llmq) | fp32 | llama.cpp quantizer | method | ppl per seed | mean |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
for model in "$shared"/models/${MODELS:-*}/; do
  model=${model%/}; name=$(basename "$model")
  "$llmq" export gguf "$model" "$work/f32.gguf" --overwrite > /dev/null 2>&1
  "$client" tokenize "$work/f32.gguf" "$eval_text" "$work/ids.bin" > /dev/null
  fp=$(ppl "$work/f32.gguf")
  for type in $types; do
    "$client" quantize "$work/f32.gguf" "$work/lc.gguf" "${ftype[$type]}" > /dev/null
    lc=$(ppl "$work/lc.gguf"); lc_bytes=$(stat -c %s "$work/lc.gguf")
    for method in $methods; do
      run_seeds=$seeds; [ "$method" = rtn ] && run_seeds=-
      for budget in - ${BUDGETS:-}; do
        [ "$method" = rtn ] && [ "$budget" != - ] && [ "$budget" != weight ] && continue
        budget_args=(); label=$method
        [ "$budget" = - ] || { budget_args=(--target-bits "$recipe_bits" --bit-sensitivity "$budget"); label="$method, budget $recipe_bits bits, $budget sensitivity"; }
        vals=()
        for seed in $run_seeds; do
          calib_args=(); [ "$method" = rtn ] || calib_args=(--calib "$calib" --nsamples 128 --seq-len 256 --seed "$seed")
          OMP_WAIT_POLICY=PASSIVE "$llmq" quantize --method "$method" --gguf-type "$type" "${calib_args[@]}" \
            "${budget_args[@]}" --overwrite --json "$model" "$work/q" > "$work/q.json" 2> /dev/null
          [ "$budget" = - ] && recipe_bits=$(python3 -c "import json,sys; print('%.4f' % json.load(open(sys.argv[1]))['bits_per_weight'])" "$work/q.json")
          "$llmq" export gguf "$work/q" "$work/q.gguf" --overwrite > /dev/null 2>&1
          vals+=("$(ppl "$work/q.gguf")")
          bytes=$(stat -c %s "$work/q.gguf")
        done
        mean=$(python3 -c "import sys; v=[float(x) for x in sys.argv[1:]]; print('%.4f' % (sum(v)/len(v)))" "${vals[@]}")
        echo "| $name | $type | $lc_bytes / $bytes | $fp | $lc | $label | ${vals[*]} | $mean |"
      done
    done
  done
done
