// SmoothQuant scales and their folding into a norm and the linears it feeds (internal).
#ifndef LLMQ_QUANT_SMOOTHQUANT_H_
#define LLMQ_QUANT_SMOOTHQUANT_H_

#include <cstdint>
#include <vector>

namespace llmq::internal {

// A linear fed by the norm being smoothed: weight [rows, cols] row-major.
struct SmoothedLinear {
  std::vector<float>* weight;
  int64_t rows;
};

// s_j = max|X_j|^alpha / max_i |W_ij|^(1 - alpha) over every linear of the site (their weights
// concatenated), clamped to [1e-5, 1e5]; 1 where a channel never fires or has no weight.
std::vector<float> smoothing_scales(const std::vector<float>& act_absmax, const std::vector<SmoothedLinear>& linears,
                                    int64_t cols, double alpha);

// norm.weight /= s (and norm.bias /= s when present); W[:, j] *= s_j. Exact in real arithmetic:
// W' norm'(x) = W diag(s) diag(1/s) norm(x).
void fold_smoothing(const std::vector<float>& s, std::vector<float>* norm_weight, std::vector<float>* norm_bias,
                    const std::vector<SmoothedLinear>& linears);

// The same with a linear as the producer: row j of `producer` ([s.size(), producer_cols]) and its
// bias are divided by s_j. Exact when what lies between is linear in the producer's output, as
// in a gated MLP: down(silu(gate x) * up x) with up's rows / s and down's columns * s.
void fold_smoothing_into_rows(const std::vector<float>& s, std::vector<float>* producer, int64_t producer_cols,
                              std::vector<float>* producer_bias, const std::vector<SmoothedLinear>& linears);

}  // namespace llmq::internal

#endif  // LLMQ_QUANT_SMOOTHQUANT_H_
