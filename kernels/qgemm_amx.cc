// AMX-INT8 variant of the int8-activation product (compiled with -mamx-tile -mamx-int8 and AVX-512;
// chosen at run time when the CPU has AMX and the OS grants its tile state, cpu_features.cc).
//
// One tdpbssd multiplies a 16 x K tile of signed bytes by a K x 16 one (K <= 64) into 16 x 16 int32:
// 16 tokens x 16 weight rows x 32 or 64 columns per instruction, 16 times vpdpbusd's work. The
// tiles hold exactly the integers of the reference (packed.h, KernelTable::gemm_i8):
//  - A = the int8 activations xq of 16 tokens, read in place ([n, kp], row stride kp);
//  - B = (code - zero) of one panel's 16 rows as signed bytes, in the VNNI order the panels already
//    have (4 consecutive columns of a row per dword), unpacked once per panel and reused by every
//    token tile. sum_j xq_j (code_j - zero) is the reference's dot - zero * xqsum, exactly, so there
//    is no zero-point term; it needs |code - zero| <= 127/128, true for codes of up to 7 bits and
//    checked at pack time for 8-bit ones (PackedWeights::signed_codes_fit_int8).
// Per group the int32 tile is stored, converted to float and accumulated with fma(scale, value,
// acc) (and, with float mins, fma(-min, float(xqsum), acc)) in group order, then y = acc * sx: the
// reference's operations in its order, so the result has the reference's bits. Tokens past the
// last full tile of 16 are copied into a zero-padded tile.
#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "i8_params_avx512.h"
#include "packed.h"

namespace llmq::kernels {
namespace {

using PanelZeros = PackedWeights::PanelZeros;

// LDTILECFG's 64-byte operand (palette 1).
struct alignas(64) TileConfig {
  uint8_t palette = 1;
  uint8_t start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
};
static_assert(sizeof(TileConfig) == 64, "LDTILECFG reads 64 bytes");

// (code - zero) of panel p as signed bytes, VNNI order: row k / 4 of 64 bytes holds columns
// [k, k + 4) of the 16 rows (byte 4r + i = column k + i of row r); and the panel's scales (and
// float mins) as fp32, [group][16].
void unpack_panel(const PackedWeights& w, int64_t p, int8_t* b, float* scales, float* mins) {
  const uint8_t* panel = w.panels.data() + p * w.panel_bytes;
  const __m512i m4 = _mm512_set1_epi8(0x0F);
  for (int64_t g = 0; g < w.ngroups; ++g) {
    const size_t pg = PackedWeights::panel_index(w.ngroups, p, g, 0);
    // Each row's zero point in all 4 bytes of its dword.
    const __m512i z =
        w.panel_zero_kind == PanelZeros::kBytes
            ? _mm512_mullo_epi32(
                  _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w.panel_zeros.data() + pg))),
                  _mm512_set1_epi32(0x01010101))
            : _mm512_set1_epi8(char(w.panel_zero_constant));
    _mm512_storeu_ps(scales + g * 16, avx512_params::scales(w, p, g));
    if (w.panel_has_mins) _mm512_storeu_ps(mins + g * 16, avx512_params::mins(w, p, g));
    const int64_t j0 = w.group_start[size_t(g)], j1 = w.group_start[size_t(g + 1)];
    if (w.panel_code_bits == 8) {
      for (int64_t j = j0; j < j1; j += 4)
        _mm512_storeu_si512(b + j * 16, _mm512_sub_epi8(_mm512_loadu_si512(panel + j * 16), z));
    } else if (w.panel_code_bits == 6) {  // nibble | crumb << 4 per 4-column operand (packed.h)
      for (int64_t j = j0; j < j1; j += 16) {
        __m512i op[4];
        avx512_params::six_bit_operands(panel + (j / 16) * 192, op);
        for (int m = 0; m < 4; ++m) _mm512_storeu_si512(b + (j + 4 * m) * 16, _mm512_sub_epi8(op[m], z));
      }
    } else {
      for (int64_t j = j0; j < j1; j += 8) {
        const __m512i v = _mm512_loadu_si512(panel + j * 8);
        _mm512_storeu_si512(b + j * 16, _mm512_sub_epi8(_mm512_and_si512(v, m4), z));
        _mm512_storeu_si512(b + j * 16 + 64, _mm512_sub_epi8(_mm512_and_si512(_mm512_srli_epi16(v, 4), m4), z));
      }
    }
  }
}

