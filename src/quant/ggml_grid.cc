// Parameters on ggml's block grids (see ggml_grid.h). The search is the one llama.cpp's reference
// quantizers use in spirit (ggml-quants.c make_qx_quants / make_qkx2_quants): try a few inverse
// scales around the range's, quantize, refit (scale, min) by least squares on the codes found,
// keep the smallest weighted squared error (weights rms(x) + |x_i|, as llama.cpp's K reference
// quantizers). Written from the idea, not the code.
#include "quant/ggml_grid.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "llmq/float16.h"
#include "quant/ggml_blocks.h"

namespace llmq::internal {
namespace {

// Squared error of the group on these parameters, each element weighted by wt[i] (1 without weights).
double group_error(const float* x, const float* wt, int64_t n, const GroupParams& p, const QuantSpec& spec) {
  double e = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    const double d = double(dequantize_value(rtn_quantize_value(x[i], p, spec), p)) - double(x[i]);
    e += (wt ? double(wt[i]) : 1.0) * d * d;
  }
  return e;
}

// Symmetric grids: v = s * l with integer l in [-z, z - 1].
GroupParams float_params_sym(const float* x, const float* wt, int64_t n, int z, const QuantSpec& spec) {
  GroupParams best;
  best.zero = z;
  best.scale = 0.0f;
  float xm = 0.0f;
  for (int64_t i = 0; i < n; ++i)
    if (std::fabs(x[i]) > std::fabs(xm)) xm = x[i];
  if (xm == 0.0f) return best;
  double best_err = INFINITY;
  // The largest value on the extra negative level (-z), or on the top positive level (z - 1).
  for (const float levels : {-float(z), float(z - 1)}) {
    if (levels == 0.0f) continue;
    for (int k = -9; k <= 9; ++k) {
      const float lv = levels + (levels < 0 ? -0.1f : 0.1f) * float(k);
      if (lv * levels <= 0.0f) continue;
      const float iscale = lv / xm;
      double sxl = 0.0, sll = 0.0;
      for (int64_t i = 0; i < n; ++i) {
        const float l = std::clamp(round_half_even(x[i] * iscale), -float(z), float(z - 1));
        const double wi = wt ? double(wt[i]) : 1.0;
        sxl += wi * double(x[i]) * l;
        sll += wi * double(l) * l;
      }
      if (sll <= 0.0) continue;
      GroupParams cand = best;
      cand.scale = float(sxl / sll);
      if (!(cand.scale != 0.0f) || !std::isfinite(cand.scale)) continue;
      const double e = group_error(x, wt, n, cand, spec);
      if (e < best_err) {
        best_err = e;
        best = cand;
      }
    }
  }
  if (!std::isfinite(best_err)) best.scale = xm / -float(z);
  return best;
}

// Grids with a min: v = s * l - m with integer l in [0, maxq]; K-quants need m >= 0.
GroupParams float_params_min(const float* x, const float* wt, int64_t n, int maxq, bool min_nonnegative,
                             const QuantSpec& spec) {
  float lo = x[0], hi = x[0];
  for (int64_t i = 1; i < n; ++i) {
    lo = std::min(lo, x[i]);
    hi = std::max(hi, x[i]);
  }
  if (min_nonnegative) lo = std::min(lo, 0.0f);
  GroupParams best;
  best.zero = 0;
  best.min = -lo;
  best.scale = 0.0f;
  if (hi == lo) return best;
  best.scale = (hi - lo) / float(maxq);
  double best_err = group_error(x, wt, n, best, spec);
  for (int k = 0; k <= 20; ++k) {
    const float iscale = (float(maxq) - 1.0f + 0.1f * float(k)) / (hi - lo);
    double sw = 0, sl = 0, sll = 0, sx = 0, sxl = 0;  // weighted least squares x ~ s * l + b
    for (int64_t i = 0; i < n; ++i) {
      const float l = std::clamp(round_half_even((x[i] - lo) * iscale), 0.0f, float(maxq));
      const double wi = wt ? double(wt[i]) : 1.0;
      sw += wi;
      sl += wi * l;
      sll += wi * double(l) * l;
      sx += wi * x[i];
      sxl += wi * double(x[i]) * l;
    }
    const double det = sw * sll - sl * sl;
    if (!(det > 0.0)) continue;
    double s = (sw * sxl - sl * sx) / det, b = (sll * sx - sl * sxl) / det;
    if (min_nonnegative && b > 0.0) {
      b = 0.0;
      s = sxl / sll;
    }
    if (!(s > 0.0) || !std::isfinite(s) || !std::isfinite(b)) continue;
    GroupParams cand;
    cand.scale = float(s);
    cand.min = float(-b);
    const double e = group_error(x, wt, n, cand, spec);
    if (e < best_err) {
      best_err = e;
      best = cand;
    }
  }
  return best;
}

// The stored scale of a K-quant group as a signed integer, from its stored code.
int scale_value(GgmlType t, uint8_t code) {
  if (t == GgmlType::kQ3_K) return int(code) - 32;
  if (t == GgmlType::kQ6_K) return int(int8_t(code));
  return code;
}
uint8_t scale_code(GgmlType t, int v) {
  if (t == GgmlType::kQ3_K) return uint8_t(v + 32);
  return uint8_t(int8_t(v));
}
// The range of the stored sub-block scale values.
void scale_range(const GgmlTypeInfo& info, int* lo, int* hi) {
  if (info.type == GgmlType::kQ3_K) *lo = -32, *hi = 31;
  else if (info.type == GgmlType::kQ6_K) *lo = -128, *hi = 127;
  else *lo = 0, *hi = (1 << info.scale_code_bits) - 1;
}

}  // namespace

