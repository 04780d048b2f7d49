// AVX2 + FMA kernels (compiled with -mavx2 -mfma; chosen at run time). Same scheme as the
// AVX-512 variant with 8-wide vectors: 32 columns per step as four runs of 8 codes.
#include <immintrin.h>

#include "i8_avx2_impl.h"
#define LLMQ_OUTLIER_IMPL outliers_avx2
#include "activation_outliers_impl.h"
#include "packed.h"
#include "sparse_outliers_impl.h"

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

// ---- Lookup codes (BiLLM): per 64 columns 16 bytes of crumbs widened in two halves (bytes 0-7
// hold the first 8 columns of each 16-column run, bytes 8-15 the last 8); each 2-bit code plus
// its column's class offset indexes the group's 8 levels (one vpermps per 8 weights).
inline __m256 group_levels(const PackedWeights& w, int64_t r, int64_t g) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w.lut.data() + (r * w.ngroups + g) * 8)));
}

// Weights of columns j + 16k + 8h .. + 7 (h = 0: crumbs of bytes 0-7, h = 1: bytes 8-15).
inline __m256 lookup_run(__m256i crumbs, const int32_t* cls, int64_t j, int k, int h, __m256 levels) {
  const __m256i idx =
      _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi32(crumbs, 2 * k), _mm256_set1_epi32(3)),
                      _mm256_loadu_si256(reinterpret_cast<const __m256i*>(cls + j + 16 * k + 8 * h)));
  return _mm256_permutevar8x32_ps(levels, idx);
}

inline void load_crumbs(const uint8_t* row, int64_t j, __m256i c[2]) {
  const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(row + j / 4));
  c[0] = _mm256_cvtepu8_epi32(b);
  c[1] = _mm256_cvtepu8_epi32(_mm_srli_si128(b, 8));
}

// Calls f(c, h, weights) for every run of 8 weights of row r: packed columns c .. c + 7, h = 0 or 1
// (first or second half of a 16-column run).
template <typename F>
inline void for_each_lookup_run(const PackedWeights& w, int64_t r, F&& f) {
  const uint8_t* row = w.codes.data() + r * w.row_bytes;
  for (int64_t g = 0; g < w.ngroups; ++g) {
    const __m256 levels = group_levels(w, r, g);
    for (int64_t j = w.group_start[size_t(g)]; j < w.group_start[size_t(g + 1)]; j += 64) {
      __m256i c[2];
      load_crumbs(row, j, c);
      for (int k = 0; k < 4; ++k)
        for (int h = 0; h < 2; ++h) f(j + 16 * k + 8 * h, h, lookup_run(c[h], w.class_offset.data(), j, k, h, levels));
    }
  }
}

void gemv_lookup(const PackedWeights& w, const float* x, int64_t r0, int64_t r1, float* y) {
  for (int64_t r = r0; r < r1; ++r) {
    __m256 acc[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
    for_each_lookup_run(w, r, [&](int64_t c, int h, __m256 wv) { acc[h] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x + c), acc[h]); });
    y[r] = hsum(_mm256_add_ps(acc[0], acc[1]));
  }
}

void dequant_lookup(const PackedWeights& w, int64_t r0, int64_t r1, float* out) {
  for (int64_t r = r0; r < r1; ++r)
    for_each_lookup_run(w, r, [&](int64_t c, int, __m256 wv) { _mm256_storeu_ps(out + (r - r0) * w.kp + c, wv); });
}

