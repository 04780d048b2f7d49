#!/usr/bin/env bash
# Builds the .deb with cpack, checks its metadata (Debian runtime dependencies, the files an engine
# needs) and runs the llmq it holds, unpacked, on the embedded model.
set -euo pipefail
build_dir=$1 work=$2 data=$3
rm -rf "$work"; mkdir -p "$work"
(cd "$work" && cpack --config "$build_dir/CPackConfig.cmake" -G DEB > cpack.log 2>&1) || { cat "$work/cpack.log"; exit 1; }
deb=$(ls "$work"/llmq_*.deb)
dpkg-deb -I "$deb" > "$work/info"
depends=$(sed -n 's/^ Depends: //p' "$work/info")
echo "package: $(basename "$deb"); Depends: $depends"
for dep in libgomp1 libsentencepiece0 libstdc++6; do
  grep -q "$dep" <<< "$depends" || { echo "FAIL: Depends lacks $dep"; exit 1; }
done
dpkg-deb -c "$deb" > "$work/files"
for f in ./usr/bin/llmq ./usr/include/llmq/llmq.h ./usr/lib/cmake/llmq/llmqConfig.cmake; do
  grep -q " $f\$" "$work/files" || { echo "FAIL: the package lacks $f"; cat "$work/files"; exit 1; }
done
grep -q ' ./usr/lib/libllmq.so' "$work/files" || { echo "FAIL: the package lacks libllmq.so"; exit 1; }
dpkg-deb -x "$deb" "$work/root"
"$work/root/usr/bin/llmq" --version
"$work/root/usr/bin/llmq" inspect "$data/stories260K-hf" --json > /dev/null
echo "ok: $(basename "$deb") ($(stat -c %s "$deb") bytes)"
