// The backward pass (OAC's gradient engine) against central finite differences of the loss, on
// tiny synthetic models of each supported architecture: the gradient of every linear's weight
// (formed here from the engine's (x, δ) pairs as Σ_t δ_t x_tᵀ) and of the block input, along
// random directions; and the loss against the runtime forward pass.
#include "model/backward.h"
#include "quant/calibration.h"

#include <gtest/gtest.h>
#include <llmq/llmq.h>

#include <cmath>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "test_util.h"

namespace llmq {
namespace {

using test::TempDir;

struct Fixture {
  TempDir dir;
  std::unique_ptr<Model> model;
  std::vector<int32_t> tokens;
  std::vector<float> x0;  // embeddings of tokens: the input of block 0
};

// Test variants by name: the four architectures, plus the layouts whose backward differs —
// OPT-350m's post-norm blocks with project_in / project_out, and Mistral with a sliding window
// shorter than the window of tokens.
void load(Fixture* f, const std::string& variant, int64_t n) {
  test::SyntheticModel sm;
  const bool opt = variant.rfind("OPT", 0) == 0;
  sm.architecture = opt ? "OPTForCausalLM" : variant == "MistralSlidingWindow" ? "MistralForCausalLM" : variant;
  if (variant == "OPTPostNormProjected") {
    sm.opt_post_norm = true;
    sm.opt_embed_proj_dim = 24;
  }
  if (variant == "MistralSlidingWindow") sm.sliding_window = 4;
  sm.hidden = 32;
  sm.intermediate = 40;
  sm.layers = 2;
  sm.heads = 4;
  sm.kv_heads = opt ? 4 : 2;
  sm.vocab = 48;
  sm.dtype = DType::kF32;
  test::write_synthetic_model(f->dir.file("m"), sm);
  auto m = Model::Load(f->dir.file("m"));
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  f->model = std::move(*m);
  f->tokens = test::random_windows(1, int(n), sm.vocab, 17)[0];
  f->x0.resize(size_t(n * sm.hidden));
  ASSERT_TRUE(f->model->Embed(f->tokens.data(), n, 0, f->x0.data()).ok());
}

double loss_of(const Fixture& f, const std::vector<float>& x) {
  auto r = internal::backward_window(*f.model, 0, -1, x.data(), f.tokens.data(), int64_t(f.tokens.size()), nullptr);
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  return r.ok() ? r->loss : NAN;
}

class BackwardTest : public ::testing::TestWithParam<std::string> {};

TEST_P(BackwardTest, LossEqualsTheRuntimeForward) {
  Fixture f;
  const int64_t n = 10;
  load(&f, GetParam(), n);
  KVCache cache = f.model->NewCache(n);
  auto logits = f.model->Forward(f.tokens.data(), n, &cache);
  ASSERT_TRUE(logits.ok());
  const int64_t V = f.model->vocab_size();
  double ce = 0;
  for (int64_t t = 0; t + 1 < n; ++t) {
    const float* l = logits->data() + t * V;
    double mx = l[0], s = 0;
    for (int64_t i = 1; i < V; ++i) mx = std::max(mx, double(l[i]));
    for (int64_t i = 0; i < V; ++i) s += std::exp(double(l[i]) - mx);
    ce += mx + std::log(s) - double(l[f.tokens[size_t(t + 1)]]);
  }
  EXPECT_NEAR(loss_of(f, f.x0), ce / double(n - 1), 1e-5);
}

// Directional central differences: along a random direction D the derivative is <grad, D>. The
// loss is fp32 (resolution ~5e-8 here), so the difference quotient carries ~5e-8 / h of noise;
// the step is 1e-2 of the weights' RMS, except for OPT, whose ReLU kinks (pre-activations that
// cross zero within the step) need 1e-3: the tolerance is 2e-3 relative plus that noise.
TEST_P(BackwardTest, LinearGradientsMatchFiniteDifferences) {
  Fixture f;
  const int64_t n = 9;
  load(&f, GetParam(), n);
  std::map<std::string, std::vector<double>> grad;  // Σ_t δ_t x_tᵀ per linear
  auto r = internal::backward_window(*f.model, 0, 1, f.x0.data(), f.tokens.data(), n,
                                     [&](const LinearInfo& l, const float* x, const float* delta, int64_t nt) {
                                       auto& g = grad[l.module];
                                       ASSERT_TRUE(g.empty()) << l.module << " reported twice";
                                       g.assign(size_t(l.rows * l.cols), 0.0);
                                       for (int64_t t = 0; t < nt; ++t)
                                         for (int64_t i = 0; i < l.rows; ++i)
                                           for (int64_t j = 0; j < l.cols; ++j)
                                             g[size_t(i * l.cols + j)] += double(delta[t * l.rows + i]) * x[t * l.cols + j];
                                     });
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  const auto& linears = f.model->checkpoint().linears();
  EXPECT_EQ(grad.size(), linears.size());
  const double step = GetParam().rfind("OPT", 0) == 0 ? 1e-3 : 1e-2;
  uint32_t seed = 100;
  for (const LinearInfo& l : linears) {
    ASSERT_TRUE(grad.count(l.module)) << l.module << " got no gradient";
    auto w = f.model->checkpoint().linear_weight(l);
    ASSERT_TRUE(w.ok());
    const auto dir = test::random_normal(w->size(), seed++);
    double analytic = 0, wss = 0;
    for (size_t i = 0; i < w->size(); ++i) {
      analytic += grad[l.module][i] * dir[i];
      wss += double((*w)[i]) * (*w)[i];
    }
    const double h = step * std::sqrt(wss / double(w->size()));
    double loss[2];
    for (int s = 0; s < 2; ++s) {
      std::vector<float> wp(*w);
      for (size_t i = 0; i < wp.size(); ++i) wp[i] += float((s == 0 ? h : -h) * dir[i]);
      ASSERT_TRUE(f.model->SetLinearWeight(l, std::move(wp)).ok());
      loss[s] = loss_of(f, f.x0);
    }
    ASSERT_TRUE(f.model->SetLinearWeight(l, *w).ok());
    const double fd = (loss[0] - loss[1]) / (2 * h);
    EXPECT_NEAR(analytic, fd, 2e-3 * std::fabs(fd) + 5e-8 / h) << l.module;
  }
  // The gradient at the block input (embeddings) as well.
  const auto dir = test::random_normal(f.x0.size(), 7);
  double analytic = 0;
  for (size_t i = 0; i < dir.size(); ++i) analytic += double(r->dx[i]) * dir[i];
  const double h = step * 0.05;  // embeddings are N(0, 0.05)
  std::vector<float> xp(f.x0), xm(f.x0);
  for (size_t i = 0; i < dir.size(); ++i) {
    xp[i] += float(h * dir[i]);
    xm[i] -= float(h * dir[i]);
  }
  const double fd = (loss_of(f, xp) - loss_of(f, xm)) / (2 * h);
  EXPECT_NEAR(analytic, fd, 2e-3 * std::fabs(fd) + 5e-8 / h) << "input";
}

INSTANTIATE_TEST_SUITE_P(Architectures, BackwardTest,
                         ::testing::Values("LlamaForCausalLM", "Qwen2ForCausalLM", "MistralForCausalLM",
                                           "OPTForCausalLM", "OPTPostNormProjected", "MistralSlidingWindow"),
                         [](const auto& info) { return info.param; });

// Keeping every block's intermediates, keeping none (each recomputed from its input) and
// reusing one workspace across windows of different lengths and first blocks give the same
// loss, input gradient and (x, δ) pairs.
TEST(Backward, KeptTapesRecomputationAndWorkspaceReuseAgree) {
  Fixture f;
  const int64_t n = 11;
  load(&f, "LlamaForCausalLM", n);
  using Pairs = std::map<std::string, std::vector<float>>;
  auto run = [&](int64_t len, internal::BackwardWorkspace* ws, int64_t budget, Pairs* pairs, int first = 0) {
    auto r = internal::backward_window(
        *f.model, first, 1, f.x0.data(), f.tokens.data(), len,
        [&](const LinearInfo& l, const float* x, const float* d, int64_t nt) {
          auto& v = (*pairs)[l.module];
          v.assign(x, x + nt * l.cols);
          v.insert(v.end(), d, d + nt * l.rows);
        },
        ws, budget);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? *r : internal::WindowGradient();
  };
  Pairs kept, recomputed, reused;
  const auto a = run(n, nullptr, internal::kDefaultTapeBudgetBytes, &kept);
  const auto b = run(n, nullptr, 0, &recomputed);
  internal::BackwardWorkspace ws;
  Pairs shorter;
  run(n - 4, &ws, internal::kDefaultTapeBudgetBytes, &shorter);     // leaves smaller buffers behind
  run(n, &ws, internal::kDefaultTapeBudgetBytes, &shorter, 1);       // and one block fewer
  const auto c = run(n, &ws, internal::kDefaultTapeBudgetBytes, &reused);
  ASSERT_EQ(kept.size(), f.model->checkpoint().linears().size());
  for (const auto* other : {&b, &c}) {
    EXPECT_EQ(other->loss, a.loss);
    ASSERT_EQ(other->dx.size(), a.dx.size());
    for (size_t i = 0; i < a.dx.size(); ++i) ASSERT_NEAR(other->dx[i], a.dx[i], 1e-6f * (1 + std::fabs(a.dx[i]))) << i;
  }
  for (const auto* other : {&recomputed, &reused})
    for (const auto& [module, v] : kept) {
      ASSERT_EQ(other->at(module).size(), v.size()) << module;
      for (size_t i = 0; i < v.size(); ++i) ASSERT_NEAR(other->at(module)[i], v[i], 1e-6f * (1 + std::fabs(v[i]))) << module;
    }
}

TEST(Backward, RefusesQuantizedBlocksAndBadInput) {
  Fixture f;
  load(&f, "LlamaForCausalLM", 6);
  EXPECT_FALSE(internal::backward_window(*f.model, 0, 1, f.x0.data(), f.tokens.data(), 1, nullptr).ok());
  EXPECT_FALSE(internal::backward_window(*f.model, 2, 1, f.x0.data(), f.tokens.data(), 6, nullptr).ok());
  std::vector<int32_t> bad(f.tokens);
  bad[3] = 1000;
  EXPECT_FALSE(internal::backward_window(*f.model, 0, 1, f.x0.data(), bad.data(), 6, nullptr).ok());
  QuantizeOptions o;
  o.spec.bits = 4;
  o.spec.group_size = 16;
  ASSERT_TRUE(quantize_checkpoint(f.dir.file("m"), f.dir.file("q"), o).ok());
  auto q = Model::Load(f.dir.file("q"));
  ASSERT_TRUE(q.ok());
  auto r = internal::backward_window(**q, 0, 1, f.x0.data(), f.tokens.data(), 6, nullptr);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("quantized"), std::string::npos);
}


// The calibrator's output-adaptive Hessians are the direct sums over explicitly formed
// per-sequence weight gradients G_n = Σ_t δ_t x_tᵀ (H ∝ Σ_n G_nᵀ G_n), or per token
// H ∝ Σ_t ‖δ_t‖² x_t x_tᵀ, up to one positive factor (which changes no GPTQ decision, §6.4).
TEST(OacHessian, EqualsTheSumOfExplicitPerSequenceGradients) {
  TempDir dir;
  test::SyntheticModel sm;
  sm.hidden = 32;
  sm.intermediate = 40;
  sm.dtype = DType::kF32;
  test::write_synthetic_model(dir.path(), sm);
  internal::CalibrationSet set;
  set.seq_len = 12;
  set.windows = test::random_windows(3, 12, sm.vocab, 23);
  auto ck = Checkpoint::Open(dir.path());
  ASSERT_TRUE(ck.ok());
  std::vector<LinearInfo> block1;
  for (const LinearInfo& l : (*ck)->linears())
    if (l.layer == 1) block1.push_back(l);
  for (bool per_token : {false, true}) {
    auto calib = internal::BlockwiseCalibrator::Create(dir.path(), set, false);
    ASSERT_TRUE(calib.ok());
    ASSERT_TRUE((*calib)->Advance(0).ok());  // the stored activations are now block 1's inputs
    std::vector<std::vector<float>> inputs;
    for (int64_t i = 0; i < 3; ++i) inputs.push_back((*calib)->Activations(i));
    auto got = (*calib)->CollectOutputAdaptiveHessians(1, block1, per_token);
    ASSERT_TRUE(got.ok()) << got.status().ToString();
    // Direct: the engine's (x, δ) per window, the weight gradient formed in fp64.
    std::map<std::string, std::vector<double>> expect;
    for (int64_t i = 0; i < 3; ++i) {
      auto r = internal::backward_window(
          (*calib)->model(), 1, 1, inputs[size_t(i)].data(), set.windows[size_t(i)].data(), 12,
          [&](const LinearInfo& l, const float* x, const float* d, int64_t n) {
            auto& H = expect[l.module];
            H.resize(size_t(l.cols * l.cols), 0.0);
            if (per_token) {
              for (int64_t t = 0; t < n; ++t) {
                double e = 0;
                for (int64_t r0 = 0; r0 < l.rows; ++r0) e += double(d[t * l.rows + r0]) * d[t * l.rows + r0];
                for (int64_t a = 0; a < l.cols; ++a)
                  for (int64_t b = 0; b < l.cols; ++b) H[size_t(a * l.cols + b)] += e * x[t * l.cols + a] * x[t * l.cols + b];
              }
              return;
            }
            std::vector<double> G(size_t(l.rows * l.cols), 0.0);
            for (int64_t t = 0; t < n; ++t)
              for (int64_t r0 = 0; r0 < l.rows; ++r0)
                for (int64_t c = 0; c < l.cols; ++c) G[size_t(r0 * l.cols + c)] += double(d[t * l.rows + r0]) * x[t * l.cols + c];
            for (int64_t a = 0; a < l.cols; ++a)
              for (int64_t b = 0; b < l.cols; ++b)
                for (int64_t r0 = 0; r0 < l.rows; ++r0)
                  H[size_t(a * l.cols + b)] += G[size_t(r0 * l.cols + a)] * G[size_t(r0 * l.cols + b)];
          });
      ASSERT_TRUE(r.ok());
    }
    for (const LinearInfo& l : block1) {
      const std::vector<float> h = (*got)[l.module]->Hessian();
      const std::vector<double>& e = expect[l.module];
      ASSERT_EQ(h.size(), e.size());
      double th = 0, te = 0;
      for (int64_t j = 0; j < l.cols; ++j) {
        th += h[size_t(j * l.cols + j)];
        te += e[size_t(j * l.cols + j)];
      }
      ASSERT_GT(te, 0.0) << l.module;
      double worst = 0;
      for (size_t k = 0; k < h.size(); ++k) worst = std::max(worst, std::fabs(h[k] / th - e[k] / te));
      EXPECT_LT(worst, 1e-4 / double(l.cols)) << l.module << (per_token ? " per token" : " per sequence");
    }
  }
}

// With every δ_t of the same norm the per-token Hessian is GPTQ's Σ x_t x_tᵀ times ‖δ‖²; per
// sequence with one token per sequence it is the same; with constant δ over a sequence,
// G = δ (Σ_t x_t)ᵀ, so H = ‖δ‖² (Σ_t x_t)(Σ_t x_t)ᵀ.
TEST(OacHessian, ConstantGradientEnergyGivesGptqsHessian) {
  const int64_t n = 10, cols = 6, rows = 4;
  const auto x = test::random_normal(size_t(n * cols), 3);
  auto dir = test::random_normal(size_t(rows), 4);
  std::vector<float> delta(static_cast<size_t>(n * rows));
  for (int64_t t = 0; t < n; ++t)  // the same norm 2 for every token, different directions
    for (int64_t r = 0; r < rows; ++r) delta[size_t(t * rows + r)] = float((t % 2 ? -2.0 : 2.0) * dir[size_t((r + t) % rows)]);
  double nd = 0;
  for (int64_t r = 0; r < rows; ++r) nd += double(dir[size_t(r)]) * dir[size_t(r)];
  HessianAccumulator gptq(cols), token(cols);
  gptq.Add(x.data(), n);
  internal::add_output_adaptive(&token, x.data(), delta.data(), n, rows, 1.0f, true);
  const auto hg = gptq.Hessian(), ht = token.Hessian();
  for (size_t k = 0; k < hg.size(); ++k) EXPECT_NEAR(ht[k], 4.0 * nd * hg[k], 1e-4 * (1 + std::fabs(ht[k]))) << k;
  // Per sequence, constant δ: rank one along Σ_t x_t.
  std::vector<float> same(static_cast<size_t>(n * rows));
  for (int64_t t = 0; t < n; ++t)
    for (int64_t r = 0; r < rows; ++r) same[size_t(t * rows + r)] = dir[size_t(r)];
  HessianAccumulator seq(cols);
  internal::add_output_adaptive(&seq, x.data(), same.data(), n, rows, 1.0f, false);
  std::vector<double> sx(static_cast<size_t>(cols), 0.0);
  for (int64_t t = 0; t < n; ++t)
    for (int64_t j = 0; j < cols; ++j) sx[size_t(j)] += x[size_t(t * cols + j)];
  const auto hs = seq.Hessian();
  const double c = hs[0] / (sx[0] * sx[0]);  // the accumulator's 2/N factor
  for (int64_t a = 0; a < cols; ++a)
    for (int64_t b = 0; b < cols; ++b)
      EXPECT_NEAR(hs[size_t(a * cols + b)], c * sx[size_t(a)] * sx[size_t(b)], 1e-4 * (1 + std::fabs(hs[size_t(a * cols + b)])));
  EXPECT_NEAR(c * double(rows), 2.0 * nd, 1e-4 * nd);  // 2/rows per added row, times ‖δ‖²
}

// The quantized model in `folder` run through the kernels gives the logits of the same model
// with every linear replaced by its dequantized float weights (dense part plus outliers).
void expect_kernels_match_dequantized(const std::string& folder, int64_t vocab) {
  test::expect_kernels_match_dequantized(folder, test::random_windows(1, 16, int(vocab), 9)[0]);
}

// Through the whole-checkpoint entry point: oac and spqr+oac write loadable models, the report
// carries the OAC keys, the same inputs give the same bytes, and the kernels run the written model
// as its dequantized weights.
TEST(QuantizeOac, WritesLoadableDeterministicOutput) {
  TempDir dir;
  test::SyntheticModel sm;
  sm.dtype = DType::kF32;
  test::write_synthetic_model(dir.file("in"), sm);
  const std::string calib = dir.file("calib.json");
  std::ofstream(calib) << nlohmann::json(test::random_windows(4, 16, sm.vocab, 5)).dump();
  QuantizeOptions o;
  o.method = "oac";
  o.spec.bits = 3;
  o.spec.group_size = 32;
  o.spec.symmetric = false;
  o.calibration.data = calib;
  o.calibration.nsamples = 4;
  o.calibration.seq_len = 16;
  auto a = quantize_checkpoint(dir.file("in"), dir.file("a"), o);
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  auto b = quantize_checkpoint(dir.file("in"), dir.file("b"), o);
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(test::read_bytes(dir.file("a/model.safetensors")), test::read_bytes(dir.file("b/model.safetensors")));
  EXPECT_GT(a->oac_backward_seconds, 0.0);
  auto j = nlohmann::json::parse(test::read_bytes(dir.file("a/llmq_report.json")));
  EXPECT_EQ(j["oac"]["grad"], "sequence");
  EXPECT_TRUE(j["layers"][0].contains("gptq_loss"));
  expect_kernels_match_dequantized(dir.file("a"), sm.vocab);
  // Per-token Hessians, and float-model gradients, each give a different (valid) model; the first
  // block is the same with float-model gradients (nothing before it is quantized), the rest not.
  QuantizeOptions t = o;
  t.oac.per_token = true;
  ASSERT_TRUE(quantize_checkpoint(dir.file("in"), dir.file("t"), t).ok());
  EXPECT_NE(test::read_bytes(dir.file("t/model.safetensors")), test::read_bytes(dir.file("a/model.safetensors")));
  QuantizeOptions once = o;
  once.oac.once = true;
  ASSERT_TRUE(quantize_checkpoint(dir.file("in"), dir.file("once"), once).ok());
  auto ca = Checkpoint::Open(dir.file("a")), co = Checkpoint::Open(dir.file("once"));
  ASSERT_TRUE(ca.ok() && co.ok());
  for (const LinearInfo& l : (*ca)->linears()) {
    auto qa = (*ca)->get_quantized(l.module), qo = (*co)->get_quantized(l.module);
    ASSERT_TRUE(qa.ok() && qo.ok());
    if (l.layer == 0) {
      EXPECT_EQ(qa->codes, qo->codes) << l.module;
    } else if (l.role == LinearRole::kDown) {
      EXPECT_NE(qa->codes, qo->codes) << l.module;
    }
  }
  // SpQR with the output-adaptive Hessian.
  QuantizeOptions s = o;
  s.method = "spqr+oac";
  s.spec.symmetric = true;
  s.spec.group_size = 16;
  s.spec.scale_bits = 3;
  s.gptq.damp = 1.0;
  s.gptq.outlier_threshold = 0.2;
  auto rs = quantize_checkpoint(dir.file("in"), dir.file("s"), s);
  ASSERT_TRUE(rs.ok()) << rs.status().ToString();
  int64_t outliers = 0;
  for (const LayerReport& l : rs->layers) outliers += l.outliers;
  EXPECT_GT(outliers, 0);
  expect_kernels_match_dequantized(dir.file("s"), sm.vocab);
}

// OAC linear in depth (--oac-once): with the later blocks' ∂L/∂out kept from one backward pass per
// window, each block is differentiated alone (backward_block) and gives the Hessians the per-block
// passes through every later block give; over budget the calibrator falls back to those passes.
TEST(OacHessian, KeptOutputGradientsGiveThePerBlockPassesHessians) {
  for (const char* arch : {"LlamaForCausalLM", "OPTForCausalLM"}) {
    TempDir dir;
    test::SyntheticModel sm;
    sm.architecture = arch;
    sm.hidden = 32;
    sm.intermediate = 40;
    sm.layers = 4;
    sm.dtype = DType::kF32;
    test::write_synthetic_model(dir.path(), sm);
    internal::CalibrationSet set;
    set.seq_len = 12;
    set.windows = test::random_windows(3, 12, sm.vocab, 29);
    auto ck = Checkpoint::Open(dir.path());
    ASSERT_TRUE(ck.ok());
    auto per_block = internal::BlockwiseCalibrator::Create(dir.path(), set, false);
    auto kept = internal::BlockwiseCalibrator::Create(dir.path(), set, false);
    auto tiny = internal::BlockwiseCalibrator::Create(dir.path(), set, false);
    ASSERT_TRUE(per_block.ok() && kept.ok() && tiny.ok());
    (*kept)->KeepOutputGradients(int64_t(1) << 30);
    (*tiny)->KeepOutputGradients(16);  // too small: the per-block passes
    for (int layer = 0; layer < sm.layers; ++layer) {
      std::vector<LinearInfo> block;
      for (const LinearInfo& l : (*ck)->linears())
        if (l.layer == layer) block.push_back(l);
      auto a = (*per_block)->CollectOutputAdaptiveHessians(layer, block, false);
      auto b = (*kept)->CollectOutputAdaptiveHessians(layer, block, false);
      auto c = (*tiny)->CollectOutputAdaptiveHessians(layer, block, false);
      ASSERT_TRUE(a.ok() && b.ok() && c.ok()) << arch;
      for (const LinearInfo& l : block) {
        const std::vector<float> ha = (*a)[l.module]->Hessian(), hb = (*b)[l.module]->Hessian(),
                                 hc = (*c)[l.module]->Hessian();
        double num = 0, den = 0;
        for (size_t k = 0; k < ha.size(); ++k) num += double(ha[k] - hb[k]) * (ha[k] - hb[k]), den += double(ha[k]) * ha[k];
        EXPECT_GT(den, 0.0) << arch << " " << l.module;
        EXPECT_LT(std::sqrt(num / den), 1e-5) << arch << " " << l.module;
        EXPECT_EQ(ha, hc) << arch << " " << l.module << ": the fallback is the per-block pass";
      }
      for (auto* c : {&*per_block, &*kept, &*tiny}) ASSERT_TRUE((**c).Advance(layer).ok());
    }
    EXPECT_TRUE((*kept)->kept_output_gradients()) << arch;
    EXPECT_FALSE((*tiny)->kept_output_gradients()) << arch;
  }
}

}  // namespace
}  // namespace llmq
