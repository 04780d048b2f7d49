// Backward pass of the next-token cross-entropy through the decoder blocks and the head, for
// OAC (Edalati et al., AAAI-25; algorithms.md §6): per linear y = W x, the output-adaptive
// Hessian needs δ_t = ∂L/∂y_t and x_t for every token (G_n = Σ_t δ_t x_tᵀ, eq. of §6.2).
//
// Each block is run forward once more from its stored input to keep its intermediates, then
// differentiated; the ops mirror model.cc's forward:
//   pre-norm:  a = N1(x); h = x + O·attn(Q a, K a, V a); b = N2(h); out = h + mlp(b)
//   post-norm (OPT do_layer_norm_before = false): h = N1(x + O·attn(...)); out = N2(h + mlp(h))
//   RMSNorm:   y = g ⊙ x r, r = (mean x² + ε)^(-1/2)        dx = r g⊙dy − x r³ Σ(g⊙dy⊙x) / d
//   LayerNorm: y = g ⊙ x̂ + β, x̂ = (x − μ) r              dx = r (ĝ − mean ĝ − x̂ mean(ĝ⊙x̂)), ĝ = g⊙dy
//   softmax attention per head: dV += Pᵀ dC; dP = dC Vᵀ; dS = P ⊙ (dP − rowsum(dP ⊙ P)); dQ = s dS K; dK += s dSᵀ Q
//   RoPE: a rotation by the position's angles, so its backward rotates by the negative angles
//   SwiGLU: m = silu(g) ⊙ u, silu'(g) = σ(g)(1 + g(1 − σ(g)));  OPT: ReLU
#include "model/backward.h"

#include <Eigen/Core>
#include <algorithm>
#include <cmath>

#include "model/model_impl.h"
#include "dense.h"

namespace llmq::internal {

namespace {


// dx [n, cols] = dy [n, rows] W [rows, cols] (accumulated when add is true).
void linear_backward(const Linear& l, const float* dy, int64_t n, float* dx, bool add) {
  dense::gemm(false, false, n, l.info.cols, l.info.rows, 1.0f, dy, l.info.rows, l.w.data(), l.info.cols, add ? 1.0f : 0.0f,
              dx, l.info.cols);
}

// dx += backward of the norm at input x, given dy.
void norm_backward(const Model::Impl& im, const Norm& nw, const float* x, const float* dy, int64_t n, float* dx) {
  const int64_t d = im.cfg.hidden_size;
  const bool layer_norm = im.cfg.family == ModelFamily::kOpt;
  const double eps = im.cfg.norm_eps;
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < n; ++t) {
    const float* xr = x + t * d;
    const float* gr = dy + t * d;
    float* out = dx + t * d;
    if (layer_norm) {
      double mean = 0, var = 0;
      for (int64_t i = 0; i < d; ++i) mean += xr[i];
      mean /= double(d);
      for (int64_t i = 0; i < d; ++i) var += (xr[i] - mean) * (xr[i] - mean);
      const double r = 1.0 / std::sqrt(var / double(d) + eps);
      double m1 = 0, m2 = 0;
      for (int64_t i = 0; i < d; ++i) {
        const double gh = double(gr[i]) * nw.weight[size_t(i)];
        m1 += gh;
        m2 += gh * (xr[i] - mean) * r;
      }
      m1 /= double(d);
      m2 /= double(d);
      for (int64_t i = 0; i < d; ++i) {
        const double gh = double(gr[i]) * nw.weight[size_t(i)];
        out[i] += float(r * (gh - m1 - (xr[i] - mean) * r * m2));
      }
    } else {
      double ss = 0, dot = 0;
      for (int64_t i = 0; i < d; ++i) {
        ss += double(xr[i]) * xr[i];
        dot += double(gr[i]) * nw.weight[size_t(i)] * xr[i];
      }
      const double r = 1.0 / std::sqrt(ss / double(d) + eps);
      const double c = r * r * r * dot / double(d);
      for (int64_t i = 0; i < d; ++i) out[i] += float(r * double(gr[i]) * nw.weight[size_t(i)] - double(xr[i]) * c);
    }
  }
}

// Rotates every head of z [n, heads * hd] by the RoPE angles of positions 0..n-1 (sign +1, the
// forward) or by their negatives (sign -1, the backward).
void rope_rotate(const Model::Impl& im, float* z, int64_t n, int64_t heads, float sign) {
  const int64_t hd = im.cfg.head_dim, half = hd / 2, width = heads * hd;
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < n; ++t)
    for (int64_t i = 0; i < half; ++i) {
      const float ang = float(double(t) * double(im.inv_freq[size_t(i)]));
      const float cs = std::cos(ang), sn = sign * std::sin(ang);
      for (int64_t h = 0; h < heads; ++h) {
        float* r = z + t * width + h * hd;
        const float a = r[i], b = r[i + half];
        r[i] = a * cs - b * sn;
        r[i + half] = b * cs + a * sn;
      }
    }
}

