#!/usr/bin/env bash
# Installs the built llmq into a scratch prefix, builds + runs tests/consumer against it (not the
# build tree), then runs the installed llmq CLI on the embedded model: version, quantize, perplexity.
set -euo pipefail
build_dir=$1 src=$2 work=$3 data=$4
rm -rf "$work"
cmake --install "$build_dir" --prefix "$work/prefix" > "$work.install.log" 2>&1 || { cat "$work.install.log"; exit 1; }
cmake -S "$src" -B "$work/build" -DCMAKE_PREFIX_PATH="$work/prefix" -DCMAKE_BUILD_TYPE=Release > "$work.cfg.log" 2>&1 \
  || { cat "$work.cfg.log"; exit 1; }
cmake --build "$work/build" > "$work.build.log" 2>&1 || { cat "$work.build.log"; exit 1; }
# The consumer finds the installed library through the RPATH CMake gives imported targets.
"$work/build/consumer"
# The installed CLI finds its library through $ORIGIN (no LD_LIBRARY_PATH).
llmq="$work/prefix/bin/llmq"
ldd "$llmq" | grep libllmq | grep -q "$work/prefix/bin/../" || { echo "FAIL: installed llmq does not load the installed libllmq"; ldd "$llmq"; exit 1; }
"$llmq" --version
"$llmq" quantize --method rtn --bits 4 --group-size 32 "$data/stories260K-hf" "$work/q" > /dev/null
ppl=$("$llmq" eval ppl "$work/q" --data "$data/tinystories-valid-200k.txt" --seq-len 128 --max-chunks 4 --json 2> /dev/null |
      python3 -c 'import json,sys; print(json.load(sys.stdin)["perplexity"])')
echo "installed llmq: stories260K-hf w4 g32 perplexity $ppl"
python3 -c "import math,sys; p=float(sys.argv[1]); sys.exit(0 if math.isfinite(p) and 1 < p < 20 else 1)" "$ppl"
