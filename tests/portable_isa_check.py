#!/usr/bin/env python3
"""The default build runs on any x86-64: no AVX/AVX-512 instruction outside the per-ISA kernel files.

usage: portable_isa_check.py <build-dir>

1. Every object file of the library that is not a per-ISA kernel file (kernels/*_avx2.cc,
   *_avx512.cc, *_avxvnni.cc, *_amx.cc) holds no VEX/EVEX instruction (no v-prefixed mnemonic, no ymm/zmm).
2. In the linked libllmq.so, every function that holds such instructions is defined by a per-ISA
   object, and is not also defined by a baseline object (an inline function compiled in both, whose
   AVX copy the linker could pick for everyone; dense_impl.h renames Eigen's namespace per ISA for
   this reason).
Skips (exit 0, says so) when the build compiles everything for one CPU (LLMQ_NATIVE / LLMQ_ARCH).
"""
import pathlib
import re
import subprocess
import sys

build = pathlib.Path(sys.argv[1])
cache = (build / "CMakeCache.txt").read_text()
arch = re.search(r"^LLMQ_ARCH:STRING=(.*)$", cache, re.M)
if arch and arch.group(1).strip():
    print(f"skipped: this build compiles everything with -march={arch.group(1).strip()} (not the portable default)")
    sys.exit(0)

ISA_FILE = re.compile(r"_(avx2|avx512|avxvnni|amx)\.cc\.o$")
AVX = re.compile(r"^\s*[0-9a-f]+:\s+(v(?!err|erw)[a-z0-9]+)\b|%[yz]mm\d+", re.M)
FUNC = re.compile(r"^[0-9a-f]+ <(.+)>:$", re.M)


def functions_with_avx(path):
    text = subprocess.run(["objdump", "-d", "-C", "--no-show-raw-insn", str(path)], capture_output=True,
                          text=True, check=True).stdout
    out, heads = {}, list(FUNC.finditer(text))
    for i, h in enumerate(heads):
        body = text[h.end(): heads[i + 1].start() if i + 1 < len(heads) else len(text)]
        m = AVX.search(body)
        if m:
            out[h.group(1)] = m.group(0).strip()
    return out


def defined(path):
    text = subprocess.run(["nm", "-C", "--defined-only", str(path)], capture_output=True, text=True, check=True).stdout
    return {line[19:] for line in text.splitlines() if len(line) > 19 and line[17] in "TtWw"}


objects = [p for d in ("CMakeFiles/llmq_objects.dir", "kernels/CMakeFiles/llmq_kernels.dir") for p in (build / d).rglob("*.o")]
isa_objs = [p for p in objects if ISA_FILE.search(p.name)]
base_objs = [p for p in objects if not ISA_FILE.search(p.name)]
if not isa_objs or not any("src/" in str(p) for p in base_objs):
    print(f"FAIL: no object files under {build} (isa {len(isa_objs)}, baseline {len(base_objs)})")
    sys.exit(1)
fails = 0
for p in base_objs:
    for fn, insn in functions_with_avx(p).items():
        print(f"FAIL: {p.name}: {fn} uses {insn} (baseline code must run on any x86-64)")
        fails += 1
isa_defined = set().union(*(defined(p) for p in isa_objs))
base_defined = set().union(*(defined(p) for p in base_objs))
lib = next(build.rglob("libllmq.so*"), None)
if lib is None:
    print("FAIL: no libllmq.so")
    sys.exit(1)
avx_in_lib = functions_with_avx(lib)
for fn, insn in avx_in_lib.items():
    if fn not in isa_defined:
        print(f"FAIL: {lib.name}: {fn} uses {insn} but no per-ISA object defines it")
        fails += 1
    elif fn in base_defined:
        print(f"FAIL: {lib.name}: {fn} uses {insn} and is defined by baseline objects too (shared inline code)")
        fails += 1
print(f"{len(base_objs)} baseline objects, {len(isa_objs)} per-ISA objects, {len(avx_in_lib)} AVX functions "
      f"in {lib.name}, all from per-ISA objects" if fails == 0 else f"{fails} problem(s)")
sys.exit(1 if fails else 0)