// What one block's backward needs from its forward.
struct BlockTape {
  std::vector<float> a;           // attention input (normed x, or x when post-norm)
  std::vector<float> q, k, v;     // after RoPE
  std::vector<float> probs;       // [heads, n, n]
  std::vector<float> ctx;         // [n, heads * hd]
  std::vector<float> hpre;        // x + attention output (the post-norm N1 input)
  std::vector<float> h;           // residual stream after attention
  std::vector<float> b;           // MLP input
  std::vector<float> f1, f2;      // Llama: gate and up outputs; OPT: fc1 output (f2 unused)
  std::vector<float> m;           // down / fc2 input
  std::vector<float> outpre;      // h + mlp output (the post-norm N2 input)
};

// Bytes of one block's tape for a window of n tokens (the vectors of BlockTape).
int64_t tape_bytes(const ModelConfig& cfg, int64_t n) {
  const int64_t qd = cfg.num_heads * cfg.head_dim, kvd = cfg.num_kv_heads * cfg.head_dim;
  const int64_t per_token = 5 * cfg.hidden_size + 2 * qd + 2 * kvd + 3 * cfg.intermediate_size;
  return int64_t(sizeof(float)) * (n * per_token + cfg.num_heads * n * n);
}

bool pre_norm(const ModelConfig& cfg) { return cfg.family == ModelFamily::kLlama || cfg.do_layer_norm_before; }

