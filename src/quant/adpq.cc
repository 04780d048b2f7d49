// AdpQ (Ghaffari et al., arXiv 2405.13358): adaptive-LASSO soft-thresholding with identity
// design and pilot estimate w,
//   beta_j = sign(w_j) (|w_j| - lambda / |w_j|^gamma)_+ ,   outlier_j <=> beta_j != 0 <=> |w_j|^(1+gamma) > lambda,
// so for one lambda per scope the outliers are the largest |w| there; a target share picks the
// lambda whose split has that share (the top ceil(share * n) values, nth_element instead of the
// replication's root search; algorithms.md §7.2). The rest is RTN on its own (narrower) range; the
// outliers keep their code slots with a second scale per group from their own range (§7.3: the
// replication's s1, which the paper's accounting implies), or go to the sparse part in fp16.
// Zero-shot, O(n), no calibration data.
#include "llmq/adpq.h"

#include <algorithm>
#include <cmath>

#include "llmq/float16.h"
#include "llmq/rtn.h"

namespace llmq {
namespace {

// Marks the outliers among the weights of one unit (rows [r0, r1) x columns [c0, c1)).
void select_outliers(const float* w, int64_t cols, int64_t r0, int64_t r1, int64_t c0, int64_t c1,
                     const AdpqOptions& o, uint8_t* mask) {
  if (o.lambda > 0.0) {
    for (int64_t r = r0; r < r1; ++r)
      for (int64_t c = c0; c < c1; ++c)
        mask[r * cols + c] = std::pow(double(std::fabs(w[r * cols + c])), 1.0 + o.gamma) > o.lambda;
    return;
  }
  const int64_t n = (r1 - r0) * (c1 - c0);
  const int64_t k = std::min<int64_t>(n, int64_t(std::ceil(o.outlier_fraction * double(n) - 1e-9)));
  if (k <= 0) return;
  std::vector<float> a;
  a.reserve(size_t(n));
  for (int64_t r = r0; r < r1; ++r)
    for (int64_t c = c0; c < c1; ++c) a.push_back(std::fabs(w[r * cols + c]));
  std::nth_element(a.begin(), a.begin() + (n - k), a.end());
  const float v = a[size_t(n - k)];  // the k-th largest |w|
  int64_t above = 0;
  for (float x : a) above += x > v;
  int64_t ties = k - above;  // values equal to v, taken in index order
  for (int64_t r = r0; r < r1; ++r)
    for (int64_t c = c0; c < c1; ++c) {
      const float x = std::fabs(w[r * cols + c]);
      if (x > v || (x == v && ties-- > 0)) mask[r * cols + c] = 1;
    }
}

// The outliers of each (row, group) in their own code slots: the second scale s1 is the smallest
// that keeps them within the code range around the group's zero point (symmetric: s1 = absmax /
// 2^(bits-1), or / 127 at 8 bits, as RTN's range rule), fp16-rounded; s1 = 0 where a group has none.
void store_in_slots(const float* w, const std::vector<uint8_t>& mask, QuantizedTensor* q) {
  const int64_t rows = q->rows, cols = q->cols, ng = q->num_groups();
  const QuantSpec& spec = q->spec;
  const int maxq = (1 << spec.bits) - 1, minq = spec.symmetric && spec.bits == 8 ? 1 : 0;
  q->outlier_scales.assign(size_t(rows * ng), 0.0f);
  std::vector<float> pos(static_cast<size_t>(ng)), neg(static_cast<size_t>(ng));
  for (int64_t r = 0; r < rows; ++r) {
    std::fill(pos.begin(), pos.end(), 0.0f);
    std::fill(neg.begin(), neg.end(), 0.0f);
    for (int64_t c = 0; c < cols; ++c)
      if (mask[size_t(r * cols + c)]) {
        const float x = w[r * cols + c];
        float& m = x >= 0.0f ? pos[size_t(q->group_of(c))] : neg[size_t(q->group_of(c))];
        m = std::max(m, std::fabs(x));
      }
    for (int64_t g = 0; g < ng; ++g) {
      const float z = q->zero_value(r, g);
      // Room on each side of the zero point, in steps (an asymmetric zero can sit at an end).
      const float up = float(maxq) - z, down = z - float(minq);
      float s = 0.0f;
      if (pos[size_t(g)] > 0.0f) s = up > 0.0f ? pos[size_t(g)] / up : INFINITY;
      if (neg[size_t(g)] > 0.0f) s = std::max(s, down > 0.0f ? neg[size_t(g)] / down : INFINITY);
      if (!std::isfinite(s)) s = std::max(pos[size_t(g)], neg[size_t(g)]);  // one side only: the far end clamps
      q->outlier_scales[size_t(r * ng + g)] = round_to_fp16(s);
    }
  }
  SparseOutliers& o = q->outliers;
  o.row_ptr.assign(size_t(rows + 1), 0);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) {
      if (!mask[size_t(r * cols + c)]) continue;
      o.col_idx.push_back(int32_t(c));
      const int64_t g = q->group_of(c);
      GroupParams p;
      p.scale = q->outlier_scales[size_t(r * ng + g)];
      p.zero = q->zero_of(r, g);
      p.real_zero = spec.bilevel_zeros() ? q->zero_value(r, g) : 0.0f;
      uint32_t code = p.scale > 0.0f ? rtn_quantize_value(w[r * cols + c], p, spec) : uint32_t(p.zero);
      q->set_code(r, c, code);
    }
    o.row_ptr[size_t(r + 1)] = int32_t(o.col_idx.size());
  }
}

}  // namespace

