// What the AVX-512 and AMX int8 kernels share: the panels' per-group parameters as 16 fp32 lanes
// (one per panel row; the same floats as PackedWeights::panel_scale / panel_min in every storage
// form of packed.h — in the super-block form d * code is exact in fp32, so the product is the
// value), and the 6-bit code blocks' operands.
#ifndef LLMQ_KERNELS_I8_PARAMS_AVX512_H_
#define LLMQ_KERNELS_I8_PARAMS_AVX512_H_

#include <immintrin.h>

#include "packed.h"

namespace llmq::kernels::avx512_params {

// Lanes k * 16 .. k * 16 + 15 of a super-block record (k = 0: d and scale codes, 1: dmin and min codes).
inline __m512 super_block_lanes(const PackedWeights& w, int64_t p, int64_t g, int k) {
  const __m512 d = _mm512_cvtph_ps(
      _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w.panel_super.data() + w.super_offset(p, g) + 16 * k)));
  const __m128i codes =
      _mm_loadu_si128(reinterpret_cast<const __m128i*>(w.panel_group_codes.data() + w.group_codes_offset(p, g) + 16 * k));
  return _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(codes)));
}

inline __m512 scales(const PackedWeights& w, int64_t p, int64_t g) {
  using Kind = PackedWeights::PanelScales;
  const size_t pg = PackedWeights::panel_index(w.ngroups, p, g, 0);
  switch (w.panel_scale_kind) {
    case Kind::kF16: return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(w.panel_scales16.data() + pg)));
    case Kind::kF32: return _mm512_loadu_ps(w.panel_scales.data() + pg);
    case Kind::kSuperBlock: break;
  }
  return super_block_lanes(w, p, g, 0);
}

// Only with w.panel_has_mins.
inline __m512 mins(const PackedWeights& w, int64_t p, int64_t g) {
  if (w.panel_scale_kind == PackedWeights::PanelScales::kSuperBlock) return super_block_lanes(w, p, g, 1);
  return _mm512_loadu_ps(w.panel_mins.data() + PackedWeights::panel_index(w.ngroups, p, g, 0));
}

// The four 4-column operands (codes of columns k..k+3, k+4..k+7, k+8..k+11, k+12..k+15 of the 16
// rows, VNNI order) of a 6-bit panel block of 16 columns (packed.h): nibble | crumb << 4.
inline void six_bit_operands(const uint8_t* blk, __m512i op[4]) {
  const __m512i m4 = _mm512_set1_epi8(0x0F), m30 = _mm512_set1_epi8(0x30);
  const __m512i n0 = _mm512_loadu_si512(blk), n1 = _mm512_loadu_si512(blk + 64), c = _mm512_loadu_si512(blk + 128);
  op[0] = _mm512_or_si512(_mm512_and_si512(n0, m4), _mm512_and_si512(_mm512_slli_epi16(c, 4), m30));
  op[1] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(n0, 4), m4), _mm512_and_si512(_mm512_slli_epi16(c, 2), m30));
  op[2] = _mm512_or_si512(_mm512_and_si512(n1, m4), _mm512_and_si512(c, m30));
  op[3] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(n1, 4), m4), _mm512_and_si512(_mm512_srli_epi16(c, 2), m30));
}

}  // namespace llmq::kernels::avx512_params

#endif  // LLMQ_KERNELS_I8_PARAMS_AVX512_H_