// Block forward from x [n, d]; writes the output to `out` and, when tape is given, keeps the intermediates.
void block_forward(const Model::Impl& im, const Block& bl, const float* x, int64_t n, float* out, BlockTape* tp) {
  const ModelConfig& cfg = im.cfg;
  const int64_t d = cfg.hidden_size, hd = cfg.head_dim, nh = cfg.num_heads, nkv = cfg.num_kv_heads;
  const int64_t qd = nh * hd, kvd = nkv * hd, group = nh / nkv, f = cfg.intermediate_size;
  const int64_t window = cfg.sliding_window > 0 ? cfg.sliding_window : n;
  const bool pre = pre_norm(cfg);
  BlockTape local;
  BlockTape& T = tp ? *tp : local;
  T.a.assign(size_t(n * d), 0.0f);
  if (pre) im.norm(x, n, bl.attn_norm, T.a.data());
  else std::copy_n(x, n * d, T.a.data());
  T.q.resize(size_t(n * qd));
  T.k.resize(size_t(n * kvd));
  T.v.resize(size_t(n * kvd));
  bl.q.Forward(T.a.data(), n, T.q.data());
  bl.k.Forward(T.a.data(), n, T.k.data());
  bl.v.Forward(T.a.data(), n, T.v.data());
  if (cfg.family == ModelFamily::kLlama) {
    rope_rotate(im, T.q.data(), n, nh, 1.0f);
    rope_rotate(im, T.k.data(), n, nkv, 1.0f);
  }
  const float scale = 1.0f / std::sqrt(float(hd));
  T.probs.assign(size_t(nh * n * n), 0.0f);
  T.ctx.resize(size_t(n * qd));
#pragma omp parallel for schedule(dynamic)
  for (int64_t hh = 0; hh < nh; ++hh) {
    const int64_t kvh = hh / group;
    float* P = T.probs.data() + hh * n * n;
    dense::gemm(false, true, n, n, hd, scale, T.q.data() + hh * hd, qd, T.k.data() + kvh * hd, kvd, 0.0f, P, n);
    causal_softmax(P, n, n, 0, window);
    dense::gemm(false, false, n, hd, n, 1.0f, P, n, T.v.data() + kvh * hd, kvd, 0.0f, T.ctx.data() + hh * hd, qd);
  }
  std::vector<float> y(static_cast<size_t>(n * d));
  bl.o.Forward(T.ctx.data(), n, y.data());
  T.hpre.resize(size_t(n * d));
  for (int64_t i = 0; i < n * d; ++i) T.hpre[size_t(i)] = x[i] + y[size_t(i)];
  T.h = T.hpre;
  if (!pre) im.norm(T.hpre.data(), n, bl.attn_norm, T.h.data());
  T.b.assign(size_t(n * d), 0.0f);
  if (pre) im.norm(T.h.data(), n, bl.mlp_norm, T.b.data());
  else T.b = T.h;
  T.m.resize(size_t(n * f));
  if (cfg.family == ModelFamily::kLlama) {
    T.f1.resize(size_t(n * f));
    T.f2.resize(size_t(n * f));
    bl.gate.Forward(T.b.data(), n, T.f1.data());
    bl.up.Forward(T.b.data(), n, T.f2.data());
    dense::silu_mul(T.f1.data(), T.f2.data(), n * f, T.m.data());  // as the forward pass
    bl.down.Forward(T.m.data(), n, y.data());
  } else {
    T.f1.resize(size_t(n * f));
    bl.fc1.Forward(T.b.data(), n, T.f1.data());
    for (int64_t i = 0; i < n * f; ++i) T.m[size_t(i)] = std::max(T.f1[size_t(i)], 0.0f);
    bl.fc2.Forward(T.m.data(), n, y.data());
  }
  T.outpre.resize(size_t(n * d));
  for (int64_t i = 0; i < n * d; ++i) T.outpre[size_t(i)] = T.h[size_t(i)] + y[size_t(i)];
  if (pre) std::copy(T.outpre.begin(), T.outpre.end(), out);
  else im.norm(T.outpre.data(), n, bl.mlp_norm, out);
}

