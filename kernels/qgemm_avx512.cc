// AVX-512 kernels (compiled with -mavx512f -mavx512bw -mavx512vl; chosen at run time).
// 32 columns per step: 16 bytes of nibbles (or 32 bytes of 8-bit codes) are widened to two
// runs of 16 int32, converted to float and multiplied into per-group accumulators; the group
// scale is applied once per group, the zero term once per group through the sum of x.
#include <immintrin.h>

#include <algorithm>
#include <type_traits>

#define LLMQ_OUTLIER_IMPL outliers_avx512
#include "activation_outliers_impl.h"
#include "i8_params_avx512.h"
#include "packed.h"
#include "sparse_outliers_impl.h"

namespace llmq::kernels {
namespace {

// Two vectors of 16 float codes for packed columns [j, j + 32) of `row`. 4-bit: the 16 bytes
// are widened once to 16 dwords; lane i then holds column i in bits 0..3 and column i + 16 in
// bits 4..7, so an AND and a shift split them (7 uops per 32 weights including the FMAs).
inline void load_codes(const PackedWeights& w, const uint8_t* row, int64_t j, __m512* lo, __m512* hi) {
  if (w.code_bits == 4) {
    const __m512i d = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + j / 2)));
    *lo = _mm512_cvtepi32_ps(_mm512_and_si512(d, _mm512_set1_epi32(0x0F)));
    *hi = _mm512_cvtepi32_ps(_mm512_srli_epi32(d, 4));
  } else {
    *lo = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + j))));
    *hi = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + j + 16))));
  }
}

// The zero-point term of one row: sum over groups of mzero * (sum of x over the group).
inline float zero_term(const float* mz, const float* xsum, int64_t ng) {
  float z = 0.0f;
  for (int64_t g = 0; g < ng; ++g) z += mz[g] * xsum[g];
  return z;
}


// ---- Lookup codes (BiLLM): per 64 columns one widening load of 16 bytes; each 2-bit run plus the
// column's class offset indexes the group's 8 levels (one vpermps), then one FMA per 16 weights.

inline __m512 group_levels(const PackedWeights& w, int64_t r, int64_t g) {
  const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(w.lut.data() + (r * w.ngroups + g) * 8));
  return _mm512_cvtph_ps(_mm256_zextsi128_si256(h));  // lanes 8-15 are 0 and never indexed
}

// The 16 weights of run k (columns j + 16k .. j + 16k + 15) of the 64-column block at j.
inline __m512 lookup_run(__m512i crumbs, const int32_t* cls, int64_t j, int k, __m512 levels) {
  const __m512i idx = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi32(crumbs, 2 * k), _mm512_set1_epi32(3)),
                                      _mm512_loadu_si512(cls + j + 16 * k));
  return _mm512_permutexvar_ps(idx, levels);
}

inline __m512i load_crumbs(const uint8_t* row, int64_t j) {
  return _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + j / 4)));
}

// Calls f(c, k, weights) for every run of 16 weights of row r: packed columns c .. c + 15, k = the
// run's index in its 64-column block.
template <typename F>
inline void for_each_lookup_run(const PackedWeights& w, int64_t r, F&& f) {
  const uint8_t* row = w.codes.data() + r * w.row_bytes;
  for (int64_t g = 0; g < w.ngroups; ++g) {
    const __m512 levels = group_levels(w, r, g);
    for (int64_t j = w.group_start[size_t(g)]; j < w.group_start[size_t(g + 1)]; j += 64) {
      const __m512i crumbs = load_crumbs(row, j);
      for (int k = 0; k < 4; ++k) f(j + 16 * k, k, lookup_run(crumbs, w.class_offset.data(), j, k, levels));
    }
  }
}

