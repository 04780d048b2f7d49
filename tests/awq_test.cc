// AWQ: the scale search against a direct evaluation, folding exactness on every supported block
// shape (Llama with grouped-query attention, OPT with biases), alpha = 0 equal to RTN, resume, and
// AWQ against RTN on a real model.
#include "quant/awq.h"

#include <gtest/gtest.h>
#include <llmq/llmq.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "quant/calibration.h"
#include "test_util.h"

namespace llmq {
namespace {

namespace fs = std::filesystem;
using test::random_windows;
using test::TempDir;

// One linear with one dominant input channel: the search must pick the alpha that a direct fp64
// evaluation of every grid point finds best, and it must protect that channel (alpha > 0).
TEST(AwqSearch, PicksTheBestAlphaForADominantChannel) {
  const int64_t tokens = 256, cols = 64, rows = 16;
  std::vector<float> x = test::random_normal(size_t(tokens * cols), 11);
  for (int64_t t = 0; t < tokens; ++t) x[size_t(t * cols + 5)] *= 40.0f;  // the salient channel
  const std::vector<float> w = test::random_normal(size_t(rows * cols), 12, 0.05f);
  QuantSpec spec;
  spec.bits = 3;
  spec.group_size = 32;
  const int grid = 20;
  const std::vector<float> x_mean = internal::mean_abs_per_column(x.data(), tokens, cols);
  HessianAccumulator acc(cols);
  acc.Add(x.data(), tokens);
  const std::vector<float> h = acc.Hessian();
  auto r = internal::awq_search_scales(x_mean, nullptr, grid, [&](const std::vector<float>& s) {
    return internal::linear_output_mse(h, cols, {{w.data(), rows}}, s, spec);
  });
  ASSERT_TRUE(r.ok()) << r.status().ToString();

  // The direct evaluation: s = mean|x|^a / sqrt(max * min), RTN of W diag(s), error of the outputs.
  double best = INFINITY, best_alpha = -1, unscaled = 0;
  for (int i = -1; i < grid; ++i) {
    const double a = double(i) / grid;
    std::vector<double> s(static_cast<size_t>(cols), 1.0);
    if (i >= 0) {
      double mx = 0, mn = INFINITY;
      for (int64_t j = 0; j < cols; ++j) {
        s[size_t(j)] = std::max(std::pow(double(x_mean[size_t(j)]), a), 1e-4);
        mx = std::max(mx, s[size_t(j)]);
        mn = std::min(mn, s[size_t(j)]);
      }
      for (double& v : s) v /= std::sqrt(mx * mn);
    }
    std::vector<float> ws(w.size());
    for (int64_t k = 0; k < rows * cols; ++k) ws[size_t(k)] = float(w[size_t(k)] * s[size_t(k % cols)]);
    auto q = quantize_rtn(ws.data(), rows, cols, spec);
    ASSERT_TRUE(q.ok());
    const std::vector<float> dq = dequantize(*q);
    double err = 0;
    for (int64_t t = 0; t < tokens; ++t)
      for (int64_t o = 0; o < rows; ++o) {
        double e = 0;
        for (int64_t j = 0; j < cols; ++j)
          e += double(x[size_t(t * cols + j)]) * (dq[size_t(o * cols + j)] / s[size_t(j)] - w[size_t(o * cols + j)]);
        err += e * e;
      }
    err /= double(tokens * rows);
    if (i < 0) {
      unscaled = err;
    } else if (err < best * (1 - 1e-9)) {
      best = err;
      best_alpha = a;
    }
  }
  EXPECT_DOUBLE_EQ(r->alpha, best_alpha);
  EXPECT_NEAR(r->loss, best, 1e-4 * best);  // H in fp32
  EXPECT_NEAR(r->loss_unscaled, unscaled, 1e-4 * unscaled);
  EXPECT_GE(r->alpha, 0.25);
  EXPECT_LT(r->loss, 0.7 * r->loss_unscaled);
  EXPECT_EQ(std::max_element(r->scales.begin(), r->scales.end()) - r->scales.begin(), 5);
}

TEST(AwqSearch, ScalesAndWeightStatisticFollowTheReference) {
  // s = x^a / (w^(1-a) + 1e-4), clamped at 1e-4, divided by sqrt(max * min).
  const std::vector<float> xm = {4.0f, 1.0f, 0.0f}, wm = {0.5f, 1.0f, 0.25f};
  auto s = internal::awq_scales(xm, &wm, 0.5);
  std::vector<double> raw = {2.0 / (std::sqrt(0.5) + 1e-4), 1.0 / (1.0 + 1e-4), 1e-4};
  const double norm = std::sqrt(raw[0] * raw[2]);
  for (int j = 0; j < 3; ++j) EXPECT_NEAR(s[size_t(j)], raw[size_t(j)] / norm, 1e-5 * raw[size_t(j)] / norm);
  // alpha = 0 without duo scaling: no scaling at all.
  for (float v : internal::awq_scales(xm, nullptr, 0.0)) EXPECT_FLOAT_EQ(v, 1.0f);
  // Weight statistic: |w| / max|w| of its group, averaged over rows (two rows, groups of 2).
  const std::vector<float> w = {1.0f, -0.5f, 2.0f, 4.0f, 0.0f, -3.0f, 1.0f, 1.0f};
  auto m = internal::awq_weight_mean({{w.data(), 2}}, 4, 2);
  EXPECT_NEAR(m[0], (1.0 + 0.0) / 2, 1e-5);
  EXPECT_NEAR(m[1], (0.5 + 1.0) / 2, 1e-5);
  EXPECT_NEAR(m[2], (0.5 + 1.0) / 2, 1e-5);
  EXPECT_NEAR(m[3], (1.0 + 1.0) / 2, 1e-5);
}

TEST(AwqClip, ShrinksGroupsAndIsNeverWorseThanNoClip) {
  const int64_t tokens = 300, cols = 64, rows = 8;
  const std::vector<float> x = test::random_normal(size_t(tokens * cols), 21);
  const std::vector<float> w = test::random_normal(size_t(rows * cols), 22, 0.05f);
  QuantSpec spec;
  spec.bits = 3;
  spec.group_size = 32;
  AwqOptions o;
  std::vector<float> clipped = w;
  const double shrink = internal::awq_clip(clipped.data(), rows, cols, x.data(), tokens, spec, o);
  EXPECT_GT(shrink, 0.0);
  EXPECT_LE(shrink, o.max_shrink);
  // 3-bit Gaussian groups gain from a clip: some ranges shrank, and values were clamped, not rescaled.
  int64_t changed = 0;
  for (size_t k = 0; k < w.size(); ++k) {
    EXPECT_LE(std::fabs(clipped[k]), std::fabs(w[k]));
    changed += clipped[k] != w[k];
  }
  EXPECT_GT(changed, 0);
  // Every token is used (300 < clip_tokens) and no clip (i = 0) is a candidate: the error of
  // every group's partial products cannot grow.
  auto err = [&](const std::vector<float>& wc) {
    auto q = quantize_rtn(wc.data(), rows, cols, spec);
    const auto d = dequantize(*q);
    double e = 0;
    for (int64_t t = 0; t < tokens; ++t)
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t g = 0; g < 2; ++g) {
          double s = 0;
          for (int64_t k = g * 32; k < g * 32 + 32; ++k) s += double(x[size_t(t * cols + k)]) * (d[size_t(r * cols + k)] - w[size_t(r * cols + k)]);
          e += s * s;
        }
    return e;
  };
  EXPECT_LE(err(clipped), err(w) * (1 + 1e-6));
}

class AwqBlockTest : public ::testing::TestWithParam<std::string> {};

// The scaled float block (before quantization) computes what the original one does: every site
// folds exactly, including v -> o under grouped-query attention and OPT's biases.
TEST_P(AwqBlockTest, FoldingPreservesTheFloatBlock) {
  TempDir dir;
  test::SyntheticModel sm;
  sm.architecture = GetParam();
  sm.dtype = DType::kF32;
  sm.layers = 1;
  test::write_synthetic_model(dir.path(), sm);
  internal::CalibrationSet set;
  set.seq_len = 16;
  set.windows = random_windows(3, 16, sm.vocab, 31);
  auto calib = internal::BlockwiseCalibrator::Create(dir.path(), set, false);
  ASSERT_TRUE(calib.ok()) << calib.status().ToString();
  auto ck = Checkpoint::Open(dir.path());
  const std::vector<LinearInfo> linears = (*ck)->linears();
  auto inputs = (*calib)->CollectInputs(0, linears);
  ASSERT_TRUE(inputs.ok());
  Model& model = (*calib)->model();
  auto run_block = [&]() {
    std::vector<float> out;
    for (int64_t i = 0; i < 3; ++i) {
      std::vector<float> x = (*calib)->Activations(i);
      KVCache cache = model.NewCache(16);
      model.RunBlock(0, x.data(), 16, &cache);
      out.insert(out.end(), x.begin(), x.end());
    }
    return out;
  };
  const std::vector<float> before = run_block();
  QuantSpec spec;
  spec.bits = 3;
  spec.group_size = 32;
  AwqOptions o;
  o.clip = false;
  o.grid = 10;
  auto awq = internal::awq_block(model, **ck, 0, linears, *inputs, 16, spec, o);
  ASSERT_TRUE(awq.ok()) << awq.status().ToString();
  // The search restored the float weights.
  EXPECT_EQ(run_block(), before);
  // Every linear belongs to a site, and at least one site scaled something.
  bool scaled = false;
  for (const LinearInfo& l : linears) {
    ASSERT_TRUE(awq->site_of.count(l.module)) << l.module;
    scaled |= awq->site_of[l.module].alpha > 0 || awq->weights[l.module] != *(*ck)->linear_weight(l);
    ASSERT_TRUE(model.SetLinearWeight(l, awq->weights[l.module]).ok());
  }
  EXPECT_TRUE(scaled);
  EXPECT_FALSE(awq->replaced.empty());
  for (auto& [name, value] : awq->replaced) ASSERT_TRUE(model.SetBlockTensor(name, value).ok()) << name;
  const std::vector<float> after = run_block();
  double worst = 0, scale = 0;
  for (size_t k = 0; k < before.size(); ++k) {
    worst = std::max(worst, double(std::fabs(after[k] - before[k])));
    scale = std::max(scale, double(std::fabs(before[k])));
  }
  EXPECT_LE(worst, 2e-5 * scale) << "max |difference| " << worst << " of " << scale;
  // The cached inputs were divided by the scales: they are the folded block's inputs.
  auto refolded = (*calib)->CollectInputs(0, linears);
  ASSERT_TRUE(refolded.ok());
  for (const LinearInfo& l : linears) {
    const auto &a = *(*inputs)[l.module], &b = *(*refolded)[l.module];
    ASSERT_EQ(a.size(), b.size());
    double w = 0, m = 0;
    for (size_t k = 0; k < a.size(); ++k) {
      w = std::max(w, double(std::fabs(a[k] - b[k])));
      m = std::max(m, double(std::fabs(b[k])));
    }
    EXPECT_LE(w, 2e-5 * m) << l.module;
  }
}

INSTANTIATE_TEST_SUITE_P(Synthetic, AwqBlockTest,
                         ::testing::Values("LlamaForCausalLM", "OPTForCausalLM", "Qwen2ForCausalLM"),
                         [](const auto& info) { return info.param.substr(0, info.param.find("For")); });

TEST(AwqSites, GroupedQueryAttentionTiesVToO) {
  ModelConfig cfg;
  cfg.family = ModelFamily::kLlama;
  cfg.hidden_size = 64;
  cfg.intermediate_size = 96;
  cfg.num_layers = 1;
  cfg.num_heads = 4;
  cfg.num_kv_heads = 2;
  cfg.head_dim = 16;
  const auto linears = decoder_linears(cfg, "model.");
  AwqOptions o;
  auto sites = internal::awq_sites(cfg, "model.", 0, linears, o);
  ASSERT_EQ(sites.size(), 4u);
  EXPECT_EQ(sites[1].prev, "model.layers.0.self_attn.v_proj");
  EXPECT_EQ(sites[1].kv_tie, 2);
  o.gqa_v_to_o = false;  // the reference's choice: skip the site
  EXPECT_EQ(internal::awq_sites(cfg, "model.", 0, linears, o).size(), 3u);
}

QuantizeOptions awq_options(const std::string& calib, const std::string& method) {
  QuantizeOptions o;
  o.method = method;
  o.spec.bits = 4;
  o.spec.group_size = 32;
  o.calibration.data = calib;
  o.calibration.nsamples = 4;
  o.calibration.seq_len = 16;
  return o;
}

// alpha = 0 without duo scaling and without clipping is no scaling at all: AWQ is RTN.
TEST(QuantizeAwq, AlphaZeroEqualsRtn) {
  TempDir dir;
  test::SyntheticModel sm;
  test::write_synthetic_model(dir.file("in"), sm);
  const std::string calib = dir.file("calib.json");
  std::ofstream(calib) << nlohmann::json(random_windows(4, 16, sm.vocab, 41)).dump();
  QuantizeOptions a = awq_options(calib, "awq");
  a.awq.grid = 1;
  a.awq.duo_scaling = false;
  a.awq.clip = false;
  ASSERT_TRUE(quantize_checkpoint(dir.file("in"), dir.file("awq"), a).ok());
  QuantizeOptions r;
  r.spec = a.spec;
  ASSERT_TRUE(quantize_checkpoint(dir.file("in"), dir.file("rtn"), r).ok());
  auto qa = Checkpoint::Open(dir.file("awq")), qr = Checkpoint::Open(dir.file("rtn"));
  ASSERT_TRUE(qa.ok() && qr.ok());
  for (const LinearInfo& l : (*qr)->linears()) {
    auto ta = (*qa)->get_quantized(l.module), tr = (*qr)->get_quantized(l.module);
    ASSERT_TRUE(ta.ok() && tr.ok()) << l.module;
    EXPECT_EQ(ta->codes, tr->codes) << l.module;
    EXPECT_EQ(ta->scales, tr->scales) << l.module;
  }
  auto norm_a = (*qa)->get_float("model.layers.0.input_layernorm.weight");
  auto norm_r = (*qr)->get_float("model.layers.0.input_layernorm.weight");
  EXPECT_EQ(*norm_a, *norm_r);
}

// Both final quantizers write a loadable model whose report names the sites' alphas; awq+gptq
// (which propagates the quantized block with its folded norms) resumes to the same bytes.
TEST(QuantizeAwq, WritesAReportAndAwqGptqResumes) {
  TempDir dir;
  test::SyntheticModel sm;
  sm.layers = 3;
  test::write_synthetic_model(dir.file("in"), sm);
  const std::string calib = dir.file("calib.json");
  std::ofstream(calib) << nlohmann::json(random_windows(4, 16, sm.vocab, 42)).dump();
  for (const std::string method : {"awq", "awq+gptq"}) {
    const QuantizeOptions o = awq_options(calib, method);
    auto rep = quantize_checkpoint(dir.file("in"), dir.file(method), o);
    ASSERT_TRUE(rep.ok()) << rep.status().ToString();
    for (const auto& l : rep->layers) {
      EXPECT_GE(l.awq_alpha, 0.0) << l.module;
      // Duo scaling never tries s = 1 (neither does AutoAWQ), so a site's best can be a little worse.
      EXPECT_GT(l.awq_loss, 0.0) << l.module;
      EXPECT_LT(l.awq_loss, 1.5 * l.awq_loss_unscaled) << l.module;
      EXPECT_GT(l.output_relative_error, 0.0) << l.module;
      EXPECT_LT(l.output_relative_error, 0.5) << l.module;
    }
    auto m = Model::Load(dir.file(method));
    ASSERT_TRUE(m.ok()) << m.status().ToString();
    EXPECT_EQ((*m)->checkpoint().quantization()->method, method);
    auto j = nlohmann::json::parse(test::read_bytes(dir.file(method + "/llmq_report.json")));
    EXPECT_EQ(j["awq"]["grid"], 20);
    EXPECT_TRUE(j["layers"][0].contains("awq_alpha"));
    EXPECT_TRUE(j["layers"][2].contains("awq_clip_shrink"));   // v_proj is clipped
    EXPECT_FALSE(j["layers"][0].contains("awq_clip_shrink"));  // q_proj is not
  }
  QuantizeOptions stop = awq_options(calib, "awq+gptq");
  const std::string partial = dir.file(".resumed.llmq-partial");
  stop.cancel = [&] { return fs::exists(partial + "/block-00001.json"); };
  auto cut = quantize_checkpoint(dir.file("in"), dir.file("resumed"), stop);
  ASSERT_EQ(cut.status().code(), StatusCode::kCancelled);
  QuantizeOptions again = awq_options(calib, "awq+gptq");
  again.resume = true;
  auto rep = quantize_checkpoint(dir.file("in"), dir.file("resumed"), again);
  ASSERT_TRUE(rep.ok()) << rep.status().ToString();
  EXPECT_EQ(rep->calibration.resumed_blocks, 2);
  EXPECT_EQ(test::read_bytes(dir.file("resumed/model.safetensors")),
            test::read_bytes(dir.file("awq+gptq/model.safetensors")));
}

// On a real model AWQ must beat RTN at the same settings (4-bit, group 128 where the widths allow).
TEST(QuantizeAwq, BeatsRtnOnARealModel) {
  const std::string model = test::stories260k();
  const std::string calib = test::embedded_calibration_text();
  const std::vector<int32_t> ids = test::tinystories_eval_ids(model, 60000);
  TempDir dir;
  QuantizeOptions o = awq_options(calib, "awq");
  o.spec.group_size = 128;
  o.calibration.nsamples = 32;
  o.calibration.seq_len = 256;
  ASSERT_TRUE(quantize_checkpoint(model, dir.file("awq"), o).ok());
  QuantizeOptions r;
  r.spec = o.spec;
  ASSERT_TRUE(quantize_checkpoint(model, dir.file("rtn"), r).ok());
  auto ppl = [&](const std::string& f) { return test::perplexity_of(f, ids, 256, 20); };
  const double fp = ppl(model), pa = ppl(dir.file("awq")), pr = ppl(dir.file("rtn"));
  EXPECT_LT(pa, pr) << "fp32 " << fp << " awq " << pa << " rtn " << pr;
  EXPECT_GT(pa, fp * 0.99);
}

}  // namespace
}  // namespace llmq