// Up to 2 token tiles x 2 panels per step (32 tokens x 32 rows). a: the two token tiles' int8 rows
// in tile order (see tile_activations), the second tile lda bytes after the first. Tiles 0-3 the int32 products
// C[token tile][panel], 4-5 the activations of the two token tiles, 6-7 the two panels' weights, so
// every tile load feeds two tdpbssd. (GCC's tile intrinsics paste their tile arguments into the
// assembly: they must be literal numbers.)
template <int TT, int PP>
void block_product(const PackedWeights& w, int64_t p, const int8_t* a, int64_t lda, const int8_t* const* b,
                   const float* const* scales, const float* const* mins_of, const float* sx, const float* xsum, int64_t ldxs, int64_t nt,
                   int64_t kstep, float* y) {
  alignas(64) int32_t c[4][256];
  alignas(64) float acc[4][256];
  for (int i = 0; i < 4 * 256; i += 16) _mm512_store_ps(&acc[0][0] + i, _mm512_setzero_ps());
  const int64_t ng = w.ngroups;
  const int64_t* gs = w.group_start.data();
  auto compute = [&](int64_t g) {
    _tile_zero(0);
    if constexpr (PP == 2) _tile_zero(1);
    if constexpr (TT == 2) _tile_zero(2);
    if constexpr (TT == 2 && PP == 2) _tile_zero(3);
    for (int64_t j = gs[g]; j < gs[g + 1]; j += kstep) {
      _tile_loadd(4, a + j * 16, kstep);
      _tile_loadd(6, b[0] + j * 16, 64);
      _tile_dpbssd(0, 4, 6);
      if constexpr (PP == 2) {
        _tile_loadd(7, b[1] + j * 16, 64);
        _tile_dpbssd(1, 4, 7);
      }
      if constexpr (TT == 2) {
        _tile_loadd(5, a + lda + j * 16, kstep);
        _tile_dpbssd(2, 5, 6);
        if constexpr (PP == 2) _tile_dpbssd(3, 5, 7);
      }
    }
  };
  auto store = [&] {
    _tile_stored(0, c[0], 64);
    if constexpr (PP == 2) _tile_stored(1, c[1], 64);
    if constexpr (TT == 2) _tile_stored(2, c[2], 64);
    if constexpr (TT == 2 && PP == 2) _tile_stored(3, c[3], 64);
  };
  // acc[q][t] (16 rows of token t) = fma(scales, float(c[q][t]), acc[q][t]); with float mins then
  // fma(-min, xsum[g][t], acc[q][t]): xsum holds float(xqsum) per group and token (0 past nt), so
  // each term is one broadcast load.
  const bool mins = w.panel_has_mins;
  auto accumulate = [&](int64_t g) {
    for (int q = 0; q < 4; ++q) {
      const int ti = q / 2, pi = q % 2;
      if (ti >= TT || pi >= PP) continue;
      const __m512 sv = _mm512_loadu_ps(scales[pi] + g * 16);
      if (!mins) {
#pragma GCC unroll 16
        for (int t = 0; t < 16; ++t)
          _mm512_store_ps(acc[q] + 16 * t, _mm512_fmadd_ps(sv, _mm512_cvtepi32_ps(_mm512_load_si512(c[q] + 16 * t)),
                                                            _mm512_load_ps(acc[q] + 16 * t)));
        continue;
      }
      // Both terms in one pass over the accumulators (one load and store of each instead of two).
      const __m512 mv = _mm512_loadu_ps(mins_of[pi] + g * 16);
      const float* xs = xsum + g * ldxs + ti * 16;
#pragma GCC unroll 16
      for (int t = 0; t < 16; ++t) {
        const __m512 a = _mm512_fmadd_ps(sv, _mm512_cvtepi32_ps(_mm512_load_si512(c[q] + 16 * t)), _mm512_load_ps(acc[q] + 16 * t));
        _mm512_store_ps(acc[q] + 16 * t, _mm512_fnmadd_ps(mv, _mm512_set1_ps(xs[t]), a));
      }
    }
  };
  // Group g + 1's tiles are issued before group g's int32 products are converted, so that the
  // tile unit and the vector unit work at the same time.
  compute(0);
  for (int64_t g = 0; g < ng; ++g) {
    store();
    if (g + 1 < ng) compute(g + 1);
    accumulate(g);
  }
  for (int q = 0; q < 4; ++q) {
    const int ti = q / 2, pi = q % 2;
    if (ti >= TT || pi >= PP) continue;
    const int64_t rows_here = std::min<int64_t>(16, w.rows - (p + pi) * 16);
    const __mmask16 mask = __mmask16((1u << rows_here) - 1u);
    for (int64_t t = 0; t < 16 && ti * 16 + t < nt; ++t) {
      const int64_t tok = ti * 16 + t;
      _mm512_mask_storeu_ps(y + tok * w.rows + (p + pi) * 16, mask,
                            _mm512_mul_ps(_mm512_load_ps(acc[q] + 16 * t), _mm512_set1_ps(sx[tok])));
    }
  }
}

