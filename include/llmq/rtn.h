// Round to nearest (RTN): the range rules every method builds on, and the RTN quantizer itself.
#ifndef LLMQ_RTN_H_
#define LLMQ_RTN_H_

#include <cstdint>

#include "llmq/export.h"
#include "llmq/qtensor.h"
#include "llmq/status.h"

namespace llmq {

// Per-group quantization parameters as produced by the RTN range rules.
struct LLMQ_EXPORT GroupParams {
  float scale = 1.0f;  // already rounded to the spec's scale dtype
  int zero = 0;        // integer zero point (2^(bits-1) when symmetric)
  float min = 0.0f;    // ggml types with mins: w = scale * (code - zero) - min (zero is then 0)
  float real_zero = 0.0f;  // bilevel zeros (spec.zero_bits): the continuous zero point (zero is then 0)
};

// The value a code stands for: scale * (code - zero - real_zero) - min.
inline float dequantize_value(uint32_t code, const GroupParams& p) {
  const float v = p.scale * (float(int(code) - p.zero) - p.real_zero);
  return p.min == 0.0f ? v : v - p.min;
}

// The RTN range rule for one group of values:
//  symmetric, bits < 8: scale = 2*absmax / (2^bits - 1), zero = 2^(bits-1)  -> grid -2^(b-1)..2^(b-1)-1
//                       (GPTQ's flavour: for 4 bit, codes -8..7 after removing the zero)
//  symmetric, bits = 8: scale = absmax / 127, zero = 128                      -> grid -127..127
//  asymmetric:          scale = (max - min) / (2^bits - 1), zero = clamp(round(-min/scale), 0, 2^bits - 1);
//                       with bilevel zeros (spec.zero_bits > 0) real_zero = -min/scale, not rounded (SpQR)
// A group of zeros gets scale 1 (so that it dequantizes to exactly 0).
// With spec.mse_search, the range is shrunk by p = 1 - i/100, i < 80, keeping the p with the
// smallest sum |q(x) - x|^2.4.
LLMQ_EXPORT GroupParams rtn_group_params(const float* x, int64_t n, const QuantSpec& spec);
// On a ggml grid (spec.ggml_type): the float (scale, min) of the group on the type's grid found by a
// least-squares search; K-quants' second level (super-block d, dmin) is not applied here.
// Quantizes one value with the given parameters: clamp(round((x + min)/scale) + zero, qmin, 2^bits - 1),
// or clamp(round(x/scale + real_zero), 0, 2^bits - 1) with a real zero.
LLMQ_EXPORT uint32_t rtn_quantize_value(float x, const GroupParams& p, const QuantSpec& spec);

// Round-to-nearest quantization of a [rows, cols] fp32 matrix (row-major).
// InvalidArgument for a bad spec or a non-finite value (the message gives the row and column).
LLMQ_EXPORT Result<QuantizedTensor> quantize_rtn(const float* w, int64_t rows, int64_t cols, const QuantSpec& spec);

// ||W - deq(Q)||_F / ||W||_F.
LLMQ_EXPORT double relative_error(const float* w, const QuantizedTensor& q);

}  // namespace llmq

#endif  // LLMQ_RTN_H_
