// Internal: the model's weights and block structure, shared by the forward pass (model.cc) and
// the backward pass (backward.cc). Not part of the public API.
#ifndef LLMQ_SRC_MODEL_MODEL_IMPL_H_
#define LLMQ_SRC_MODEL_MODEL_IMPL_H_

#include <Eigen/Core>
#include <array>
#include <memory>
#include <vector>

#include "dense.h"
#include "llmq/kernels.h"
#include "llmq/model.h"

namespace llmq {

using RowMatrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using ConstMap = Eigen::Map<const RowMatrix>;
using Map = Eigen::Map<RowMatrix>;

namespace internal {

// A linear layer: float weights, or quantized weights run through the packed kernels
// (llmq/kernels.h); no float copy of quantized weights is kept.
struct Linear {
  LinearInfo info;
  std::vector<float> w;                         // [rows, cols] when float
  std::shared_ptr<const PackedLinear> packed;   // when quantized
  std::vector<float> bias;                      // [rows] or empty

  // y[n, rows] = x[n, cols] W^T + b
  void Forward(const float* x, int64_t n, float* y) const {
    const int64_t rows = info.rows, cols = info.cols;
    if (packed) {
      packed->Forward(x, n, y);
    } else {
      dense::gemm(false, true, n, rows, cols, 1.0f, x, cols, w.data(), cols, 0.0f, y, rows);
    }
    AddBias(y, n);
  }
  void AddBias(float* y, int64_t n) const {
    if (bias.empty()) return;
    Map Y(y, n, info.rows);
    Y.rowwise() += Eigen::Map<const Eigen::RowVectorXf>(bias.data(), info.rows);
  }
};

// ys[i] = linears[i]->Forward(x) for linears reading the same input (q, k, v; gate, up): through
// PackedLinear::ForwardShared (one parallel region at decode) when all are quantized.
template <size_t N>
void forward_same_input(const std::array<const Linear*, N>& linears, const std::array<float*, N>& ys, const float* x,
                        int64_t n) {
  std::array<const PackedLinear*, N> packed;
  bool all_packed = true;
  for (size_t i = 0; i < N; ++i) all_packed &= (packed[i] = linears[i]->packed.get()) != nullptr;
  if (!all_packed) {
    for (size_t i = 0; i < N; ++i) linears[i]->Forward(x, n, ys[i]);
    return;
  }
  PackedLinear::ForwardShared(packed.data(), ys.data(), int(N), x, n);
  for (size_t i = 0; i < N; ++i) linears[i]->AddBias(ys[i], n);
}

struct Norm {
  std::vector<float> weight, bias;  // bias empty for RMSNorm
};

struct Block {
  Norm attn_norm, mlp_norm;
  Linear q, k, v, o;
  Linear gate, up, down;  // Llama
  Linear fc1, fc2;        // OPT
};

void rms_norm(const float* x, int64_t n, int64_t d, const Norm& nw, double eps, float* y);
void layer_norm(const float* x, int64_t n, int64_t d, const Norm& nw, double eps, float* y);
// Row t of scores [n, total] (query position start + t) becomes the softmax over the keys it
// sees, [max(0, pos - window + 1), pos]; the rest of the row is set to 0.
void causal_softmax(float* scores, int64_t n, int64_t total, int64_t start, int64_t window);

}  // namespace internal

struct Model::Impl {
  using Linear = internal::Linear;
  using Norm = internal::Norm;
  using Block = internal::Block;

  std::shared_ptr<const Checkpoint> ckpt;
  ModelConfig cfg;
  std::vector<float> embed;        // [vocab, embed_dim]
  std::vector<float> positions;    // OPT: [max_pos + 2, hidden]
  std::vector<float> lm_head;      // [vocab, embed_dim]; empty when tied to embed
  Linear project_in, project_out;  // OPT word_embed_proj_dim != hidden
  bool has_projections = false;
  Norm final_norm;
  bool has_final_norm = true;
  std::vector<Block> blocks;
  std::vector<bool> loaded;        // per block: weights materialized
  PackOptions pack;                // how quantized linears are packed for the kernels
  bool prefer_int8 = false;        // ModelLoadOptions::prefer_int8_activations
  std::vector<float> inv_freq;     // RoPE, [head_dim / 2]

  void norm(const float* x, int64_t n, const Norm& nw, float* y) const {
    if (cfg.family == ModelFamily::kOpt) internal::layer_norm(x, n, cfg.hidden_size, nw, cfg.norm_eps, y);
    else internal::rms_norm(x, n, cfg.hidden_size, nw, cfg.norm_eps, y);
  }
  void attention(const Block& b, int layer, const float* xn, int64_t n, KVCache* cache, float* out,
                 const LinearInputHook& hook) const;
  void mlp(const Block& b, const float* xn, int64_t n, float* out, const LinearInputHook& hook) const;
};

namespace internal {
// The weights behind a Model, for the code in src/ that needs them (the backward pass).
struct ModelAccess {
  static const Model::Impl& impl(const Model& m) { return *m.impl_; }
};
}  // namespace internal

}  // namespace llmq

#endif  // LLMQ_SRC_MODEL_MODEL_IMPL_H_
