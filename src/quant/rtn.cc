// Round-to-nearest (RTN) quantization: the primitive every other method uses.
//
// Range rules follow the reference implementations (see ../shared/docs/algorithms.md §1):
// symmetric is GPTQ's flavour (scale = 2*absmax/(2^b - 1), unsigned grid centered
// on 2^(b-1)), except 8 bit which is SmoothQuant's absmax/127 with a -127..127 grid;
// asymmetric is AWQ's min/max flavour (the range is not forced to contain 0).
// Rounding is half-to-even, as torch.round.
#include <algorithm>
#include <cfenv>
#include <cmath>

#include "llmq/float16.h"
#include "llmq/quant.h"
#include "quant/ggml_grid.h"

namespace llmq {
namespace {

float round_scale(float s, const QuantSpec& spec) {
  return spec.scale_dtype == ScaleDType::kF16 ? round_to_fp16(s) : s;
}

// Parameters for the range [lo, hi] (lo <= 0 <= hi not required for asym).
GroupParams params_for_range(float lo, float hi, const QuantSpec& spec) {
  GroupParams p;
  const int maxq = (1 << spec.bits) - 1;
  if (spec.symmetric) {
    const float amax = std::max(std::fabs(lo), std::fabs(hi));
    p.zero = 1 << (spec.bits - 1);
    const float s = spec.bits == 8 ? amax / 127.0f : 2.0f * amax / float(maxq);
    p.scale = round_scale(s, spec);
  } else {
    p.scale = round_scale((hi - lo) / float(maxq), spec);
    if (p.scale > 0.0f && std::isfinite(p.scale)) {
      if (spec.bilevel_zeros()) p.real_zero = -lo / p.scale;  // SpQR's round_zero=False
      else p.zero = int(std::clamp(round_half_even(-lo / p.scale), 0.0f, float(maxq)));
    }
  }
  // A constant-zero group (or one whose scale underflowed in fp16) must still dequantize
  // exactly: scale 1 with codes equal to the zero point gives 0.
  if (!(p.scale > 0.0f) || !std::isfinite(p.scale)) {
    p.scale = 1.0f;
    if (!spec.symmetric) p.zero = 0, p.real_zero = 0.0f;
  }
  return p;
}

}  // namespace


uint32_t rtn_quantize_value(float x, const GroupParams& p, const QuantSpec& spec) {
  const int maxq = (1 << spec.bits) - 1;
  // 8-bit symmetric grid is -127..127 (q8_0 blocks also store -128)
  const int minq = (spec.symmetric && spec.bits == 8 && !spec.is_ggml()) ? 1 : 0;
  if (p.scale == 0.0f) return uint32_t(std::clamp(p.zero, minq, maxq));  // a ggml block of zeros
  if (p.real_zero != 0.0f) return uint32_t(std::clamp(round_half_even(x / p.scale + p.real_zero), 0.0f, float(maxq)));
  const float q = round_half_even((p.min == 0.0f ? x : x + p.min) / p.scale) + float(p.zero);
  return uint32_t(std::clamp(q, float(minq), float(maxq)));
}

GroupParams rtn_group_params(const float* x, int64_t n, const QuantSpec& spec) {
  if (spec.is_ggml()) return internal::ggml_float_params(spec, x, n);
  float lo = 0.0f, hi = 0.0f;
  if (n > 0) {
    lo = hi = x[0];
    for (int64_t i = 1; i < n; ++i) {
      lo = std::min(lo, x[i]);
      hi = std::max(hi, x[i]);
    }
  }
  if (!spec.mse_search || (lo == 0.0f && hi == 0.0f)) return params_for_range(lo, hi, spec);
  // MSE grid search over shrunk ranges (GPTQ quant.py: grid 100, maxshrink 0.8, norm 2.4).
  GroupParams best = params_for_range(lo, hi, spec);
  double best_err = INFINITY;
  for (int i = 0; i < 80; ++i) {
    const float p = 1.0f - float(i) / 100.0f;
    const GroupParams cand = params_for_range(p * lo, p * hi, spec);
    double err = 0.0;
    for (int64_t k = 0; k < n; ++k) {
      const float dq = dequantize_value(rtn_quantize_value(x[k], cand, spec), cand);
      err += std::pow(std::fabs(double(dq) - double(x[k])), 2.4);
    }
    if (err < best_err) {
      best_err = err;
      best = cand;
    }
  }
  return best;
}

Result<QuantizedTensor> quantize_rtn(const float* w, int64_t rows, int64_t cols, const QuantSpec& spec) {
  LLMQ_RETURN_IF_ERROR(spec.Validate());
  if (spec.lookup) return Status::InvalidArgument("RTN cannot write lookup codes (BiLLM's layout: billm_quantize)");
  if (rows <= 0 || cols <= 0) return Status::InvalidArgument("cannot quantize an empty matrix");
  for (int64_t i = 0; i < rows * cols; ++i)
    if (!std::isfinite(w[i]))
      return Status::InvalidArgument("non-finite value " + std::to_string(w[i]) + " at row " +
                                     std::to_string(i / cols) + ", column " + std::to_string(i % cols));
  if (spec.is_ggml()) return internal::quantize_rtn_ggml(w, rows, cols, spec);
  QuantizedTensor q = QuantizedTensor::Allocate(rows, cols, spec);
  const int64_t g = spec.group_cols(cols), ng = spec.num_groups(cols);
  std::vector<GroupParams> params(static_cast<size_t>(rows * ng));
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t k = 0; k < ng; ++k) {
      const int64_t c0 = k * g, c1 = std::min(cols, c0 + g);
      const GroupParams p = rtn_group_params(w + r * cols + c0, c1 - c0, spec);
      params[size_t(r * ng + k)] = p;
      q.scales[size_t(r * ng + k)] = p.scale;
      if (spec.bilevel_zeros()) q.real_zeros[size_t(r * ng + k)] = p.real_zero;
      else if (!spec.symmetric) q.zeros[size_t(r * ng + k)] = uint8_t(p.zero);
    }
  // Bilevel: the codes are found with the scales (and zeros) as they will be stored.
  for (int64_t k = 0; k < ng; ++k) q.QuantizeBilevelColumn(k);
  for (size_t i = 0; i < params.size() && (spec.scale_bits > 0 || spec.bilevel_zeros()); ++i) {
    params[i].scale = q.scales[i];
    if (spec.bilevel_zeros()) params[i].real_zero = q.real_zeros[i];
  }
  std::vector<uint8_t> row_codes(static_cast<size_t>(cols));
#pragma omp parallel for schedule(static) firstprivate(row_codes)
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = w + r * cols;
    for (int64_t k = 0; k < ng; ++k) {
      const int64_t c0 = k * g, c1 = std::min(cols, c0 + g);
      const GroupParams& p = params[size_t(r * ng + k)];
      for (int64_t c = c0; c < c1; ++c) row_codes[size_t(c)] = uint8_t(rtn_quantize_value(row[c], p, spec));
    }
    pack_bits(row_codes.data(), cols, spec.bits, q.codes.data() + r * q.words_per_row());
  }
  return q;
}

double relative_error(const float* w, const QuantizedTensor& q) {
  const std::vector<float> d = dequantize(q);
  double num = 0.0, den = 0.0;
  for (size_t i = 0; i < d.size(); ++i) {
    const double e = double(w[i]) - double(d[i]);
    num += e * e;
    den += double(w[i]) * double(w[i]);
  }
  return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

}  // namespace llmq
