// AVX2 + FMA kernels (compiled with -mavx2 -mfma; chosen at run time). Same scheme as the
// AVX-512 variant with 8-wide vectors: 32 columns per step as four runs of 8 codes.
#include <immintrin.h>

#include "i8_avx2_impl.h"
#define LLMQ_OUTLIER_IMPL outliers_avx2
#include "activation_outliers_impl.h"
#include "packed.h"

namespace llmq::kernels {
namespace {

inline __m256 widen8(__m128i bytes) { return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(bytes)); }

// Four vectors of 8 float codes for packed columns [j, j + 32).
inline void load_codes(const PackedWeights& w, const uint8_t* row, int64_t j, __m256 c[4]) {
  __m128i lo, hi;  // codes j..j+15 and j+16..j+31, one per byte
  if (w.code_bits == 4) {
    const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(row + j / 2));
    const __m128i m = _mm_set1_epi8(0x0F);
    lo = _mm_and_si128(b, m);
    hi = _mm_and_si128(_mm_srli_epi16(b, 4), m);
  } else {
    lo = _mm_loadu_si128(reinterpret_cast<const __m128i*>(row + j));
    hi = _mm_loadu_si128(reinterpret_cast<const __m128i*>(row + j + 16));
  }
  c[0] = widen8(lo);
  c[1] = widen8(_mm_srli_si128(lo, 8));
  c[2] = widen8(hi);
  c[3] = widen8(_mm_srli_si128(hi, 8));
}

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

void gemv_avx2(const PackedWeights& w, const float* x, const float* xsum, int64_t r0, int64_t r1, float* y) {
  for (int64_t r = r0; r < r1; ++r) {
    const uint8_t* row = w.codes.data() + r * w.row_bytes;
    const float* sc = w.scales.data() + r * w.ngroups;
    const float* mz = w.mzero.data() + r * w.ngroups;
    __m256 total = _mm256_setzero_ps();
    float zterm = 0.0f;
    for (int64_t g = 0; g < w.ngroups; ++g) {
      __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
      for (int64_t j = w.group_start[size_t(g)]; j < w.group_start[size_t(g + 1)]; j += 32) {
        __m256 c[4];
        load_codes(w, row, j, c);
        a0 = _mm256_fmadd_ps(c[0], _mm256_loadu_ps(x + j), a0);
        a1 = _mm256_fmadd_ps(c[1], _mm256_loadu_ps(x + j + 8), a1);
        a0 = _mm256_fmadd_ps(c[2], _mm256_loadu_ps(x + j + 16), a0);
        a1 = _mm256_fmadd_ps(c[3], _mm256_loadu_ps(x + j + 24), a1);
      }
      total = _mm256_fmadd_ps(_mm256_set1_ps(sc[g]), _mm256_add_ps(a0, a1), total);
      zterm += mz[g] * xsum[g];
    }
    y[r] = hsum(total) + zterm;
  }
}

void dequant_avx2(const PackedWeights& w, int64_t r0, int64_t r1, float* out) {
  for (int64_t r = r0; r < r1; ++r) {
    const uint8_t* row = w.codes.data() + r * w.row_bytes;
    float* o = out + (r - r0) * w.kp;
    for (int64_t g = 0; g < w.ngroups; ++g) {
      const __m256 s = _mm256_set1_ps(w.scales[size_t(r * w.ngroups + g)]);
      const __m256 m = _mm256_set1_ps(w.mzero[size_t(r * w.ngroups + g)]);
      for (int64_t j = w.group_start[size_t(g)]; j < w.group_start[size_t(g + 1)]; j += 32) {
        __m256 c[4];
        load_codes(w, row, j, c);
        for (int k = 0; k < 4; ++k) _mm256_storeu_ps(o + j + 8 * k, _mm256_fmadd_ps(c[k], s, m));
      }
    }
  }
}

void gemm_i8_avx2(const PackedWeights& w, const int8_t* xq, const int32_t* xqsum, const float* sx, int64_t n,
                  int64_t p0, int64_t p1, float* y) {
  avx2_i8::gemm_i8<false>(w, xq, xqsum, sx, n, p0, p1, y);
}

void outlier_product_avx2(const PackedWeights& w, const std::vector<int32_t>& ocols, const OutlierActivations& a,
                          const float* sx, int64_t n, int64_t r0, int64_t r1, float* y) {
  LLMQ_OUTLIER_IMPL::outlier_product_rows(w, ocols, a, sx, n, r0, r1, y);
}

}  // namespace

const KernelTable* avx2_kernels() {
  static const KernelTable t{"avx2", gemv_avx2, nullptr, dequant_avx2, gemm_i8_avx2, outlier_product_avx2};
  return &t;
}

}  // namespace llmq::kernels