// Given dout = ∂L/∂out, returns ∂L/∂x in dx (overwritten) and reports the linears' (x, δ).
void block_backward(const Model::Impl& im, const Block& bl, const float* x, const BlockTape& T, const float* dout,
                    int64_t n, float* dx, const LinearGradientHook& hook) {
  const ModelConfig& cfg = im.cfg;
  const int64_t d = cfg.hidden_size, hd = cfg.head_dim, nh = cfg.num_heads, nkv = cfg.num_kv_heads;
  const int64_t qd = nh * hd, kvd = nkv * hd, group = nh / nkv, f = cfg.intermediate_size;
  const bool pre = pre_norm(cfg);
  // Through the MLP residual: dh = ∂L/∂h, dy = ∂L/∂(mlp output).
  std::vector<float> dy(dout, dout + n * d);
  if (!pre) {
    std::fill(dy.begin(), dy.end(), 0.0f);
    norm_backward(im, bl.mlp_norm, T.outpre.data(), dout, n, dy.data());
  }
  std::vector<float> dh = dy;
  std::vector<float> dm(static_cast<size_t>(n * f)), db(static_cast<size_t>(n * d));
  if (cfg.family == ModelFamily::kLlama) {
    if (hook) hook(bl.down.info, T.m.data(), dy.data(), n);
    linear_backward(bl.down, dy.data(), n, dm.data(), false);
    std::vector<float> dg(static_cast<size_t>(n * f)), du(static_cast<size_t>(n * f));
    for (int64_t i = 0; i < n * f; ++i) {
      const float g = T.f1[size_t(i)], sg = 1.0f / (1.0f + std::exp(-g));
      du[size_t(i)] = dm[size_t(i)] * g * sg;
      dg[size_t(i)] = dm[size_t(i)] * T.f2[size_t(i)] * sg * (1.0f + g * (1.0f - sg));
    }
    if (hook) {
      hook(bl.gate.info, T.b.data(), dg.data(), n);
      hook(bl.up.info, T.b.data(), du.data(), n);
    }
    linear_backward(bl.gate, dg.data(), n, db.data(), false);
    linear_backward(bl.up, du.data(), n, db.data(), true);
  } else {
    if (hook) hook(bl.fc2.info, T.m.data(), dy.data(), n);
    linear_backward(bl.fc2, dy.data(), n, dm.data(), false);
    for (int64_t i = 0; i < n * f; ++i)
      if (T.f1[size_t(i)] <= 0.0f) dm[size_t(i)] = 0.0f;
    if (hook) hook(bl.fc1.info, T.b.data(), dm.data(), n);
    linear_backward(bl.fc1, dm.data(), n, db.data(), false);
  }
  if (pre) norm_backward(im, bl.mlp_norm, T.h.data(), db.data(), n, dh.data());
  else
    for (int64_t i = 0; i < n * d; ++i) dh[size_t(i)] += db[size_t(i)];
  // Through the attention residual: dho = ∂L/∂(x + attention output).
  std::vector<float> dho = dh;
  if (!pre) {
    std::fill(dho.begin(), dho.end(), 0.0f);
    norm_backward(im, bl.attn_norm, T.hpre.data(), dh.data(), n, dho.data());
  }
  if (hook) hook(bl.o.info, T.ctx.data(), dho.data(), n);
  std::vector<float> dctx(static_cast<size_t>(n * qd));
  linear_backward(bl.o, dho.data(), n, dctx.data(), false);
  std::vector<float> dq(static_cast<size_t>(n * qd)), dk(static_cast<size_t>(n * kvd), 0.0f),
      dv(static_cast<size_t>(n * kvd), 0.0f);
  const float scale = 1.0f / std::sqrt(float(hd));
  // One kv head per iteration: its query heads' contributions to dK and dV stay in one thread.
#pragma omp parallel for schedule(dynamic)
  for (int64_t kvh = 0; kvh < nkv; ++kvh) {
    const float* K = T.k.data() + kvh * hd;
    const float* Vh = T.v.data() + kvh * hd;
    float* dK = dk.data() + kvh * hd;
    float* dV = dv.data() + kvh * hd;
    RowMatrix dS(n, n);
    for (int64_t hh = kvh * group; hh < (kvh + 1) * group; ++hh) {
      ConstMap P(T.probs.data() + hh * n * n, n, n);
      const float* Q = T.q.data() + hh * hd;
      const float* dC = dctx.data() + hh * hd;
      dense::gemm(true, false, n, hd, n, 1.0f, P.data(), n, dC, qd, 1.0f, dV, kvd);      // dV += Pᵀ dC
      dense::gemm(false, true, n, n, hd, 1.0f, dC, qd, Vh, kvd, 0.0f, dS.data(), n);     // dS = dC Vᵀ
      for (int64_t t = 0; t < n; ++t) {
        const double dot = (dS.row(t).cast<double>().array() * P.row(t).cast<double>().array()).sum();
        dS.row(t) = (P.row(t).array() * (dS.row(t).array() - float(dot))).matrix();
      }
      dense::gemm(false, false, n, hd, n, scale, dS.data(), n, K, kvd, 0.0f, dq.data() + hh * hd, qd);  // dQ = dS K
      dense::gemm(true, false, n, hd, n, scale, dS.data(), n, Q, qd, 1.0f, dK, kvd);                   // dK += dSᵀ Q
    }
  }
  if (cfg.family == ModelFamily::kLlama) {
    rope_rotate(im, dq.data(), n, nh, -1.0f);
    rope_rotate(im, dk.data(), n, nkv, -1.0f);
  }
  if (hook) {
    hook(bl.q.info, T.a.data(), dq.data(), n);
    hook(bl.k.info, T.a.data(), dk.data(), n);
    hook(bl.v.info, T.a.data(), dv.data(), n);
  }
  std::vector<float> da(static_cast<size_t>(n * d));
  linear_backward(bl.q, dq.data(), n, da.data(), false);
  linear_backward(bl.k, dk.data(), n, da.data(), true);
  linear_backward(bl.v, dv.data(), n, da.data(), true);
  std::copy(dho.begin(), dho.end(), dx);
  if (pre) norm_backward(im, bl.attn_norm, x, da.data(), n, dx);
  else
    for (int64_t i = 0; i < n * d; ++i) dx[i] += da[size_t(i)];
}

