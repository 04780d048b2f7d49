// The AVX2 int8-activation kernel body (internal), shared by the AVX2 file (exact emulation of
// the u8 x s8 dot product with vpmaddubsw/vpmaddwd) and the AVX-VNNI file (vpdpbusd). A 16-row
// panel step is two 256-bit halves (rows 0-7, rows 8-15); up to 4 tokens are kept in registers.
// Same integer sums and the same float operations in the same order as the scalar reference,
// so results are bit-identical.
#ifndef LLMQ_KERNELS_I8_AVX2_IMPL_H_
#define LLMQ_KERNELS_I8_AVX2_IMPL_H_

#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <type_traits>

#include "packed.h"

namespace llmq::kernels::avx2_i8 {

// acc += per 32-bit lane: sum of 4 (unsigned weight byte x signed activation byte).
template <bool kVnni, bool kWide>
inline __m256i dot4(__m256i acc, __m256i w, __m256i x) {
  if constexpr (kVnni) {
    return _mm256_dpbusd_avx_epi32(acc, w, x);
  } else {
    const __m256i ones = _mm256_set1_epi16(1);
    if constexpr (!kWide) {  // codes <= 63: vpmaddubsw cannot saturate (2 * 63 * 128 < 32767)
      return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(w, x), ones));
    } else {  // 8-bit codes: low 7 bits and the top bit separately, each exact
      const __m256i lo = _mm256_and_si256(w, _mm256_set1_epi8(0x7F));
      const __m256i top = _mm256_and_si256(_mm256_srli_epi16(w, 7), _mm256_set1_epi8(0x01));
      acc = _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(lo, x), ones));
      return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(top, x), _mm256_set1_epi16(128)));
    }
  }
}

inline __m256i bcast4(const int8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm256_set1_epi32(v);
}

// Rows 8h .. 8h + 7 of a super-block record (k = 0: d and scale codes, 1: dmin and min codes):
// d * code, exact in fp32 (packed.h), so the same floats as PackedWeights::panel_scale / panel_min.
inline __m256 super_block_lanes(const PackedWeights& w, int64_t p, int64_t g, int h, int k) {
  const __m256 d = _mm256_cvtph_ps(_mm_loadu_si128(
      reinterpret_cast<const __m128i*>(w.panel_super.data() + w.super_offset(p, g) + 16 * k + 8 * h)));
  const __m128i codes =
      _mm_loadl_epi64(reinterpret_cast<const __m128i*>(w.panel_group_codes.data() + w.group_codes_offset(p, g) + 16 * k + 8 * h));
  return _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(codes)));
}

// Rows 8h .. 8h + 7 of panel p's scales (mins) for group g; pg = panel_index(ngroups, p, g, 8h).
inline __m256 group_scales(const PackedWeights& w, int64_t p, int64_t g, int h, size_t pg) {
  using Kind = PackedWeights::PanelScales;
  switch (w.panel_scale_kind) {
    case Kind::kF16: return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w.panel_scales16.data() + pg)));
    case Kind::kF32: return _mm256_loadu_ps(w.panel_scales.data() + pg);
    case Kind::kSuperBlock: break;
  }
  return super_block_lanes(w, p, g, h, 0);
}

inline __m256 group_mins(const PackedWeights& w, int64_t p, int64_t g, int h, size_t pg) {
  if (w.panel_scale_kind == PackedWeights::PanelScales::kSuperBlock) return super_block_lanes(w, p, g, h, 1);
  return _mm256_loadu_ps(w.panel_mins.data() + pg);
}

