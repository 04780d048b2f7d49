#!/usr/bin/env bash
# End to end against llama.cpp (issue 25): a synthetic Llama-shaped checkpoint (llmq-synth, random
# weights: speed only, never quality) quantized once by llmq onto a GGUF type (RTN on llama.cpp's
# grid) and exported; llama.cpp runs the GGUF file, llmq runs the quantized folder — the same
# weights, the same bits. Prompt processing (one batch) and greedy decoding after it, same threads.
# The tokenizer (and vocabulary size) come from <tokenizer-folder> (e.g. ../shared/models/stories5M-hf).
# Prints one JSON object: both sides' tokens/s and the ratios llmq / llama.cpp (> 1: llmq faster), and
# the decode bound (GGUF bytes per token at this run's STREAM triad, and at its read-only bandwidth)
# with each side's fraction of it;
# llmq runs twice: generate --fp32-activations, and generate's default (int8 activations per token
# where the layout allows it: W4A8 kernels, with a min term for types with float mins, e.g. q4_k).
#
# Usage: [HIDDEN=2048 INTER=5632 LAYERS=22 HEADS=32 KV=4] [TYPE=q4_0] [PROMPT_WORDS=312 GEN=128] [THREADS=2]
#        bench/e2e_vs_llamacpp.sh <build>/bin/llmq <build>/bin/llamacpp_client <tokenizer-folder>
set -euo pipefail
llmq=$1 client=$2 tok=$3
hidden=${HIDDEN:-2048} inter=${INTER:-5632} layers=${LAYERS:-22} heads=${HEADS:-32} kv=${KV:-4}
type=${TYPE:-q4_0} words=${PROMPT_WORDS:-312} gen=${GEN:-128} threads=${THREADS:-2}
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
vocab=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['vocab_size'])" "$tok/config.json")
"$(dirname "$llmq")/llmq-synth" "$work/f" --hidden "$hidden" --intermediate "$inter" --layers "$layers" \
  --heads "$heads" --kv-heads "$kv" --vocab "$vocab" > /dev/null 2>&1
for f in tokenizer.model tokenizer_config.json special_tokens_map.json; do [ -f "$tok/$f" ] && cp "$tok/$f" "$work/f/"; done
"$llmq" quantize --method rtn --gguf-type "$type" "$work/f" "$work/q" > /dev/null 2>&1
rm -rf "$work/f"
"$llmq" export gguf "$work/q" "$work/q.gguf" > /dev/null 2>&1
prompt=$(python3 -c "import sys; print(' '.join(['the little cat sat on a warm mat'] * (int(sys.argv[1]) // 8)))" "$words")
# llama.cpp's threadpool spins between operations; llmq's OpenMP threads do the same with
# OMP_WAIT_POLICY=ACTIVE (PASSIVE, which the tests use, puts them to sleep after every linear, and
# waking a vCPU costs milliseconds here: decode 22 instead of 36 tokens/s on this model).
export OMP_WAIT_POLICY=${LLMQ_WAIT_POLICY:-ACTIVE}
OMP_NUM_THREADS=$threads "$llmq" generate "$work/q" --prompt "$prompt" -n "$gen" --fp32-activations --json \
  > "$work/llmq.json" 2> /dev/null
OMP_NUM_THREADS=$threads "$llmq" generate "$work/q" --prompt "$prompt" -n "$gen" --json \
  > "$work/llmq8.json" 2> /dev/null || echo '{}' > "$work/llmq8.json"
ptok=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['prompt_tokens'])" "$work/llmq.json")
"$client" speed "$work/q.gguf" "$ptok" "$gen" "$threads" > "$work/lc.json"
# The decode bound: every weight byte read once per token at this run's STREAM triad (same threads).
OMP_NUM_THREADS=$threads "$llmq" bench kernels --rows 512 --cols 512 --tokens 32 --json > "$work/bench.json" 2> /dev/null
python3 - "$work/llmq.json" "$work/lc.json" "$work/llmq8.json" "$work/bench.json" "$type" "$hidden" "$inter" "$layers" "$vocab" "$(stat -c %s "$work/q.gguf")" <<'PY'
import json, sys
q, l, q8 = json.load(open(sys.argv[1])), json.load(open(sys.argv[2])), json.load(open(sys.argv[3]))
bench = json.load(open(sys.argv[4]))
stream, read = bench["stream_gbps"], bench.get("read_gbps")
del sys.argv[3:5]
out = {"type": sys.argv[3], "hidden": int(sys.argv[4]), "intermediate": int(sys.argv[5]), "layers": int(sys.argv[6]),
       "vocab": int(sys.argv[7]), "gguf_bytes": int(sys.argv[8]), "threads": l["threads"],
       "prompt_tokens": q["prompt_tokens"], "decode_steps": q["decode_steps"],
       "llmq_prompt_tokens_per_second": q["prompt_tokens_per_second"],
       "llamacpp_prompt_tokens_per_second": l["prompt_tokens_per_second"],
       "llmq_decode_tokens_per_second": q["decode_tokens_per_second"],
       "llamacpp_decode_tokens_per_second": l["decode_tokens_per_second"]}
out["prompt_ratio"] = out["llmq_prompt_tokens_per_second"] / out["llamacpp_prompt_tokens_per_second"]
out["decode_ratio"] = out["llmq_decode_tokens_per_second"] / out["llamacpp_decode_tokens_per_second"]
for k in ("prompt", "decode"):
    v = q8.get(k + "_tokens_per_second")
    out["llmq_int8_" + k + "_tokens_per_second"] = v
    out["int8_" + k + "_ratio"] = v / out["llamacpp_" + k + "_tokens_per_second"] if v else None
out["llmq_int8_prompt_kernels"] = q8.get("prompt_kernels")
out["stream_gbps"] = stream
out["decode_bound_tokens_per_second"] = stream * 1e9 / out["gguf_bytes"]
for side, key in (("llamacpp", "llamacpp_decode_tokens_per_second"), ("llmq_int8", "llmq_int8_decode_tokens_per_second")):
    out[side + "_decode_fraction_of_bound"] = (out[key] or 0) / out["decode_bound_tokens_per_second"]
# The same at the read-only bandwidth (a decode step only reads weights; the triad also writes).
out["read_gbps"] = read
if read:
    out["decode_read_bound_tokens_per_second"] = read * 1e9 / out["gguf_bytes"]
    for side, key in (("llamacpp", "llamacpp_decode_tokens_per_second"), ("llmq_int8", "llmq_int8_decode_tokens_per_second")):
        out[side + "_decode_fraction_of_read_bound"] = (out[key] or 0) / out["decode_read_bound_tokens_per_second"]
print(json.dumps(out, indent=2))
PY