// The backward pass needs every linear of the block as float weights (not packed codes).
bool all_float(const Block& b, ModelFamily family) {
  std::vector<const Linear*> used = {&b.q, &b.k, &b.v, &b.o};
  if (family == ModelFamily::kLlama) used.insert(used.end(), {&b.gate, &b.up, &b.down});
  else used.insert(used.end(), {&b.fc1, &b.fc2});
  return std::all_of(used.begin(), used.end(), [](const Linear* l) { return !l->packed && !l->w.empty(); });
}

}  // namespace

// A block of the shared models at 512 tokens keeps under 10 MiB of tape; Llama-7B at 2048 tokens
// about 1.1 GiB, so the default budget keeps its last block only.
struct BackwardWorkspace::Buffers {
  std::vector<std::vector<float>> inputs;  // [block - first]: the block's input
  std::vector<BlockTape> tapes;            // [i]: block layers - kept + i
  BlockTape recomputed;
  RowMatrix logits;
};
BackwardWorkspace::BackwardWorkspace() : buffers(new Buffers) {}
BackwardWorkspace::~BackwardWorkspace() = default;

Status backward_block(const Model& model, int layer, const float* x, const float* dout, int64_t n,
                      const LinearGradientHook& hook, BackwardWorkspace* workspace) {
  const Model::Impl& im = internal::ModelAccess::impl(model);
  const ModelConfig& cfg = im.cfg;
  if (layer < 0 || layer >= int(cfg.num_layers) || !model.block_loaded(layer))
    return Status::InvalidArgument("backward: block " + std::to_string(layer) + " is not loaded");
  const Block& bl = im.blocks[size_t(layer)];
  if (!all_float(bl, cfg.family))
    return Status::InvalidArgument("backward: block " + std::to_string(layer) + " has quantized linears (the backward pass runs in float)");
  BackwardWorkspace local;
  BackwardWorkspace::Buffers& ws = workspace ? *workspace->buffers : *local.buffers;
  const int64_t d = cfg.hidden_size;
  std::vector<float> out(static_cast<size_t>(n * d)), dx(static_cast<size_t>(n * d));
  block_forward(im, bl, x, n, out.data(), &ws.recomputed);
  block_backward(im, bl, x, ws.recomputed, dout, n, dx.data(), hook);
  return Status::Ok();
}

