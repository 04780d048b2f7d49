// The int8 panels' per-group parameters as 16 fp32 lanes (one per panel row), for the AVX-512 and
// AMX int8 kernels: the same floats as PackedWeights::panel_scale / panel_min in every storage
// form (packed.h). In the super-block form d * code is exact in fp32, so the product is the value.
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

}  // namespace llmq::kernels::avx512_params

#endif  // LLMQ_KERNELS_I8_PARAMS_AVX512_H_