template <int NT>
void gemv_lookup_n(const PackedWeights& w, const float* x, int64_t r0, int64_t r1, float* y, int64_t ldy) {
  for (int64_t r = r0; r < r1; ++r) {
    __m512 acc[NT][2];
    for (int t = 0; t < NT; ++t) acc[t][0] = acc[t][1] = _mm512_setzero_ps();
    for_each_lookup_run(w, r, [&](int64_t c, int k, __m512 wv) {
      for (int t = 0; t < NT; ++t) acc[t][k & 1] = _mm512_fmadd_ps(wv, _mm512_loadu_ps(x + t * w.kp + c), acc[t][k & 1]);
    });
    for (int t = 0; t < NT; ++t) y[t * ldy + r] = _mm512_reduce_add_ps(_mm512_add_ps(acc[t][0], acc[t][1]));
  }
}

void dequant_lookup(const PackedWeights& w, int64_t r0, int64_t r1, float* out) {
  for (int64_t r = r0; r < r1; ++r)
    for_each_lookup_run(w, r, [&](int64_t c, int, __m512 wv) { _mm512_storeu_ps(out + (r - r0) * w.kp + c, wv); });
}

// 16-column groups (half_aligned): each 16-code half of a block is multiplied by x, then by its
// group's scale (one extra multiply per 16 weights against the 32-aligned kernel).
void gemv16_avx512(const PackedWeights& w, const float* x, const float* xsum, int64_t r0, int64_t r1, float* y) {
  const int32_t* hg = w.half_group.data();
  for (int64_t r = r0; r < r1; ++r) {
    const uint8_t* row = w.codes.data() + r * w.row_bytes;
    const float* sc = w.scales.data() + r * w.ngroups;
    __m512 t0 = _mm512_setzero_ps(), t1 = _mm512_setzero_ps();
    for (int64_t j = 0; j < w.kp; j += 32) {
      __m512 lo, hi;
      load_codes(w, row, j, &lo, &hi);
      t0 = _mm512_fmadd_ps(_mm512_mul_ps(lo, _mm512_loadu_ps(x + j)), _mm512_set1_ps(sc[hg[j / 16]]), t0);
      t1 = _mm512_fmadd_ps(_mm512_mul_ps(hi, _mm512_loadu_ps(x + j + 16)), _mm512_set1_ps(sc[hg[j / 16 + 1]]), t1);
    }
    y[r] = _mm512_reduce_add_ps(_mm512_add_ps(t0, t1)) + zero_term(w.mzero.data() + r * w.ngroups, xsum, w.ngroups);
  }
}

void gemv_avx512(const PackedWeights& w, const float* x, const float* xsum, int64_t r0, int64_t r1, float* y) {
  if (w.lookup) return gemv_lookup_n<1>(w, x, r0, r1, y, 0);
  if (!w.block_aligned) return gemv16_avx512(w, x, xsum, r0, r1, y);
  for (int64_t r = r0; r < r1; ++r) {
    const uint8_t* row = w.codes.data() + r * w.row_bytes;
    const float* sc = w.scales.data() + r * w.ngroups;
    const float* mz = w.mzero.data() + r * w.ngroups;
    __m512 total = _mm512_setzero_ps();
    float zterm = 0.0f;
    for (int64_t g = 0; g < w.ngroups; ++g) {
      // Four independent FMA chains (64 columns per step): one chain would wait on FMA latency.
      __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps(), a2 = _mm512_setzero_ps(), a3 = _mm512_setzero_ps();
      int64_t j = w.group_start[size_t(g)];
      const int64_t end = w.group_start[size_t(g + 1)];
      for (; j + 64 <= end; j += 64) {
        __m512 lo, hi, lo2, hi2;
        load_codes(w, row, j, &lo, &hi);
        load_codes(w, row, j + 32, &lo2, &hi2);
        a0 = _mm512_fmadd_ps(lo, _mm512_loadu_ps(x + j), a0);
        a1 = _mm512_fmadd_ps(hi, _mm512_loadu_ps(x + j + 16), a1);
        a2 = _mm512_fmadd_ps(lo2, _mm512_loadu_ps(x + j + 32), a2);
        a3 = _mm512_fmadd_ps(hi2, _mm512_loadu_ps(x + j + 48), a3);
      }
      if (j < end) {
        __m512 lo, hi;
        load_codes(w, row, j, &lo, &hi);
        a0 = _mm512_fmadd_ps(lo, _mm512_loadu_ps(x + j), a0);
        a1 = _mm512_fmadd_ps(hi, _mm512_loadu_ps(x + j + 16), a1);
      }
      total = _mm512_fmadd_ps(_mm512_set1_ps(sc[g]), _mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)), total);
      zterm += mz[g] * xsum[g];
    }
    y[r] = _mm512_reduce_add_ps(total) + zterm;
  }
}

