// AVX-512 kernels (compiled with -mavx512f -mavx512bw -mavx512vl; chosen at run time).
// 32 columns per step: 16 bytes of nibbles (or 32 bytes of 8-bit codes) are widened to two
// runs of 16 int32, converted to float and multiplied into per-group accumulators; the group
// scale is applied once per group, the zero term once per group through the sum of x.
#include <immintrin.h>

#include "packed.h"

namespace llmq::kernels {
namespace {

// Two vectors of 16 float codes for packed columns [j, j + 32) of `row`.
inline void load_codes(const PackedWeights& w, const uint8_t* row, int64_t j, __m512* lo, __m512* hi) {
  if (w.code_bits == 4) {
    const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(row + j / 2));
    const __m128i m = _mm_set1_epi8(0x0F);
    *lo = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_and_si128(b, m)));
    *hi = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_and_si128(_mm_srli_epi16(b, 4), m)));
  } else {
    *lo = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + j))));
    *hi = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + j + 16))));
  }
}

void gemv_avx512(const PackedWeights& w, const float* x, const float* xsum, int64_t r0, int64_t r1, float* y) {
  for (int64_t r = r0; r < r1; ++r) {
    const uint8_t* row = w.codes.data() + r * w.row_bytes;
    const float* sc = w.scales.data() + r * w.ngroups;
    const float* mz = w.mzero.data() + r * w.ngroups;
    __m512 total = _mm512_setzero_ps();
    float zterm = 0.0f;
    for (int64_t g = 0; g < w.ngroups; ++g) {
      __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
      for (int64_t j = w.group_start[size_t(g)]; j < w.group_start[size_t(g + 1)]; j += 32) {
        __m512 lo, hi;
        load_codes(w, row, j, &lo, &hi);
        a0 = _mm512_fmadd_ps(lo, _mm512_loadu_ps(x + j), a0);
        a1 = _mm512_fmadd_ps(hi, _mm512_loadu_ps(x + j + 16), a1);
      }
      total = _mm512_fmadd_ps(_mm512_set1_ps(sc[g]), _mm512_add_ps(a0, a1), total);
      zterm += mz[g] * xsum[g];
    }
    y[r] = _mm512_reduce_add_ps(total) + zterm;
  }
}

void dequant_avx512(const PackedWeights& w, int64_t r0, int64_t r1, float* out) {
  for (int64_t r = r0; r < r1; ++r) {
    const uint8_t* row = w.codes.data() + r * w.row_bytes;
    float* o = out + (r - r0) * w.kp;
    for (int64_t g = 0; g < w.ngroups; ++g) {
      const __m512 s = _mm512_set1_ps(w.scales[size_t(r * w.ngroups + g)]);
      const __m512 m = _mm512_set1_ps(w.mzero[size_t(r * w.ngroups + g)]);
      for (int64_t j = w.group_start[size_t(g)]; j < w.group_start[size_t(g + 1)]; j += 32) {
        __m512 lo, hi;
        load_codes(w, row, j, &lo, &hi);
        _mm512_storeu_ps(o + j, _mm512_fmadd_ps(lo, s, m));
        _mm512_storeu_ps(o + j + 16, _mm512_fmadd_ps(hi, s, m));
      }
    }
  }
}

}  // namespace

const KernelTable* avx512_kernels() {
  static const KernelTable t{"avx512", gemv_avx512, dequant_avx512};
  return &t;
}

}  // namespace llmq::kernels
