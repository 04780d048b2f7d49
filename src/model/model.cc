// CPU forward pass for the Llama family (Llama, Mistral, Qwen2) and OPT.
//
// Llama block (HF LlamaDecoderLayer): h = x + o(attn(rmsnorm(x))); y = h + down(silu(gate(n)) * up(n)),
// n = rmsnorm(h); RoPE in rotate-half layout; grouped-query attention (query head i uses kv head
// i / (heads / kv_heads)). OPT block (HF OPTDecoderLayer): pre-LN (or post-LN when
// do_layer_norm_before is false), LayerNorm with bias, ReLU MLP, learned positions offset by 2.
#include "llmq/model.h"

#include <Eigen/Core>
#include <algorithm>
#include <cassert>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <omp.h>

#include "llmq/float16.h"
#include "llmq/kernels.h"
#include "model/model_impl.h"
#include "dense.h"
#include "io/hf_names.h"

namespace llmq {

namespace internal {

void rms_norm(const float* x, int64_t n, int64_t d, const Norm& nw, double eps, float* y) {
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < n; ++t) {
    const float* xr = x + t * d;
    float* yr = y + t * d;
    // 8 partial sums: one chain of dependent double adds was 2% of a prompt step.
    double part[8] = {};
    int64_t i = 0;
    for (; i + 8 <= d; i += 8)
      for (int k = 0; k < 8; ++k) part[k] += double(xr[i + k]) * xr[i + k];
    double ss = 0;
    for (; i < d; ++i) ss += double(xr[i]) * xr[i];
    for (double v : part) ss += v;
    const float inv = float(1.0 / std::sqrt(ss / double(d) + eps));
    for (int64_t j = 0; j < d; ++j) yr[j] = nw.weight[size_t(j)] * (xr[j] * inv);
  }
}

void layer_norm(const float* x, int64_t n, int64_t d, const Norm& nw, double eps, float* y) {
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < n; ++t) {
    const float* xr = x + t * d;
    float* yr = y + t * d;
    double mean = 0, var = 0;
    for (int64_t i = 0; i < d; ++i) mean += xr[i];
    mean /= double(d);
    for (int64_t i = 0; i < d; ++i) var += (xr[i] - mean) * (xr[i] - mean);
    var /= double(d);
    const double inv = 1.0 / std::sqrt(var + eps);
    for (int64_t i = 0; i < d; ++i)
      yr[i] = float((xr[i] - mean) * inv) * nw.weight[size_t(i)] + (nw.bias.empty() ? 0.0f : nw.bias[size_t(i)]);
  }
}

void causal_softmax(float* scores, int64_t n, int64_t total, int64_t start, int64_t window) {
  dense::causal_softmax(scores, n, total, start, window);  // with this machine's vector exp
}

}  // namespace internal

using internal::Block;
using internal::Linear;
using internal::Norm;

