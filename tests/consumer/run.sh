#!/usr/bin/env bash
# Installs the built llmq into a scratch prefix and builds + runs tests/consumer against it.
set -euo pipefail
build_dir=$1 src=$2 work=$3
rm -rf "$work"
cmake --install "$build_dir" --prefix "$work/prefix" > "$work.install.log" 2>&1 || { cat "$work.install.log"; exit 1; }
cmake -S "$src" -B "$work/build" -DCMAKE_PREFIX_PATH="$work/prefix" -DCMAKE_BUILD_TYPE=Release > "$work.cfg.log" 2>&1 \
  || { cat "$work.cfg.log"; exit 1; }
cmake --build "$work/build" > "$work.build.log" 2>&1 || { cat "$work.build.log"; exit 1; }
LD_LIBRARY_PATH="$work/prefix/lib:$work/prefix/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}" "$work/build/consumer"
