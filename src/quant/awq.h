// AWQ: per-channel scales searched on calibration activations and folded into the model,
// plus the clip search (internal; see awq.cc for the paper and the equations).
#ifndef LLMQ_QUANT_AWQ_H_
#define LLMQ_QUANT_AWQ_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "llmq/gptq.h"
#include "llmq/model.h"
#include "llmq/quant.h"
#include "llmq/quantize.h"

namespace llmq::internal {

// mean over tokens of |x_j|; x is [tokens, cols] row-major.
std::vector<float> mean_abs_per_column(const float* x, int64_t tokens, int64_t cols);

// AutoAWQ's weight statistic over the concatenated rows of `weights` (each [rows_i, cols]):
// mean over rows of |w_ij| / max|w| of the group (of `group` columns) holding w_ij.
std::vector<float> awq_weight_mean(const std::vector<std::pair<const float*, int64_t>>& weights, int64_t cols,
                                   int64_t group);

// The candidate scales for one alpha: x_mean^a / (w_mean^(1-a) + 1e-4) (w_mean null: x_mean^a),
// clamped below at 1e-4 and divided by sqrt(max * min).
std::vector<float> awq_scales(const std::vector<float>& x_mean, const std::vector<float>* w_mean, double alpha);

// deq(Q(W diag(s))) diag(s)^-1 with the spec's RTN: what the scaled layer computes after quantization.
Result<std::vector<float>> fake_quantize_scaled(const float* w, int64_t rows, int64_t cols, const std::vector<float>& s,
                                                const QuantSpec& spec);

// mean over tokens and rows of (x (deq(Q(W diag s)) diag(s)^-1 - W)^T)^2 over all `weights`
// (each [rows_i, cols]): the loss of a site inspected at its linears. Computed from the inputs'
// H = 2/T sum x x^T (HessianAccumulator) as trace(D H D^T) / (2 rows), D the weight error: the
// inputs' Gram matrix once instead of a [tokens, rows] product per candidate.
Result<double> linear_output_mse(const std::vector<float>& hessian, int64_t cols,
                                 const std::vector<std::pair<const float*, int64_t>>& weights,
                                 const std::vector<float>& s, const QuantSpec& spec);

struct AwqSiteResult {
  double alpha = 0.0, loss = 0.0, loss_unscaled = 0.0;
  std::vector<float> scales;
};

// The grid search of one site: loss({}) (no scaling), then loss(s) for s = expand(awq_scales(
// x_mean, w_mean, i / grid)), i = 0 .. grid-1; the first smallest loss wins.
using AwqLoss = std::function<Result<double>(const std::vector<float>& s)>;
Result<AwqSiteResult> awq_search_scales(const std::vector<float>& x_mean, const std::vector<float>* w_mean, int grid,
                                        const AwqLoss& loss,
                                        const std::function<std::vector<float>(std::vector<float>)>& expand = nullptr);

// Clip search on w [rows, cols] given inputs x [tokens, cols]: per (row, group) the clamp
// max_val = absmax * (1 - i/clip_grid), i < max_shrink * clip_grid, minimizing
// mean over tokens of (sum_{k in group} x_k (q(clamp(w))_k - w_k))^2. w is clamped in place.
// Returns the mean of 1 - max_val/absmax over (row, group).
double awq_clip(float* w, int64_t rows, int64_t cols, const float* x, int64_t tokens, const QuantSpec& spec,
                const AwqOptions& options);

// One scaling site: the op in front (a norm or a linear) and the linears whose inputs it feeds.
struct AwqSite {
  std::string prev;                 // norm name ("...input_layernorm") or linear module
  bool prev_is_norm = true;
  std::vector<LinearInfo> linears;  // scaled by s on their input channels
  int inspect = -1;                 // -1: the linears themselves; else a Model::BlockPart
  int64_t kv_tie = 0;               // > 0: scales tied over the query heads of a kv channel (GQA v -> o)
};

// The sites of one block (algorithms.md §3.2): norm -> q,k,v (attention inspected); v -> o;
// norm -> gate,up (MLP inspected) and up -> down (Llama), or norm -> fc1 and fc1 -> fc2 (OPT).
// Post-LN OPT has no norm in front of its linears: only the linear -> linear sites.
std::vector<AwqSite> awq_sites(const ModelConfig& cfg, const std::string& base_prefix, int layer,
                               const std::vector<LinearInfo>& linears, const AwqOptions& options);

// What AWQ did to one block: every linear's weight scaled (and clipped), ready for the final
// quantizer, and the folded norms and biases that replace the originals.
struct AwqBlock {
  std::map<std::string, std::vector<float>> weights;  // module -> [rows, cols]
  std::map<std::string, std::vector<float>> unclipped;  // the same before the clip search (for error reports)
  std::vector<std::pair<std::string, std::vector<float>>> replaced;  // tensor name -> new value
  std::map<std::string, AwqSiteResult> site_of;      // module -> its site's search result
  std::map<std::string, double> clip_shrink;         // module -> mean clip
};

// Runs the scale search of every site of block `layer` on `inputs` (module -> its input
// [windows * seq_len, cols], as from BlockwiseCalibrator::CollectInputs; scaled in place by 1/s
// once the scales are chosen), folds the scales, then clips. The block must be loaded in
// `model` with its float weights; they are restored before returning. spec_of gives each linear's
// spec (they differ in llama.cpp's GGUF mixtures): a site is searched with its first linear's,
// each linear clipped with its own.
using SpecOf = std::function<const QuantSpec&(const std::string& module)>;
Result<AwqBlock> awq_block(Model& model, const Checkpoint& ckpt, int layer, const std::vector<LinearInfo>& linears,
                           std::map<std::string, std::shared_ptr<std::vector<float>>>& inputs, int64_t seq_len,
                           const SpecOf& spec_of, const AwqOptions& options);
// Every linear with the same spec.
Result<AwqBlock> awq_block(Model& model, const Checkpoint& ckpt, int layer, const std::vector<LinearInfo>& linears,
                           std::map<std::string, std::shared_ptr<std::vector<float>>>& inputs, int64_t seq_len,
                           const QuantSpec& spec, const AwqOptions& options);

}  // namespace llmq::internal

#endif  // LLMQ_QUANT_AWQ_H_