namespace {

// The module of a weight stored quantized (embeddings or head on a ggml grid), or "".
std::string quantized_weight_module(const Checkpoint& c, const std::string& name) {
  if (c.find(name) != nullptr || name.size() <= 7 || name.compare(name.size() - 7, 7, ".weight") != 0) return "";
  const std::string module = name.substr(0, name.size() - 7);
  return c.is_quantized_module(module) ? module : "";
}

bool has_weight(const Checkpoint& c, const std::string& name) {
  return c.find(name) != nullptr || !quantized_weight_module(c, name).empty();
}

Result<std::vector<float>> load_float(const Checkpoint& c, const std::string& name, std::vector<int64_t> shape) {
  if (const std::string module = quantized_weight_module(c, name); !module.empty()) {
    LLMQ_ASSIGN_OR_RETURN(QuantizedTensor q, c.get_quantized(module));
    if (std::vector<int64_t>{q.rows, q.cols} != shape)
      return Status::InvalidArgument(c.folder() + ": quantized '" + module + "' has shape [" + std::to_string(q.rows) +
                                     ", " + std::to_string(q.cols) + "] but config.json implies " + shape_string(shape));
    return dequantize(q);
  }
  const TensorInfo* t = c.find(name);
  if (t == nullptr) return Status::NotFound(c.folder() + ": tensor '" + name + "' is missing");
  if (t->shape != shape)
    return Status::InvalidArgument(c.folder() + ": tensor '" + name + "' has shape " + shape_string(t->shape) +
                                   " but config.json implies " + shape_string(shape));
  return c.get_float(name);
}

Status load_linear(const Checkpoint& c, const LinearInfo& info, Linear* l, const PackOptions& pack = {},
                   bool prefer_int8 = false) {
  l->info = info;
  if (c.is_quantized_module(info.module)) {
    LLMQ_ASSIGN_OR_RETURN(QuantizedTensor q, c.get_quantized(info.module));
    PackOptions po = pack;
    // Real-valued zeros (bilevel zeros) and lookup levels stay fp32; float mins (q4_k, ...) have
    // their own term in the int8 kernels.
    if (prefer_int8 && !q.spec.bilevel_zeros() && !q.spec.lookup) po.int8_activations = true;
    auto packed = PackedLinear::Pack(q, po);
    if (!packed.ok()) return packed.status().WithContext(c.folder() + ": " + info.module);
    l->packed = std::make_shared<const PackedLinear>(std::move(*packed));
  } else {
    LLMQ_ASSIGN_OR_RETURN(l->w, c.linear_weight(info));
  }
  if (info.has_bias) {
    LLMQ_ASSIGN_OR_RETURN(l->bias, load_float(c, info.module + ".bias", {info.rows}));
  }
  return Status::Ok();
}

Status load_norm(const Checkpoint& c, const std::string& name, int64_t d, bool with_bias, Norm* n) {
  LLMQ_ASSIGN_OR_RETURN(n->weight, load_float(c, name + ".weight", {d}));
  if (with_bias) {
    LLMQ_ASSIGN_OR_RETURN(n->bias, load_float(c, name + ".bias", {d}));
  }
  return Status::Ok();
}

std::vector<float> rope_inv_freq(const ModelConfig& c) {
  const int64_t half = c.head_dim / 2;
  std::vector<float> f(static_cast<size_t>(half));
  for (int64_t i = 0; i < half; ++i) {
    double inv = 1.0 / std::pow(c.rope_theta, double(2 * i) / double(c.head_dim));
    if (c.rope_scaling == RopeScaling::kLinear) {
      inv /= c.rope_factor;
    } else if (c.rope_scaling == RopeScaling::kLlama3) {
      // HF _compute_llama3_parameters.
      const double old_ctx = double(c.rope_original_max_positions);
      const double low_wl = old_ctx / c.rope_low_freq_factor, high_wl = old_ctx / c.rope_high_freq_factor;
      const double wl = 2 * M_PI / inv;
      if (wl > low_wl) {
        inv /= c.rope_factor;
      } else if (wl >= high_wl) {
        const double smooth = (old_ctx / wl - c.rope_low_freq_factor) / (c.rope_high_freq_factor - c.rope_low_freq_factor);
        inv = (1 - smooth) * inv / c.rope_factor + smooth * inv;
      }
    }
    f[size_t(i)] = float(inv);
  }
  return f;
}

}  // namespace

Model::Model() : impl_(std::make_unique<Impl>()) {}
Model::~Model() = default;
const ModelConfig& Model::config() const { return impl_->cfg; }
const Checkpoint& Model::checkpoint() const { return *impl_->ckpt; }
bool Model::int8_activations() const { return impl_->pack.int8_activations; }
const ActivationOutlierOptions& Model::activation_outliers() const { return impl_->pack.outliers; }