Result<WindowGradient> backward_window(const Model& model, int first, int last_hooked, const float* x,
                                       const int32_t* tokens, int64_t n, const LinearGradientHook& hook,
                                       BackwardWorkspace* workspace, int64_t tape_budget_bytes,
                                       const BlockGradientHook& on_output_gradient) {
  const Model::Impl& im = internal::ModelAccess::impl(model);
  const ModelConfig& cfg = im.cfg;
  const int layers = int(cfg.num_layers);
  if (first < 0 || first >= layers) return Status::InvalidArgument("backward: block " + std::to_string(first) + " does not exist");
  if (n < 2) return Status::InvalidArgument("backward: a window needs at least 2 tokens");
  for (int l = first; l < layers; ++l) {
    if (!model.block_loaded(l)) return Status::InvalidArgument("backward: block " + std::to_string(l) + " is not loaded");
    if (!all_float(im.blocks[size_t(l)], cfg.family))
      return Status::InvalidArgument("backward: block " + std::to_string(l) + " has quantized linears (the backward pass runs in float)");
  }
  for (int64_t t = 0; t < n; ++t)
    if (tokens[t] < 0 || tokens[t] >= cfg.vocab_size)
      return Status::InvalidArgument("backward: token id " + std::to_string(tokens[t]) + " is outside the vocabulary");
  const int64_t d = cfg.hidden_size, V = cfg.vocab_size;
  BackwardWorkspace local;
  BackwardWorkspace::Buffers& ws = workspace ? *workspace->buffers : *local.buffers;
  // Forward, keeping each block's input, and the whole tape of the last blocks that fit in the
  // budget (those need no recomputation below).
  std::vector<std::vector<float>>& inputs = ws.inputs;
  inputs.resize(static_cast<size_t>(layers - first));
  inputs[0].assign(x, x + n * d);
  std::vector<float> top(static_cast<size_t>(n * d));
  const int64_t kept = std::min<int64_t>(layers - first, std::max<int64_t>(0, tape_budget_bytes) / tape_bytes(cfg, n));
  std::vector<BlockTape>& tapes = ws.tapes;
  tapes.resize(static_cast<size_t>(kept));
  for (int l = first; l < layers; ++l) {
    float* out = l + 1 < layers ? (inputs[size_t(l + 1 - first)].resize(size_t(n * d)), inputs[size_t(l + 1 - first)].data())
                                : top.data();
    const int64_t slot = l - (layers - kept);
    block_forward(im, im.blocks[size_t(l)], inputs[size_t(l - first)].data(), n, out,
                  slot >= 0 ? &tapes[size_t(slot)] : nullptr);
  }
  // Head (the runtime's): logits; then the loss and ∂L/∂logits in place.
  const int64_t edim = im.has_projections ? cfg.word_embed_proj_dim : d;
  const std::vector<float>& Wv = im.lm_head.empty() ? im.embed : im.lm_head;
  RowMatrix& L = ws.logits;
  L.resize(n, V);
  model.Head(top.data(), n, L.data());
  WindowGradient r;
  const double inv = 1.0 / double(n - 1);
  std::vector<double> token_loss(static_cast<size_t>(n), 0.0);  // summed in order (thread-count independent)
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < n; ++t) {
    float* row = L.row(t).data();
    if (t == n - 1) {
      std::fill(row, row + V, 0.0f);
      continue;
    }
    double mx = row[0];
    for (int64_t i = 1; i < V; ++i) mx = std::max(mx, double(row[i]));
    double s = 0;
    for (int64_t i = 0; i < V; ++i) s += std::exp(double(row[i]) - mx);
    const int32_t label = tokens[t + 1];
    token_loss[size_t(t)] = (mx + std::log(s)) - double(row[label]);
    for (int64_t i = 0; i < V; ++i) row[i] = float(std::exp(double(row[i]) - mx) / s * inv);
    row[label] -= float(inv);
  }
  double loss = 0;
  for (double v : token_loss) loss += v;
  r.loss = loss * inv;
  std::vector<float> dtop(static_cast<size_t>(n * d), 0.0f);
  {
    RowMatrix dH(n, edim);
    dense::gemm(false, false, n, edim, V, 1.0f, L.data(), V, Wv.data(), edim, 0.0f, dH.data(), edim);
    std::vector<float> dhn(static_cast<size_t>(n * d));
    if (im.has_projections) {
      dense::gemm(false, false, n, d, edim, 1.0f, dH.data(), edim, im.project_out.w.data(), d, 0.0f, dhn.data(), d);
    } else {
      std::copy(dH.data(), dH.data() + n * d, dhn.data());
    }
    if (im.has_final_norm) norm_backward(im, im.final_norm, top.data(), dhn.data(), n, dtop.data());
    else dtop = dhn;
  }
  // Blocks, top down: differentiate each from its kept tape, or recompute the tape from its input.
  std::vector<float> dcur = std::move(dtop), dnext(static_cast<size_t>(n * d));
  BlockTape& recomputed = ws.recomputed;
  std::vector<float> scratch(static_cast<size_t>(n * d));
  for (int l = layers - 1; l >= first; --l) {
    const Block& bl = im.blocks[size_t(l)];
    const float* xin = inputs[size_t(l - first)].data();
    const int64_t slot = l - (layers - kept);
    if (slot < 0) block_forward(im, bl, xin, n, scratch.data(), &recomputed);
    BlockTape& tape = slot >= 0 ? tapes[size_t(slot)] : recomputed;
    if (on_output_gradient) on_output_gradient(l, dcur.data());
    block_backward(im, bl, xin, tape, dcur.data(), n, dnext.data(), l <= last_hooked ? hook : LinearGradientHook());
    std::swap(dcur, dnext);
  }
  r.dx = std::move(dcur);
  return r;
}

}  // namespace llmq::internal
