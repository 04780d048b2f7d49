// Int8 activations with an outlier decomposition (docs/OUTLIERS.md).
//
// LLM.int8() (Dettmers et al., 2022, eq. 4 / §3.2): with O the outlier columns of a call,
//   Y = Σ_{c∈O} X_c W_cᵀ (16/32-bit)  +  s_x Σ_{c∉O} Xq_c (Wq_c)ᵀ (int8 x int8 -> int32),
// Xq quantized per token with the scale of the non-outlier columns only. The weights stay int8
// everywhere; the paper (and bitsandbytes) multiplies the outlier columns with the dequantized
// int8 weights, and so does this file.
//
// Integer outliers (Ghaffari et al., 2023, "Mitigating outlier activations in low-precision
// fine-tuning of language models"): the outlier values stay integers too, wider than 8 bits, and
// the wide product is tiled into int8 products so that no 16-bit integer matmul is needed. The
// paper leaves the split open; the choice here: one per-token step s for every column, the
// outliers as 15-bit integers v = round(x / s) = 128 hi + lo with hi, lo int8 (|lo| <= 64), two
// short int8 rows over the outlier columns, so
//   Y = s (Σ_{c∉O} xq_c Wq_c + 128 Σ_{c∈O} hi_c Wq_c + Σ_{c∈O} lo_c Wq_c),
// every sum int8 x int8 -> int32, exact. s = max(absmax_rest / 127, absmax_outliers / 16319):
// outliers up to 128x the rest keep the rest's step; larger ones coarsen s instead of clipping.
//
// Fixed outlier columns (found on calibration data, llm.int8 with --calib) carry their own
// weights, the paper's 16-bit W^h: the quantizer keeps them exact as sparse outliers, and they are
// multiplied in fp32, or, for integer outliers, requantized to int8 with a per-row scale of their
// own at pack time (so small outlier-column weights do not vanish in the row's int8 grid).
#include <algorithm>
#include <cmath>

#include "packed.h"

namespace llmq::kernels {

std::vector<int32_t> find_outlier_columns(const PackedWeights& w, const float* xp, int64_t n) {
  const ActivationOutlierOptions& o = w.act_outliers;
  if (!w.fixed_outlier_cols.empty()) return w.fixed_outlier_cols;
  std::vector<int32_t> cols;
  if (!(o.threshold > 0.0)) return cols;
  const float th = float(o.threshold);
  std::vector<uint8_t> flag(static_cast<size_t>(w.cols), 0);  // token by token: contiguous reads
  for (int64_t t = 0; t < n; ++t) {
    const float* xr = xp + t * w.kp;
    for (int64_t j = 0; j < w.cols; ++j) flag[size_t(j)] |= uint8_t(std::fabs(xr[j]) > th);
  }
  for (int64_t j = 0; j < w.cols; ++j)
    if (flag[size_t(j)]) cols.push_back(int32_t(j));
  return cols;
}

namespace {

// Round half to even for |v| < 2^22 (what nearbyint does in the default rounding mode): adding and
// subtracting 1.5 * 2^23 leaves the rounded value. Unlike nearbyint it needs no SSE4.1 round
// instruction, so the loops below vectorize on any x86-64 instead of calling libm per value.
inline float round_even(float v) {
  constexpr float k = 12582912.0f;
  return (v + k) - k;
}

// max |x_j| (times keep_j, 0 or 1, when given) over n values, eight running maxima.
float absmax(const float* x, const float* keep, int64_t n) {
  float m[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t j = 0;
  for (; j + 8 <= n; j += 8)
    for (int l = 0; l < 8; ++l) m[l] = std::max(m[l], std::fabs(x[j + l]) * (keep ? keep[j + l] : 1.0f));
  for (; j < n; ++j) m[0] = std::max(m[0], std::fabs(x[j]) * (keep ? keep[j] : 1.0f));
  for (int l = 1; l < 8; ++l) m[0] = std::max(m[0], m[l]);
  return m[0];
}

}  // namespace

void quantize_activations(const PackedWeights& w, const float* xp, int64_t n, const std::vector<int32_t>& ocols,
                          int8_t* xq, int32_t* xqsum, float* sx, OutlierActivations* out) {
  const int64_t kp = w.kp, ng = w.ngroups, no = int64_t(ocols.size());
  const bool integer = w.act_outliers.integer;
  std::vector<float> keep;  // 1 for the int8 row's columns, 0 for the outlier columns
  if (no > 0) {
    keep.assign(size_t(kp), 1.0f);
    for (int32_t c : ocols) keep[size_t(c)] = 0.0f;
    if (integer) {
      out->hi.assign(size_t(n * no), 0);
      out->lo.assign(size_t(n * no), 0);
    } else {
      out->x.assign(size_t(n * no), 0.0f);
    }
  }
  for (int64_t t = 0; t < n; ++t) {
    const float* xr = xp + t * kp;
    int8_t* qr = xq + t * kp;
    const float amax = absmax(xr, no > 0 ? keep.data() : nullptr, kp);
    float amax_out = 0.0f;
    for (int64_t i = 0; i < no; ++i) amax_out = std::max(amax_out, std::fabs(xr[ocols[size_t(i)]]));
    float s = amax > 0.0f ? amax / 127.0f : 1.0f;
    if (integer && amax_out > 0.0f) s = amax > 0.0f ? std::max(s, amax_out / kMaxTiled) : amax_out / kMaxTiled;
    sx[t] = s;
    // Every column as an ordinary one (|x / s| is clamped, so the outliers' slots are in range
    // too), then the outlier columns patched: no branch in the loop over the row.
    for (int64_t j = 0; j < kp; ++j) qr[j] = int8_t(std::clamp(round_even(xr[j] / s), -127.0f, 127.0f));
    for (int64_t i = 0; i < no; ++i) {
      const int64_t j = ocols[size_t(i)];
      const size_t k = size_t(t * no + i);
      if (integer) {
        const float v = std::clamp(round_even(xr[j] / s), -kMaxTiled, kMaxTiled);
        const float hi = round_even(v / 128.0f);
        out->hi[k] = int8_t(hi);
        out->lo[k] = int8_t(v - 128.0f * hi);
      } else {
        out->x[k] = xr[j];
      }
      qr[j] = 0;
    }
    for (int64_t g = 0; g < ng; ++g) {
      int32_t acc = 0;
      for (int64_t j = w.group_start[size_t(g)]; j < w.group_start[size_t(g + 1)]; ++j) acc += qr[j];
      xqsum[t * ng + g] = acc;
    }
  }
}

}  // namespace llmq::kernels
