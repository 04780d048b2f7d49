#!/usr/bin/env bash
# End-to-end checks of the llmq CLI: help texts, exit codes, JSON on stdout, clear errors.
set -uo pipefail
llmq=$1 data=$2  # data: the embedded examples/data folder
shared=${LLMQ_SHARED:-${3:-}}  # optional: ../shared (its larger models)
model="$data/stories260K-hf"
valid="$data/tinystories-valid-200k.txt"
[ -f "$model/config.json" ] || { echo "FAIL: missing embedded model $model/config.json"; exit 1; }
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
fails=0 passes=0
check() {  # check NAME EXPECTED_EXIT STDERR_PATTERN -- command...
  local name=$1 want=$2 pat=$3; shift 4
  "$@" > "$work/out" 2> "$work/err"; local rc=$?
  if [ "$rc" != "$want" ]; then echo "FAIL $name: exit $rc, expected $want"; cat "$work/err"; fails=$((fails+1)); return; fi
  if [ -n "$pat" ] && ! grep -q -- "$pat" "$work/err" "$work/out"; then
    echo "FAIL $name: output lacks '$pat'"; cat "$work/err"; fails=$((fails+1)); return; fi
  passes=$((passes+1))
}
json_ok() {  # stdout must be exactly one JSON object with the given keys
  python3 - "$work/out" "$@" <<'PY' || { echo "FAIL json: $*"; fails=$((fails+1)); }
import json, sys
d = json.load(open(sys.argv[1]))
assert isinstance(d, dict)
for k in sys.argv[2:]:
    assert k in d, "missing key " + k
PY
}

check help 0 "Commands:" -- "$llmq" --help
check version 0 "llmq 0." -- "$llmq" --version
check version-kernels 0 "kernels: " -- "$llmq" --version
check inspect-help 0 "Usage: llmq inspect" -- "$llmq" inspect --help
check quantize-help 0 "Usage: llmq quantize" -- "$llmq" quantize --help
check no-command 2 "Usage" -- "$llmq"
check bad-command 2 "unknown command" -- "$llmq" frobnicate
check bad-option 2 "unknown option --frob" -- "$llmq" quantize --frob "$model" "$work/x"
check bad-bits 2 "bits must be 1 (asym), 2, 3, 4 or 8" -- "$llmq" quantize --bits 5 "$model" "$work/x"
check inspect 0 "LlamaForCausalLM" -- "$llmq" inspect "$model"
check inspect-json 0 "" -- "$llmq" inspect --json "$model"
json_ok architecture num_layers parameters bytes_on_disk quantized tensors kernel_isa
json_values() {  # the values, not only the keys: python asserts over d (the JSON object on stdout)
  python3 - "$work/out" "$1" <<'PY' || { echo "FAIL json values: $1"; fails=$((fails+1)); }
import json, math, sys
d = json.load(open(sys.argv[1]))
exec(sys.argv[2])
PY
}
json_values "import json as J; c = J.load(open('$model/config.json'))
assert d['num_layers'] == c['num_hidden_layers'] and d['hidden_size'] == c['hidden_size'] and d['vocab_size'] == c['vocab_size']
assert d['quantized'] is False and d['unused_tensors'] == [] and len(d['tensors']) > 0
assert d['linear_layers'] == 7 * c['num_hidden_layers']"
check missing-folder 1 "/nonexistent/model" -- "$llmq" inspect /nonexistent/model
check quantize 0 "" -- "$llmq" quantize --bits 4 --group-size 32 --asym --json "$model" "$work/q4"
json_ok kernel_isa method bits group_size sym bits_per_weight seconds peak_rss_bytes layers mean_relative_error
# w4 g32 asym: 4 bits + (fp16 scale + 8-bit zero) / 32 = 4.75 bits per weight (rows padded to words: a bit more)
json_values "assert d['method'] == 'rtn' and d['bits'] == 4 and d['group_size'] == 32 and d['sym'] is False
assert 4.75 <= d['bits_per_weight'] < 4.9, d['bits_per_weight']
errs = [l['relative_error'] for l in d['layers']]
assert len(errs) == len(d['layers']) > 0 and all(0 < e < 0.2 for e in errs)
assert abs(d['mean_relative_error'] - sum(errs) / len(errs)) < 1e-12 and d['max_relative_error'] == max(errs)
assert d['output_bytes'] < d['input_bytes']"
grep -q "quantize" "$work/err" || { echo "FAIL: no progress on stderr"; fails=$((fails+1)); }

