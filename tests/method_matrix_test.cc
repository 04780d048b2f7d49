// Every quantization method on every supported architecture, with each architecture's real
// features on (grouped-query attention, sliding window, q/k/v biases, OPT's pre- and post-LN with
// biases everywhere, project_in/out, tied and untied heads): quantize, reload, run. Each cell
// checks a finite perplexity and that the quantized model run through the kernels gives the
// logits of its dequantized weights. The cells are listed in docs/RESULTS.md ("Method x
// architecture matrix").
#include <gtest/gtest.h>
#include <llmq/llmq.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <tuple>

#include "test_util.h"

namespace llmq {
namespace {

using test::TempDir;

struct ArchCase {
  const char* name;
  test::SyntheticModel model;
};

std::vector<ArchCase> arch_cases() {
  std::vector<ArchCase> cases;
  test::SyntheticModel m;
  m.dtype = DType::kF32;
  m.layers = 2;
  m.architecture = "LlamaForCausalLM";  // GQA (4 heads over 2 KV heads), untied head
  cases.push_back({"LlamaGqaUntied", m});
  m.architecture = "MistralForCausalLM";
  m.sliding_window = 6;  // shorter than the 16-token windows, so the window matters
  m.tie_embeddings = true;
  cases.push_back({"MistralSlidingWindowTied", m});
  m.sliding_window = 0;
  m.architecture = "Qwen2ForCausalLM";  // q/k/v biases
  m.tie_embeddings = false;
  cases.push_back({"Qwen2QkvBiasUntied", m});
  m.tie_embeddings = true;
  cases.push_back({"Qwen2QkvBiasTied", m});
  m.architecture = "OPTForCausalLM";  // pre-LN, ReLU, biases on every linear, learned positions
  cases.push_back({"OptPreLnTied", m});
  m.tie_embeddings = false;
  cases.push_back({"OptPreLnUntied", m});
  m.tie_embeddings = true;
  m.opt_post_norm = true;  // OPT-350m: post-LN, no final norm, project_in/out to a narrower embedding
  m.opt_embed_proj_dim = 32;
  cases.push_back({"OptPostLnProjectInOut", m});
  return cases;
}

const char* const kMethods[] = {"rtn", "gptq", "awq", "awq+gptq", "smoothquant", "spqr", "adpq", "oac", "spqr+oac",
                                "llm.int8", "billm", "billm+oac"};

// Each method with its library defaults (QuantizeOptions::ForMethod), at this model's size.
QuantizeOptions options_for(const std::string& method, const std::string& calib) {
  auto o = QuantizeOptions::ForMethod(method);
  EXPECT_TRUE(o.ok()) << o.status().ToString();
  if (o->spec.group_size > 32) o->spec.group_size = 32;  // 64-wide layers
  if (o->spec.group_size > 0 && o->spec.scale_bits == 0 && !o->spec.lookup) o->spec.symmetric = false;
  if (method != "rtn" && method != "adpq") {
    o->calibration.data = calib;
    o->calibration.nsamples = 4;
    o->calibration.seq_len = 16;
  }
  o->awq.grid = 5;
  // llm.int8 with calibration: fixed outlier columns. Random weights give activations of about 1,
  // so a low threshold makes some columns outliers.
  if (method == "llm.int8") o->activation_outliers.threshold = 1.0;
  return *o;
}

class MethodMatrix : public ::testing::TestWithParam<std::tuple<size_t, size_t>> {};

TEST_P(MethodMatrix, QuantizeReloadRun) {
  const ArchCase arch = arch_cases()[std::get<0>(GetParam())];
  const std::string method = kMethods[std::get<1>(GetParam())];
  TempDir dir;
  test::write_synthetic_model(dir.file("in"), arch.model);
  const std::string calib = dir.file("calib.json");
  std::ofstream(calib) << nlohmann::json(test::random_windows(4, 16, arch.model.vocab, 5)).dump();
  const QuantizeOptions o = options_for(method, calib);
  auto rep = quantize_checkpoint(dir.file("in"), dir.file("out"), o);
  ASSERT_TRUE(rep.ok()) << rep.status().ToString();
  EXPECT_EQ(rep->method, method);
  if (method == "llm.int8") {  // the calibrated outlier columns are found and kept
    int64_t columns = 0;
    for (const LayerReport& l : rep->layers) columns += l.activation_outlier_columns;
    EXPECT_GT(columns, 0);
  }
  auto ckpt = Checkpoint::Open(dir.file("out"));
  ASSERT_TRUE(ckpt.ok()) << ckpt.status().ToString();
  ASSERT_TRUE((*ckpt)->is_quantized());
  EXPECT_EQ((*ckpt)->quantization()->method, method);
  // Every input tensor is in the output once: linears quantized, the rest (biases included) as tensors.
  auto in = Checkpoint::Open(dir.file("in"));
  ASSERT_TRUE(in.ok());
  for (const LinearInfo& l : (*in)->linears()) {
    EXPECT_TRUE((*ckpt)->get_quantized(l.module).ok()) << l.module;
    if (l.has_bias) {
      EXPECT_NE((*ckpt)->find(l.module + ".bias"), nullptr) << l.module;
    }
  }

  // Finite perplexity through the kernels.
  auto model = Model::Load(dir.file("out"));
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  std::vector<int32_t> ids;
  for (const auto& w : test::random_windows(3, 16, arch.model.vocab, 11)) ids.insert(ids.end(), w.begin(), w.end());
  PerplexityOptions po;
  po.seq_len = 16;
  auto ppl = evaluate_perplexity(**model, ids, po);
  ASSERT_TRUE(ppl.ok()) << ppl.status().ToString();
  EXPECT_TRUE(std::isfinite(ppl->perplexity) && ppl->perplexity > 1.0) << ppl->perplexity;

  // The kernels give the logits of the dequantized weights (dense part plus outliers). With int8
  // activations (SmoothQuant) the kernels also round the activations, so the bound is that of a
  // per-token int8 step instead of float rounding.
  test::expect_kernels_match_dequantized(dir.file("out"), std::vector<int32_t>(ids.begin(), ids.begin() + 16),
                                         rep->int8_activations ? 3e-2f : 1e-4f);
}

std::string cell_name(const ::testing::TestParamInfo<MethodMatrix::ParamType>& info) {
  std::string m = kMethods[std::get<1>(info.param)];
  for (char& c : m)
    if (c == '+' || c == '.') c = '_';
  return std::string(arch_cases()[std::get<0>(info.param)].name) + "_" + m;
}

INSTANTIATE_TEST_SUITE_P(AllCells, MethodMatrix,
                         ::testing::Combine(::testing::Range(size_t(0), arch_cases().size()),
                                            ::testing::Range(size_t(0), std::size(kMethods))),
                         cell_name);

}  // namespace
}  // namespace llmq
