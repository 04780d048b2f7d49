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
//  - per row and group, w = scale * code + mzero with mzero = -scale * zero, so that
//    y = sum_g (scale_g * sum_{j in g} code_j x_j + mzero_g * sum_{j in g} x_j).
#ifndef LLMQ_KERNELS_PACKED_H_
#define LLMQ_KERNELS_PACKED_H_

#include <cstddef>
#include <cstdint>
#include <vector>

namespace llmq::kernels {

struct PackedWeights {
  int64_t rows = 0, cols = 0;  // logical shape [out_features, in_features]
  int64_t kp = 0;              // padded columns, a multiple of 32
  int bits = 4;                // bits of the source codes (2, 3, 4, 8)
  int code_bits = 4;           // storage: 4 (nibbles) or 8 (bytes)
  int64_t row_bytes = 0;       // kp / 2 or kp
  // Groups in packed column order: group g covers packed columns [group_start[g], group_start[g+1]).
  std::vector<int64_t> group_start;  // ngroups + 1 entries, last = kp
  int64_t ngroups = 0;
  // Every group starts at a multiple of 32: SIMD kernels process whole 32-column blocks per group.
  bool block_aligned = false;
  std::vector<int32_t> perm;  // packed column j is source column perm[j] (j < cols); empty = identity
  std::vector<uint8_t> codes;        // [rows, row_bytes]
  std::vector<float> scales, mzero;  // [rows, ngroups]
  // Sparse outliers (CSR, source column indices), added after the dense product.
  std::vector<int32_t> out_row_ptr, out_col;
  std::vector<float> out_val;

  uint64_t bytes() const {  // what a GEMV streams: codes + scales + zero terms (+ outliers)
    return codes.size() + 4 * (scales.size() + mzero.size()) + 4 * (out_col.size() + out_val.size());
  }
  int code(int64_t r, int64_t j) const {  // packed column j of row r
    const uint8_t* row = codes.data() + r * row_bytes;
    if (code_bits == 8) return row[j];
    const int64_t blk = j / 32, i = j % 32;
    const uint8_t b = row[blk * 16 + (i % 16)];
    return i < 16 ? (b & 15) : (b >> 4);
  }
};

// Kernels of one ISA. x is the packed-order, zero-padded input ([n, kp]); xsum holds the
// per-group sums of x ([n, ngroups]). Rows [r0, r1) only (the caller splits rows over threads).
struct KernelTable {
  const char* name;
  // y[r] = dense product for one token (y indexed by row).
  void (*gemv)(const PackedWeights& w, const float* x, const float* xsum, int64_t r0, int64_t r1, float* y);
  // out[(r - r0) * kp + j] = dequantized weight of packed column j.
  void (*dequant)(const PackedWeights& w, int64_t r0, int64_t r1, float* out);
};

const KernelTable& scalar_kernels();
const KernelTable* avx2_kernels();    // nullptr when not compiled in
const KernelTable* avx512_kernels();  // nullptr when not compiled in

}  // namespace llmq::kernels

#endif  // LLMQ_KERNELS_PACKED_H_
