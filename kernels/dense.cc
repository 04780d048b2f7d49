// Dispatch of the dense entries (dense.h) to the copy compiled for the active ISA.
#include "dense.h"

#include "llmq/kernels.h"

namespace llmq::dense {

#define LLMQ_DENSE_DECLARE(NS)                                                                            \
  namespace NS {                                                                                          \
  void gemm(bool, bool, int64_t, int64_t, int64_t, float, const float*, int64_t, const float*, int64_t, \
            float, float*, int64_t);                                                                      \
  bool upper_cholesky_of_inverse(const float*, int64_t, float*);                                          \
  void causal_softmax(float*, int64_t, int64_t, int64_t, int64_t);                                        \
  void silu_mul(const float*, const float*, int64_t, float*);                                             \
  void triad(float*, const float*, const float*, float, int64_t);                                         \
  float read_sum(const float*, const float*, int64_t);                                                    \
  }
LLMQ_DENSE_DECLARE(baseline)
#if defined(__x86_64__)
LLMQ_DENSE_DECLARE(avx2)
LLMQ_DENSE_DECLARE(avx512)
#endif
#undef LLMQ_DENSE_DECLARE

namespace {

enum class Copy { kBaseline, kAvx2, kAvx512 };

Copy copy_for(Isa isa) {
#if defined(__x86_64__)
  if (isa_supported(isa)) {
    if (isa == Isa::kAvx512) return Copy::kAvx512;
    if (isa == Isa::kAvx2) return Copy::kAvx2;
  }
#endif
  return Copy::kBaseline;
}

// The quantized kernels' ISA decides (LLMQ_ISA=scalar gives the baseline copy).
Copy active_copy() { return copy_for(active_isa()); }

}  // namespace

void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
          const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  gemm(active_isa(), trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

void gemm(Isa isa, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
          int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  switch (copy_for(isa)) {
#if defined(__x86_64__)
    case Copy::kAvx512: return avx512::gemm(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    case Copy::kAvx2: return avx2::gemm(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
#endif
    default: return baseline::gemm(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  }
}

bool upper_cholesky_of_inverse(const float* h, int64_t n, float* u) {
  switch (active_copy()) {
#if defined(__x86_64__)
    case Copy::kAvx512: return avx512::upper_cholesky_of_inverse(h, n, u);
    case Copy::kAvx2: return avx2::upper_cholesky_of_inverse(h, n, u);
#endif
    default: return baseline::upper_cholesky_of_inverse(h, n, u);
  }
}

void causal_softmax(float* scores, int64_t n, int64_t total, int64_t start, int64_t window) {
  switch (active_copy()) {
#if defined(__x86_64__)
    case Copy::kAvx512: return avx512::causal_softmax(scores, n, total, start, window);
    case Copy::kAvx2: return avx2::causal_softmax(scores, n, total, start, window);
#endif
    default: return baseline::causal_softmax(scores, n, total, start, window);
  }
}

void silu_mul(const float* g, const float* u, int64_t count, float* out) {
  switch (active_copy()) {
#if defined(__x86_64__)
    case Copy::kAvx512: return avx512::silu_mul(g, u, count, out);
    case Copy::kAvx2: return avx2::silu_mul(g, u, count, out);
#endif
    default: return baseline::silu_mul(g, u, count, out);
  }
}

void triad(float* a, const float* b, const float* c, float s, int64_t n) {
  switch (active_copy()) {
#if defined(__x86_64__)
    case Copy::kAvx512: return avx512::triad(a, b, c, s, n);
    case Copy::kAvx2: return avx2::triad(a, b, c, s, n);
#endif
    default: return baseline::triad(a, b, c, s, n);
  }
}

float read_sum(const float* b, const float* c, int64_t n) {
  switch (active_copy()) {
#if defined(__x86_64__)
    case Copy::kAvx512: return avx512::read_sum(b, c, n);
    case Copy::kAvx2: return avx2::read_sum(b, c, n);
#endif
    default: return baseline::read_sum(b, c, n);
  }
}

const char* isa() {
  switch (active_copy()) {
    case Copy::kAvx512: return "avx512";
    case Copy::kAvx2: return "avx2";
    default: return "baseline";
  }
}

}  // namespace llmq::dense
