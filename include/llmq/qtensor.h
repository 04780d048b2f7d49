// The quantized-tensor description shared by every method, kernel and file format (the layer
// below both the quantizers and the kernels).
//
// A linear weight W has shape [rows = out_features, cols = in_features]
// (PyTorch nn.Linear layout). Group-wise quantization shares one (scale, zero)
// between `group_size` consecutive input columns of one output row:
//
//   W[r, c] ~= scale[r, g(c)] * (code[r, c] - zero[r, g(c)])  +  outlier[r, c]
//
// with g(c) = c / group_size, or g_idx[c] when a group index is present (act-order).
// Symmetric tensors have no stored zeros: zero = 2^(bits-1) for every group.
// The sparse outlier part (SpQR/AdpQ) is *added* to the dense part.
#ifndef LLMQ_QTENSOR_H_
#define LLMQ_QTENSOR_H_

#include <cstdint>
#include <string>
#include <vector>

#include "llmq/export.h"
#include "llmq/status.h"
#include "llmq/tensor.h"

namespace llmq {


enum class ScaleDType : uint8_t { kF16, kF32 };

// ggml's block types: the weight formats of llama.cpp's GGUF files (values are ggml's type ids).
// A QuantizedTensor on one of these grids holds exactly what the blocks store, so a GGUF export
// copies it (docs/GGUF.md; block layouts: ../shared/docs/export-formats.md §2).
enum class GgmlType : int {
  kNone = -1,
  kQ4_0 = 2, kQ4_1 = 3, kQ5_0 = 6, kQ5_1 = 7, kQ8_0 = 8,
  kQ2_K = 10, kQ3_K = 11, kQ4_K = 12, kQ5_K = 13, kQ6_K = 14,
};
LLMQ_EXPORT const char* ggml_type_name(GgmlType t);  // "q4_0", "q4_k", ...; "none"
// "q4_0" .. "q6_k" (either case); InvalidArgument listing the valid names otherwise.
LLMQ_EXPORT Result<GgmlType> parse_ggml_type(const std::string& name);

struct LLMQ_EXPORT QuantSpec {
  int bits = 4;              // 2, 3, 4 or 8 (5 and 6 only on a ggml grid; 1 with zero points or lookup codes)
  int group_size = 128;      // columns sharing a scale; 0 = per output channel (one group per row)
  bool symmetric = true;     // true: no zeros, grid centered on 2^(bits-1); false: per-group zero point
  ScaleDType scale_dtype = ScaleDType::kF16;  // scales are rounded to this type when produced
  bool mse_search = false;   // RTN: search a shrunk range minimizing sum |q(x)-x|^2.4 (GPTQ's mse option)
  // Bilevel scales (SpQR's second-order statistics): > 0 quantizes the scales of each group column,
  // in chunks of scale_group_rows consecutive rows, to scale_bits-bit codes with one fp16 (min,
  // step) pair per chunk; scale_dtype then does not apply. 0: plain fp16/fp32 scales.
  int scale_bits = 0;
  int scale_group_rows = 16;
  // Bilevel zeros (SpQR's qq_zero_bits; only where there are zero points, !symmetric): > 0 keeps
  // each group's zero point continuous (-min / scale, not rounded) and quantizes the zeros of each
  // group column, in the same chunks of scale_group_rows rows, to zero_bits-bit codes with one
  // fp16 (min, step) pair per chunk. 0: integer zero points, one byte each.
  int zero_bits = 0;
  // A ggml block type: codes and scales exactly representable in its blocks. bits, group_size and
  // symmetric then follow the type (ForGgml); types with a min are not symmetric and store `mins`
  // instead of integer zeros; K-quants store their scales in two levels (QuantizedTensor below).
  GgmlType ggml_type = GgmlType::kNone;
  // Lookup codes (BiLLM's binary bases): each code indexes a table of 2^bits fp16 levels kept per
  // (row, group, column class) instead of a uniform grid, W[r, c] = levels[r, g(c), class(c), code]
  // (QuantizedTensor::levels). bits 1 or 2; no scales, zeros or bilevel statistics (symmetric
  // stays true); not with a ggml type.
  bool lookup = false;

  // Bilevel zeros in effect: zero points exist and are stored as zero_bits-bit codes.
  bool bilevel_zeros() const { return zero_bits > 0 && !symmetric; }

  // The spec of a ggml type: q4_0 = w4 g32 sym, q4_1 = w4 g32 with mins, q5_0/q5_1, q8_0 = w8 g32,
  // q2_k = w2 g16 with mins, q3_k = w3 g16 sym, q4_k/q5_k = g32 with mins, q6_k = w6 g16 sym.
  static QuantSpec ForGgml(GgmlType t);
  bool is_ggml() const { return ggml_type != GgmlType::kNone; }
  // Per-group mins (w = scale * code - min) instead of zero points: q4_1, q5_1, q2_k, q4_k, q5_k.
  bool has_mins() const;