// The int8 rows of nt tokens ([nt, kp]) in tile order: per 16 tokens (zero rows past nt), per kstep
// columns, the 16 rows' kstep bytes one after another, so that a tile load reads one contiguous
// block (rows kp bytes apart fall into the same L1 set once kp is a multiple of 4096, and thrashed it).
void tile_activations(const int8_t* xq, int64_t nt, int64_t kp, int64_t kstep, int8_t* out) {
  for (int64_t t0 = 0; t0 < nt; t0 += 16)
    for (int64_t j = 0; j < kp; j += kstep) {
      int8_t* o = out + t0 * kp + j * 16;
      // kstep is 16, 32 or 64: one 16-byte or one or two 32-byte moves per row (memcpy's rep movs
      // per 32 bytes was most of this function's time).
      for (int64_t t = 0; t < 16; ++t) {
        if (kstep == 16) {
          const __m128i v = t0 + t < nt ? _mm_loadu_si128(reinterpret_cast<const __m128i*>(xq + (t0 + t) * kp + j))
                                        : _mm_setzero_si128();
          _mm_storeu_si128(reinterpret_cast<__m128i*>(o + t * kstep), v);
          continue;
        }
        for (int64_t i = 0; i < kstep; i += 32) {
          const __m256i v = t0 + t < nt ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq + (t0 + t) * kp + j + i))
                                        : _mm256_setzero_si256();
          _mm256_storeu_si256(reinterpret_cast<__m256i*>(o + t * kstep + i), v);
        }
      }
    }
}

// Tokens in chunks of at most this many bytes of int8 rows (each panel is unpacked once per chunk).
// With the rows in tile order larger chunks measured faster (4096 x 4096 x 512, one thread: 512 KiB
// chunks 31.0 ms, 1 MiB 29.6, 4 MiB 28.4), so a prompt is usually one chunk.
constexpr int64_t kChunkBytes = int64_t(8) << 20;

template <class T>
void grow(std::vector<T>& v, int64_t count) {
  if (v.size() < size_t(count)) v.resize(size_t(count));
}