// Without explicit weights the search weights each value's squared error by rms(x) + |x_i|, as
// llama.cpp's reference K-quantizers do: large weights are kept more exactly. Measured on
// stories5M (docs/RESULTS.md, GGUF): better for RTN and for GPTQ on q4_0, q4_k_m and q2_k.
static std::vector<float> magnitude_weights(const float* x, int64_t n) {
  double ss = 0;
  for (int64_t i = 0; i < n; ++i) ss += double(x[i]) * x[i];
  const float av = float(std::sqrt(ss / double(std::max<int64_t>(n, 1))));
  std::vector<float> w(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) w[size_t(i)] = av + std::fabs(x[i]);
  return w;
}
GroupParams ggml_float_params(const QuantSpec& spec, const float* x, int64_t n, const float* wt) {
  const auto& info = ggml_info(spec.ggml_type);
  std::vector<float> mw;
  if (wt == nullptr && n > 0) {
    mw = magnitude_weights(x, n);
    wt = mw.data();
  }
  if (n <= 0) return GroupParams{0.0f, info.has_mins ? 0 : 1 << (info.bits - 1), 0.0f};
  if (info.has_mins) return float_params_min(x, wt, n, (1 << info.bits) - 1, info.k_quant, spec);
  return float_params_sym(x, wt, n, 1 << (info.bits - 1), spec);
}

void ggml_choose_super(QuantizedTensor* q, int64_t r, int64_t sb, const float* x, const float* wt) {
  const auto& info = ggml_info(q->spec.ggml_type);
  const int per = 256 / info.group;
  float smax = 0.0f, mmax = 0.0f;  // the scale of largest magnitude (signed), the largest min
  for (int k = 0; k < per; ++k) {
    const GroupParams p = ggml_float_params(q->spec, x + k * info.group, info.group, wt ? wt + k * info.group : nullptr);
    if (std::fabs(p.scale) > std::fabs(smax)) smax = p.scale;
    mmax = std::max(mmax, p.min);
  }
  int lo, hi;
  scale_range(info, &lo, &hi);
  // Signed codes put the largest-magnitude scale on the negative end (one more level there).
  const float d = lo < 0 ? smax / float(lo) : smax / float(hi);
  const float dmin = info.has_mins ? mmax / float((1 << info.min_code_bits) - 1) : 0.0f;
  uint16_t* s = q->super_scales.data() + (r * (q->cols / 256) + sb) * 2;
  s[0] = float_to_fp16(d);
  s[1] = float_to_fp16(dmin);
}