  // InvalidArgument naming the bad field, or OK.
  Status Validate() const;
  // Effective group size for a row of `cols` columns.
  int64_t group_cols(int64_t cols) const { return group_size <= 0 ? cols : group_size; }
  int64_t num_groups(int64_t cols) const { int64_t g = group_cols(cols); return (cols + g - 1) / g; }
  std::string ToString() const;  // e.g. "w4 g128 sym fp16-scales"
};

// Sparse outliers in CSR form: row r's outliers are col_idx/values[row_ptr[r] .. row_ptr[r+1]).
// Either additive fp16 values (SpQR, AdpQ's fp16 variant, LLM.int8's columns), or positions only
// (`values` empty) whose dense codes are read with the group's second scale (QuantizedTensor::
// outlier_scales; AdpQ as its paper stores it).
struct LLMQ_EXPORT SparseOutliers {
  std::vector<int32_t> row_ptr;   // rows + 1 entries, or empty when there are no outliers
  std::vector<int32_t> col_idx;
  std::vector<uint16_t> values;   // fp16 bit patterns; empty for in-slot outliers
  bool empty() const { return col_idx.empty(); }
  size_t nnz() const { return col_idx.size(); }
  // As stored (docs/FORMAT.md): each row's outlier count in 1 or 2 bytes, the narrowest that holds
  // every row's count (0: 4-byte row pointers), and columns in 1, 2 or 4 bytes by the column count.
  int row_count_bytes() const;
  static int column_bytes(int64_t cols) { return cols <= 256 ? 1 : cols <= 65536 ? 2 : 4; }
};

struct LLMQ_EXPORT QuantizedTensor {
  int64_t rows = 0;
  int64_t cols = 0;
  QuantSpec spec;
  // Codes: each row is a little-endian bit stream of `cols` unsigned `bits`-bit
  // values, value c at bit offset c*bits (LSB first), padded to whole 32-bit
  // words. words_per_row() words per row.
  std::vector<uint32_t> codes;
  // [rows, num_groups] row-major. Values are already rounded to spec.scale_dtype.
  std::vector<float> scales;
  // [rows, num_groups] row-major, only when !spec.symmetric. Integers in [0, 2^bits).
  std::vector<uint8_t> zeros;
  // Optional group index per input column (act-order); empty means g(c) = c / group_cols.
  std::vector<int32_t> g_idx;
  SparseOutliers outliers;
  // Bilevel scales only (spec.scale_bits > 0): the code of every scale, [rows, num_groups], and per
  // (chunk of scale_group_rows rows, group) the fp16 pair (min, step), [num_scale_chunks, num_groups, 2];
  // scales[r, g] == min + step * code (computed in fp32), which is what `scales` holds.
  std::vector<uint8_t> scale_codes;
  std::vector<uint16_t> scale_params;
  // Bilevel zeros only (spec.bilevel_zeros()): like the bilevel scales, the code of every zero point
  // [rows, num_groups], the fp16 pairs (min, step) [num_scale_chunks, num_groups, 2], and the zero
  // points they give, real_zeros[r, g] == min + step * code (fp32); `zeros` is then empty.
  std::vector<uint8_t> zero_codes;
  std::vector<uint16_t> zero_params;
  std::vector<float> real_zeros;
  // In-slot outliers only (outliers with positions and no values): the second scale of each group,
  // [rows, num_groups], fp16-rounded; the codes at the outliers' positions stand for
  // outlier_scale * (code - zero) instead of scale * (code - zero). 0 where a group has none.
  std::vector<float> outlier_scales;
  // ggml types with mins (spec.has_mins()): [rows, num_groups], w = scale * code - min, so that
  // q4_1's "d * q + m" has min = -m.
  std::vector<float> mins;
  // ggml K-quants: two-level scales as llama.cpp stores them. Per 256-column super-block the fp16
  // pair (d, dmin) in super_scales [rows, cols / 256, 2]; per group the stored integer scale code
  // in scale_codes and min code in min_codes ([rows, num_groups]; q3_k scale codes are biased by
  // 32, q6_k's are int8 bit patterns). scales = d * scale and mins = dmin * min, in fp32, as ggml
  // computes them (ggml_k_scales()).
  std::vector<uint8_t> min_codes;
  std::vector<uint16_t> super_scales;
  // LLM.int8 with calibration: input columns (sorted, distinct) whose activations are outliers. With
  // int8 activations they run outside the int8 row (llmq/kernels.h, ActivationOutlierOptions), so
  // their weights are kept exact in `outliers` and their dense codes represent 0.
  std::vector<int32_t> activation_outlier_columns;
  // Lookup codes only (spec.lookup): per (row, group, column class) the 2^bits levels the codes
  // stand for, [rows, num_groups, kLookupClasses, 2^bits], fp16-rounded; and the class of every
  // input column, [cols], 0 or 1 (BiLLM: 1 = a salient column of its group, whose two bits are
  // two residual signs; 0 = the others, whose bits are a sign and a magnitude split).
  static constexpr int kLookupClasses = 2;
  std::vector<float> levels;
  std::vector<uint8_t> column_classes;
  int64_t levels_per_group() const { return int64_t(kLookupClasses) << spec.bits; }
  float level(int64_t r, int64_t g, int64_t c, uint32_t code) const {
    return levels[size_t(((r * num_groups() + g) * kLookupClasses + column_classes[size_t(c)]) * (int64_t(1) << spec.bits) + code)];
  }

