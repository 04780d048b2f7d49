// The kernel-side weight layout (internal; docs/KERNELS.md) and the per-ISA kernel entry points.
//
// A QuantizedTensor is converted once, at load time, into PackedWeights:
//  - columns are reordered so that every group is contiguous (act-order's g_idx is applied
//    here, once, instead of a gather per weight in the inner loop); the input vector is
//    permuted the same way (one gather per token);
//  - the column count is padded to a multiple of 32 (padding codes are 0, padded inputs 0);
//  - codes of 2, 3 and 4 bits are stored as 4-bit nibbles, 32 columns per 16 bytes: byte i of
//    a 32-column block holds column i in its low nibble and column i + 16 in its high nibble
//    (two AND/shift steps give two runs of 16 consecutive codes); 8-bit codes are bytes;
//  - lookup codes (QuantSpec::lookup, BiLLM) are 2-bit crumbs, 64 columns per 16 bytes: byte i of a
//    64-column block holds columns i, i + 16, i + 32, i + 48 in bits 0-1, 2-3, 4-5, 6-7 (one
//    widening load, then a shift and an AND per run of 16 codes); kp is a multiple of 64; per row
//    and group 8 fp16 levels (column class 0's four, then class 1's), a weight being
//    levels[class_offset[j] + code] with class_offset 0 or 4 per packed column;
//  - per row and group, w = scale * code + mzero with mzero = -scale * zero - min (min: ggml grids), so that
//    y = sum_g (scale_g * sum_{j in g} code_j x_j + mzero_g * sum_{j in g} x_j).
#ifndef LLMQ_KERNELS_PACKED_H_
#define LLMQ_KERNELS_PACKED_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "llmq/kernels.h"