GroupParams ggml_choose_group(QuantizedTensor* q, int64_t r, int64_t g, const float* x, const float* wt) {
  const auto& info = ggml_info(q->spec.ggml_type);
  const QuantSpec& spec = q->spec;
  const size_t gi = size_t(r * q->num_groups() + g);
  std::vector<float> mw;
  if (wt == nullptr) {
    mw = magnitude_weights(x, info.group);
    wt = mw.data();
  }
  GroupParams best = ggml_float_params(spec, x, info.group, wt);
  if (!info.k_quant) {  // one fp16 d (and m) per block
    best.scale = round_to_fp16(best.scale);
    best.min = round_to_fp16(best.min);
    if (!std::isfinite(best.scale) || !std::isfinite(best.min)) best = GroupParams{0.0f, best.zero, 0.0f};
    q->scales[gi] = best.scale;
    if (info.has_mins) q->mins[gi] = best.min;
    return best;
  }
  const int per = 256 / info.group;
  const uint16_t* s = q->super_scales.data() + (r * (q->cols / 256) + g / per) * 2;
  const float d = fp16_to_float(s[0]), dmin = fp16_to_float(s[1]);
  int lo, hi;
  scale_range(info, &lo, &hi);
  const int mmax = info.has_mins ? (1 << info.min_code_bits) - 1 : 0;
  // Candidate codes around the ideal ones; the pair with the smallest error on these values wins.
  auto around = [](float v, int a, int b) {
    const int f = int(std::floor(v));
    std::vector<int> c;
    for (int k = f - 1; k <= f + 2; ++k) {
      const int kc = std::clamp(k, a, b);
      if (std::find(c.begin(), c.end(), kc) == c.end()) c.push_back(kc);
    }
    return c;
  };
  const std::vector<int> sc = d != 0.0f && std::isfinite(best.scale / d) ? around(best.scale / d, lo, hi) : std::vector<int>{0};
  const std::vector<int> mc =
      info.has_mins && dmin != 0.0f && std::isfinite(best.min / dmin) ? around(best.min / dmin, 0, mmax) : std::vector<int>{0};
  double best_err = INFINITY;
  int best_sc = 0, best_mc = 0;
  for (int a : sc)
    for (int b : mc) {
      GroupParams p;
      p.zero = info.has_mins ? 0 : 1 << (info.bits - 1);
      p.scale = d * float(a);  // exactly as ggml_k_scales computes it
      p.min = info.has_mins ? dmin * float(b) : 0.0f;
      const double e = group_error(x, wt, info.group, p, spec);
      if (e < best_err) {
        best_err = e;
        best_sc = a;
        best_mc = b;
      }
    }
  q->scale_codes[gi] = scale_code(info.type, best_sc);
  if (info.has_mins) q->min_codes[gi] = uint8_t(best_mc);
  // The effective values, through the one function readers use.
  const float sval = d * float(scale_value(info.type, q->scale_codes[gi]));
  q->scales[gi] = sval;
  GroupParams p;
  p.zero = info.has_mins ? 0 : 1 << (info.bits - 1);
  p.scale = sval;
  if (info.has_mins) {
    p.min = dmin * float(q->min_codes[gi]);
    q->mins[gi] = p.min;
  }
  return p;
}

Result<QuantizedTensor> quantize_rtn_ggml(const float* w, int64_t rows, int64_t cols, const QuantSpec& spec) {
  const auto& info = ggml_info(spec.ggml_type);
  if (cols % info.block_elems != 0)
    return Status::InvalidArgument(std::string(info.name) + " needs rows of a multiple of " +
                                   std::to_string(info.block_elems) + " columns (this tensor has " +
                                   std::to_string(cols) + ")");
  QuantizedTensor q = QuantizedTensor::Allocate(rows, cols, spec);
  const int64_t ng = q.num_groups();
  std::vector<uint8_t> codes(static_cast<size_t>(cols));
#pragma omp parallel for schedule(static) firstprivate(codes)
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = w + r * cols;
    for (int64_t g = 0; g < ng; ++g) {
      const int64_t c0 = g * info.group;
      if (info.k_quant && c0 % 256 == 0) ggml_choose_super(&q, r, c0 / 256, row + c0, nullptr);
      const GroupParams p = ggml_choose_group(&q, r, g, row + c0, nullptr);
      for (int64_t c = c0; c < c0 + info.group; ++c) codes[size_t(c)] = uint8_t(rtn_quantize_value(row[c], p, spec));
    }
    pack_bits(codes.data(), cols, spec.bits, q.codes.data() + r * q.words_per_row());
  }
  return q;
}

}  // namespace llmq::internal
