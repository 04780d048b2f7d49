#!/usr/bin/env bash
# Quick start: install the Debian dependencies, build llmq, quantize a real model from
# ../shared with RTN 4-bit g128 and report perplexity before and after (TinyStories validation
# prefix, 256-token windows, first 40: the protocol of the reference numbers in ../shared/DATA.md).
set -euo pipefail
cd "$(dirname "$0")/.."
shared=${LLMQ_SHARED:-../shared}
model=${1:-$shared/models/stories5M-hf}
text=${2:-$shared/data/tinystories/TinyStories-valid-prefix.txt}
if [ "$(id -u)" = 0 ] && command -v apt-get > /dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends build-essential cmake pkg-config python3 libeigen3-dev \
    libomp-dev libgtest-dev libgmock-dev libbenchmark-dev nlohmann-json3-dev libsentencepiece-dev > /dev/null
fi
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release > /dev/null
cmake --build build -j2
out=build/quickstart/$(basename "$model")-rtn-w4g128
mkdir -p build/quickstart
./build/bin/llmq quantize --method rtn --bits 4 --group-size 128 --overwrite "$model" "$out"
./build/bin/llmq inspect "$out"
ppl() { ./build/bin/llmq eval ppl "$1" --data "$text" --seq-len 256 --max-chunks 40 --json 2> /dev/null |
        python3 -c 'import json,sys; print("%.4f" % json.load(sys.stdin)["perplexity"])'; }
before=$(ppl "$model")
after=$(ppl "$out")
echo "perplexity before (fp32): $before   after (RTN w4 g128): $after   [$(basename "$text"), seq 256, 40 windows]"
./build/bin/llmq generate "$out" --prompt "Once upon a time" -n 40
