// Builds without x86 SIMD kernels: only the scalar reference is available.
#include "packed.h"

namespace llmq::kernels {
const KernelTable* avx2_kernels() { return nullptr; }
const KernelTable* avx512_kernels() { return nullptr; }
}  // namespace llmq::kernels
