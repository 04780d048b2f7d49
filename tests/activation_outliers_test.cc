// Activation outliers end to end (issue 20, docs/OUTLIERS.md): the function-preserving outlier
// transform (bench/outlier_model.h) and what W8A8, SmoothQuant, LLM.int8 and integer outliers do
// on the transformed real model. The kernels' own tests are in kernels_test.cc (KernelsInt8Outliers).
#include <gtest/gtest.h>
#include <llmq/llmq.h>

#include <cmath>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>

#include "outlier_model.h"
#include "test_util.h"

namespace llmq {
namespace {

using test::TempDir;

bench::OutlierInjection injection() {
  bench::OutlierInjection o;
  o.k = 64;  // a power of two: the transform is exact
  o.hidden_channels = 2;
  o.intermediate_channels = 2;
  return o;
}

// The transformed model computes the same logits bit for bit, and its linears really see outliers.
TEST(OutlierModel, SameFunctionWithOutlierChannels) {
  TempDir dir;
  const std::string model = test::stories260k();
  std::string summary;
  ASSERT_TRUE(bench::inject_activation_outliers(model, dir.file("out"), injection(), &summary).ok());
  const auto s = nlohmann::json::parse(summary);
  EXPECT_EQ(s["hidden_channels"].size(), 2u);
  EXPECT_EQ(s["intermediate_channels"].size(), 5u);  // one pair per layer
  std::ifstream f(dir.file("out") + "/outlier_injection.json");
  EXPECT_TRUE(f.good());

  auto a = Model::Load(model);
  auto b = Model::Load(dir.file("out"));
  ASSERT_TRUE(a.ok() && b.ok()) << b.status().ToString();
  const std::vector<int32_t> ids = test::tinystories_eval_ids(model, 20000);
  ASSERT_GE(ids.size(), 256u);
  KVCache ca = (*a)->NewCache(256), cb = (*b)->NewCache(256);
  auto la = (*a)->Forward(ids.data(), 256, &ca);
  auto lb = (*b)->Forward(ids.data(), 256, &cb);
  ASSERT_TRUE(la.ok() && lb.ok());
  EXPECT_EQ(*la, *lb);

  // absmax / rms per token of the linears' inputs, averaged: the injected channels dominate.
  auto absmax_ratio = [&](const Model& m, LinearRole role) {
    std::vector<float> x(size_t(64 * m.hidden_size()));
    EXPECT_TRUE(m.Embed(ids.data(), 64, 0, x.data()).ok());
    KVCache c = m.NewCache(64);
    double ratio = 0;
    m.RunBlock(0, x.data(), 64, &c, [&](const LinearInfo& l, const float* in, int64_t n) {
      if (l.role != role) return;
      double sum_max = 0, sum_rms = 0;
      for (int64_t t = 0; t < n; ++t) {
        double mx = 0, ss = 0;
        for (int64_t j = 0; j < l.cols; ++j) {
          mx = std::max(mx, double(std::fabs(in[t * l.cols + j])));
          ss += double(in[t * l.cols + j]) * in[t * l.cols + j];
        }
        sum_max += mx;
        sum_rms += std::sqrt(ss / double(l.cols));
      }
      ratio = sum_max / sum_rms;
    });
    return ratio;
  };
  for (LinearRole role : {LinearRole::kQ, LinearRole::kGate, LinearRole::kDown}) {
    const double before = absmax_ratio(**a, role), after = absmax_ratio(**b, role);
    EXPECT_GT(after, 1.4 * before) << linear_role_name(role) << " input absmax / rms: " << before << " -> " << after;
  }
}

TEST(OutlierModel, RefusesWhatItCannotTransform) {
  TempDir dir;
  test::SyntheticModel opt;
  opt.architecture = "OPTForCausalLM";
  test::write_synthetic_model(dir.file("opt"), opt);
  Status st = bench::inject_activation_outliers(dir.file("opt"), dir.file("o1"), injection());
  EXPECT_NE(st.ToString().find("Llama-family"), std::string::npos) << st.ToString();
  QuantizeOptions q;
  ASSERT_TRUE(quantize_checkpoint(test::stories260k(), dir.file("q"), q).ok());
  st = bench::inject_activation_outliers(dir.file("q"), dir.file("o2"), injection());
  EXPECT_NE(st.ToString().find("float checkpoint"), std::string::npos) << st.ToString();
  st = bench::inject_activation_outliers(test::stories260k(), dir.file("q"), injection());  // not empty
  EXPECT_NE(st.ToString().find("not empty"), std::string::npos) << st.ToString();
}

// On the transformed embedded model (stories260K, k = 64, 2 + 2 channels): per-token W8A8 is far
// worse than fp32; SmoothQuant and LLM.int8 with calibrated outlier columns bring it back within
// 1%; integer outliers are within 0.1% of LLM.int8; the per-call LLM.int8 (weights of the outlier
// columns dequantized from int8, as bitsandbytes does) is still much better than plain W8A8.
TEST(OutlierModel, W8A8FailsAndTheOutlierMethodsRecover) {
  TempDir dir;
  const std::string src = dir.file("outliers");
  ASSERT_TRUE(bench::inject_activation_outliers(test::stories260k(), src, injection()).ok());
  const std::string calib = test::embedded_calibration_text();
  const std::vector<int32_t> ids = test::tinystories_eval_ids(src, 60000);
  auto ppl = [&](const std::string& f) { return test::perplexity_of(f, ids, 256, 40); };
  auto quantize = [&](const std::string& method, bool calibrated, bool integer, const std::string& out) {
    auto o = QuantizeOptions::ForMethod(method);
    ASSERT_TRUE(o.ok());
    if (method == "rtn") {
      o->spec = test::quant_spec(8, 0);
      o->int8_activations = true;
    }
    if (calibrated) {
      o->calibration.data = calib;
      o->calibration.nsamples = 32;
      o->calibration.seq_len = 256;
    }
    o->activation_outliers.integer = integer;
    auto r = quantize_checkpoint(src, dir.file(out), *o);
    ASSERT_TRUE(r.ok()) << method << ": " << r.status().ToString();
  };
  quantize("rtn", false, false, "w8a8");
  quantize("smoothquant", true, false, "sq");
  quantize("llm.int8", true, false, "li8c");
  quantize("llm.int8", true, true, "li8ci");
  quantize("llm.int8", false, false, "li8");
  quantize("llm.int8", false, true, "li8i");
  const double fp = ppl(src), w8a8 = ppl(dir.file("w8a8")), sq = ppl(dir.file("sq")), li8c = ppl(dir.file("li8c")),
               li8ci = ppl(dir.file("li8ci")), li8 = ppl(dir.file("li8")), li8i = ppl(dir.file("li8i"));
  const std::string all = "fp32 " + std::to_string(fp) + " w8a8 " + std::to_string(w8a8) + " smoothquant " +
                          std::to_string(sq) + " llm.int8 calibrated " + std::to_string(li8c) + " (integer " +
                          std::to_string(li8ci) + ") per call " + std::to_string(li8) + " (integer " +
                          std::to_string(li8i) + ")";
  EXPECT_GT(w8a8, fp * 1.2) << all;
  EXPECT_LT(sq, fp * 1.01) << all;
  EXPECT_LT(li8c, fp * 1.01) << all;
  EXPECT_LT(std::fabs(li8ci - li8c), 0.001 * li8c) << all;
  EXPECT_LT(li8, fp * 1.1) << all;
  EXPECT_LT(std::fabs(li8i - li8), 0.002 * li8) << all;

  // The calibrated columns are in the checkpoint; the runtime counts them per call.
  auto m = Model::Load(dir.file("li8c"));
  ASSERT_TRUE(m.ok());
  for (const auto& [kernel, count] : (*m)->QuantizedKernels(8))
    EXPECT_NE(kernel.find("fp32 outliers"), std::string::npos) << kernel;
  PerplexityOptions po;
  po.seq_len = 64;
  po.max_chunks = 2;
  ASSERT_TRUE(evaluate_perplexity(**m, ids, po).ok());
  int64_t with_columns = 0;
  for (const auto& [module, st] : (*m)->ActivationOutlierStatistics()) with_columns += st.outlier_columns > 0;
  EXPECT_GT(with_columns, 0);
}

}  // namespace
}  // namespace llmq