template <int NT>
void gemv16_multi_n(const PackedWeights& w, const float* x, const float* xsum, int64_t r0, int64_t r1, float* y,
                    int64_t ldy) {
  const int64_t kp = w.kp, ng = w.ngroups;
  const int32_t* hg = w.half_group.data();
  for (int64_t r = r0; r < r1; ++r) {
    const uint8_t* row = w.codes.data() + r * w.row_bytes;
    const float* sc = w.scales.data() + r * ng;
    __m512 total[NT];
    for (int t = 0; t < NT; ++t) total[t] = _mm512_setzero_ps();
    for (int64_t j = 0; j < kp; j += 32) {
      __m512 lo, hi;
      load_codes(w, row, j, &lo, &hi);
      lo = _mm512_mul_ps(lo, _mm512_set1_ps(sc[hg[j / 16]]));  // the weights of this block, but for mzero
      hi = _mm512_mul_ps(hi, _mm512_set1_ps(sc[hg[j / 16 + 1]]));
      for (int t = 0; t < NT; ++t) {
        total[t] = _mm512_fmadd_ps(lo, _mm512_loadu_ps(x + t * kp + j), total[t]);
        total[t] = _mm512_fmadd_ps(hi, _mm512_loadu_ps(x + t * kp + j + 16), total[t]);
      }
    }
    for (int t = 0; t < NT; ++t)
      y[t * ldy + r] = _mm512_reduce_add_ps(total[t]) + zero_term(w.mzero.data() + r * ng, xsum + t * ng, ng);
  }
}

template <int NT>
void gemv_multi_n(const PackedWeights& w, const float* x, const float* xsum, int64_t r0, int64_t r1, float* y,
                  int64_t ldy) {
  if (!w.block_aligned) return gemv16_multi_n<NT>(w, x, xsum, r0, r1, y, ldy);
  const int64_t kp = w.kp, ng = w.ngroups;
  for (int64_t r = r0; r < r1; ++r) {
    const uint8_t* row = w.codes.data() + r * w.row_bytes;
    const float* sc = w.scales.data() + r * ng;
    const float* mz = w.mzero.data() + r * ng;
    __m512 total[NT];
    float zterm[NT];
    for (int t = 0; t < NT; ++t) total[t] = _mm512_setzero_ps(), zterm[t] = 0.0f;
    for (int64_t g = 0; g < ng; ++g) {
      __m512 acc[NT];
      for (int t = 0; t < NT; ++t) acc[t] = _mm512_setzero_ps();
      for (int64_t j = w.group_start[size_t(g)]; j < w.group_start[size_t(g + 1)]; j += 32) {
        __m512 lo, hi;
        load_codes(w, row, j, &lo, &hi);
        for (int t = 0; t < NT; ++t) {
          acc[t] = _mm512_fmadd_ps(lo, _mm512_loadu_ps(x + t * kp + j), acc[t]);
          acc[t] = _mm512_fmadd_ps(hi, _mm512_loadu_ps(x + t * kp + j + 16), acc[t]);
        }
      }
      const __m512 s = _mm512_set1_ps(sc[g]);
      for (int t = 0; t < NT; ++t) {
        total[t] = _mm512_fmadd_ps(s, acc[t], total[t]);
        zterm[t] += mz[g] * xsum[t * ng + g];
      }
    }
    for (int t = 0; t < NT; ++t) y[t * ldy + r] = _mm512_reduce_add_ps(total[t]) + zterm[t];
  }
}

