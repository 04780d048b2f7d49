#!/usr/bin/env bash
# Quick start: install the Debian dependencies, build llmq, quantize a real model to 3 bits (g128; 4
# bits g32 for the embedded model)
# with RTN and with GPTQ (calibrated on TinyStories train text) and report perplexity before and
# after (TinyStories validation text, 256-token windows, first 40: the protocol of the reference
# numbers in DATA.md). With ../shared beside the repository (or LLMQ_SHARED=<dir>) it uses the larger
# stories5M-hf model and the full texts; with nothing beside the clone, the embedded stories260K-hf
# and texts of examples/data. Arguments override: [model-folder] [eval-text] [calibration-text].
set -euo pipefail
cd "$(dirname "$0")/.."
shared=${LLMQ_SHARED:-../shared}
if [ -f "$shared/models/stories5M-hf/config.json" ]; then
  model=${1:-$shared/models/stories5M-hf}
  text=${2:-$shared/data/tinystories/TinyStories-valid-prefix.txt}
  calib=${3:-$shared/data/tinystories/TinyStories-train-sample.txt}
else
  echo "quickstart: no $shared/models/stories5M-hf: using the embedded stories260K-hf and texts (examples/data)" >&2
  model=${1:-examples/data/stories260K-hf}
  text=${2:-examples/data/tinystories-valid-200k.txt}
  calib=${3:-examples/data/tinystories-train-200k.txt}
fi
if [ "$(id -u)" = 0 ] && command -v apt-get > /dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends build-essential cmake pkg-config python3 libeigen3-dev \
    libomp-dev libgtest-dev libgmock-dev libbenchmark-dev nlohmann-json3-dev libsentencepiece-dev \
    libopenmpi-dev openmpi-bin > /dev/null
fi
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release > /dev/null
cmake --build build -j2
# Groups of 128 need inputs that wide; stories260K's are 64 and 172 wide and its tiny layers lose too
# much at 3 bits (RESULTS.md), so there: 4 bits in groups of 32.
bits=3 group=128
python3 -c 'import json,sys; c=json.load(open(sys.argv[1])); sys.exit(0 if c["hidden_size"] % 128 == 0 else 1)' \
  "$model/config.json" || { bits=4; group=32; }
base=build/quickstart/$(basename "$model")
mkdir -p build/quickstart
./build/bin/llmq quantize --method rtn --bits $bits --group-size $group --overwrite "$model" "$base-rtn"
./build/bin/llmq quantize --method gptq --bits $bits --group-size $group --calib "$calib" --overwrite "$model" "$base-gptq"
./build/bin/llmq inspect "$base-gptq"
ppl() { ./build/bin/llmq eval ppl "$1" --data "$text" --seq-len 256 --max-chunks 40 --json 2> /dev/null |
        python3 -c 'import json,sys; print("%.4f" % json.load(sys.stdin)["perplexity"])'; }
echo "perplexity before (fp32): $(ppl "$model")   after RTN w$bits g$group: $(ppl "$base-rtn")   after GPTQ w$bits g$group: $(ppl "$base-gptq")"
echo "  [$(basename "$text"), seq 256, first 40 windows]"
./build/bin/llmq generate "$base-gptq" --prompt "Once upon a time" -n 40
