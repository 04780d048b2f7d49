// SmoothQuant (Xiao, Lin, Seznec, Wu, Demouth, Han, "SmoothQuant: Accurate and Efficient
// Post-Training Quantization for Large Language Models", ICML 2023), eq. (4):
//   s_j = max(|X_j|)^alpha / max(|W_j|)^(1 - alpha),   Y = (X diag(s)^-1) (diag(s) W)
// The activation outliers of channel j are divided by s_j (folded into the preceding norm) and
// the weights' input channel j multiplied by it, so both quantize well to int8
// (../shared/docs/algorithms.md §4).
#include "quant/smoothquant.h"

#include <algorithm>
#include <cmath>

namespace llmq::internal {

std::vector<float> smoothing_scales(const std::vector<float>& act_absmax, const std::vector<SmoothedLinear>& linears,
                                    int64_t cols, double alpha) {
  std::vector<float> wmax(static_cast<size_t>(cols), 0.0f);
  for (const SmoothedLinear& l : linears)
    for (int64_t r = 0; r < l.rows; ++r)
      for (int64_t j = 0; j < cols; ++j)
        wmax[size_t(j)] = std::max(wmax[size_t(j)], std::fabs((*l.weight)[size_t(r * cols + j)]));
  std::vector<float> s(static_cast<size_t>(cols), 1.0f);
  for (int64_t j = 0; j < cols; ++j) {
    const double a = act_absmax[size_t(j)], w = wmax[size_t(j)];
    if (a > 0.0 && w > 0.0) s[size_t(j)] = float(std::clamp(std::pow(a, alpha) / std::pow(w, 1.0 - alpha), 1e-5, 1e5));
  }
  return s;
}

void fold_smoothing_into_rows(const std::vector<float>& s, std::vector<float>* producer, int64_t producer_cols,
                              std::vector<float>* producer_bias, const std::vector<SmoothedLinear>& linears) {
  const int64_t cols = int64_t(s.size());
  for (int64_t j = 0; j < cols; ++j) {
    for (int64_t k = 0; k < producer_cols; ++k) (*producer)[size_t(j * producer_cols + k)] /= s[size_t(j)];
    if (producer_bias != nullptr && !producer_bias->empty()) (*producer_bias)[size_t(j)] /= s[size_t(j)];
  }
  for (const SmoothedLinear& l : linears)
    for (int64_t r = 0; r < l.rows; ++r)
      for (int64_t j = 0; j < cols; ++j) (*l.weight)[size_t(r * cols + j)] *= s[size_t(j)];
}

void fold_smoothing(const std::vector<float>& s, std::vector<float>* norm_weight, std::vector<float>* norm_bias,
                    const std::vector<SmoothedLinear>& linears) {
  fold_smoothing_into_rows(s, norm_weight, 1, norm_bias, linears);  // a norm is a producer with one column
}

}  // namespace llmq::internal