// Calls f(std::integral_constant<int, k>) with k = min(n, 8) >= 1, so kernels can keep one
// accumulator per token in registers.
template <typename F>
void with_token_count(int64_t n, F&& f) {
  switch (n) {
    case 1: f(std::integral_constant<int, 1>{}); break;
    case 2: f(std::integral_constant<int, 2>{}); break;
    case 3: f(std::integral_constant<int, 3>{}); break;
    case 4: f(std::integral_constant<int, 4>{}); break;
    case 5: f(std::integral_constant<int, 5>{}); break;
    case 6: f(std::integral_constant<int, 6>{}); break;
    case 7: f(std::integral_constant<int, 7>{}); break;
    default: f(std::integral_constant<int, 8>{}); break;
  }
}

void gemv_multi_avx512(const PackedWeights& w, const float* x, const float* xsum, int64_t n, int64_t r0, int64_t r1,
                       float* y, int64_t ldy) {
  if (w.lookup) return with_token_count(n, [&](auto nt) { gemv_lookup_n<decltype(nt)::value>(w, x, r0, r1, y, ldy); });
  with_token_count(n, [&](auto nt) { gemv_multi_n<decltype(nt)::value>(w, x, xsum, r0, r1, y, ldy); });
}

void dequant_avx512(const PackedWeights& w, int64_t r0, int64_t r1, float* out) {
  if (w.lookup) return dequant_lookup(w, r0, r1, out);
  for (int64_t r = r0; r < r1; ++r) {
    const uint8_t* row = w.codes.data() + r * w.row_bytes;
    float* o = out + (r - r0) * w.kp;
    if (!w.block_aligned) {  // 16-column groups: each half with its own group's scale and zero term
      const float* sc = w.scales.data() + r * w.ngroups;
      const float* mz = w.mzero.data() + r * w.ngroups;
      for (int64_t j = 0; j < w.kp; j += 32) {
        __m512 lo, hi;
        load_codes(w, row, j, &lo, &hi);
        const int32_t gl = w.half_group[size_t(j / 16)], gh = w.half_group[size_t(j / 16 + 1)];
        _mm512_storeu_ps(o + j, _mm512_fmadd_ps(lo, _mm512_set1_ps(sc[gl]), _mm512_set1_ps(mz[gl])));
        _mm512_storeu_ps(o + j + 16, _mm512_fmadd_ps(hi, _mm512_set1_ps(sc[gh]), _mm512_set1_ps(mz[gh])));
      }
      continue;
    }
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

using PanelZeros = PackedWeights::PanelZeros;
// The int8 kernels read each thread's panels as one stream; a software prefetch this far ahead
// keeps more lines in flight than the hardware prefetcher does at one token (W4A8 GEMV on 32768 x
// 4096, beyond the L3: 6.6 -> 5.5-5.8 ms on one thread, 3.4 -> 2.8-2.9 ms on two; 1, 2, 4 and
// 8 KiB ahead measured alike, docs/RESULTS.md).
constexpr int64_t kPrefetchBytes = 4096;
// Panels read side by side at one or two tokens: 32768 x 4096 q4_0 beyond the L3, one token, one
// thread: 5.3 ms with one stream, 4.7 with 2, 4 or 8 (llama.cpp 4.6; docs/RESULTS.md). With each
// panel's scales (and K-quants' super-blocks) as streams of their own beside its codes, 2 beat 4:
// q4_k 32768 x 4096, 2 threads, 2.91 -> 2.65-2.70 ms, 1 thread 5.61 -> 4.97-5.20; q4_0 2.76 -> 2.64-2.65.
constexpr int kPanelStreams = 2;

// VNNI: vpdpbusd multiplies 4 unsigned weight bytes of each row lane by the same 4 signed
// activation bytes (broadcast) and adds the 4 products to the lane's int32. NP panels [p, p + NP)
// are read side by side: at one or two tokens a GEMV is a stream of weight bytes, and several
// streams at once keep more cache-line misses in flight than one (what llama.cpp's q4_0 decode
// kernel does with 4 column tiles).
template <int NT, int NP>
void panel_i8(const PackedWeights& w, int64_t p, const int8_t* xq, const int32_t* xqsum, const float* sx,
              int64_t t0, float* y) {
  const uint8_t* panel[NP];
  for (int ip = 0; ip < NP; ++ip) panel[ip] = w.panels.data() + (p + ip) * w.panel_bytes;
  const int64_t kp = w.kp, ng = w.ngroups;
  __m512 yf[NP][NT];
  for (int ip = 0; ip < NP; ++ip)
    for (int t = 0; t < NT; ++t) yf[ip][t] = _mm512_setzero_ps();
  const __m512i m4 = _mm512_set1_epi8(0x0F);
  for (int64_t g = 0; g < ng; ++g) {
    // Independent int32 chains per panel and token (vpdpbusd's latency would otherwise bound a
    // GEMV at one token: 4 chains in all at 1-2 tokens, 2 above), added at the group's end; integer
    // sums in any order are the same, so every variant still gives the reference's bits.
    constexpr int kChains = NT <= 2 && NP == 1 ? 4 : 2;
    __m512i acc[NP][NT][kChains];
    for (int ip = 0; ip < NP; ++ip)
      for (int t = 0; t < NT; ++t)
        for (int c = 0; c < kChains; ++c) acc[ip][t][c] = _mm512_setzero_si512();
    const int64_t j0 = w.group_start[size_t(g)], j1 = w.group_start[size_t(g + 1)];
    auto x4 = [&](int t, int64_t j) {
      int32_t v;
      __builtin_memcpy(&v, xq + (t0 + t) * kp + j, 4);
      return _mm512_set1_epi32(v);
    };
    if (w.panel_code_bits == 6) {
      // 16 columns per step: two nibble blocks and one crumb block (packed.h), four operands.
      for (int64_t j = j0; j < j1; j += 16)
        for (int ip = 0; ip < NP; ++ip) {
          const uint8_t* blk = panel[ip] + (j / 16) * 192;
          for (int l = 0; l < 3; ++l)
            _mm_prefetch(reinterpret_cast<const char*>(blk + 64 * l + kPrefetchBytes), _MM_HINT_T0);
          __m512i op[4];
          avx512_params::six_bit_operands(blk, op);
          for (int m = 0; m < 4; ++m)
            for (int t = 0; t < NT; ++t)
              acc[ip][t][m % kChains] = _mm512_dpbusd_epi32(acc[ip][t][m % kChains], op[m], x4(t, j + 4 * m));
        }
    } else if (w.panel_code_bits == 8) {
      int64_t j = j0;
      for (; j + 4 * kChains <= j1; j += 4 * kChains)
        for (int c = 0; c < kChains; ++c)
          for (int ip = 0; ip < NP; ++ip) {
            _mm_prefetch(reinterpret_cast<const char*>(panel[ip] + (j / 4 + c) * 64 + kPrefetchBytes), _MM_HINT_T0);
            const __m512i wv = _mm512_loadu_si512(panel[ip] + (j / 4 + c) * 64);
            for (int t = 0; t < NT; ++t) acc[ip][t][c] = _mm512_dpbusd_epi32(acc[ip][t][c], wv, x4(t, j + 4 * c));
          }
      for (; j < j1; j += 4)
        for (int ip = 0; ip < NP; ++ip) {
          const __m512i wv = _mm512_loadu_si512(panel[ip] + (j / 4) * 64);
          for (int t = 0; t < NT; ++t) acc[ip][t][0] = _mm512_dpbusd_epi32(acc[ip][t][0], wv, x4(t, j));
        }
    } else {
      int64_t j = j0;
      for (; j + 4 * kChains <= j1; j += 4 * kChains)
        for (int c = 0; c < kChains; c += 2)
          for (int ip = 0; ip < NP; ++ip) {
            _mm_prefetch(reinterpret_cast<const char*>(panel[ip] + (j / 8 + c / 2) * 64 + kPrefetchBytes), _MM_HINT_T0);
            const __m512i b = _mm512_loadu_si512(panel[ip] + (j / 8 + c / 2) * 64);
            const __m512i lo = _mm512_and_si512(b, m4), hi = _mm512_and_si512(_mm512_srli_epi16(b, 4), m4);
            for (int t = 0; t < NT; ++t) {
              acc[ip][t][c] = _mm512_dpbusd_epi32(acc[ip][t][c], lo, x4(t, j + 4 * c));
              acc[ip][t][c + 1] = _mm512_dpbusd_epi32(acc[ip][t][c + 1], hi, x4(t, j + 4 * c + 4));
            }
          }
      for (; j < j1; j += 8)
        for (int ip = 0; ip < NP; ++ip) {
          const __m512i b = _mm512_loadu_si512(panel[ip] + (j / 8) * 64);
          const __m512i lo = _mm512_and_si512(b, m4), hi = _mm512_and_si512(_mm512_srli_epi16(b, 4), m4);
          for (int t = 0; t < NT; ++t) {
            acc[ip][t][0] = _mm512_dpbusd_epi32(acc[ip][t][0], lo, x4(t, j));
            acc[ip][t][1] = _mm512_dpbusd_epi32(acc[ip][t][1], hi, x4(t, j + 4));
          }
        }
    }
    const PanelZeros zkind = w.panel_zero_kind;
    for (int ip = 0; ip < NP; ++ip) {
      const size_t pg = PackedWeights::panel_index(ng, p + ip, g, 0);
      const __m512i zeros =
          zkind == PanelZeros::kBytes
              ? _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w.panel_zeros.data() + pg)))
              : _mm512_set1_epi32(w.panel_zero_constant);
      const __m512 scales = avx512_params::scales(w, p + ip, g);
      const bool mins = w.panel_has_mins;
      const __m512 mv = mins ? avx512_params::mins(w, p + ip, g) : _mm512_setzero_ps();
      for (int t = 0; t < NT; ++t) {
        __m512i dot = acc[ip][t][0];
        for (int c = 1; c < kChains; ++c) dot = _mm512_add_epi32(dot, acc[ip][t][c]);
        const int32_t xs = xqsum[(t0 + t) * ng + g];
        const __m512i zx = zkind == PanelZeros::kConstant ? _mm512_set1_epi32(w.panel_zero_constant * xs)
                                                          : _mm512_mullo_epi32(zeros, _mm512_set1_epi32(xs));
        yf[ip][t] = _mm512_fmadd_ps(scales, _mm512_cvtepi32_ps(_mm512_sub_epi32(dot, zx)), yf[ip][t]);
        // fma(-min, xqsum, acc): fnmadd rounds -(min * xqsum) + acc once, as the reference's fma.
        if (mins) yf[ip][t] = _mm512_fnmadd_ps(mv, _mm512_set1_ps(float(xs)), yf[ip][t]);
      }
    }
  }
  for (int ip = 0; ip < NP; ++ip) {
    const int64_t rows_here = std::min<int64_t>(16, w.rows - (p + ip) * 16);
    const __mmask16 mask = __mmask16((1u << rows_here) - 1u);
    for (int t = 0; t < NT; ++t)
      _mm512_mask_storeu_ps(y + (t0 + t) * w.rows + (p + ip) * 16, mask,
                            _mm512_mul_ps(yf[ip][t], _mm512_set1_ps(sx[t0 + t])));
  }
}

