// CPU feature detection (cpuid + xgetbv) for run-time kernel dispatch (internal).
#ifndef LLMQ_KERNELS_CPU_FEATURES_H_
#define LLMQ_KERNELS_CPU_FEATURES_H_

#include <string>

namespace llmq::kernels {

struct CpuFeatures {
  bool avx2 = false, fma = false, f16c = false;
  bool avx512f = false, avx512bw = false, avx512vl = false, avx512vnni = false, avx512bf16 = false;
  bool avx_vnni = false;
  // AMX tiles with int8 products, and the OS has granted this process the tile state
  // (arch_prctl(ARCH_REQ_XCOMP_PERM), asked for once here: Linux keeps it off until a process asks).
  bool amx_int8 = false;
};

// Detected once; the OS must also have enabled the register state (xgetbv).
const CpuFeatures& cpu_features();

}  // namespace llmq::kernels

#endif  // LLMQ_KERNELS_CPU_FEATURES_H_