// 16-column groups (half_aligned): runs 0-1 of a block are one half, 2-3 the other; each half's
// product is scaled by its own group.
void gemv16_avx2(const PackedWeights& w, const float* x, const float* xsum, int64_t r0, int64_t r1, float* y) {
  const int32_t* hg = w.half_group.data();
  for (int64_t r = r0; r < r1; ++r) {
    const uint8_t* row = w.codes.data() + r * w.row_bytes;
    const float* sc = w.scales.data() + r * w.ngroups;
    const float* mz = w.mzero.data() + r * w.ngroups;
    __m256 total = _mm256_setzero_ps();
    for (int64_t j = 0; j < w.kp; j += 32) {
      __m256 c[4];
      load_codes(w, row, j, c);
      const __m256 lo = _mm256_fmadd_ps(c[1], _mm256_loadu_ps(x + j + 8), _mm256_mul_ps(c[0], _mm256_loadu_ps(x + j)));
      const __m256 hi =
          _mm256_fmadd_ps(c[3], _mm256_loadu_ps(x + j + 24), _mm256_mul_ps(c[2], _mm256_loadu_ps(x + j + 16)));
      total = _mm256_fmadd_ps(lo, _mm256_set1_ps(sc[hg[j / 16]]), total);
      total = _mm256_fmadd_ps(hi, _mm256_set1_ps(sc[hg[j / 16 + 1]]), total);
    }
    float zterm = 0.0f;
    for (int64_t g = 0; g < w.ngroups; ++g) zterm += mz[g] * xsum[g];
    y[r] = hsum(total) + zterm;
  }
}

void gemv_avx2(const PackedWeights& w, const float* x, const float* xsum, int64_t r0, int64_t r1, float* y) {
  if (w.lookup) return gemv_lookup(w, x, r0, r1, y);
  if (!w.block_aligned) return gemv16_avx2(w, x, xsum, r0, r1, y);
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
  if (w.lookup) return dequant_lookup(w, r0, r1, out);
  for (int64_t r = r0; r < r1; ++r) {
    const uint8_t* row = w.codes.data() + r * w.row_bytes;
    float* o = out + (r - r0) * w.kp;
    if (!w.block_aligned) {  // 16-column groups: each half with its own group's scale and zero term
      for (int64_t j = 0; j < w.kp; j += 32) {
        __m256 c[4];
        load_codes(w, row, j, c);
        for (int k = 0; k < 4; ++k) {
          const int64_t rg = r * w.ngroups + w.half_group[size_t(j / 16 + k / 2)];
          _mm256_storeu_ps(o + j + 8 * k, _mm256_fmadd_ps(c[k], _mm256_set1_ps(w.scales[size_t(rg)]),
                                                          _mm256_set1_ps(w.mzero[size_t(rg)])));
        }
      }
      continue;
    }
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

// 16 outliers per step: two gathers of 8 activations, four vectors of 4 doubles (the reference's
// lanes 0-3, 4-7, 8-11, 12-15).
void sparse_add_avx2(const PackedWeights& w, const float* x, int64_t n, int64_t r0, int64_t r1, float* y,
                     int64_t ldy) {
  LLMQ_OUTLIER_IMPL::sparse_rows(w, x, n, r0, r1, y, ldy, [&w](const float* xt, int32_t i0, int32_t i1, double* lanes) {
    __m256d acc[4] = {_mm256_setzero_pd(), _mm256_setzero_pd(), _mm256_setzero_pd(), _mm256_setzero_pd()};
    int32_t i = i0;
    for (; i + 16 <= i1; i += 16)
      for (int h = 0; h < 2; ++h) {
        const __m256i idx = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w.out_col.data() + i + 8 * h));
        const __m256 xv = _mm256_i32gather_ps(xt, idx, 4);
        const __m256 v = _mm256_loadu_ps(w.out_val.data() + i + 8 * h);
        acc[2 * h] = _mm256_add_pd(acc[2 * h], _mm256_mul_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(v)),
                                                             _mm256_cvtps_pd(_mm256_castps256_ps128(xv))));
        acc[2 * h + 1] = _mm256_add_pd(acc[2 * h + 1], _mm256_mul_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)),
                                                                     _mm256_cvtps_pd(_mm256_extractf128_ps(xv, 1))));
      }
    for (int k = 0; k < 4; ++k) _mm256_store_pd(lanes + 4 * k, acc[k]);
    return i;
  });
}

}  // namespace

const KernelTable* avx2_kernels() {
  static const KernelTable t{"avx2", gemv_avx2, nullptr, dequant_avx2, gemm_i8_avx2, outlier_product_avx2,
                             sparse_add_avx2, nullptr};
  return &t;
}

}  // namespace llmq::kernels