void gemm_i8_avx512(const PackedWeights& w, const int8_t* xq, const int32_t* xqsum, const float* sx, int64_t n,
                    int64_t p0, int64_t p1, float* y) {
  // One or two tokens: 4 panels side by side (kPanelStreams); more tokens reuse each loaded
  // weight vector across the tokens instead.
  if (n <= 2) {
    int64_t p = p0;
    for (; p + kPanelStreams <= p1; p += kPanelStreams)
      for (int64_t t0 = 0; t0 < n; ++t0) panel_i8<1, kPanelStreams>(w, p, xq, xqsum, sx, t0, y);
    for (; p < p1; ++p)
      for (int64_t t0 = 0; t0 < n; ++t0) panel_i8<1, 1>(w, p, xq, xqsum, sx, t0, y);
    return;
  }
  for (int64_t p = p0; p < p1; ++p)
    for (int64_t t0 = 0; t0 < n; t0 += 8)
      with_token_count(n - t0, [&](auto nt) { panel_i8<decltype(nt)::value, 1>(w, p, xq, xqsum, sx, t0, y); });
}

void outlier_product_avx512(const PackedWeights& w, const std::vector<int32_t>& ocols, const OutlierActivations& a,
                          const float* sx, int64_t n, int64_t r0, int64_t r1, float* y) {
  LLMQ_OUTLIER_IMPL::outlier_product_rows(w, ocols, a, sx, n, r0, r1, y);
}