Result<std::unique_ptr<Model>> Model::Load(const std::string& folder, const ModelLoadOptions& options) {
  std::unique_ptr<Model> m(new Model());
  Impl& im = *m->impl_;
  LLMQ_ASSIGN_OR_RETURN(im.ckpt, Checkpoint::Open(folder));
  const Checkpoint& c = *im.ckpt;
  im.cfg = c.config();
  const ModelConfig& cfg = im.cfg;
  const std::string base = c.base_prefix();
  const bool opt = cfg.family == ModelFamily::kOpt;
  const int64_t edim = opt ? cfg.word_embed_proj_dim : cfg.hidden_size;
  LLMQ_ASSIGN_OR_RETURN(im.embed, load_float(c, internal::embed_tokens(base) + ".weight", {cfg.vocab_size, edim}));
  if (opt) {
    LLMQ_ASSIGN_OR_RETURN(im.positions, load_float(c, internal::embed_positions(base) + ".weight",
                                                   {cfg.max_position_embeddings + 2, cfg.hidden_size}));
    if (edim != cfg.hidden_size) {
      im.has_projections = true;
      LLMQ_RETURN_IF_ERROR(load_linear(c, {internal::project_in(base), -1, LinearRole::kQ, cfg.hidden_size, edim, false},
                                       &im.project_in));
      LLMQ_RETURN_IF_ERROR(load_linear(c, {internal::project_out(base), -1, LinearRole::kQ, edim, cfg.hidden_size, false},
                                       &im.project_out));
    }
    im.has_final_norm = cfg.do_layer_norm_before && c.find(internal::final_norm(cfg, base) + ".weight") != nullptr;
    if (im.has_final_norm)
      LLMQ_RETURN_IF_ERROR(load_norm(c, internal::final_norm(cfg, base), cfg.hidden_size, true, &im.final_norm));
  } else {
    LLMQ_RETURN_IF_ERROR(load_norm(c, internal::final_norm(cfg, base), cfg.hidden_size, false, &im.final_norm));
    im.inv_freq = rope_inv_freq(cfg);
  }
  // LM head: separate unless tied (or absent, which HF treats as tied).
  if (has_weight(c, internal::kLmHeadWeight) && !(cfg.tie_word_embeddings && opt)) {
    LLMQ_ASSIGN_OR_RETURN(im.lm_head, load_float(c, internal::kLmHeadWeight, {cfg.vocab_size, edim}));
  } else if (!cfg.tie_word_embeddings && !opt) {
    return Status::NotFound(folder + ": 'lm_head.weight' is missing and tie_word_embeddings is false");
  }
  im.blocks.resize(size_t(cfg.num_layers));
  im.loaded.assign(size_t(cfg.num_layers), false);
  // W8A8 checkpoints (SmoothQuant) ask for int8 activations themselves.
  im.pack.int8_activations = options.int8_activations || options.activation_outliers.enabled() ||
                             (c.quantization() != nullptr && c.quantization()->activations == "int8");
  im.prefer_int8 = options.prefer_int8_activations;
  if (options.activation_outliers.enabled()) im.pack.outliers = options.activation_outliers;
  else if (c.quantization() != nullptr) im.pack.outliers = c.quantization()->activation_outliers;
  if (options.load_blocks)
    for (int l = 0; l < int(cfg.num_layers); ++l) LLMQ_RETURN_IF_ERROR(m->LoadBlock(l));
  return m;
}

namespace {

Linear* linear_of(Block& b, LinearRole role) {
  switch (role) {
    case LinearRole::kQ: return &b.q;
    case LinearRole::kK: return &b.k;
    case LinearRole::kV: return &b.v;
    case LinearRole::kO: return &b.o;
    case LinearRole::kGate: return &b.gate;
    case LinearRole::kUp: return &b.up;
    case LinearRole::kDown: return &b.down;
    case LinearRole::kFc1: return &b.fc1;
    case LinearRole::kFc2: return &b.fc2;
  }
  return nullptr;
}

}  // namespace

Status Model::LoadBlock(int layer) {
  Impl& im = *impl_;
  const ModelConfig& cfg = im.cfg;
  if (layer < 0 || layer >= int(cfg.num_layers))
    return Status::InvalidArgument("block " + std::to_string(layer) + " does not exist (the model has " +
                                   std::to_string(cfg.num_layers) + ")");
  if (im.loaded[size_t(layer)]) return Status::Ok();
  const Checkpoint& c = *im.ckpt;
  Block b;
  for (const LinearInfo& l : decoder_linears(cfg, c.base_prefix()))
    if (l.layer == layer) LLMQ_RETURN_IF_ERROR(load_linear(c, l, linear_of(b, l.role), im.pack, im.prefer_int8));
  const bool norm_bias = cfg.family == ModelFamily::kOpt;  // LayerNorm; Llama's RMSNorm has none
  using internal::BlockNorm;
  LLMQ_RETURN_IF_ERROR(load_norm(c, internal::block_norm(cfg, c.base_prefix(), layer, BlockNorm::kAttention),
                                 cfg.hidden_size, norm_bias, &b.attn_norm));
  LLMQ_RETURN_IF_ERROR(load_norm(c, internal::block_norm(cfg, c.base_prefix(), layer, BlockNorm::kMlp),
                                 cfg.hidden_size, norm_bias, &b.mlp_norm));
  im.blocks[size_t(layer)] = std::move(b);
  im.loaded[size_t(layer)] = true;
  return Status::Ok();
}

void Model::ReleaseBlock(int layer) {
  if (layer < 0 || layer >= int(impl_->blocks.size())) return;
  impl_->blocks[size_t(layer)] = Block();
  impl_->loaded[size_t(layer)] = false;
}

