// Bit budgets (quant/bit_budget.h): the knapsack is exact (against brute force) and never exceeds
// the budget; the estimates order specs as their errors do; a whole-model run writes at most the
// budget, gives each linear a menu spec and reports it; with a GGUF type it chooses ggml types.
#include <gtest/gtest.h>
#include <llmq/llmq.h>

#include <cmath>
#include <nlohmann/json.hpp>
#include <random>
#include <set>

#include "quant/bit_budget.h"
#include "quant/gptq_internal.h"
#include "test_util.h"

namespace llmq {
namespace {

using internal::BitOption;

TEST(BitBudget, KnapsackIsExactAndWithinBudget) {
  std::mt19937 rng(3);
  for (int trial = 0; trial < 40; ++trial) {
    const int layers = 1 + int(rng() % 5), options = 1 + int(rng() % 4);
    std::vector<std::vector<BitOption>> per(static_cast<size_t>(layers));
    for (auto& opts : per)
      for (int k = 0; k < options; ++k) {
        BitOption o;
        o.bytes = 100 + rng() % 900;
        o.loss = double(rng() % 1000) / 7.0;
        opts.push_back(o);
      }
    uint64_t smallest = 0, largest = 0;
    for (const auto& opts : per) {
      uint64_t lo = UINT64_MAX, hi = 0;
      for (const auto& o : opts) lo = std::min(lo, o.bytes), hi = std::max(hi, o.bytes);
      smallest += lo, largest += hi;
    }
    const uint64_t budget = smallest + rng() % (largest - smallest + 1);
    auto choice = internal::choose_bit_options(per, budget);
    ASSERT_TRUE(choice.ok()) << choice.status().ToString();
    uint64_t bytes = 0;
    double loss = 0;
    for (int l = 0; l < layers; ++l) bytes += per[size_t(l)][size_t((*choice)[size_t(l)])].bytes, loss += per[size_t(l)][size_t((*choice)[size_t(l)])].loss;
    EXPECT_LE(bytes, budget);
    // Brute force over every assignment.
    double best = INFINITY;
    std::vector<int> idx(static_cast<size_t>(layers), 0);
    for (;;) {
      uint64_t b = 0;
      double v = 0;
      for (int l = 0; l < layers; ++l) b += per[size_t(l)][size_t(idx[size_t(l)])].bytes, v += per[size_t(l)][size_t(idx[size_t(l)])].loss;
      if (b <= budget) best = std::min(best, v);
      int l = 0;
      while (l < layers && ++idx[size_t(l)] == options) idx[size_t(l++)] = 0;
      if (l == layers) break;
    }
    EXPECT_NEAR(loss, best, 1e-9) << "trial " << trial;  // budgets of < 16384 bytes: units of one byte
  }
  std::vector<std::vector<BitOption>> one(1);
  one[0].push_back(BitOption{QuantSpec(), 500, 1.0});
  EXPECT_EQ(internal::choose_bit_options(one, 499).status().code(), StatusCode::kInvalidArgument);
}

TEST(BitBudget, EstimatesFallWithMoreBitsAndWeighTheInputs) {
  const int64_t rows = 16, cols = 64;
  const auto w = test::random_normal(size_t(rows * cols), 5, 0.05f);
  double prev = INFINITY;
  for (int bits : {2, 3, 4, 8}) {
    auto o = internal::estimate_bit_option(w.data(), rows, cols, test::quant_spec(bits, 32), nullptr);
    ASSERT_TRUE(o.ok());
    EXPECT_LT(o->loss, prev) << bits;
    EXPECT_EQ(o->bytes, quantize_rtn(w.data(), rows, cols, test::quant_spec(bits, 32))->storage_bytes());
    prev = o->loss;
  }
  // H = diag(h): tr(ΔW H ΔWᵀ) = Σ h_c ΔW_rc².
  std::vector<float> h(size_t(cols * cols), 0.0f);
  for (int64_t c = 0; c < cols; ++c) h[size_t(c * cols + c)] = float(1 + c % 5);
  auto weighted = internal::estimate_bit_option(w.data(), rows, cols, test::quant_spec(3, 32), h.data());
  ASSERT_TRUE(weighted.ok());
  const auto d = dequantize(*quantize_rtn(w.data(), rows, cols, test::quant_spec(3, 32)));
  double want = 0;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) want += (1 + c % 5) * std::pow(double(w[size_t(r * cols + c)]) - d[size_t(r * cols + c)], 2);
  EXPECT_NEAR(weighted->loss, want, 1e-4 * want);
}

// With --bit-estimate gptq the estimate is GPTQ's own error at the spec: tr(ΔW H ΔWᵀ) of the
// GPTQ result, below RTN's under a correlated H (what GPTQ minimizes), the same written bytes.
TEST(BitBudget, GptqEstimateIsGptqsErrorAndBelowRtns) {
  const int64_t rows = 32, cols = 128;
  const auto w = test::random_normal(size_t(rows * cols), 7, 0.05f);
  const auto x = test::random_normal(size_t(512 * cols), 8);
  std::vector<float> xc(x.size());
  for (int64_t t = 0; t < 512; ++t)  // correlated inputs: each column mixes in its neighbour
    for (int64_t c = 0; c < cols; ++c)
      xc[size_t(t * cols + c)] = x[size_t(t * cols + c)] + 0.8f * x[size_t(t * cols + (c + 1) % cols)];
  HessianAccumulator acc(cols);
  acc.Add(xc.data(), 512);
  const std::vector<float> h = acc.Hessian();
  GptqOptions g;
  for (int bits : {2, 3, 4}) {
    const QuantSpec spec = test::quant_spec(bits, 32);
    auto rtn = internal::estimate_bit_option(w.data(), rows, cols, spec, h.data());
    auto gptq = internal::estimate_bit_option(w.data(), rows, cols, spec, h.data(), &g);
    ASSERT_TRUE(rtn.ok() && gptq.ok());
    EXPECT_LT(gptq->loss, 0.9 * rtn->loss) << bits;
    EXPECT_EQ(gptq->bytes, rtn->bytes);
    const auto d = dequantize(gptq_quantize(w.data(), rows, cols, h.data(), spec, g)->q);
    std::vector<float> e(w.size());
    for (size_t i = 0; i < e.size(); ++i) e[i] = w[i] - d[i];
    EXPECT_NEAR(gptq->loss, internal::hessian_weighted_square(e.data(), rows, cols, h.data()), 1e-6 * gptq->loss);
  }
  auto o = QuantizeOptions::ForMethod("gptq");
  ASSERT_TRUE(o.ok());
  o->target_bits = 3.0;
  o->bit_estimate = BitEstimate::kGptq;
  o->bit_sensitivity = BitSensitivity::kWeight;
  EXPECT_EQ(o->Validate().code(), StatusCode::kInvalidArgument);  // no Hessian to run GPTQ with
}

TEST(QuantizeBitBudget, WholeModelStaysWithinTheBudget) {
  const std::string model = test::stories260k();
  test::TempDir dir;
  auto o = QuantizeOptions::ForMethod("gptq");
  ASSERT_TRUE(o.ok());
  o->target_bits = 3.25;
  o->calibration.data = test::embedded_calibration_text();
  o->calibration.nsamples = 8;
  o->calibration.seq_len = 128;
  auto rep = quantize_checkpoint(model, dir.file("mixed"), *o);
  ASSERT_TRUE(rep.ok()) << rep.status().ToString();
  EXPECT_LE(rep->bits_per_weight, 3.25);
  EXPECT_GT(rep->bits_per_weight, 3.0);  // the budget is used
  EXPECT_NEAR(rep->bit_plan_bits, rep->bits_per_weight, 1e-9);  // RTN's and GPTQ's bytes are the spec's
  EXPECT_EQ(rep->bit_sensitivity, "oac");  // the default with calibration data
  const auto menu = default_bit_menu(o->spec);
  std::set<std::string> menu_names, used;
  for (const QuantSpec& s : menu) menu_names.insert(s.ToString());
  auto ckpt = Checkpoint::Open(dir.file("mixed"));
  ASSERT_TRUE(ckpt.ok());
  for (const LayerReport& l : rep->layers) {
    EXPECT_TRUE(menu_names.count(l.bit_choice)) << l.module << " " << l.bit_choice;
    EXPECT_GE(l.estimated_loss, 0.0);
    used.insert(l.bit_choice);
    auto q = (*ckpt)->get_quantized(l.module);  // each module carries its own spec
    ASSERT_TRUE(q.ok());
    EXPECT_EQ(q->spec.ToString(), l.bit_choice) << l.module;
  }
  EXPECT_GT(used.size(), 1u);  // mixed
  // From 3 bits per weight the default menu leaves 2-bit specs out when the budget holds without
  // them (3.6 bits here), and the report's menu says so; when it does not (3.0 and the 3.25 above:
  // 64-wide rows pay a whole group, w3 g64 sym is 3.25 bits), the whole menu.
  for (double target : {3.6, 3.0}) {
    auto w = QuantizeOptions::ForMethod("rtn");
    w->target_bits = target;
    auto r = quantize_checkpoint(model, dir.file("rtn" + std::to_string(int(target * 10))), *w);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_LE(r->bits_per_weight, target);
    bool two = false;
    for (const LayerReport& l : r->layers) two |= l.bit_choice.rfind("w2 ", 0) == 0;
    EXPECT_EQ(two, target < 3.25) << target;
    EXPECT_EQ(r->bit_menu.size(), default_bit_menu(w->spec).size() - (target > 3.25 ? 3 : 0)) << target;
  }
  const nlohmann::json j = nlohmann::json::parse(rep->ToJson());
  EXPECT_EQ(j["bit_budget"]["sensitivity"], "oac");
  EXPECT_EQ(j["layers"][0]["bit_choice"].get<std::string>(), rep->layers[0].bit_choice);
  // Same inputs, same plan: the run is deterministic.
  auto again = quantize_checkpoint(model, dir.file("again"), *o);
  ASSERT_TRUE(again.ok());
  for (size_t i = 0; i < rep->layers.size(); ++i) EXPECT_EQ(again->layers[i].bit_choice, rep->layers[i].bit_choice);
  // Rules: a budget below the menu, a GGUF type, a sensitivity without data, options without a budget.
  QuantizeOptions low = *o;
  low.target_bits = 1.0;
  EXPECT_NE(quantize_checkpoint(model, dir.file("low"), low).status().message().find("smallest spec"), std::string::npos);
  QuantizeOptions rtn = *QuantizeOptions::ForMethod("rtn");
  rtn.target_bits = 3.0;
  rtn.bit_sensitivity = BitSensitivity::kHessian;
  EXPECT_NE(rtn.Validate().message().find("needs calibration data"), std::string::npos) << rtn.Validate().ToString();
  rtn.bit_sensitivity = BitSensitivity::kDefault;
  rtn.gguf_type = "q4_0";
  rtn.bit_menu = {test::quant_spec(4, 32)};  // an llmq grid on a GGUF budget
  EXPECT_NE(rtn.Validate().message().find("ggml types"), std::string::npos) << rtn.Validate().ToString();
  rtn.gguf_type.clear();
  rtn.bit_menu = {QuantSpec::ForGgml(GgmlType::kQ4_K)};  // a ggml type without one
  EXPECT_NE(rtn.Validate().message().find("GGUF type"), std::string::npos) << rtn.Validate().ToString();
  QuantizeOptions none = *QuantizeOptions::ForMethod("rtn");
  none.bit_sensitivity = BitSensitivity::kWeight;
  EXPECT_NE(none.Validate().message().find("bit budget"), std::string::npos);
  QuantizeOptions billm = *QuantizeOptions::ForMethod("billm");
  billm.calibration.data = o->calibration.data;
  billm.target_bits = 3.0;
  EXPECT_NE(billm.Validate().message().find("target_bits applies to methods"), std::string::npos);
}

// With a GGUF type the budget chooses among ggml block types per linear (only those whose blocks
// divide the row), replaces the recipe for the linears, keeps it for the token embeddings, and the
// folder exports to a GGUF file holding exactly the chosen types.
TEST(QuantizeBitBudget, GgufTypeChoosesAmongBlockTypes) {
  const std::string model = test::stories260k();  // rows of 64 columns: no K type fits, the legacy ones do
  test::TempDir dir;
  auto o = QuantizeOptions::ForMethod("rtn");
  ASSERT_TRUE(o.ok());
  o->gguf_type = "q4_k_m";
  o->target_bits = 5.0;
  auto rep = quantize_checkpoint(model, dir.file("mixed"), *o);
  ASSERT_TRUE(rep.ok()) << rep.status().ToString();
  EXPECT_LE(rep->bits_per_weight, 5.0);
  EXPECT_GT(rep->bits_per_weight, 4.5);  // above q4_0 everywhere: the budget is used
  EXPECT_EQ(rep->gguf_type, "q4_k_m");
  EXPECT_EQ(rep->bit_menu.size(), default_ggml_bit_menu().size() - 1);  // q2_k left out at >= 3 bits
  std::set<std::string> used;
  for (const LayerReport& l : rep->layers) {
    ASSERT_EQ(l.bit_choice.rfind("ggml ", 0), 0u) << l.module << " " << l.bit_choice;  // QuantSpec::ToString
    const std::string type = l.bit_choice.substr(5);
    auto t = parse_ggml_type(type);
    ASSERT_TRUE(t.ok()) << l.module << " " << l.bit_choice;
    EXPECT_EQ(l.cols % 32, 0) << l.module;
    EXPECT_NE(*t, GgmlType::kQ2_K);  // blocks of 256 do not divide 64 columns
    EXPECT_EQ(rep->tensor_types.at(l.module + ".weight"), type) << l.module;
    EXPECT_EQ(rep->gguf_fallbacks.count(l.module + ".weight"), 0u) << l.module;
    used.insert(type);
  }
  EXPECT_GT(used.size(), 1u);
  EXPECT_EQ(rep->tensor_types.at("model.embed_tokens.weight"), "q8_0");  // the recipe's (64 % 256 != 0)
  auto gguf = export_gguf(dir.file("mixed"), dir.file("mixed.gguf"));
  ASSERT_TRUE(gguf.ok()) << gguf.status().ToString();
  EXPECT_EQ(gguf->type, "q4_k_m");
  std::map<std::string, int> counts;
  for (const auto& [name, type] : gguf->tensor_types) counts[type]++;
  for (const std::string& t : used) EXPECT_GT(counts[t], 0) << t;
  // A menu with no type that fits a linear's rows is an error naming the linear.
  o->bit_menu = {QuantSpec::ForGgml(GgmlType::kQ4_K), QuantSpec::ForGgml(GgmlType::kQ6_K)};
  auto none = quantize_checkpoint(model, dir.file("none"), *o);
  ASSERT_FALSE(none.ok());
  EXPECT_NE(none.status().message().find("no spec of the bit menu fits"), std::string::npos) << none.status().ToString();
}

}  // namespace
}  // namespace llmq