namespace llmq::kernels {

struct PackedWeights {
  int64_t rows = 0, cols = 0;  // logical shape [out_features, in_features]
  int64_t kp = 0;              // padded columns, a multiple of 32
  int bits = 4;                // bits of the source codes (2, 3, 4, 8; 5, 6 on ggml grids)
  int code_bits = 4;           // storage: 2 (crumbs, lookup codes only), 4 (nibbles) or 8 (bytes)
  int64_t row_bytes = 0;       // kp / 4, kp / 2 or kp
  // Groups in packed column order: group g covers packed columns [group_start[g], group_start[g+1]).
  std::vector<int64_t> group_start;  // ngroups + 1 entries, last = kp
  int64_t ngroups = 0;
  // Lookup codes: levels [rows, ngroups, 8] (fp16 bit patterns) and per packed column the offset
  // of its class's four levels (0 or 4), [kp]; `scales` and `mzero` are empty.
  bool lookup = false;
  std::vector<uint16_t> lut;
  std::vector<int32_t> class_offset;
  // Every group starts at a multiple of 32 (lookup codes: 64): SIMD kernels process whole blocks per group.
  bool block_aligned = false;
  // Otherwise, every group starts at a multiple of 16 (SpQR's groups of 16): the two 16-code halves
  // of a block (low and high nibbles) may belong to different groups, and the SIMD kernels scale
  // each half by its own group's scale. half_group[h] = the group of packed columns [16h, 16h + 16).
  bool half_aligned = false;
  std::vector<int32_t> half_group;
  bool simd_layout() const { return block_aligned || half_aligned; }
  std::vector<int32_t> perm;  // packed column j is source column perm[j] (j < cols); empty = identity
  std::vector<uint8_t> codes;        // [rows, row_bytes] (fp32-activation mode)
  std::vector<float> scales, mzero;  // [rows, ngroups] (fp32-activation mode)
  // Int8-activation mode (W8A8 / W4A8, chosen at pack time): instead of `codes`, panels of 16
  // rows in the VNNI order, panel_code_bits per code. 8-bit: per 4 columns, 64 bytes = 16 rows x 4
  // consecutive codes (byte 4r + i = column k + i of row r). 4-bit: per 8 columns, 64 bytes, byte
  // 4r + i = column k + i (low nibble) | column k + 4 + i (high nibble). 6-bit (codes of 5 and 6
  // bits: q5_*, q6_k), per 16 columns 192 bytes: the low 4 bits as two 4-bit blocks (columns k..k+7,
  // k+8..k+15), then 64 bytes of the top 2 bits, byte 4r + i holding those of columns k + i,
  // k + 4 + i, k + 8 + i, k + 12 + i in bits 0-1, 2-3, 4-5, 6-7 (what ggml's q6_k streams: 6 bits
  // per weight instead of a byte; each 4-column operand is nibble | crumb << 4). Per panel and group: 16 scales
  // and 16 integer zero points, each stored as small as it is exact, since a GEMV streams them with
  // the codes (fp32 scales and int32 zeros made 6 bits per weight of w4 g32's 4.5): scales as fp16
  // when every scale is an fp16 value (the default scale type, ggml's blocks), else fp32; zero
  // points (bytes, as QuantizedTensor holds them) not at all when they are one constant (symmetric
  // grids). Every variant turns them into the same fp32 scale and int32 zero.
  bool int8_activations = false;
  int64_t panel_count = 0;               // ceil(rows / 16)
  int panel_code_bits = 4;               // 4, 6 or 8
  int64_t panel_bytes = 0;               // bytes per panel = 2 * kp * panel_code_bits
  std::vector<uint8_t> panels;
  enum class PanelZeros : uint8_t { kConstant, kBytes };
  // Scales (and float mins) in one of three exact forms (compact_panel_params):
  //  - kF32: panel_scales (and panel_mins), [panel][group][16];
  //  - kF16: panel_scales16 [panel][group][16] (panel_mins fp32 as above);
  //  - kSuperBlock, ggml's K-quants as their blocks hold them: per panel and super-block of
  //    groups_per_super groups the 16 rows' fp16 d, then with mins their fp16 dmin, in panel_super
  //    [panel][super][param_stride()]; per panel and group the 16 rows' integer scale codes, then
  //    with mins their min codes, in panel_group_codes [panel][group][param_stride()].
  //    scale = float(d) * code and min = float(dmin) * min_code are exact in fp32 (an 11-bit
  //    significand times a code of at most 8 bits): the same floats ggml computes, the same as kF32.
  //    q4_k streams 4.625 bits per weight instead of 6 (fp32 scale and min per 32 columns).
  enum class PanelScales : uint8_t { kF32, kF16, kSuperBlock };
  PanelScales panel_scale_kind = PanelScales::kF32;
  PanelZeros panel_zero_kind = PanelZeros::kBytes;
  int32_t panel_zero_constant = 0;
  std::vector<uint16_t> panel_scales16;  // [panel][group][16] (kF16)
  std::vector<float> panel_scales;       // [panel][group][16] (kF32)
  std::vector<uint8_t> panel_zeros;      // [panel][group][16] when kBytes
  int64_t groups_per_super = 0;          // kSuperBlock: groups per super-block (256 columns), a power of 2
  int super_shift = 0;                   // log2(groups_per_super): no division per group
  std::vector<uint16_t> panel_super;     // kSuperBlock: [panel][super][param_stride()] fp16 d (, dmin)
  std::vector<int8_t> panel_group_codes; // kSuperBlock: [panel][group][param_stride()] scale (, min) codes
  // Float mins (ggml's q4_1, q5_1, q2_k, q4_k, q5_k: w = scale * code - min, zero points 0); each
  // group then also adds fma(-min, float(xqsum), acc) after its scaled dot product. Unless
  // kSuperBlock, the 16 rows' mins as fp32 per panel and group, [panel][group][16].
  bool panel_has_mins = false;
  std::vector<float> panel_mins;
  int64_t param_stride() const { return panel_has_mins ? 32 : 16; }
  // kSuperBlock: offsets of panel p's group g in panel_group_codes and of its super-block in panel_super.
  size_t group_codes_offset(int64_t p, int64_t g) const { return size_t((p * ngroups + g) * param_stride()); }
  size_t super_offset(int64_t p, int64_t g) const {
    return size_t(((p * ngroups + g) >> super_shift) * param_stride());  // ngroups is a multiple of groups_per_super
  }
  // Every code minus its zero point is a signed byte (always for codes of up to 7 bits): what the
  // AMX kernel multiplies (qgemm_amx.cc).
  bool signed_codes_fit_int8 = false;
  // Index of row p * 16 + rr's entry for group g in the per-panel arrays.
  static constexpr size_t panel_index(int64_t ngroups, int64_t p, int64_t g, int64_t rr) {
    return size_t((p * ngroups + g) * 16 + rr);
  }
  float panel_scale(int64_t r, int64_t g) const;  // qgemm.cc
  int32_t panel_zero(int64_t r, int64_t g) const;
  float panel_min(int64_t r, int64_t g) const;    // 0 without mins
  int panel_code(int64_t r, int64_t j) const {
    const uint8_t* p = panels.data() + (r / 16) * panel_bytes;
    const int64_t rr = r % 16;
    if (panel_code_bits == 8) return p[(j / 4) * 64 + rr * 4 + j % 4];
    if (panel_code_bits == 6) {
      const uint8_t* blk = p + (j / 16) * 192;
      const int64_t m = (j % 16) / 4;  // 4-column operand m of the block
      const uint8_t b = blk[(m / 2) * 64 + rr * 4 + j % 4];
      return ((m % 2) == 0 ? (b & 15) : (b >> 4)) | ((blk[128 + rr * 4 + j % 4] >> (2 * m)) & 3) << 4;
    }
    const uint8_t b = p[(j / 8) * 64 + rr * 4 + j % 4];
    return (j % 8) < 4 ? (b & 15) : (b >> 4);
  }
  // Activation outlier decomposition (int8 activations only; activation_outliers.cc).
  ActivationOutlierOptions act_outliers;
  std::vector<int32_t> fixed_outlier_cols;  // act_outliers.columns in packed order, sorted
  // The weights of the fixed outlier columns, dense part plus sparse outliers, [column][rows]:
  // fp32 (float outliers), or for integer outliers 15-bit integers on one step per row over these
  // columns (absmax / 16319), tiled like the activations: w = 128 fixed_w_hi + fixed_w_lo.
  // Their sparse outliers are left out of out_* below.
  std::vector<float> fixed_w;
  std::vector<int8_t> fixed_w_hi, fixed_w_lo;
  std::vector<float> fixed_w_scale;  // [rows]
  mutable std::atomic<int64_t> outlier_calls{0}, outlier_cols_seen{0};
  // Sparse outliers (CSR, source column indices), added after the dense product.
  std::vector<int32_t> out_row_ptr, out_col;
  std::vector<float> out_val;