Result<QuantizedTensor> quantize_adpq(const float* w, int64_t rows, int64_t cols, const QuantSpec& spec,
                                      const AdpqOptions& options) {
  LLMQ_RETURN_IF_ERROR(spec.Validate());
  if (spec.lookup) return Status::InvalidArgument("AdpQ cannot write lookup codes (BiLLM's layout: billm_quantize)");
  if (!(options.outlier_fraction >= 0.0 && options.outlier_fraction < 1.0))
    return Status::InvalidArgument("adpq outlier fraction must be in [0, 1)");
  if (!(options.gamma >= 0.0) || !(options.lambda >= 0.0) || !std::isfinite(options.lambda))
    return Status::InvalidArgument("adpq gamma and lambda must be finite and non-negative");
  for (int64_t i = 0; i < rows * cols; ++i)
    if (!std::isfinite(w[i]))
      return Status::InvalidArgument("non-finite weight at row " + std::to_string(i / cols) + ", column " +
                                     std::to_string(i % cols));
  std::vector<uint8_t> mask(size_t(rows * cols), 0);
  const int64_t g = spec.group_cols(cols), ng = spec.num_groups(cols);
  if (options.scope == AdpqScope::kTensor) {
    select_outliers(w, cols, 0, rows, 0, cols, options, mask.data());
  } else {
    const int64_t per_row = options.scope == AdpqScope::kRow ? 1 : ng;
#pragma omp parallel for schedule(static)
    for (int64_t u = 0; u < rows * per_row; ++u) {
      const int64_t r = u / per_row, c0 = per_row == 1 ? 0 : (u % per_row) * g;
      const int64_t c1 = per_row == 1 ? cols : std::min(cols, c0 + g);
      select_outliers(w, cols, r, r + 1, c0, c1, options, mask.data());
    }
  }
  // The dense part: the weights with the outliers zeroed, so they do not widen the groups' ranges.
  std::vector<float> dense(w, w + rows * cols);
  for (size_t i = 0; i < dense.size(); ++i)
    if (mask[i]) dense[i] = 0.0f;
  LLMQ_ASSIGN_OR_RETURN(QuantizedTensor q, quantize_rtn(dense.data(), rows, cols, spec));
  if (std::find(mask.begin(), mask.end(), 1) == mask.end()) return q;
  if (options.storage == AdpqStorage::kInSlot) {
    store_in_slots(w, mask, &q);
    return q;
  }
  dequantize(q, dense.data());
  SparseOutliers& o = q.outliers;
  o.row_ptr.assign(size_t(rows + 1), 0);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c)
      if (mask[size_t(r * cols + c)]) {
        o.col_idx.push_back(int32_t(c));
        o.values.push_back(float_to_fp16(w[r * cols + c] - dense[size_t(r * cols + c)]));
      }
    o.row_ptr[size_t(r + 1)] = int32_t(o.col_idx.size());
  }
  return q;
}

}  // namespace llmq