  int64_t num_groups() const;
  int64_t words_per_row() const { return (cols * spec.bits + 31) / 32; }
  int group_of(int64_t c) const {
    return g_idx.empty() ? int(c / spec.group_cols(cols)) : g_idx[size_t(c)];
  }
  // Bilevel scales: 32-bit words holding every scale code, [rows, num_groups] packed contiguously.
  int64_t scale_code_words() const { return (rows * num_groups() * spec.scale_bits + 31) / 32; }
  int64_t num_scale_chunks() const {
    return spec.scale_bits > 0 || spec.bilevel_zeros() ? (rows + spec.scale_group_rows - 1) / spec.scale_group_rows : 0;
  }
  // Bilevel zeros: 32-bit words holding every zero code, as scale_code_words.
  int64_t zero_code_words() const { return (rows * num_groups() * spec.zero_bits + 31) / 32; }
  // Bilevel scales: quantizes scales[:, g] (every row) in place and records their codes and pairs.
  void QuantizeScaleColumn(int64_t g);
  // Bilevel zeros: the same for real_zeros[:, g].
  void QuantizeZeroColumn(int64_t g);
  // Both, as the spec asks (nothing without bilevel statistics).
  void QuantizeBilevelColumn(int64_t g) {
    if (spec.scale_bits > 0) QuantizeScaleColumn(g);
    if (spec.bilevel_zeros()) QuantizeZeroColumn(g);
  }
  // Bilevel scales / zeros: recompute `scales` / `real_zeros` from their codes and pairs (what a reader does).
  void DequantizeScales();
  void DequantizeZeros();
  // The integer zero point (not for bilevel zeros: zero_value).
  int zero_of(int64_t r, int64_t g) const {
    if (spec.symmetric) return 1 << (spec.bits - 1);
    return spec.has_mins() || spec.bilevel_zeros() ? 0 : zeros[size_t(r * num_groups() + g)];
  }
  // The zero point as the dequantization uses it: w = scale * (code - zero_value) - min.
  float zero_value(int64_t r, int64_t g) const {
    return spec.bilevel_zeros() ? real_zeros[size_t(r * num_groups() + g)] : float(zero_of(r, g));
  }
  // Outliers kept in the code slots (positions only, read with outlier_scales).
  bool in_slot_outliers() const { return !outlier_scales.empty(); }
  float min_of(int64_t r, int64_t g) const { return mins.empty() ? 0.0f : mins[size_t(r * num_groups() + g)]; }
  // K-quants: recomputes scales and mins of row r from its super_scales and codes (what a reader does).
  void ggml_k_scales(int64_t r);
  uint32_t code(int64_t r, int64_t c) const;
  void set_code(int64_t r, int64_t c, uint32_t q);

  // Allocates codes/scales/zeros for the given shape and spec (codes zeroed).
  static QuantizedTensor Allocate(int64_t rows, int64_t cols, const QuantSpec& spec);

  // Checks internal consistency (sizes, code ranges, finite scales, g_idx range,
  // CSR structure). Used on everything read from disk. Corruption naming the field.
  Status Validate() const;
  Status ValidateGgml() const;  // the ggml-grid part of Validate

  // Bytes the tensor occupies in the llmq file format (codes + scales + zeros + g_idx + outliers);
  // for a ggml type the bytes of its blocks, as in a GGUF file.
  size_t storage_bytes() const;
  double bits_per_weight() const { return rows > 0 && cols > 0 ? 8.0 * double(storage_bytes()) / double(rows * cols) : 0.0; }
};

// Reference dequantization: out must hold rows*cols floats (row-major).
LLMQ_EXPORT void dequantize(const QuantizedTensor& q, float* out);
LLMQ_EXPORT std::vector<float> dequantize(const QuantizedTensor& q);

// Packs `n` unsigned `bits`-bit values into an LSB-first word stream (see QuantizedTensor::codes).
LLMQ_EXPORT void pack_bits(const uint8_t* values, int64_t n, int bits, uint32_t* words);
LLMQ_EXPORT void unpack_bits(const uint32_t* words, int64_t n, int bits, uint8_t* values);

// Round half to even (torch.round / nearbyint in the default rounding mode).
LLMQ_EXPORT float round_half_even(float x);

}  // namespace llmq

#endif  // LLMQ_QTENSOR_H_