bool Model::block_loaded(int layer) const {
  return layer >= 0 && layer < int(impl_->loaded.size()) && impl_->loaded[size_t(layer)];
}

std::map<std::string, int64_t> Model::QuantizedKernels(int64_t n) const {
  std::map<std::string, int64_t> out;
  for (size_t l = 0; l < impl_->blocks.size(); ++l) {
    if (!impl_->loaded[l]) continue;
    Block& b = impl_->blocks[l];
    for (const Linear* x : {&b.q, &b.k, &b.v, &b.o, &b.gate, &b.up, &b.down, &b.fc1, &b.fc2})
      if (x->packed) ++out[x->packed->kernel(n)];
  }
  return out;
}

std::map<std::string, ActivationOutlierStats> Model::ActivationOutlierStatistics() const {
  std::map<std::string, ActivationOutlierStats> out;
  for (size_t l = 0; l < impl_->blocks.size(); ++l) {
    if (!impl_->loaded[l]) continue;
    Block& b = impl_->blocks[l];
    for (const Linear* x : {&b.q, &b.k, &b.v, &b.o, &b.gate, &b.up, &b.down, &b.fc1, &b.fc2})
      if (x->packed && x->packed->activation_outliers().enabled())
        out[x->info.module] = x->packed->activation_outlier_stats();
  }
  return out;
}

Status Model::SetLinearWeight(const LinearInfo& linear, std::vector<float> weight) {
  if (!block_loaded(linear.layer)) return Status::InvalidArgument(linear.module + ": its block is not loaded");
  Linear* l = linear_of(impl_->blocks[size_t(linear.layer)], linear.role);
  if (int64_t(weight.size()) != l->info.rows * l->info.cols)
    return Status::InvalidArgument(linear.module + ": replacement weight has " + std::to_string(weight.size()) +
                                   " values, expected " + std::to_string(l->info.rows * l->info.cols));
  l->w = std::move(weight);
  l->packed.reset();
  return Status::Ok();
}

Status Model::SetBlockTensor(const std::string& name, std::vector<float> value) {
  Impl& im = *impl_;
  const std::string base = im.ckpt->base_prefix() + "layers.";
  int layer = -1;
  if (name.compare(0, base.size(), base) == 0) layer = std::atoi(name.c_str() + base.size());
  if (!block_loaded(layer)) return Status::InvalidArgument(name + ": not a tensor of a loaded block");
  Block& b = im.blocks[size_t(layer)];
  std::vector<float>* target = nullptr;
  using internal::BlockNorm;
  const std::pair<BlockNorm, Norm*> norms[] = {{BlockNorm::kAttention, &b.attn_norm}, {BlockNorm::kMlp, &b.mlp_norm}};
  for (const auto& [which, norm] : norms) {
    const std::string stem = internal::block_norm(im.cfg, im.ckpt->base_prefix(), layer, which);
    if (name == stem + ".weight") target = &norm->weight;
    if (name == stem + ".bias" && !norm->bias.empty()) target = &norm->bias;
  }
  for (const LinearInfo& l : decoder_linears(im.cfg, im.ckpt->base_prefix()))
    if (l.layer == layer && l.has_bias && name == l.module + ".bias") target = &linear_of(b, l.role)->bias;
  if (target == nullptr) return Status::InvalidArgument(name + ": not a norm or linear bias of block " + std::to_string(layer));
  if (value.size() != target->size())
    return Status::InvalidArgument(name + ": replacement has " + std::to_string(value.size()) + " values, expected " +
                                   std::to_string(target->size()));
  *target = std::move(value);
  return Status::Ok();
}

KVCache Model::NewCache(int64_t capacity) const {
  KVCache c;
  c.capacity = capacity;
  const size_t kvd = size_t(impl_->cfg.num_kv_heads * impl_->cfg.head_dim);
  c.k.assign(size_t(impl_->cfg.num_layers), std::vector<float>(size_t(capacity) * kvd));
  c.v = c.k;
  return c;
}