namespace llmq {
namespace {

// Damaged activation-outlier metadata in a quantized folder's config.json is a clear error naming
// the key, never a silently different runtime.
TEST(OutlierModel, DamagedOutlierMetadataIsRefused) {
  TempDir dir;
  auto o = QuantizeOptions::ForMethod("llm.int8");
  ASSERT_TRUE(o.ok());
  o->calibration.data = test::embedded_calibration_text();
  o->calibration.nsamples = 4;
  o->calibration.seq_len = 64;
  o->activation_outliers.threshold = 1.0;  // some columns on the plain model
  ASSERT_TRUE(quantize_checkpoint(test::stories260k(), dir.file("q"), *o).ok());
  const std::string config_path = dir.file("q") + "/config.json";
  const nlohmann::json good = nlohmann::json::parse(test::read_bytes(config_path));
  std::string module;
  for (auto it = good["quantization_config"]["modules"].begin(); it != good["quantization_config"]["modules"].end(); ++it)
    if (it.value().contains("activation_outlier_columns")) module = it.key();
  ASSERT_FALSE(module.empty());
  struct Damage {
    std::function<void(nlohmann::json&)> apply;
    std::string message;
  };
  const std::vector<Damage> damages = {
      {[](nlohmann::json& c) { c["quantization_config"]["activation_outliers"] = 6; }, "activation_outliers must be"},
      {[](nlohmann::json& c) { c["quantization_config"]["activation_outliers"]["threshold"] = -1; }, "positive number"},
      {[](nlohmann::json& c) { c["quantization_config"]["activation_outliers"]["integer"] = "yes"; }, "activation_outliers must be"},
      {[](nlohmann::json& c) { c["quantization_config"]["activations"] = "fp32"; }, "not int8"},
      {[&](nlohmann::json& c) { c["quantization_config"]["modules"][module]["activation_outlier_columns"] = {5, 3}; },
       "strictly increasing"},
      {[&](nlohmann::json& c) { c["quantization_config"]["modules"][module]["activation_outlier_columns"] = {100000}; },
       "outside"},
      {[&](nlohmann::json& c) { c["quantization_config"]["modules"][module]["activation_outlier_columns"] = "all"; },
       "array of column indices"},
  };
  for (const Damage& d : damages) {
    nlohmann::json c = good;
    d.apply(c);
    test::write_bytes(config_path, c.dump());
    auto m = Model::Load(dir.file("q"));
    ASSERT_FALSE(m.ok()) << d.message;
    EXPECT_NE(m.status().ToString().find(d.message), std::string::npos) << m.status().ToString();
  }
  test::write_bytes(config_path, good.dump());
  EXPECT_TRUE(Model::Load(dir.file("q")).ok());
}

}  // namespace
}  // namespace llmq
