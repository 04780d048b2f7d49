#!/usr/bin/env bash
# Quantized outputs must not change under a refactoring: quantizes both shared models with every
# method (and the option variants that take other code paths) and records the SHA-256 of every
# output file but llmq_report.json (it holds timings). Run it with --record before a change and
# --check after; any differing file is listed and the exit status is 1.
#
#   tests/quantize_byte_identity.sh --record /tmp/hashes.txt [llmq-binary]
#   tests/quantize_byte_identity.sh --check  /tmp/hashes.txt [llmq-binary]
set -euo pipefail
mode=${1:?--record or --check}; hashes=${2:?hash file}
here=$(cd "$(dirname "$0")/.." && pwd)
llmq=${3:-$here/build/bin/llmq}
shared=${LLMQ_SHARED:-$here/../shared}
calib=$shared/data/wikitext-2-raw-v1-test.txt
[ -f "$calib" ] || { echo "missing $calib (../shared beside the repository)" >&2; exit 2; }
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
cal=(--calib "$calib" --nsamples 4 --seq-len 64 --seed 3)
variants=(
  "rtn|--method rtn"
  "rtn-asym-g32-mse|--method rtn --bits 3 --group-size 32 --asym --mse"
  "adpq|--method adpq"
  "gptq|--method gptq ${cal[*]}"
  "gptq-actorder-seq|--method gptq --act-order --true-sequential ${cal[*]}"
  "awq|--method awq ${cal[*]}"
  "awq+gptq|--method awq+gptq ${cal[*]}"
  "smoothquant|--method smoothquant ${cal[*]}"
  "spqr|--method spqr ${cal[*]}"
  "spqr-target|--method spqr --target-bits 4.5 ${cal[*]}"
  "oac|--method oac ${cal[*]}"
  "spqr+oac-once|--method spqr+oac --oac-once ${cal[*]}"
)
: > "$work/now.txt"
for model in "$shared"/models/*/; do
  m=$(basename "$model")
  for v in "${variants[@]}"; do
    name=${v%%|*}; flags=${v#*|}
    # shellcheck disable=SC2086
    OMP_NUM_THREADS=2 "$llmq" quantize $flags "$model" "$work/out" --overwrite >/dev/null 2>"$work/log" ||
      { cat "$work/log" >&2; echo "FAILED: $m $name" >&2; exit 1; }
    (cd "$work/out" && find . -type f ! -name llmq_report.json | LC_ALL=C sort | xargs sha256sum) |
      sed "s|^|$m $name |" >> "$work/now.txt"
    rm -rf "$work/out"
  done
done
case $mode in
  --record) cp "$work/now.txt" "$hashes"; echo "recorded $(wc -l < "$hashes") file hashes in $hashes" ;;
  --check)
    if diff <(cat "$hashes") "$work/now.txt" > "$work/diff"; then
      echo "byte-identical: $(wc -l < "$hashes") files"
    else
      echo "outputs differ:" >&2; cat "$work/diff" >&2; exit 1
    fi ;;
  *) echo "usage: $0 --record|--check HASHFILE [llmq]" >&2; exit 2 ;;
esac