# GGUF (docs/GGUF.md): quantize onto llama.cpp's grids, export, read the file back; bad input.
check quantize-gguf 0 "" -- "$llmq" quantize --method rtn --gguf-type q4_k_m --json "$model" "$work/gg"
json_ok gguf_type tensor_types gguf_fallbacks bits_per_weight
json_values "assert d['gguf_type'] == 'q4_k_m'
t = d['tensor_types']
assert t['model.layers.0.self_attn.q_proj.weight'] == 'q5_0' and t['model.embed_tokens.weight'] == 'q8_0', t
assert 'model.layers.0.mlp.down_proj.weight' not in t
assert d['gguf_fallbacks']['model.layers.0.mlp.down_proj.weight'] == 'q4_k -> f16'"
check export-gguf 0 "" -- "$llmq" export gguf "$work/gg" "$work/gg.gguf" --json
json_ok output bytes architecture type tensor_types fallbacks warnings
json_values "import os
assert d['bytes'] == os.path.getsize('$work/gg.gguf') and d['architecture'] == 'llama' and d['type'] == 'q4_k_m'
assert d['tensor_types']['blk.0.attn_q.weight'] == 'q5_0' and d['tensor_types']['blk.0.ffn_down.weight'] == 'f16'"
check inspect-gguf 0 "" -- "$llmq" inspect --json "$work/gg.gguf"
json_values "assert d['format'] == 'gguf' and d['architecture'] == 'llama' and d['version'] == 3
assert len(d['tensors']) == 2 + 9 * 5 and d['metadata']['llama.block_count'] == '5'"
check inspect-gguf-text 0 "tensor types" -- "$llmq" inspect "$work/gg.gguf"
check export-exists 1 "--overwrite" -- "$llmq" export gguf "$work/gg" "$work/gg.gguf"
check export-f16 0 "" -- "$llmq" export gguf "$model" "$work/f16.gguf" --type f16 --json
json_values "assert d['type'] == 'f16' and d['tensor_types']['token_embd.weight'] == 'f16' and d['tensor_types']['output_norm.weight'] == 'f32'"
check quantize-own 0 "" -- "$llmq" quantize --bits 4 --group-size 32 "$model" "$work/own"
check export-own-layout 2 "--gguf-type" -- "$llmq" export gguf "$work/own" "$work/own.gguf"
[ ! -e "$work/own.gguf" ] || { echo "FAIL export-own-layout: a file was written"; fails=$((fails+1)); }
# generate: quantized linears take int8 activations by default where their layout allows it
# (integer zero points or ggml's float mins), fp32 otherwise (bilevel zeros, lookup codes) or when
# asked (issue 25).
check generate-int8-default 0 "" -- "$llmq" generate "$work/own" --prompt "Once" -n 4 --json
json_values "assert d['kernels'] and all('int8' in k for k in d['kernels']), d['kernels']"
check generate-fp32 0 "" -- "$llmq" generate "$work/own" --prompt "Once" -n 4 --fp32-activations --json
json_values "assert d['kernels'] and not any('int8' in k for k in d['kernels']), d['kernels']"
check quantize-q4_1 0 "" -- "$llmq" quantize --gguf-type q4_1 "$model" "$work/q41"
check generate-mins-int8 0 "" -- "$llmq" generate "$work/q41" --prompt "Once" -n 4 --json
json_values "k = d['kernels']; assert k and all('int8' in n for n in k), k"
check generate-fp32-int8 2 "excludes" -- "$llmq" generate "$work/own" --prompt "Once" --fp32-activations --int8-activations
check export-help 0 "Usage: llmq export gguf" -- "$llmq" export --help
check export-bad-format 2 "export gguf" -- "$llmq" export onnx "$model" "$work/x"
# Hugging Face formats (docs/HF_FORMATS.md): export as compressed-tensors / GPTQ / AWQ, read them back.
check quantize-w4asym 0 "" -- "$llmq" quantize --bits 4 --group-size 32 --asym "$model" "$work/w4"
check export-hf-ct 0 "" -- "$llmq" export hf "$work/w4" "$work/ct" --format compressed-tensors --json
json_ok output format checkpoint_format bits group_size files bytes
json_values "import os
assert d['format'] == 'compressed-tensors' and d['checkpoint_format'] == 'pack-quantized' and d['bits'] == 4 and d['group_size'] == 32
assert 'model.safetensors' in d['files'] and d['bytes'] == sum(os.path.getsize('$work/ct/' + f) for f in d['files'])
import json as J; q = J.load(open('$work/ct/config.json'))['quantization_config']
assert q['quant_method'] == 'compressed-tensors' and q['config_groups']['group_0']['weights']['symmetric'] is False"
check inspect-hf-ct 0 "" -- "$llmq" inspect --json "$work/ct"
json_values "assert d['format'] == 'compressed-tensors' and d['quantized_modules'] == 35"
check ppl-llmq-w4 0 "" -- "$llmq" eval ppl "$work/w4" --data "$valid" --seq-len 64 --max-chunks 3 --json
ppl_llmq=$(python3 -c "import json; print(json.load(open('$work/out'))['perplexity'])")
check ppl-hf-ct 0 "" -- "$llmq" eval ppl "$work/ct" --data "$valid" --seq-len 64 --max-chunks 3 --json
json_values "assert d['perplexity'] == $ppl_llmq, (d['perplexity'], $ppl_llmq)"
check generate-hf-ct 0 "" -- "$llmq" generate "$work/ct" --prompt "Once" -n 8 --json
check export-hf-gptq-shape 1 "multiples of 32" -- "$llmq" export hf "$work/w4" "$work/gptq" --format gptq
[ ! -e "$work/gptq" ] || { echo "FAIL export-hf-gptq-shape: a folder was written"; fails=$((fails+1)); }
check export-hf-no-format 2 "--format is required" -- "$llmq" export hf "$work/w4" "$work/x"
check export-hf-float 1 "not quantized" -- "$llmq" export hf "$model" "$work/x" --format gptq
check export-hf-help 0 "Usage: llmq export hf" -- "$llmq" export hf --help
check export-hf-exists 1 "--overwrite" -- "$llmq" export hf "$work/w4" "$work/ct" --format compressed-tensors
check quantize-imported 1 "already quantized" -- "$llmq" quantize "$work/ct" "$work/x"
check quantize-gguf-bad 2 "expected one of" -- "$llmq" quantize --gguf-type q9_0 "$model" "$work/x"
check quantize-gguf-bits 2 "does not apply with --gguf-type" -- "$llmq" quantize --gguf-type q4_0 --bits 4 "$model" "$work/x"
check quantize-gguf-method 2 "applies to --method" -- "$llmq" quantize --method adpq --gguf-type q4_0 "$model" "$work/x"
check inspect-quantized 0 "bits per weight" -- "$llmq" inspect "$work/q4"
check exists-no-overwrite 1 "--overwrite" -- "$llmq" quantize "$model" "$work/q4"
check overwrite 0 "" -- "$llmq" quantize --overwrite --bits 8 --group-size 0 "$model" "$work/q4"
# --overwrite replaces only what llmq wrote; --force replaces anything (but never the input).
mkdir -p "$work/theirs" && echo "user data" > "$work/theirs/notes.txt"
check overwrite-not-llmq 1 "--force" -- "$llmq" quantize --overwrite "$model" "$work/theirs"
[ "$(cat "$work/theirs/notes.txt")" = "user data" ] || { echo "FAIL: --overwrite replaced a folder llmq did not write"; fails=$((fails+1)); }
check force 0 "" -- "$llmq" quantize --force "$model" "$work/theirs"
mkdir -p "$work/bad" && cp "$model"/* "$work/bad/" && head -c 1000 "$model/model.safetensors" > "$work/bad/model.safetensors"
# GPTQ: calibration options, clear usage errors, JSON report keys.
calib="$data/tinystories-train-200k.txt"
check gptq-needs-calib 2 "needs --calib" -- "$llmq" quantize --method gptq "$model" "$work/g"
check rtn-rejects-calib 2 "calibrated methods only" -- "$llmq" quantize --calib "$calib" "$model" "$work/g"
check bad-method 2 "available: rtn, gptq" -- "$llmq" quantize --method awqq "$model" "$work/g"
check gptq-missing-calib 1 "nope.txt: calibration data not found" -- "$llmq" quantize --method gptq --calib "$work/nope.txt" "$model" "$work/g"
[ -e "$work/g" ] && { echo "FAIL: output left behind after an error"; fails=$((fails+1)); }
check gptq 0 "" -- "$llmq" quantize --method gptq --calib "$calib" --nsamples 8 --seq-len 64 --act-order --true-sequential --json "$model" "$work/g"
json_ok method bits_per_weight calibration gptq mean_output_relative_error rtn_fallback_layers layers peak_rss_bytes
check eval-gptq 0 "" -- "$llmq" eval ppl "$work/g" --data "$valid" --seq-len 128 --max-chunks 2 --json
json_ok kernel_isa perplexity tokens seq_len chunks tokens_per_second
json_values "assert d['seq_len'] == 128 and d['chunks'] == 2 and d['predictions'] == 2 * 127
assert abs(d['perplexity'] - math.exp(d['mean_nll'])) < 1e-9 * d['perplexity']
assert 1 < d['perplexity'] < 100 and d['quantized'] is True and sum(d['kernels'].values()) > 0"
check generate 0 "" -- "$llmq" generate "$model" --prompt "Once upon a time" -n 12 --json
json_ok prompt text ids new_tokens tokens_per_second kernel_isa prompt_tokens prompt_tokens_per_second decode_steps decode_tokens_per_second
json_values "assert d['prompt_tokens'] + d['new_tokens'] == len(d['ids']) and d['decode_steps'] in (max(d['new_tokens'] - 1, 0), d['new_tokens'])
assert d['prompt_tokens_per_second'] > 0 and (d['decode_steps'] == 0 or d['decode_tokens_per_second'] > 0)"
cp "$work/out" "$work/gen1"
check generate-again 0 "" -- "$llmq" generate "$model" --prompt "Once upon a time" -n 12 --json
python3 - "$work/gen1" "$work/out" <<'PY' || { echo "FAIL generate: greedy output differs between runs"; fails=$((fails+1)); }
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:])
assert a["ids"] == b["ids"] and a["ids"][0] == 1 and a["new_tokens"] == 12, (a, b)
PY
# Kernel roofline: keys scripts rely on; a bad LLMQ_ISA is a clear error.
check bench-kernels 0 "" -- "$llmq" bench kernels --rows 512 --cols 512 --tokens 16 --json
json_ok stream_gbps w4_gemv_fraction_of_stream w4_gemv_speedup_vs_eigen w4_gemm_speedup_vs_eigen w8a8_gemm_speedup_vs_eigen isa
# With llama.cpp's libraries (llmq-vs-llamacpp built beside llmq) the side-by-side ratios are
# measured in the same run; with libraries that are not there they are left out, with the reason.
if [ -x "$(dirname "$llmq")/llmq-vs-llamacpp" ]; then
  json_ok llamacpp_w4_gemv_ratio llamacpp_w4_gemm_ratio llamacpp_gemv_shape
  check bench-llamacpp-missing 0 "no llama.cpp ratios" -- "$llmq" bench kernels --rows 64 --cols 256 --tokens 4 --json \
    --llamacpp-libs "$work/no-such-libs"
  python3 -c "import json,sys; sys.exit('llamacpp_w4_gemv_ratio' in json.load(open('$work/out')))" ||
    { echo "FAIL bench-llamacpp-missing: ratios without llama.cpp"; fails=$((fails+1)); }
fi
check bench-bad-isa 1 "expected scalar, avx2 or avx512" -- env LLMQ_ISA=mmx "$llmq" bench kernels --rows 64 --cols 64
check bench-unknown 2 "available: kernels" -- "$llmq" bench gpu
check threads-1 0 "" -- "$llmq" --threads 1 eval ppl "$model" --data "$valid" --seq-len 64 --max-chunks 2 --json
json_ok perplexity
check threads-bad 2 "--threads expects a positive integer" -- "$llmq" eval ppl --threads zero "$model"
# SmoothQuant W8A8: defaults to 8-bit per-channel, the output runs with int8 activations.
check smoothquant 0 "" -- "$llmq" quantize --method smoothquant --calib "$calib" --nsamples 8 --seq-len 64 --json "$model" "$work/sq"
json_ok method alpha int8_activations calibration layers
check eval-sq 0 "" -- "$llmq" eval ppl "$work/sq" --data "$valid" --seq-len 64 --max-chunks 2 --json
python3 -c "import json,sys; assert json.load(open(sys.argv[1]))['int8_activations'] is True" "$work/out" || { echo "FAIL: W8A8 model did not run int8"; fails=$((fails+1)); }
check sq-bad-alpha 2 "--alpha expects a number in" -- "$llmq" quantize --method smoothquant --calib "$calib" --alpha 2 "$model" "$work/sq2"
check sq-bad-bits 2 "smoothquant is W8A8" -- "$llmq" quantize --method smoothquant --calib "$calib" --bits 4 "$model" "$work/sq2"
# LLM.int8: zero-shot (outlier columns per call) or calibrated (fixed columns); integer outliers
# in any run with int8 activations; the decomposition's statistics in eval --json.
check llm-int8 0 "" -- "$llmq" quantize --method llm.int8 --json "$model" "$work/li8"
json_ok method int8_activations activation_outliers layers
check eval-li8 0 "" -- "$llmq" eval ppl "$work/li8" --data "$valid" --seq-len 64 --max-chunks 2 --json
json_ok perplexity activation_outliers kernels
python3 -c "import json,sys; j=json.load(open(sys.argv[1])); a=j['activation_outliers']; assert a['threshold']==6.0 and a['integer'] is False and 0<=a['outlier_column_share']<1 and a['layers']; assert all('fp32 outliers' in k for k in j['kernels']), j['kernels']" "$work/out" || { echo "FAIL: llm.int8 eval keys"; fails=$((fails+1)); }
check llm-int8-calib 0 "" -- "$llmq" quantize --method llm.int8 --calib "$calib" --nsamples 4 --seq-len 64 --outlier-threshold 1.5 --integer-outliers --json "$model" "$work/li8c"
python3 -c "import json,sys; j=json.load(open(sys.argv[1])); assert j['activation_outliers']=={'threshold':1.5,'integer':True}; assert any(l.get('activation_outlier_columns',0)>0 for l in j['layers'])" "$work/out" || { echo "FAIL: llm.int8 calibrated report"; fails=$((fails+1)); }
check eval-li8c 0 "" -- "$llmq" eval ppl "$work/li8c" --data "$valid" --seq-len 64 --max-chunks 2 --json
python3 -c "import json,sys; j=json.load(open(sys.argv[1])); assert all('int8-tiled outliers' in k for k in j['kernels']), j['kernels']" "$work/out" || { echo "FAIL: integer outliers kernels"; fails=$((fails+1)); }
check w4a8-integer-outliers 0 "" -- "$llmq" quantize --bits 4 --group-size 32 --int8-activations --integer-outliers --json "$model" "$work/w4i"
json_ok activation_outliers int8_activations
check eval-runtime-outliers 0 "" -- "$llmq" eval ppl "$work/sq" --data "$valid" --seq-len 64 --max-chunks 2 --outlier-threshold 2 --integer-outliers --json
json_ok activation_outliers
check generate-outliers 0 "" -- "$llmq" generate "$work/w4i" --prompt "Once" -n 4 --json
check li8-no-int8 2 "decompose int8 activations" -- "$llmq" quantize --integer-outliers "$model" "$work/x1"
check li8-bad-bits 2 "llm.int8 is vector-wise int8" -- "$llmq" quantize --method llm.int8 --bits 4 "$model" "$work/x1"
check li8-bad-threshold 2 "--outlier-threshold expects a positive number" -- "$llmq" quantize --method llm.int8 --outlier-threshold -1 "$model" "$work/x1"
check eval-bad-threshold 2 "--outlier-threshold expects a positive number" -- "$llmq" eval ppl "$work/li8" --data "$valid" --outlier-threshold nan
# AWQ: report keys, the per-layer search results, options checked against the method.
check awq 0 "" -- "$llmq" quantize --method awq+gptq --calib "$calib" --nsamples 8 --seq-len 64 --awq-grid 5 --json "$model" "$work/awq"
json_ok method awq gptq calibration layers mean_output_relative_error
python3 -c "import json,sys; l=json.load(open(sys.argv[1]))['layers']; assert all('awq_alpha' in x for x in l); assert 'awq_clip_shrink' in l[2]" "$work/out" || { echo "FAIL: awq per-layer keys"; fails=$((fails+1)); }
check eval-awq 0 "" -- "$llmq" eval ppl "$work/awq" --data "$valid" --seq-len 64 --max-chunks 2 --json
check awq-grid-on-rtn 2 "applies to --method awq and awq+gptq only" -- "$llmq" quantize --awq-grid 4 "$model" "$work/a2"
check awq-no-act-order 2 "applies to --method gptq, awq+gptq, spqr, oac and spqr+oac only" -- "$llmq" quantize --method awq --calib "$calib" --act-order "$model" "$work/a2"
# AdpQ: zero-shot (no --calib), outliers reported, bad options are usage errors.
check adpq 0 "" -- "$llmq" quantize --method adpq --bits 3 --outlier-fraction 0.02 --json "$model" "$work/adpq"
json_ok method adpq outlier_fraction bits_per_weight layers
check eval-adpq 0 "" -- "$llmq" eval ppl "$work/adpq" --data "$valid" --seq-len 64 --max-chunks 2 --json
check adpq-no-calib 2 "zero-shot" -- "$llmq" quantize --method adpq --calib "$calib" "$model" "$work/a3"
check adpq-bad-scope 2 "tensor, row or group" -- "$llmq" quantize --method adpq --adpq-scope column "$model" "$work/a3"
check adpq-bad-fraction 2 "--outlier-fraction expects" -- "$llmq" quantize --method adpq --outlier-fraction 1 "$model" "$work/a3"

check billm 0 "" -- "$llmq" quantize --method billm --calib "$calib" --nsamples 8 --seq-len 64 --json "$model" "$work/billm"
json_ok method billm bits_per_weight layers
python3 -c "import json,sys; j=json.load(open(sys.argv[1])); b=j['billm']; assert 1.0 < b['paper_bits_per_weight'] < 1.6 and j['bits_per_weight'] > 2 and b['block'] == 128 and not b['hessian_weighted_search']; assert all(l['salient_fraction'] > 0 for l in j['layers'])" "$work/out" || { echo "FAIL: billm keys"; fails=$((fails+1)); }
check eval-billm 0 "" -- "$llmq" eval ppl "$work/billm" --data "$valid" --seq-len 64 --max-chunks 2 --json
check billm-bits 2 "does not apply to --method billm" -- "$llmq" quantize --method billm --calib "$calib" --bits 4 "$model" "$work/b2"
check billm-act-order 2 "act-order" -- "$llmq" quantize --method billm --calib "$calib" --act-order "$model" "$work/b2"
check billm-no-calib 2 "needs --calib" -- "$llmq" quantize --method billm "$model" "$work/b2"
check salient-columns-on-gptq 2 "applies to --method billm and billm+oac only" -- "$llmq" quantize --method gptq --calib "$calib" --salient-columns 8 "$model" "$work/b2"
check export-hf-billm 1 "lookup codes" -- "$llmq" export hf "$work/billm" "$work/b2" --format gptq
check export-gguf-billm 2 "cannot hold exactly" -- "$llmq" export gguf "$work/billm" "$work/b2.gguf"
check bit-budget 0 "" -- "$llmq" quantize --target-bits 3.25 --bit-menu 2:64,3:64,4:64,8:64 --json "$model" "$work/bb"
json_ok method bit_budget bits_per_weight layers
python3 -c "import json,sys; j=json.load(open(sys.argv[1])); b=j['bit_budget']; assert b['sensitivity']=='weight' and len(b['menu'])==4 and j['bits_per_weight'] <= 3.25; assert all('bit_choice' in l for l in j['layers'])" "$work/out" || { echo "FAIL: bit budget keys"; fails=$((fails+1)); }
check bit-budget-gguf 0 "" -- "$llmq" quantize --gguf-type q4_k_m --target-bits 5 --bit-menu q4_0,q5_0,q8_0 --json "$model" "$work/bbg"
python3 -c "import json,sys; j=json.load(open(sys.argv[1])); t=j['tensor_types']; assert j['gguf_type']=='q4_k_m' and j['bits_per_weight'] <= 5; c={l['bit_choice'] for l in j['layers']}; assert c <= {'ggml q4_0','ggml q5_0','ggml q8_0'} and len(c) > 1, c; assert all(t[l['module']+'.weight']==l['bit_choice'][5:] for l in j['layers'])" "$work/out" || { echo "FAIL: gguf bit budget keys"; fails=$((fails+1)); }
check export-gguf-budget 0 "" -- "$llmq" export gguf "$work/bbg" "$work/bbg.gguf"
check bit-budget-gguf-menu 2 "with a GGUF type the menu holds ggml types" -- "$llmq" quantize --gguf-type q4_k_m --target-bits 5 --bit-menu 4:32 "$model" "$work/bb3"
check bit-budget-menu-type 2 "ggml types go with a GGUF type" -- "$llmq" quantize --target-bits 5 --bit-menu q4_0,q8_0 "$model" "$work/bb3"
check bit-budget-hessian-rtn 0 "" -- "$llmq" quantize --target-bits 3 --bit-sensitivity hessian --calib "$calib" --nsamples 4 --seq-len 64 --json "$model" "$work/bb2"
check bit-budget-gptq-estimate 0 "" -- "$llmq" quantize --method gptq --target-bits 3 --bit-estimate gptq --calib "$calib" --nsamples 4 --seq-len 64 --json "$model" "$work/bb4"
python3 -c "import json,sys; j=json.load(open(sys.argv[1])); b=j['bit_budget']; assert b['estimate']=='gptq' and b['sensitivity']=='oac' and j['bits_per_weight'] <= 3" "$work/out" || { echo "FAIL: gptq bit estimate keys"; fails=$((fails+1)); }
check bit-estimate-bad 2 "must be rtn or gptq" -- "$llmq" quantize --target-bits 3 --bit-estimate foo "$model" "$work/bb3"
check bit-estimate-no-hessian 2 "needs a Hessian" -- "$llmq" quantize --target-bits 3 --bit-estimate gptq "$model" "$work/bb3"
check bit-budget-no-calib 2 "needs calibration data" -- "$llmq" quantize --target-bits 3 --bit-sensitivity hessian "$model" "$work/bb3"
check bit-budget-bad-menu 2 "bits:group pairs" -- "$llmq" quantize --target-bits 3 --bit-menu 3-64 "$model" "$work/bb3"
check bit-budget-too-low 1 "smallest spec" -- "$llmq" quantize --target-bits 1.5 "$model" "$work/bb3"
check bit-sensitivity-alone 2 "goes with --target-bits" -- "$llmq" quantize --bit-sensitivity weight "$model" "$work/bb3"
check target-bits-billm 2 "--target-bits applies to" -- "$llmq" quantize --method billm --calib "$calib" --target-bits 3 "$model" "$work/bb3"
check rtn-w1-sym 2 "need zero points" -- "$llmq" quantize --bits 1 "$model" "$work/b2"
check rtn-w1 0 "" -- "$llmq" quantize --bits 1 --asym --json "$model" "$work/w1"
json_ok method bits_per_weight
check spqr 0 "" -- "$llmq" quantize --method spqr --bits 3 --calib "$calib" --nsamples 8 --seq-len 64 --target-bits 3.9 --json "$model" "$work/spqr"
json_ok method spqr gptq outlier_fraction bits_per_weight layers
python3 -c "import json,sys; j=json.load(open(sys.argv[1])); s=j['spqr']; assert s['scale_bits']==3 and s['zero_bits']==3 and s['leave_one_out'] and j['group_size']==16; assert all(l['bits_per_weight']<=3.9 and 'outlier_threshold' in l for l in j['layers'])" "$work/out" || { echo "FAIL: spqr keys or budget"; fails=$((fails+1)); }
check spqr-zero-bits-sym 2 "add --asym" -- "$llmq" quantize --method spqr --calib "$calib" --sym --zero-bits 3 "$model" "$work/s2"
check simplified-outliers-gptq 2 "applies to --method spqr" -- "$llmq" quantize --method gptq --calib "$calib" --simplified-outliers "$model" "$work/s2"
check adpq-bad-storage 2 "slot or fp16" -- "$llmq" quantize --method adpq --adpq-storage csr "$model" "$work/a3"
check adpq-fp16 0 "" -- "$llmq" quantize --method adpq --bits 3 --adpq-storage fp16 --json "$model" "$work/adpq16"
python3 -c "import json,sys; a=json.load(open(sys.argv[1])); assert a['adpq']['storage']=='fp16'" "$work/out" || { echo "FAIL: adpq fp16 storage key"; fails=$((fails+1)); }
check eval-spqr 0 "" -- "$llmq" eval ppl "$work/spqr" --data "$valid" --seq-len 64 --max-chunks 2 --json
# SpQR's groups of 16 run the SIMD kernels' 16-column-group path: the report says which kernel ran.
python3 -c "import json,sys; j=json.load(open(sys.argv[1])); k=j['kernels']; assert k and all(('16-column groups' in n) == (j['kernel_isa'] != 'scalar') for n in k) and sum(k.values())>0, k" "$work/out" || { echo "FAIL: eval --json kernels for groups of 16"; fails=$((fails+1)); }
check spqr-threshold-and-target 2 "exclude each other" -- "$llmq" quantize --method spqr --calib "$calib" --outlier-threshold 0.1 --target-bits 3.5 "$model" "$work/s2"
check spqr-threshold-on-gptq 2 "decompose int8 activations" -- "$llmq" quantize --method gptq --calib "$calib" --outlier-threshold 0.1 "$model" "$work/s2"
check spqr-integer-outliers 2 "--integer-outliers is for int8 activations" -- "$llmq" quantize --method spqr --calib "$calib" --integer-outliers "$model" "$work/s2"
check spqr-bad-scale-bits 2 "scale bits" -- "$llmq" quantize --method spqr --calib "$calib" --scale-bits 1 "$model" "$work/s2"

check oac 0 "" -- "$llmq" quantize --method oac --bits 3 --calib "$calib" --nsamples 4 --seq-len 64 --json "$model" "$work/oac"
json_ok method oac gptq calibration layers bits_per_weight
check eval-oac 0 "" -- "$llmq" eval ppl "$work/oac" --data "$valid" --seq-len 64 --max-chunks 2 --json
check oac-gradient-memory-bad 2 "oac-gradient-memory expects MiB >= 0" -- "$llmq" quantize --method oac --oac-once --oac-gradient-memory -5 --calib "$calib" "$model" "$work/oac2"
check oac-gradient-memory-on-gptq 2 "applies to --method" -- "$llmq" quantize --method gptq --oac-gradient-memory 10 --calib "$calib" "$model" "$work/oac3"
# --oac-once keeps the later blocks' gradients (linear in depth); the report says so.
check oac-once-linear 0 "" -- "$llmq" quantize --method oac --oac-once --calib "$calib" --nsamples 4 --seq-len 64 --json "$model" "$work/oac4"
python3 -c "import json,sys; sys.exit(not json.load(open('$work/out'))['oac']['linear_in_depth'])" || { echo "FAIL oac-once-linear: oac.linear_in_depth is not true"; fails=$((fails+1)); }
check spqr-oac 0 "" -- "$llmq" quantize --method spqr+oac --bits 3 --calib "$calib" --nsamples 4 --seq-len 64 --oac-grad token --oac-once --json "$model" "$work/spqr-oac"
json_ok method oac spqr outlier_fraction
check oac-bad-grad 2 "sequence or token" -- "$llmq" quantize --method oac --calib "$calib" --oac-grad row "$model" "$work/o2"
check oac-grad-on-gptq 2 "oac, spqr+oac and billm+oac only" -- "$llmq" quantize --method gptq --calib "$calib" --oac-once "$model" "$work/o2"
check truncated 1 "model.safetensors" -- "$llmq" quantize "$work/bad" "$work/y"
[ ! -e "$work/y" ] || { echo "FAIL: partial output left at $work/y"; fails=$((fails+1)); }
# Bytes that are not UTF-8 (a prompt, a file name) never abort a --json run: they become U+FFFD.
bad=$'\xff\xfe'
check generate-bad-utf8 0 "" -- "$llmq" generate "$model" --prompt "Once $bad" -n 4 --json
json_ok prompt text ids
cp "$valid" "$work/text$bad.txt"
check eval-bad-utf8-name 0 "" -- "$llmq" eval ppl "$model" --data "$work/text$bad.txt" --seq-len 64 --max-chunks 1 --json
json_ok perplexity data
check quantize-bad-utf8-out 0 "" -- "$llmq" quantize --json "$model" "$work/q$bad"
json_ok method output
python3 -c "import json,sys; json.load(open(sys.argv[1]))" "$work/q$bad/llmq_report.json" || { echo "FAIL: report of a non-UTF-8 path"; fails=$((fails+1)); }
# A model whose logits are NaN: exit 1 naming the window, not a perplexity of nan.
cp -r "$model" "$work/nan"
python3 - "$work/nan/model.safetensors" <<'PY'
import json, struct, sys
p = sys.argv[1]; b = bytearray(open(p, "rb").read())
n = struct.unpack("<Q", b[:8])[0]; h = json.loads(b[8:8 + n])
start = 8 + n + h["model.norm.weight"]["data_offsets"][0]
b[start:start + 4] = struct.pack("<f", float("nan"))
open(p, "wb").write(b)
PY
check eval-nan 1 "window 0" -- "$llmq" eval ppl "$work/nan" --data "$valid" --seq-len 64 --max-chunks 2 --json
[ ! -s "$work/out" ] || { echo "FAIL: eval-nan printed a result"; cat "$work/out"; fails=$((fails+1)); }
# Numbers that make no sense are usage errors; windows beyond the trained context need consent.
check temp-nan 2 "temperature" -- "$llmq" generate "$model" --prompt "Hi" --temperature nan
check temp-inf 2 "temperature" -- "$llmq" generate "$model" --prompt "Hi" --temperature inf
check damp-nan 2 "damp" -- "$llmq" quantize --method gptq --calib "$calib" --damp nan "$model" "$work/dn"
check seq-beyond-context 2 "exceeds the model's context of 512" -- "$llmq" eval ppl "$model" --data "$valid" --seq-len 1024 --max-chunks 1
check seq-extrapolate 0 "" -- "$llmq" eval ppl "$model" --data "$valid" --seq-len 1024 --max-chunks 1 --allow-extrapolation --json
json_ok perplexity seq_len
# Greedy decoding reproduces the reference continuation of ../shared/DATA.md (stories5M-hf, check (c):
# the training code and an independent forward pass, 100 tokens from BOS + "Once upon a time").
if [ -n "$shared" ] && [ -f "$shared/models/stories5M-hf/config.json" ]; then
  # GPTQ (v1 and v2) and AWQ exports of stories5M (its 288/768 features fit their int32 words).
  check quantize-5m-w4 0 "" -- "$llmq" quantize --bits 4 --group-size 32 "$shared/models/stories5M-hf" "$work/5m-w4"
  check ppl-5m-w4 0 "" -- "$llmq" eval ppl "$work/5m-w4" --data "$valid" --seq-len 128 --max-chunks 2 --json
  ppl_5m=$(python3 -c "import json; print(json.load(open('$work/out'))['perplexity'])")
  for f in "gptq --checkpoint-format gptq" "gptq --checkpoint-format gptq_v2" "awq"; do
    name=$(echo "$f" | tr ' ' '_')
    check "export-hf-$name" 0 "" -- "$llmq" export hf "$work/5m-w4" "$work/5m-$name" --format $f --json
    json_ok output format checkpoint_format bits group_size files bytes
    check "ppl-hf-$name" 0 "" -- "$llmq" eval ppl "$work/5m-$name" --data "$valid" --seq-len 128 --max-chunks 2 --json
    json_values "assert d['perplexity'] == $ppl_5m, (d['perplexity'], $ppl_5m)"
  done
  python3 -c "import json; q = json.load(open('$work/5m-gptq_--checkpoint-format_gptq/quantize_config.json'))
assert q['checkpoint_format'] == 'gptq' and q['bits'] == 4 and q['group_size'] == 32 and q['sym'] is True and q['desc_act'] is False" \
    || { echo "FAIL: quantize_config.json"; fails=$((fails+1)); }
  check export-gguf-from-gptq 0 "" -- "$llmq" export gguf "$work/5m-gptq_--checkpoint-format_gptq" "$work/5m.gguf" --json
  json_values "assert d['type'] == 'q4_0' and d['tensor_types']['blk.0.ffn_down.weight'] == 'q4_0'"
  check generate-reference 0 "" -- "$llmq" generate "$shared/models/stories5M-hf" --prompt "Once upon a time" -n 96 --json
  python3 - "$work/out" <<'PY' || { echo "FAIL generate: greedy ids differ from the reference continuation"; fails=$((fails+1)); }
import json, sys
want = [1, 403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426, 338, 401, 396, 267, 337,
        335, 311, 267, 422, 419, 269, 344, 294, 262, 287, 411, 289, 411, 267, 422, 419, 426, 385, 328, 432, 358, 394, 261,
        370, 432, 268, 315, 418, 269, 261, 268, 315, 418, 426, 291, 268, 315, 418, 286, 399, 262, 423, 295, 413, 269, 391,
        266, 267, 337, 335, 426, 13, 13, 438, 310, 286, 399, 344, 444, 429, 275, 266, 426, 338, 391, 266, 267, 337, 335,
        311, 267, 422, 419, 269, 259, 412, 354, 261, 280, 412]
got = json.load(open(sys.argv[1]))["ids"]
assert got == want, next(i for i in range(min(len(got), len(want))) if got[i] != want[i]) if got[:len(want)] != want else len(got)
PY
  # Sampling: the same seed gives the same text, another seed another.
  check sample-a 0 "" -- "$llmq" generate "$shared/models/stories5M-hf" --prompt "Once" -n 24 --temperature 0.9 --top-k 40 --seed 7 --json
  cp "$work/out" "$work/sample-a"
  check sample-b 0 "" -- "$llmq" generate "$shared/models/stories5M-hf" --prompt "Once" -n 24 --temperature 0.9 --top-k 40 --seed 7 --json
  cp "$work/out" "$work/sample-b"
  check sample-c 0 "" -- "$llmq" generate "$shared/models/stories5M-hf" --prompt "Once" -n 24 --temperature 0.9 --top-k 40 --seed 8 --json
  python3 - "$work/sample-a" "$work/sample-b" "$work/out" <<'PY' || { echo "FAIL generate: sampling is not deterministic per seed"; fails=$((fails+1)); }
import json, sys
a, b, c = (json.load(open(p))["ids"] for p in sys.argv[1:])
assert a == b, "same seed, different ids"
assert a != c, "another seed, same ids"
PY
elif [ "${LLMQ_REQUIRE_SHARED:-0}" = 1 ]; then
  echo "FAIL: LLMQ_REQUIRE_SHARED=1 but $shared/models/stories5M-hf is missing"; fails=$((fails+1))
else
  echo "skipped generate-reference: ../shared/models/stories5M-hf is missing"
fi
echo "$passes passed, $fails failed"
[ "$fails" = 0 ]
