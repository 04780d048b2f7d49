// Dense fp32 linear algebra for the library's hot paths: the float GEMMs of the forward and
// backward passes and of the quantized kernels' prompt path, Hessian accumulation, and GPTQ's
// factorization (internal; docs/KERNELS.md). Each entry is compiled once per ISA (Eigen with that
// ISA's packets: dense_baseline.cc, dense_avx2.cc, dense_avx512.cc) and chosen at run time with
// the quantized kernels' ISA (active_isa(), LLMQ_ISA), so the default build runs on any x86-64 and
// still uses AVX-512 where the CPU has it.
#ifndef LLMQ_KERNELS_DENSE_H_
#define LLMQ_KERNELS_DENSE_H_

#include <cstdint>

#include "llmq/kernels.h"

namespace llmq::dense {

// C[m, n] = alpha * op(A) op(B) + beta * C, all row-major with leading dimensions (in elements).
// op(A) is [m, k]: A itself ([m, k], lda >= k) or, with trans_a, the transpose of A [k, m]
// (lda >= m); likewise op(B) is [k, n]. beta = 0 ignores what C held (NaN included).
void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
          const float* b, int64_t ldb, float beta, float* c, int64_t ldc);
// The same with the copy of a given ISA (kScalar: the baseline copy), as the quantized kernels'
// explicit-ISA entry points need; an ISA this CPU lacks falls back to the baseline copy.
void gemm(Isa isa, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
          int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc);

// GPTQ: the upper-triangular U with Uᵀ U = H⁻¹ for a symmetric positive definite H (both n x n,
// column-major), through one Cholesky of the reversed H and one triangular inverse. false when H
// is not positive definite or U is not finite with a positive diagonal.
bool upper_cholesky_of_inverse(const float* h, int64_t n, float* u);

// Row t of scores [n, total] (query position start + t) becomes the softmax over the keys it sees,
// [max(0, pos - window + 1), pos]; the rest of the row is set to 0. Vectorized exp of this ISA.
void causal_softmax(float* scores, int64_t n, int64_t total, int64_t start, int64_t window);
// out[i] = silu(g[i]) * u[i] = g / (1 + exp(-g)) * u (SwiGLU), the same bits for any count split.
void silu_mul(const float* g, const float* u, int64_t count, float* out);

// STREAM's triad a[i] = b[i] + s c[i] and a read-only sum of b[i] + c[i] (i < n) with this ISA's
// vectors: the bandwidth a kernel of this ISA can reach (measure_memory_bandwidth).
void triad(float* a, const float* b, const float* c, float s, int64_t n);
float read_sum(const float* b, const float* c, int64_t n);

// The ISA the entries above run with now ("baseline", "avx2", "avx512").
const char* isa();

}  // namespace llmq::dense

#endif  // LLMQ_KERNELS_DENSE_H_