Status Model::Embed(const int32_t* tokens, int64_t n, int64_t start_pos, float* x) const {
  const Impl& im = *impl_;
  const ModelConfig& cfg = im.cfg;
  const bool opt = cfg.family == ModelFamily::kOpt;
  const int64_t edim = opt ? cfg.word_embed_proj_dim : cfg.hidden_size;
  for (int64_t t = 0; t < n; ++t)
    if (tokens[t] < 0 || tokens[t] >= cfg.vocab_size)
      return Status::InvalidArgument("token id " + std::to_string(tokens[t]) + " is outside the vocabulary (size " +
                                     std::to_string(cfg.vocab_size) + ")");
  if (opt && start_pos + n > cfg.max_position_embeddings)
    return Status::InvalidArgument("position " + std::to_string(start_pos + n - 1) +
                                   " is beyond OPT's learned positions (" + std::to_string(cfg.max_position_embeddings) + ")");
  std::vector<float> e(static_cast<size_t>(n * edim));
  for (int64_t t = 0; t < n; ++t)
    std::copy_n(im.embed.data() + int64_t(tokens[t]) * edim, edim, e.data() + t * edim);
  if (im.has_projections) im.project_in.Forward(e.data(), n, x);
  else std::copy(e.begin(), e.end(), x);
  if (opt)
    for (int64_t t = 0; t < n; ++t)
      for (int64_t i = 0; i < cfg.hidden_size; ++i)
        x[t * cfg.hidden_size + i] += im.positions[size_t((start_pos + t + 2) * cfg.hidden_size + i)];
  return Status::Ok();
}

// Per-thread buffers a block's forward pass reuses between calls: fresh megabyte vectors per block
// were page faults and zero fills (about a tenth of a 512-token prompt on a 1B model). Every user
// writes its buffer before reading it.
enum BufferSlot { kMlpGate, kMlpUp, kAttnQuery, kAttnContext, kBlockNormed, kBlockOut, kBufferSlots };
float* thread_buffer(BufferSlot slot, int64_t count) {
  thread_local std::vector<float> buffers[kBufferSlots];
  std::vector<float>& b = buffers[slot];
  if (b.size() < size_t(count)) b.resize(size_t(count));
  return b.data();
}

// Queries per block of a prompt's attention (Model::Impl::attention).
constexpr int64_t kQueryBlock = 64;
// Up to this many tokens (decode) attention runs per kv head and token, with its query heads at once;
// not with one kv head (multi-query attention: one task), which keeps a task per query head. The
// choice depends on the model only, so decoding gives the same bits with any thread count.
constexpr int64_t kGroupedQueryTokens = 4;