// 16 outliers per step: one gather of 16 activations, products and sums in two vectors of 8
// doubles (lanes 0-7, 8-15), as the reference's lanes.
void sparse_add_avx512(const PackedWeights& w, const float* x, int64_t n, int64_t r0, int64_t r1, float* y,
                       int64_t ldy) {
  LLMQ_OUTLIER_IMPL::sparse_rows(w, x, n, r0, r1, y, ldy, [&w](const float* xt, int32_t i0, int32_t i1, double* lanes) {
    __m512d lo = _mm512_setzero_pd(), hi = _mm512_setzero_pd();
    int32_t i = i0;
    for (; i + 16 <= i1; i += 16) {
      const __m512 xv = _mm512_i32gather_ps(_mm512_loadu_si512(w.out_col.data() + i), xt, 4);
      const __m512 v = _mm512_loadu_ps(w.out_val.data() + i);
      auto upper = [](__m512 a) { return _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(a), 1)); };
      lo = _mm512_add_pd(lo, _mm512_mul_pd(_mm512_cvtps_pd(_mm512_castps512_ps256(v)),
                                           _mm512_cvtps_pd(_mm512_castps512_ps256(xv))));
      hi = _mm512_add_pd(hi, _mm512_mul_pd(_mm512_cvtps_pd(upper(v)), _mm512_cvtps_pd(upper(xv))));
    }
    _mm512_store_pd(lanes, lo);
    _mm512_store_pd(lanes + 8, hi);
    return i;
  });
}