  uint64_t bytes() const {  // what a GEMV streams: codes + scales + zero terms (+ outliers)
    const uint64_t outliers = 4 * (out_col.size() + out_val.size()) + 4 * (fixed_w.size() + fixed_w_scale.size()) +
                              fixed_w_hi.size() + fixed_w_lo.size();
    if (int8_activations)
      return panels.size() + 2 * panel_scales16.size() + 4 * panel_scales.size() + panel_zeros.size() +
             4 * panel_mins.size() + 2 * panel_super.size() + panel_group_codes.size() + outliers;
    return codes.size() + 4 * (scales.size() + mzero.size()) + 2 * lut.size() + outliers;
  }
  int code(int64_t r, int64_t j) const {  // packed column j of row r
    const uint8_t* row = codes.data() + r * row_bytes;
    if (code_bits == 8) return row[j];
    if (code_bits == 2) return (row[(j / 64) * 16 + j % 16] >> (2 * ((j % 64) / 16))) & 3;
    const int64_t blk = j / 32, i = j % 32;
    const uint8_t b = row[blk * 16 + (i % 16)];
    return i < 16 ? (b & 15) : (b >> 4);
  }
};

struct OutlierActivations;

// Kernels of one ISA. x is the packed-order, zero-padded input ([n, kp]); xsum holds the
// per-group sums of x ([n, ngroups]). Rows [r0, r1) only (the caller splits rows over threads).
struct KernelTable {
  const char* name;
  // y[r] = dense product for one token (y indexed by row).
  void (*gemv)(const PackedWeights& w, const float* x, const float* xsum, int64_t r0, int64_t r1, float* y);
  // The same for n <= 8 tokens at once (codes decoded once per row, used for every token):
  // y[t * ldy + r] for t < n. nullptr: call gemv per token.
  void (*gemv_multi)(const PackedWeights& w, const float* x, const float* xsum, int64_t n, int64_t r0, int64_t r1,
                     float* y, int64_t ldy);
  // out[(r - r0) * kp + j] = dequantized weight of packed column j.
  void (*dequant)(const PackedWeights& w, int64_t r0, int64_t r1, float* out);
  // Int8-activation product for panels [p0, p1): xq is [n, kp] int8 (per-token symmetric,
  // scale sx[t]); xqsum is [n, ngroups] int32 sums of xq per group. Per row, token and group the
  // int32 dot product minus zero * xqsum is converted to float and accumulated with
  // fma(scale, value, acc), then with float mins acc = fma(-min, float(xqsum), acc), in group order;
  // y[t, r] = acc * sx[t]. The same operations in the same order in every variant, so all variants
  // give bit-identical results. nullptr: not available.
  void (*gemm_i8)(const PackedWeights& w, const int8_t* xq, const int32_t* xqsum, const float* sx, int64_t n,
                  int64_t p0, int64_t p1, float* y);
  // The activation outlier columns' product for rows [r0, r1) (activation_outliers_impl.h).
  void (*outlier_product)(const PackedWeights& w, const std::vector<int32_t>& ocols, const OutlierActivations& a,
                          const float* sx, int64_t n, int64_t r0, int64_t r1, float* y);
  // The sparse weight outliers (out_*) for rows [r0, r1): y[t * ldy + r] += sum of value * x[t * cols + col],
  // x in source column order ([n, cols]); bit-identical in every variant (sparse_outliers_impl.h).
  void (*sparse_add)(const PackedWeights& w, const float* x, int64_t n, int64_t r0, int64_t r1, float* y, int64_t ldy);
  // quantize_activations without outlier columns for groups starting at multiples of 16 columns
  // (simd_layout()), the same bits (division, round half to even, clamp and integer sums are exact
  // in every variant); nullptr: the reference.
  void (*quantize_tokens)(const PackedWeights& w, const float* xp, int64_t n, int8_t* xq, int32_t* xqsum, float* sx);
};

const KernelTable& scalar_kernels();

// ---- int8 activations and their outlier decomposition (activation_outliers.cc) ----
// 16319: the largest |v| for which v = 128 hi + lo with hi = round(v / 128) has both tiles in int8.
constexpr float kMaxTiled = 127.0f * 128.0f + 63.0f;
// The outlier columns of one call, in packed order, sorted: the fixed set, or the columns where
// any of the n tokens of xp ([n, kp], packed order) has |x| > threshold. Empty without decomposition.
std::vector<int32_t> find_outlier_columns(const PackedWeights& w, const float* xp, int64_t n);
// The outlier columns' activations of one call, [n, ocols.size()] each.
struct OutlierActivations {
  std::vector<float> x;       // float outliers: the values themselves
  std::vector<int8_t> hi, lo; // integer outliers: round(x / s) = 128 hi + lo
};
// Per-token symmetric int8 activations of xp, shared by every kernel variant so that they all see
// the same integers: xq [n, kp], xqsum [n, ngroups] (sums of xq per group), sx [n]. Without
// outlier columns: s = absmax / 127, q = round-half-even(x / s). With them (ocols, packed order),
// xq = 0 there and s comes from the other columns only; the outlier values go to *out:
//  - float outliers: as they are;
//  - integer outliers: s = max(absmax_rest / 127, absmax_outliers / 16319), v = round(x / s),
//    hi = round-half-even(v / 128), lo = v - 128 hi (|hi| <= 127, |lo| <= 64).
void quantize_activations(const PackedWeights& w, const float* xp, int64_t n, const std::vector<int32_t>& ocols,
                          int8_t* xq, int32_t* xqsum, float* sx, OutlierActivations* out);
// Adds the outlier columns' product to y [n, rows] for rows [r0, r1) (KernelTable::outlier_product;
// body in activation_outliers_impl.h), with the fixed columns' own weights when the columns are
// fixed, else the dense codes of those columns: float outliers y += x · Wᵀ; integer outliers
// y += sx (128 Σ hi·w + Σ lo·w) with every product int8 x int8 (dense codes: u8 code with the zero
// point subtracted through the sums, per weight group), summed exactly in int32; the sums become
// float once each (exact below 2^24) and are combined with power-of-two factors.
using OutlierProductFn = void (*)(const PackedWeights& w, const std::vector<int32_t>& ocols,
                                  const OutlierActivations& a, const float* sx, int64_t n, int64_t r0, int64_t r1,
                                  float* y);
// The AVX2 table's int8 kernel with vpdpbusd (AVX-VNNI); nullptr when not compiled in.
using GemmI8Fn = void (*)(const PackedWeights&, const int8_t*, const int32_t*, const float*, int64_t, int64_t, int64_t,
                          float*);
GemmI8Fn avxvnni_gemm_i8();
// The AMX-INT8 tile kernel (qgemm_amx.cc; needs signed_codes_fit_int8 and groups of whole 16 columns);
// nullptr when not compiled in.
GemmI8Fn amx_gemm_i8();
const KernelTable* avx2_kernels();    // nullptr when not compiled in
const KernelTable* avx512_kernels();  // nullptr when not compiled in

}  // namespace llmq::kernels

namespace llmq::internal {
// The packed layout behind a PackedLinear (tests and benchmarks; not a stable interface).
struct PackedAccess {
  static const kernels::PackedWeights& weights(const PackedLinear& p) { return *p.w_; }
};
}  // namespace llmq::internal

#endif  // LLMQ_KERNELS_PACKED_H_