void gemm_i8_amx(const PackedWeights& w, const int8_t* xq, const int32_t* xqsum, const float* sx, int64_t n,
                 int64_t p0, int64_t p1, float* y) {
  const int64_t kp = w.kp;
  // 64 columns per instruction when every group is a multiple of 64 long, else 32, else 16 (groups
  // of 16: q6_k, q2_k, q3_k; a quarter of the work per instruction, still ahead of VNNI).
  int64_t kstep = 64;
  for (int64_t g = 0; g < w.ngroups; ++g) {
    const int64_t len = w.group_start[size_t(g + 1)] - w.group_start[size_t(g)];
    kstep = std::min(kstep, len % 64 == 0 ? int64_t(64) : len % 32 == 0 ? int64_t(32) : int64_t(16));
  }
  TileConfig cfg;
  for (int t = 0; t < 4; ++t) {
    cfg.rows[t] = 16;
    cfg.colsb[t] = 64;
  }
  for (int t : {4, 5}) {
    cfg.rows[t] = 16;
    cfg.colsb[t] = uint16_t(kstep);
  }
  for (int t : {6, 7}) {
    cfg.rows[t] = uint8_t(kstep / 4);
    cfg.colsb[t] = 64;
  }
  // Tile configuration is per thread and other code in the process (ggml's AMX kernels) configures
  // a thread's tiles once and keeps using them: put back what was there (which also zeroes the
  // tiles' data, as any LDTILECFG does), or release the tiles if they were unconfigured.
  TileConfig previous;
  _tile_storeconfig(&previous);
  _tile_loadconfig(&cfg);

  // Buffers each thread keeps between calls (fresh megabytes per call were page faults).
  thread_local std::vector<int8_t> bbuf, abuf;
  thread_local std::vector<float> sbuf, mbuf, xsbuf;
  grow(bbuf, 2 * kp * 16);
  grow(sbuf, 2 * w.ngroups * 16);
  if (w.panel_has_mins) grow(mbuf, 2 * w.ngroups * 16);
  const int8_t* b[2] = {bbuf.data(), bbuf.data() + kp * 16};
  const float* scales[2] = {sbuf.data(), sbuf.data() + w.ngroups * 16};
  const float* mins[2] = {mbuf.data(), mbuf.data() + (w.panel_has_mins ? w.ngroups * 16 : 0)};
  const int64_t chunk = std::max<int64_t>(32, std::min<int64_t>((n + 31) / 32 * 32, (kChunkBytes / std::max<int64_t>(kp, 1)) / 32 * 32));
  grow(abuf, chunk * kp);
  for (int64_t c0 = 0; c0 < n; c0 += chunk) {
    const int64_t c1 = std::min(n, c0 + chunk);
    tile_activations(xq + c0 * kp, c1 - c0, kp, kstep, abuf.data());
    // Float mins: float(xqsum) of the chunk's tokens per group, [group][chunk rounded up to 32], 0 past n.
    const int64_t ldxs = (c1 - c0 + 31) / 32 * 32;
    if (w.panel_has_mins) {
      grow(xsbuf, w.ngroups * ldxs);
      for (int64_t g = 0; g < w.ngroups; ++g)
        for (int64_t t = 0; t < ldxs; ++t)
          xsbuf[size_t(g * ldxs + t)] = c0 + t < c1 ? float(xqsum[(c0 + t) * w.ngroups + g]) : 0.0f;
    }
    for (int64_t p = p0; p < p1; p += 2) {
      const int pp = p + 1 < p1 ? 2 : 1;
      for (int i = 0; i < pp; ++i)
        unpack_panel(w, p + i, bbuf.data() + i * kp * 16, sbuf.data() + i * w.ngroups * 16,
                     w.panel_has_mins ? mbuf.data() + i * w.ngroups * 16 : nullptr);
      for (int64_t t0 = c0; t0 < c1; t0 += 32) {
        const int64_t nt = std::min<int64_t>(32, n - t0);
        const int8_t* a = abuf.data() + (t0 - c0) * kp;
        float* yt = y + t0 * w.rows;
        const float* st = sx + t0;
        const float* xs = w.panel_has_mins ? xsbuf.data() + (t0 - c0) : nullptr;
        if (nt > 16) {
          if (pp == 2) block_product<2, 2>(w, p, a, 16 * kp, b, scales, mins, st, xs, ldxs, nt, kstep, yt);
          else block_product<2, 1>(w, p, a, 16 * kp, b, scales, mins, st, xs, ldxs, nt, kstep, yt);
        } else {
          if (pp == 2) block_product<1, 2>(w, p, a, 16 * kp, b, scales, mins, st, xs, ldxs, nt, kstep, yt);
          else block_product<1, 1>(w, p, a, 16 * kp, b, scales, mins, st, xs, ldxs, nt, kstep, yt);
        }
      }
    }
  }
  if (previous.palette != 0)
    _tile_loadconfig(&previous);
  else
    _tile_release();
}

}  // namespace

GemmI8Fn amx_gemm_i8() { return gemm_i8_amx; }

}  // namespace llmq::kernels
