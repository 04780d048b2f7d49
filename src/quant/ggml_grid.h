// Choosing a tensor's parameters on a ggml block type's grid (QuantSpec::ForGgml): the per-group
// (scale, min) by a least-squares search, and for K-quants the super-block's two-level scales —
// fp16 (d, dmin) per 256 columns, then each group's integer scale and min codes on that grid. The
// choice is made in two calls so that GPTQ can decide a super-block's (d, dmin) when it reaches
// the super-block and each group's codes when it reaches the group, on the error-compensated
// weights of that moment: the codes are then found against the scale that will be stored.
#ifndef LLMQ_QUANT_GGML_GRID_H_
#define LLMQ_QUANT_GGML_GRID_H_

#include <cstdint>

#include "llmq/rtn.h"

namespace llmq::internal {

// The float (scale, min) of one group of n values on the type's code grid minimizing the squared
// error, each element's weighted by wt[i] (no wt: rms(x) + |x_i|, llama.cpp's reference weighting);
// no fp16 or second-level rounding: the search rtn_group_params runs for ggml specs.
GroupParams ggml_float_params(const QuantSpec& spec, const float* x, int64_t n, const float* wt = nullptr);

// K-quants: decides super-block sb of row r from its 256 current values x and stores (d, dmin).
// wt: per-column error weights (nullptr: rms(x) + |x_i| per group). GPTQ passes nullptr: weighting
// by its Hessian diagonal instead (llama.cpp's importance matrix) measured no better (docs/GGUF.md).
void ggml_choose_super(QuantizedTensor* q, int64_t r, int64_t sb, const float* x, const float* wt);
// Decides group g of row r from its current values x (for K-quants on the stored (d, dmin) of its
// super-block), stores scale/min (and codes of the scale/min), returns the parameters to quantize with.
GroupParams ggml_choose_group(QuantizedTensor* q, int64_t r, int64_t g, const float* x, const float* wt);

// Round to nearest on the grid: every super-block and group of w [rows, cols] chosen from w itself.
Result<QuantizedTensor> quantize_rtn_ggml(const float* w, int64_t rows, int64_t cols, const QuantSpec& spec);

}  // namespace llmq::internal

#endif  // LLMQ_QUANT_GGML_GRID_H_