template <bool kVnni, int NT>
void panel(const PackedWeights& w, int64_t p, const int8_t* xq, const int32_t* xqsum, const float* sx, int64_t t0,
           float* y) {
  const uint8_t* base = w.panels.data() + p * w.panel_bytes;
  const int64_t kp = w.kp, ng = w.ngroups;
  __m256 yf[NT][2];
  for (int t = 0; t < NT; ++t) yf[t][0] = yf[t][1] = _mm256_setzero_ps();
  const __m256i m4 = _mm256_set1_epi8(0x0F);
  for (int64_t g = 0; g < ng; ++g) {
    __m256i acc[NT][2];
    for (int t = 0; t < NT; ++t) acc[t][0] = acc[t][1] = _mm256_setzero_si256();
    const int64_t j0 = w.group_start[size_t(g)], j1 = w.group_start[size_t(g + 1)];
    if (w.panel_code_bits == 6) {
      // 16 columns per step: two nibble blocks and one crumb block (packed.h), four operands per half.
      const __m256i m30 = _mm256_set1_epi8(0x30);
      for (int64_t j = j0; j < j1; j += 16) {
        const uint8_t* blk = base + (j / 16) * 192;
        for (int h = 0; h < 2; ++h) {
          const __m256i n0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + 32 * h));
          const __m256i n1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + 64 + 32 * h));
          const __m256i c = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + 128 + 32 * h));
          const __m256i op[4] = {
              _mm256_or_si256(_mm256_and_si256(n0, m4), _mm256_and_si256(_mm256_slli_epi16(c, 4), m30)),
              _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(n0, 4), m4), _mm256_and_si256(_mm256_slli_epi16(c, 2), m30)),
              _mm256_or_si256(_mm256_and_si256(n1, m4), _mm256_and_si256(c, m30)),
              _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(n1, 4), m4), _mm256_and_si256(_mm256_srli_epi16(c, 2), m30))};
          for (int t = 0; t < NT; ++t)
            for (int m = 0; m < 4; ++m) acc[t][h] = dot4<kVnni, false>(acc[t][h], op[m], bcast4(xq + (t0 + t) * kp + j + 4 * m));
        }
      }
    } else if (w.panel_code_bits == 8) {
      for (int64_t j = j0; j < j1; j += 4) {
        const uint8_t* q = base + (j / 4) * 64;
        const __m256i w0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q));
        const __m256i w1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q + 32));
        for (int t = 0; t < NT; ++t) {
          const __m256i xb = bcast4(xq + (t0 + t) * kp + j);
          acc[t][0] = dot4<kVnni, true>(acc[t][0], w0, xb);
          acc[t][1] = dot4<kVnni, true>(acc[t][1], w1, xb);
        }
      }
    } else {
      for (int64_t j = j0; j < j1; j += 8) {
        const uint8_t* q = base + (j / 8) * 64;
        const __m256i b0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q));
        const __m256i b1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q + 32));
        const __m256i lo0 = _mm256_and_si256(b0, m4), hi0 = _mm256_and_si256(_mm256_srli_epi16(b0, 4), m4);
        const __m256i lo1 = _mm256_and_si256(b1, m4), hi1 = _mm256_and_si256(_mm256_srli_epi16(b1, 4), m4);
        for (int t = 0; t < NT; ++t) {
          const __m256i x0 = bcast4(xq + (t0 + t) * kp + j), x1 = bcast4(xq + (t0 + t) * kp + j + 4);
          acc[t][0] = dot4<kVnni, false>(dot4<kVnni, false>(acc[t][0], lo0, x0), hi0, x1);
          acc[t][1] = dot4<kVnni, false>(dot4<kVnni, false>(acc[t][1], lo1, x0), hi1, x1);
        }
      }
    }
    using PanelZeros = PackedWeights::PanelZeros;
    const PanelZeros zkind = w.panel_zero_kind;
    for (int h = 0; h < 2; ++h) {
      const size_t pg = PackedWeights::panel_index(ng, p, g, 8 * h);
      const __m256i zeros =
          zkind == PanelZeros::kBytes
              ? _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(w.panel_zeros.data() + pg)))
              : _mm256_set1_epi32(w.panel_zero_constant);
      const __m256 scales = group_scales(w, p, g, h, pg);
      const bool mins = w.panel_has_mins;
      const __m256 mv = mins ? group_mins(w, p, g, h, pg) : _mm256_setzero_ps();
      for (int t = 0; t < NT; ++t) {
        const int32_t xs = xqsum[(t0 + t) * ng + g];
        const __m256i zx = zkind == PanelZeros::kConstant ? _mm256_set1_epi32(w.panel_zero_constant * xs)
                                                          : _mm256_mullo_epi32(zeros, _mm256_set1_epi32(xs));
        yf[t][h] = _mm256_fmadd_ps(scales, _mm256_cvtepi32_ps(_mm256_sub_epi32(acc[t][h], zx)), yf[t][h]);
        if (mins) yf[t][h] = _mm256_fnmadd_ps(mv, _mm256_set1_ps(float(xs)), yf[t][h]);  // the reference's fma(-min, xqsum, acc)
      }
    }
  }
  const int64_t rows_here = std::min<int64_t>(16, w.rows - p * 16);
  for (int t = 0; t < NT; ++t) {
    alignas(32) float out[16];
    const __m256 s = _mm256_set1_ps(sx[t0 + t]);
    _mm256_store_ps(out, _mm256_mul_ps(yf[t][0], s));
    _mm256_store_ps(out + 8, _mm256_mul_ps(yf[t][1], s));
    std::memcpy(y + (t0 + t) * w.rows + p * 16, out, size_t(rows_here) * sizeof(float));
  }
}

template <bool kVnni>
void gemm_i8(const PackedWeights& w, const int8_t* xq, const int32_t* xqsum, const float* sx, int64_t n, int64_t p0,
             int64_t p1, float* y) {
  for (int64_t p = p0; p < p1; ++p)
    for (int64_t t0 = 0; t0 < n; t0 += 4) {
      switch (std::min<int64_t>(4, n - t0)) {
        case 1: panel<kVnni, 1>(w, p, xq, xqsum, sx, t0, y); break;
        case 2: panel<kVnni, 2>(w, p, xq, xqsum, sx, t0, y); break;
        case 3: panel<kVnni, 3>(w, p, xq, xqsum, sx, t0, y); break;
        default: panel<kVnni, 4>(w, p, xq, xqsum, sx, t0, y); break;
      }
    }
}

}  // namespace llmq::kernels::avx2_i8

#endif  // LLMQ_KERNELS_I8_AVX2_IMPL_H_