// quantize_activations (activation_outliers.cc) for groups of whole 16 columns without outlier columns:
// absmax, then per 16 values x / s (IEEE division, as the reference), round half to even, clamp to
// +-127, narrow to bytes; per group the int32 sum of the bytes. The same bits as the reference.
void quantize_tokens_avx512(const PackedWeights& w, const float* xp, int64_t n, int8_t* xq, int32_t* xqsum,
                            float* sx) {
  const int64_t kp = w.kp, ng = w.ngroups;
  const __m512 lo = _mm512_set1_ps(-127.0f), hi = _mm512_set1_ps(127.0f);
  for (int64_t t = 0; t < n; ++t) {
    const float* xr = xp + t * kp;
    int8_t* qr = xq + t * kp;
    __m512 m = _mm512_setzero_ps();
    for (int64_t j = 0; j < kp; j += 16) m = _mm512_max_ps(m, _mm512_abs_ps(_mm512_loadu_ps(xr + j)));
    const float amax = _mm512_reduce_max_ps(m);
    const float s = amax > 0.0f ? amax / 127.0f : 1.0f;
    sx[t] = s;
    const __m512 sv = _mm512_set1_ps(s);
    for (int64_t g = 0; g < ng; ++g) {
      __m512i sum = _mm512_setzero_si512();
      for (int64_t j = w.group_start[size_t(g)]; j < w.group_start[size_t(g + 1)]; j += 16) {
        const __m512 v = _mm512_roundscale_ps(_mm512_div_ps(_mm512_loadu_ps(xr + j), sv),
                                              _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        const __m512i q = _mm512_cvtps_epi32(_mm512_min_ps(_mm512_max_ps(v, lo), hi));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(qr + j), _mm512_cvtepi32_epi8(q));
        sum = _mm512_add_epi32(sum, q);
      }
      xqsum[t * ng + g] = _mm512_reduce_add_epi32(sum);
    }
  }
}

}  // namespace

const KernelTable* avx512_kernels() {
  static const KernelTable t{"avx512", gemv_avx512, gemv_multi_avx512, dequant_avx512, gemm_i8_avx512, outlier_product_avx512,
                             sparse_add_avx512, quantize_tokens_avx512};
  return &t;
}

}  // namespace llmq::kernels
