// Builds without x86 SIMD kernels: only the scalar reference is available.
#include "packed.h"

namespace llmq::kernels {
const KernelTable* avx2_kernels() { return nullptr; }
const KernelTable* avx512_kernels() { return nullptr; }
GemmI8Fn avxvnni_gemm_i8() { return nullptr; }
GemmI8Fn amx_gemm_i8() { return nullptr; }
}  // namespace llmq::kernels
