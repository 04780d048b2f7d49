#!/usr/bin/env bash
# Quick start: install the Debian dependencies, build llmq, quantize a real model from
# ../shared to 3 bits (g128) with RTN and with GPTQ (calibrated on TinyStories train text) and
# report perplexity before and after (TinyStories validation prefix, 256-token windows, first 40:
# the protocol of the reference numbers in ../shared/DATA.md).
set -euo pipefail
cd "$(dirname "$0")/.."
shared=${LLMQ_SHARED:-../shared}
model=${1:-$shared/models/stories5M-hf}
text=${2:-$shared/data/tinystories/TinyStories-valid-prefix.txt}
calib=${3:-$shared/data/tinystories/TinyStories-train-sample.txt}
if [ "$(id -u)" = 0 ] && command -v apt-get > /dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends build-essential cmake pkg-config python3 libeigen3-dev \
    libomp-dev libgtest-dev libgmock-dev libbenchmark-dev nlohmann-json3-dev libsentencepiece-dev > /dev/null
fi
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release > /dev/null
cmake --build build -j2
base=build/quickstart/$(basename "$model")
mkdir -p build/quickstart
./build/bin/llmq quantize --method rtn --bits 3 --group-size 128 --overwrite "$model" "$base-rtn-w3g128"
./build/bin/llmq quantize --method gptq --bits 3 --group-size 128 --calib "$calib" --overwrite "$model" "$base-gptq-w3g128"
./build/bin/llmq inspect "$base-gptq-w3g128"
ppl() { ./build/bin/llmq eval ppl "$1" --data "$text" --seq-len 256 --max-chunks 40 --json 2> /dev/null |
        python3 -c 'import json,sys; print("%.4f" % json.load(sys.stdin)["perplexity"])'; }
echo "perplexity before (fp32): $(ppl "$model")   after RTN w3 g128: $(ppl "$base-rtn-w3g128")   after GPTQ w3 g128: $(ppl "$base-gptq-w3g128")"
echo "  [$(basename "$text"), seq 256, first 40 windows]"
./build/bin/llmq generate "$base-gptq-w3g128" --prompt "Once upon a time" -n 40