void Model::Impl::attention(const Block& b, int layer, const float* xn, int64_t n, KVCache* cache, float* out,
                            const LinearInputHook& hook) const {
  const int64_t nh = cfg.num_heads, nkv = cfg.num_kv_heads, hd = cfg.head_dim;
  const int64_t qd = nh * hd, kvd = nkv * hd, start = cache->length, total = start + n;
  float* const q = thread_buffer(kAttnQuery, n * qd);
  std::vector<float> k(static_cast<size_t>(n * kvd)), v(size_t(n * kvd));
  if (hook) {
    hook(b.q.info, xn, n);
    hook(b.k.info, xn, n);
    hook(b.v.info, xn, n);
  }
  internal::forward_same_input<3>({&b.q, &b.k, &b.v}, {q, k.data(), v.data()}, xn, n);
  if (cfg.family == ModelFamily::kLlama) {
    // RoPE, rotate-half: (x1, x2) -> (x1 cos - x2 sin, x2 cos + x1 sin) on the two halves.
    const int64_t half = hd / 2;
#pragma omp parallel for schedule(static)
    for (int64_t t = 0; t < n; ++t) {
      const double pos = double(start + t);
      for (int64_t i = 0; i < half; ++i) {
        const float ang = float(pos * double(inv_freq[size_t(i)]));
        const float cs = std::cos(ang), sn = std::sin(ang);
        for (int64_t h = 0; h < nh; ++h) {
          float* r = q + t * qd + h * hd;
          const float a = r[i], bb = r[i + half];
          r[i] = a * cs - bb * sn;
          r[i + half] = bb * cs + a * sn;
        }
        for (int64_t h = 0; h < nkv; ++h) {
          float* r = k.data() + t * kvd + h * hd;
          const float a = r[i], bb = r[i + half];
          r[i] = a * cs - bb * sn;
          r[i + half] = bb * cs + a * sn;
        }
      }
    }
  }
  std::copy(k.begin(), k.end(), cache->k[size_t(layer)].begin() + start * kvd);
  std::copy(v.begin(), v.end(), cache->v[size_t(layer)].begin() + start * kvd);
  const float* K = cache->k[size_t(layer)].data();
  const float* V = cache->v[size_t(layer)].data();
  const float scale = 1.0f / std::sqrt(float(hd));
  const int64_t group = nh / nkv;
  const int64_t window = cfg.sliding_window > 0 ? cfg.sliding_window : total;
  float* const ctx = thread_buffer(kAttnContext, n * qd);
  if (n <= kGroupedQueryTokens && nkv > 1) {
    // Decode: per token and kv head, the group of query heads that share it at once ([group, hd],
    // contiguous in q), so each token's keys and values are read once per kv head instead of once
    // per query head, in a product of `group` rows instead of a row at a time.
#pragma omp parallel for schedule(static) collapse(2)
    for (int64_t kvh = 0; kvh < nkv; ++kvh)
      for (int64_t t = 0; t < n; ++t) {
        const int64_t keys = start + t + 1;
        thread_local std::vector<float> S;
        if (S.size() < size_t(group * keys)) S.resize(size_t(group * keys));
        dense::gemm(false, true, group, keys, hd, scale, q + t * qd + kvh * group * hd, hd, K + kvh * hd, kvd, 0.0f,
                    S.data(), keys);
        for (int64_t r = 0; r < group; ++r) internal::causal_softmax(S.data() + r * keys, 1, keys, start + t, window);
        dense::gemm(false, false, group, hd, keys, 1.0f, S.data(), keys, V + kvh * hd, kvd, 0.0f,
                    ctx + t * qd + kvh * group * hd, hd);
      }
    if (hook) hook(b.o.info, ctx, n);
    b.o.Forward(ctx, n, out);
    return;
  }
  // Queries in blocks of kQueryBlock: a block's scores only reach the keys up to its last query's
  // position (causal), so a prompt computes about half of the full n x total score matrix.
  const int64_t qblocks = (n + kQueryBlock - 1) / kQueryBlock;
#pragma omp parallel for schedule(dynamic) collapse(2)
  for (int64_t h = 0; h < nh; ++h)
    for (int64_t qb = 0; qb < qblocks; ++qb) {
      const int64_t kvh = h / group, t0 = qb * kQueryBlock, nq = std::min(kQueryBlock, n - t0);
      const int64_t keys = start + t0 + nq;  // keys [0, keys) are visible to some query of the block
      // S = Q_h K_h^T (strided views), softmax, then C_h = S V_h; S in a buffer each thread keeps.
      thread_local std::vector<float> S;
      if (S.size() < size_t(nq * keys)) S.resize(size_t(nq * keys));
      dense::gemm(false, true, nq, keys, hd, scale, q + t0 * qd + h * hd, qd, K + kvh * hd, kvd, 0.0f, S.data(),
                  keys);
      internal::causal_softmax(S.data(), nq, keys, start + t0, window);
      dense::gemm(false, false, nq, hd, keys, 1.0f, S.data(), keys, V + kvh * hd, kvd, 0.0f,
                  ctx + t0 * qd + h * hd, qd);
    }
  if (hook) hook(b.o.info, ctx, n);
  b.o.Forward(ctx, n, out);
}

void Model::Impl::mlp(const Block& b, const float* xn, int64_t n, float* out, const LinearInputHook& hook) const {
  const int64_t f = cfg.intermediate_size;
  float* const a = thread_buffer(kMlpGate, n * f);
  if (cfg.family == ModelFamily::kLlama) {
    float* const u = thread_buffer(kMlpUp, n * f);
    if (hook) {
      hook(b.gate.info, xn, n);
      hook(b.up.info, xn, n);
    }
    internal::forward_same_input<2>({&b.gate, &b.up}, {a, u}, xn, n);
    // SwiGLU in token-row slices over the threads (silu_mul gives the same bits for any split).
#pragma omp parallel for schedule(static)
    for (int64_t t = 0; t < n; ++t) dense::silu_mul(a + t * f, u + t * f, f, a + t * f);
    if (hook) hook(b.down.info, a, n);
    b.down.Forward(a, n, out);
  } else {
    if (hook) hook(b.fc1.info, xn, n);
    b.fc1.Forward(xn, n, a);
    for (int64_t i = 0; i < n * f; ++i) a[i] = std::max(a[i], 0.0f);
    if (hook) hook(b.fc2.info, a, n);
    b.fc2.Forward(a, n, out);
  }
}

