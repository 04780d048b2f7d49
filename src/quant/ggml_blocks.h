// ggml's block formats (llama.cpp's quantized weights) as a QuantizedTensor layout: the type table,
// and the exact conversion between a tensor on a ggml grid (QuantSpec::ForGgml) and the bytes of
// its blocks. Layouts: ../shared/docs/export-formats.md §2 (ggml-common.h, ggml-quants.c).
#ifndef LLMQ_QUANT_GGML_BLOCKS_H_
#define LLMQ_QUANT_GGML_BLOCKS_H_

#include <cstdint>
#include <vector>

#include "llmq/qtensor.h"

namespace llmq::internal {

struct GgmlTypeInfo {
  GgmlType type;
  const char* name;  // "q4_0"
  int block_elems;   // 32, or 256 for K-quants
  int block_bytes;
  int bits;          // code width
  int group;         // elements sharing one (scale, min): 32 or 16
  bool has_mins;
  bool k_quant;      // two-level scales in 256-element super-blocks
  int scale_code_bits, min_code_bits;  // K-quants: width of the stored sub-block scale / min codes
};

// Every type llmq quantizes to, in ggml's id order.
const std::vector<GgmlTypeInfo>& ggml_types();
const GgmlTypeInfo& ggml_info(GgmlType t);  // t must not be kNone
int64_t ggml_row_bytes(GgmlType t, int64_t cols);

// Row r of q (on a ggml grid) as ggml blocks: ggml_row_bytes(type, cols) bytes at out.
void encode_ggml_row(const QuantizedTensor& q, int64_t r, uint8_t* out);
// The blocks of one row into row r of q (allocated for its type): codes, scales, mins and the stored
// K-quant scale codes. Exact inverse of encode_ggml_row.
void decode_ggml_row(const uint8_t* in, int64_t r, QuantizedTensor* q);
// All rows: [rows, row_bytes].
std::vector<uint8_t> encode_ggml(const QuantizedTensor& q);
// InvalidArgument when the byte count does not match; Corruption when a decoded scale is not finite.
Result<QuantizedTensor> decode_ggml(GgmlType t, int64_t rows, int64_t cols, const uint8_t* data, size_t bytes);

// The block type whose layout a spec outside the grids has, for rows of `cols` columns: symmetric
// 4-bit codes in groups of 32 are q4_0's, 8-bit ones q8_0's; kNone otherwise (and for ggml specs).
GgmlType exact_ggml_type(const QuantSpec& spec, int64_t cols);

// The ggml type whose blocks hold `q` exactly as it is (a tensor quantized outside a ggml grid,
// e.g. GPTQ w4 g32 sym is q4_0 and w8 g32 sym is q8_0: w = d * (q - 8) with an fp16 d per 32
// columns), with q's spec set to that type; InvalidArgument saying what does not fit otherwise.
Result<QuantizedTensor> as_exact_ggml(const QuantizedTensor& q);

// Independent reference: ggml's dequantize_row_* formulas applied to the bytes (for tests and for
// reading GGUF tensors), not through QuantizedTensor.
void dequantize_ggml_row(GgmlType t, const uint8_t* in, int64_t cols, float* out);

}  // namespace llmq::internal

#endif  // LLMQ_QUANT_GGML_BLOCKS_H_