void Model::RunBlock(int layer, float* x, int64_t n, KVCache* cache, const LinearInputHook& hook) const {
  const Impl& im = *impl_;
  const ModelConfig& cfg = im.cfg;
  assert(im.loaded[size_t(layer)] && "RunBlock on a block that is not loaded");
  const Block& b = im.blocks[size_t(layer)];
  const int64_t d = cfg.hidden_size;
  float* const xn = thread_buffer(kBlockNormed, n * d);
  float* const y = thread_buffer(kBlockOut, n * d);
  const bool pre_ln = cfg.family == ModelFamily::kLlama || cfg.do_layer_norm_before;
  ConstMap Y(y, n, d);
  Map X(x, n, d);
  // Attention.
  if (pre_ln) im.norm(x, n, b.attn_norm, xn);
  else std::copy_n(x, n * d, xn);
  im.attention(b, layer, xn, n, cache, y, hook);
  X += Y;
  if (!pre_ln) {
    im.norm(x, n, b.attn_norm, xn);
    std::copy_n(xn, n * d, x);
  }
  // MLP.
  if (pre_ln) im.norm(x, n, b.mlp_norm, xn);
  else std::copy_n(x, n * d, xn);
  im.mlp(b, xn, n, y, hook);
  X += Y;
  if (!pre_ln) {
    im.norm(x, n, b.mlp_norm, xn);
    std::copy_n(xn, n * d, x);
  }
}

Status Model::RunBlockPart(int layer, BlockPart part, const float* xn, int64_t n, float* y) const {
  if (!block_loaded(layer)) return Status::InvalidArgument("block " + std::to_string(layer) + " is not loaded");
  const Impl& im = *impl_;
  const Block& b = im.blocks[size_t(layer)];
  if (part == BlockPart::kMlp) {
    im.mlp(b, xn, n, y, nullptr);
    return Status::Ok();
  }
  KVCache cache;  // this block only, positions 0..n-1
  cache.capacity = n;
  cache.k.resize(size_t(im.cfg.num_layers));
  cache.v.resize(cache.k.size());
  cache.k[size_t(layer)].assign(size_t(n * im.cfg.num_kv_heads * im.cfg.head_dim), 0.0f);
  cache.v[size_t(layer)] = cache.k[size_t(layer)];
  im.attention(b, layer, xn, n, &cache, y, nullptr);
  return Status::Ok();
}

void Model::Head(const float* x, int64_t n, float* logits) const {
  const Impl& im = *impl_;
  const ModelConfig& cfg = im.cfg;
  const int64_t d = cfg.hidden_size;
  std::vector<float> h(x, x + n * d);
  if (im.has_final_norm) im.norm(x, n, im.final_norm, h.data());
  const int64_t edim = im.has_projections ? cfg.word_embed_proj_dim : d;
  std::vector<float> e;
  const float* hp = h.data();
  if (im.has_projections) {
    e.resize(size_t(n * edim));
    im.project_out.Forward(h.data(), n, e.data());
    hp = e.data();
  }
  const std::vector<float>& W = im.lm_head.empty() ? im.embed : im.lm_head;
  dense::gemm(false, true, n, cfg.vocab_size, edim, 1.0f, hp, edim, W.data(), edim, 0.0f, logits, cfg.vocab_size);
}

Result<std::vector<float>> Model::Forward(const int32_t* tokens, int64_t n, KVCache* cache) const {
  if (n <= 0) return Status::InvalidArgument("no tokens to run");
  if (cache->length + n > cache->capacity)
    return Status::InvalidArgument("KV cache holds " + std::to_string(cache->capacity) + " positions, " +
                                   std::to_string(cache->length + n) + " needed");
  for (int l = 0; l < int(impl_->cfg.num_layers); ++l)
    if (!block_loaded(l)) return Status::InvalidArgument("block " + std::to_string(l) + " is not loaded");
  std::vector<float> x(static_cast<size_t>(n * impl_->cfg.hidden_size));
  LLMQ_RETURN_IF_ERROR(Embed(tokens, n, cache->length, x.data()));
  for (int l = 0; l < int(impl_->cfg.num_layers); ++l) RunBlock(l, x.data(), n, cache);
  cache->length += n;
  std::vector<float> logits(static_cast<size_t>(n * impl_->cfg.vocab_size));
  Head(x.data(), n, logits.data());
  return logits;
}

Result<PerplexityResult> evaluate_perplexity(const Model& model, const std::vector<int32_t>& ids,
                                             const PerplexityOptions& options) {
  const auto t0 = std::chrono::steady_clock::now();
  PerplexityResult r;
  r.seq_len = options.seq_len > 0 ? options.seq_len : std::min<int64_t>(model.config().max_position_embeddings, 2048);
  if (r.seq_len < 2) return Status::InvalidArgument("seq_len must be at least 2");
  r.tokens = int64_t(ids.size());
  int64_t windows = r.tokens / r.seq_len;
  if (windows == 0)
    return Status::InvalidArgument("the text has " + std::to_string(r.tokens) + " tokens, fewer than one window of " +
                                   std::to_string(r.seq_len));
  if (options.max_chunks > 0) windows = std::min(windows, options.max_chunks);
  r.chunks = windows;
  const int64_t V = model.vocab_size();
  const ModelConfig& cfg = model.config();
  // Small models: one window per thread (each forward runs single-threaded inside). Fine-grained
  // parallel regions per layer cost a barrier each, and when another process shares the cores
  // every barrier waits for a descheduled thread. Large models keep the threads inside each
  // forward, where the GEMMs are big and one window's state (KV cache, logits) is large.
  const int threads = omp_get_max_threads();
  const double window_bytes =
      4.0 * double(r.seq_len) *
      (2.0 * double(cfg.num_layers * cfg.num_kv_heads * cfg.head_dim) + double(V) +
       4.0 * double(cfg.hidden_size) + 2.0 * double(cfg.intermediate_size));
  const bool across_windows = threads > 1 && windows >= 2 * threads && window_bytes * threads < double(1u << 30);
  // Per-window sums, added in window order: the same result however the work is split.
  std::vector<double> window_nll(static_cast<size_t>(windows), 0.0);
  Status first_error;
  int64_t done = 0;
  auto run_window = [&](int64_t w, KVCache* cache) -> Status {
    cache->length = 0;
    const int32_t* tok = ids.data() + w * r.seq_len;
    LLMQ_ASSIGN_OR_RETURN(std::vector<float> logits, model.Forward(tok, r.seq_len, cache));
    std::vector<double> token_nll(static_cast<size_t>(r.seq_len - 1));
#pragma omp parallel for schedule(static) if (!across_windows)
    for (int64_t t = 0; t < r.seq_len - 1; ++t) {
      const float* l = logits.data() + t * V;
      double mx = l[0];
      for (int64_t i = 1; i < V; ++i) mx = std::max(mx, double(l[i]));
      double s = 0;
      for (int64_t i = 0; i < V; ++i) s += std::exp(double(l[i]) - mx);
      token_nll[size_t(t)] = (mx + std::log(s)) - double(l[tok[t + 1]]);
    }
    double sum = 0;
    for (size_t t = 0; t < token_nll.size(); ++t) {
      // A NaN or infinite loss is a broken model, not a number to report.
      if (!std::isfinite(token_nll[t]))
        return Status::InvalidArgument("window " + std::to_string(w) + ", position " + std::to_string(t + 1) +
                                       ": the logits are not finite (NaN or Inf); the model computes garbage");
      sum += token_nll[t];
    }
    window_nll[size_t(w)] = sum;
    return Status::Ok();
  };
  auto report = [&] {
    const int64_t n = ++done;
    if (options.progress)
      options.progress({n, windows, "window " + std::to_string(n),
                        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count()});
  };
  int64_t first_bad = windows;
  if (across_windows) {
#pragma omp parallel
    {
      KVCache cache = model.NewCache(r.seq_len);
#pragma omp for schedule(dynamic)
      for (int64_t w = 0; w < windows; ++w) {
        Status st = run_window(w, &cache);
#pragma omp critical(llmq_perplexity)
        {
          if (!st.ok() && w < first_bad) first_bad = w, first_error = st;  // the earliest window, however split
          report();
        }
      }
    }
  } else {
    KVCache cache = model.NewCache(r.seq_len);
    for (int64_t w = 0; w < windows && first_error.ok(); ++w) {
      first_error = run_window(w, &cache);
      report();
    }
  }
  if (!first_error.ok()) return first_error;
  double nll = 0;
  for (double v : window_nll) nll += v;
  r.predictions = windows * (r.seq_len - 1);
  r.mean_nll = nll / double(r.predictions);
  r.perplexity = std::exp(r.mean_nll);
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  r.tokens_per_second = r.seconds > 0 ? double(windows * r.seq_len) / r.seconds : 0.0;
  return r;
}

}  // namespace llmq
