// The calibration driver: window sampling and input formats, block-by-block propagation
// against the full forward pass, GPTQ over whole checkpoints, resume after an interruption,
// and GPTQ against RTN on a real model.
#include "quant/calibration.h"

#include <gtest/gtest.h>
#include <llmq/llmq.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "quant/smoothquant.h"
#include "test_util.h"

namespace llmq {
namespace {

namespace fs = std::filesystem;
using test::random_windows;
using test::TempDir;

std::string write_windows_json(const TempDir& dir, const std::vector<std::vector<int32_t>>& w) {
  const std::string path = dir.file("calib.json");
  std::ofstream(path) << nlohmann::json(w).dump();
  return path;
}

class BlockwiseTest : public ::testing::TestWithParam<std::string> {};

// Nothing quantized: running the windows block by block through the stored activations must
// give the same logits as the model's own forward pass.
TEST_P(BlockwiseTest, PropagationEqualsFullForwardWhenNothingIsQuantized) {
  TempDir dir;
  test::SyntheticModel sm;
  sm.architecture = GetParam();
  sm.layers = 3;
  sm.dtype = DType::kF32;
  test::write_synthetic_model(dir.path(), sm);
  internal::CalibrationSet set;
  set.seq_len = 24;
  set.windows = random_windows(3, 24, sm.vocab, 5);
  for (bool fp16 : {false, true}) {
    auto calib = internal::BlockwiseCalibrator::Create(dir.path(), set, fp16);
    ASSERT_TRUE(calib.ok()) << calib.status().ToString();
    EXPECT_EQ((*calib)->activation_bytes(), uint64_t(3 * 24 * sm.hidden) * (fp16 ? 2 : 4));
    for (int l = 0; l < sm.layers; ++l) {
      ASSERT_TRUE((*calib)->Advance(l).ok());
      (*calib)->model().ReleaseBlock(l);
      EXPECT_FALSE((*calib)->model().block_loaded(l));
    }
    auto full = Model::Load(dir.path());
    ASSERT_TRUE(full.ok());
    for (int64_t i = 0; i < 3; ++i) {
      std::vector<float> logits(size_t(24 * sm.vocab));
      auto act = (*calib)->Activations(i);
      (*full)->Head(act.data(), 24, logits.data());
      KVCache cache = (*full)->NewCache(24);
      auto ref = (*full)->Forward(set.windows[size_t(i)].data(), 24, &cache);
      ASSERT_TRUE(ref.ok());
      double worst = 0, scale = 0;
      for (size_t k = 0; k < logits.size(); ++k) {
        worst = std::max(worst, double(std::fabs(logits[k] - (*ref)[k])));
        scale = std::max(scale, double(std::fabs((*ref)[k])));
      }
      // fp32 activations: identical computation; fp16 storage rounds between blocks.
      EXPECT_LE(worst, (fp16 ? 2e-3 : 1e-6) * std::max(1.0, scale)) << "window " << i << " fp16 " << fp16;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Synthetic, BlockwiseTest, ::testing::Values("LlamaForCausalLM", "OPTForCausalLM"),
                         [](const auto& info) { return info.param.substr(0, info.param.find("For")); });

TEST(Calibration, HessiansAreSharedByLinearsWithTheSameInput) {
  TempDir dir;
  test::SyntheticModel sm;
  sm.dtype = DType::kF32;
  test::write_synthetic_model(dir.path(), sm);
  internal::CalibrationSet set;
  set.seq_len = 16;
  set.windows = random_windows(2, 16, sm.vocab, 9);
  auto calib = internal::BlockwiseCalibrator::Create(dir.path(), set, false);
  ASSERT_TRUE(calib.ok());
  auto ck = Checkpoint::Open(dir.path());
  std::vector<LinearInfo> block0;
  for (const auto& l : (*ck)->linears())
    if (l.layer == 0) block0.push_back(l);
  auto h = (*calib)->CollectHessians(0, block0);
  ASSERT_TRUE(h.ok());
  const std::string p = "model.layers.0.";
  EXPECT_EQ((*h)[p + "self_attn.q_proj"], (*h)[p + "self_attn.v_proj"]);
  EXPECT_EQ((*h)[p + "mlp.gate_proj"], (*h)[p + "mlp.up_proj"]);
  EXPECT_NE((*h)[p + "self_attn.q_proj"], (*h)[p + "self_attn.o_proj"]);
  EXPECT_EQ((*h)[p + "mlp.down_proj"]->cols(), sm.intermediate);
  EXPECT_EQ((*h)[p + "mlp.down_proj"]->rows_seen(), 2 * 16);
}

TEST(CalibrationData, FormatsSamplingAndErrors) {
  TempDir dir;
  CalibrationOptions o;
  o.nsamples = 4;
  o.seq_len = 8;
  // Windows given as they are (truncated to seq_len).
  o.data = write_windows_json(dir, random_windows(5, 10, 50, 1));
  auto s = internal::load_calibration_set(o, nullptr, 1024, 50);
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  EXPECT_EQ(s->windows.size(), 4u);
  EXPECT_EQ(s->windows[0].size(), 8u);
  // A flat id stream is sampled with the seed; the same seed gives the same windows.
  std::vector<int32_t> flat(200);
  for (size_t i = 0; i < flat.size(); ++i) flat[i] = int32_t(i % 50);
  o.data = dir.file("flat.json");
  std::ofstream(o.data) << nlohmann::json(flat).dump();
  auto a = internal::load_calibration_set(o, nullptr, 1024, 50);
  auto b = internal::load_calibration_set(o, nullptr, 1024, 50);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->windows, b->windows);
  o.seed = 1;
  auto c = internal::load_calibration_set(o, nullptr, 1024, 50);
  EXPECT_NE(a->windows, c->windows);
  // The same ids as raw int32 give the same windows.
  o.data = dir.file("ids.bin");
  test::write_bytes(o.data, std::string(reinterpret_cast<const char*>(flat.data()), flat.size() * 4));
  auto d = internal::load_calibration_set(o, nullptr, 1024, 50);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->windows, c->windows);
  // seq_len is capped at the model's context.
  auto e = internal::load_calibration_set(o, nullptr, 6, 50);
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(e->seq_len, 6);

  auto expect_error = [&](const std::string& path, const std::string& needle, int64_t vocab = 50) {
    o.data = path;
    auto r = internal::load_calibration_set(o, nullptr, 1024, vocab);
    ASSERT_FALSE(r.ok()) << path;
    EXPECT_NE(r.status().message().find(needle), std::string::npos) << r.status().message();
  };
  expect_error(dir.file("missing.txt"), "not found");
  expect_error(dir.file("flat.json"), "outside the model's vocabulary", 10);
  test::write_bytes(dir.file("short.json"), "[1,2,3]");
  expect_error(dir.file("short.json"), "not more than one window");
  test::write_bytes(dir.file("odd.bin"), "12345");
  expect_error(dir.file("odd.bin"), "not a multiple of 4");
  test::write_bytes(dir.file("bad.json"), "{\"a\": 1}");
  expect_error(dir.file("bad.json"), "JSON array");
  test::write_bytes(dir.file("text.txt"), "some text");
  expect_error(dir.file("text.txt"), "tokenizer");
}

TEST(CalibrationData, TextAndJsonlWithTheModelTokenizer) {
  const std::string model = test::stories260k();
  auto tok = Tokenizer::Open(model);
  ASSERT_TRUE(tok.ok());
  TempDir dir;
  test::write_bytes(dir.file("a.jsonl"), "{\"text\": \"Once upon a time there was a cat.\"}\n\n"
                                         "{\"text\": \"The cat liked to play in the sun all day long.\"}\n");
  CalibrationOptions o;
  o.data = dir.file("a.jsonl");
  o.nsamples = 2;
  o.seq_len = 8;
  auto s = internal::load_calibration_set(o, tok->get(), 512, 512);
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  auto ids = (*tok)->Encode("Once upon a time there was a cat.\n\nThe cat liked to play in the sun all day long.");
  EXPECT_EQ(s->source_tokens, int64_t(ids->size()));
  test::write_bytes(dir.file("b.jsonl"), "{\"text\": 3}\n");
  o.data = dir.file("b.jsonl");
  auto bad = internal::load_calibration_set(o, tok->get(), 512, 512);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("line 1"), std::string::npos);
}

QuantizeOptions calibrated_options(const std::string& calib, const std::string& method = "gptq", int bits = 4,
                                   int group = 32, int64_t nsamples = 4, int64_t seq_len = 16) {
  QuantizeOptions o;
  o.method = method;
  o.spec.bits = bits;
  o.spec.group_size = group;
  o.calibration.data = calib;
  o.calibration.nsamples = nsamples;
  o.calibration.seq_len = seq_len;
  return o;
}

TEST(QuantizeGptq, WritesALoadableModelAndAReport) {
  TempDir dir;
  test::SyntheticModel sm;
  sm.layers = 2;
  test::write_synthetic_model(dir.file("in"), sm);
  QuantizeOptions o = calibrated_options(write_windows_json(dir, random_windows(4, 16, sm.vocab, 3)));
  o.true_sequential = true;
  o.gptq.act_order = true;
  auto rep = quantize_checkpoint(dir.file("in"), dir.file("out"), o);
  ASSERT_TRUE(rep.ok()) << rep.status().ToString();
  EXPECT_TRUE(rep->calibrated);
  EXPECT_EQ(rep->layers.size(), 14u);
  for (const auto& l : rep->layers) {
    EXPECT_GT(l.output_relative_error, 0.0) << l.module;
    EXPECT_LT(l.output_relative_error, 0.5) << l.module;
    EXPECT_GE(l.gptq_loss, 0.0);
    EXPECT_FALSE(l.fell_back_to_rtn);
  }
  auto m = Model::Load(dir.file("out"));
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ((*m)->checkpoint().quantization()->method, "gptq");
  auto j = nlohmann::json::parse(test::read_bytes(dir.file("out/llmq_report.json")));
  EXPECT_EQ(j["method"], "gptq");
  EXPECT_TRUE(j["gptq"]["act_order"].get<bool>());
  EXPECT_EQ(j["calibration"]["nsamples"], 4);
  EXPECT_TRUE(j["layers"][0].contains("output_relative_error"));
  // The finished-block folder is gone once the output is complete.
  EXPECT_FALSE(fs::exists(dir.file(".out.llmq-partial")));
  // Without calibration data GPTQ refuses to run, before anything is written.
  o.calibration.data.clear();
  auto none = quantize_checkpoint(dir.file("in"), dir.file("out2"), o);
  ASSERT_FALSE(none.ok());
  EXPECT_NE(none.status().message().find("calibration"), std::string::npos);
  EXPECT_FALSE(fs::exists(dir.file("out2")));
}

TEST(QuantizeGptq, InterruptedRunResumesToTheSameBytes) {
  TempDir dir;
  test::SyntheticModel sm;
  sm.layers = 3;
  test::write_synthetic_model(dir.file("in"), sm);
  const QuantizeOptions o = calibrated_options(write_windows_json(dir, random_windows(4, 16, sm.vocab, 4)));
  ASSERT_TRUE(quantize_checkpoint(dir.file("in"), dir.file("fresh"), o).ok());

  // Stop as soon as block 2 starts: blocks 0 and 1 are finished and kept.
  QuantizeOptions stop = o;
  int64_t polls = 0;
  const std::string partial = dir.file(".resumed.llmq-partial");
  stop.cancel = [&] {
    ++polls;
    return fs::exists(partial + "/block-00001.json");
  };
  auto cut = quantize_checkpoint(dir.file("in"), dir.file("resumed"), stop);
  ASSERT_FALSE(cut.ok());
  EXPECT_EQ(cut.status().code(), StatusCode::kCancelled);
  EXPECT_NE(cut.status().message().find("--resume"), std::string::npos);
  EXPECT_GT(polls, 0);
  EXPECT_FALSE(fs::exists(dir.file("resumed")));
  EXPECT_TRUE(fs::exists(partial + "/block-00000.safetensors"));
  EXPECT_FALSE(fs::exists(partial + "/block-00002.json"));

  // Resuming with other options is refused; with the same ones it finishes the run.
  QuantizeOptions other = o;
  other.resume = true;
  other.spec.bits = 3;
  auto refused = quantize_checkpoint(dir.file("in"), dir.file("resumed"), other);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("different"), std::string::npos);
  QuantizeOptions again = o;
  again.resume = true;
  auto rep = quantize_checkpoint(dir.file("in"), dir.file("resumed"), again);
  ASSERT_TRUE(rep.ok()) << rep.status().ToString();
  EXPECT_EQ(rep->calibration.resumed_blocks, 2);
  EXPECT_EQ(test::read_bytes(dir.file("resumed/model.safetensors")), test::read_bytes(dir.file("fresh/model.safetensors")));
  EXPECT_FALSE(fs::exists(partial));

  // The input changed in place (same path, same size, one weight different): its finished
  // blocks are stale and the resume is refused; so is a changed calibration file.
  const std::string partial2 = dir.file(".resumed2.llmq-partial");
  stop.cancel = [&] { return fs::exists(partial2 + "/block-00001.json"); };
  ASSERT_EQ(quantize_checkpoint(dir.file("in"), dir.file("resumed2"), stop).status().code(), StatusCode::kCancelled);
  std::string weights = test::read_bytes(dir.file("in/model.safetensors"));
  weights[weights.size() / 2] = char(weights[weights.size() / 2] ^ 0x40);
  test::write_bytes(dir.file("in/model.safetensors"), weights);
  QuantizeOptions stale = o;
  stale.resume = true;
  auto changed = quantize_checkpoint(dir.file("in"), dir.file("resumed2"), stale);
  ASSERT_FALSE(changed.ok());
  EXPECT_NE(changed.status().message().find("different inputs"), std::string::npos) << changed.status().ToString();
  EXPECT_FALSE(fs::exists(dir.file("resumed2")));
}

// On a real model GPTQ must beat RTN at the same settings (the quality claim of the method).
TEST(QuantizeGptq, BeatsRtnOnARealModel) {
  const std::string model = test::stories260k();
  const std::string calib = test::embedded_calibration_text();
  const std::vector<int32_t> ids = test::tinystories_eval_ids(model, 60000);
  TempDir dir;
  auto ppl = [&](const std::string& folder) { return test::perplexity_of(folder, ids, 256, 20); };
  QuantizeOptions o = calibrated_options(calib);
  o.spec.bits = 3;
  o.spec.group_size = 0;
  o.calibration.nsamples = 32;
  o.calibration.seq_len = 256;
  ASSERT_TRUE(quantize_checkpoint(model, dir.file("gptq"), o).ok());
  QuantizeOptions r = o;
  r.method = "rtn";
  ASSERT_TRUE(quantize_checkpoint(model, dir.file("rtn"), r).ok());
  const double fp = ppl(model), pg = ppl(dir.file("gptq")), pr = ppl(dir.file("rtn"));
  EXPECT_LT(pg, pr) << "fp32 " << fp << " gptq " << pg << " rtn " << pr;
  EXPECT_GT(pg, fp * 0.99);
}


TEST(SmoothQuant, FoldingPreservesTheFloatOutput) {
  const int64_t cols = 24, r1 = 5, r2 = 7;
  auto g = test::random_normal(cols, 1, 1.0f), bias = test::random_normal(cols, 2, 0.1f);
  auto w1 = test::random_normal(size_t(r1 * cols), 3), w2 = test::random_normal(size_t(r2 * cols), 4);
  auto xhat = test::random_normal(cols, 5);
  std::vector<float> amax(static_cast<size_t>(cols));
  for (int64_t j = 0; j < cols; ++j) amax[size_t(j)] = 0.1f + float(j % 7) * (j == 3 ? 50.0f : 1.0f);  // one outlier channel
  auto out = [&](const std::vector<float>& gw, const std::vector<float>& gb, const std::vector<float>& w, int64_t rows) {
    std::vector<double> y(static_cast<size_t>(rows), 0.0);
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t j = 0; j < cols; ++j)
        y[size_t(r)] += double(w[size_t(r * cols + j)]) * (double(gw[size_t(j)]) * xhat[size_t(j)] + gb[size_t(j)]);
    return y;
  };
  const auto y1 = out(g, bias, w1, r1), y2 = out(g, bias, w2, r2);
  std::vector<internal::SmoothedLinear> fed = {{&w1, r1}, {&w2, r2}};
  const auto s = internal::smoothing_scales(amax, fed, cols, 0.5);
  EXPECT_GT(s[3], s[2] * 3);  // the outlier channel is scaled down hardest
  internal::fold_smoothing(s, &g, &bias, fed);
  const auto z1 = out(g, bias, w1, r1), z2 = out(g, bias, w2, r2);
  for (int64_t r = 0; r < r1; ++r) EXPECT_NEAR(z1[size_t(r)], y1[size_t(r)], 1e-4 * (1 + std::fabs(y1[size_t(r)])));
  for (int64_t r = 0; r < r2; ++r) EXPECT_NEAR(z2[size_t(r)], y2[size_t(r)], 1e-4 * (1 + std::fabs(y2[size_t(r)])));
}

// One smoothed linear through the real W8A8 path (int8 per-channel weights, int8 per-token
// activations, VNNI or its reference): each output is within the bound the two int8 steps give,
// |y - y^| <= sum_j (|x_j| dw_r / 2 + |w_rj| dx / 2 + dx dw_r / 4) with dw_r the row's weight step
// and dx = max|x| / 127 the token's activation step; and smoothing an outlier channel shrinks the error.
TEST(SmoothQuant, W8A8LinearIsWithinTheInt8StepsOfFloat) {
  const int64_t rows = 24, cols = 64, n = 6;
  auto w = test::random_normal(size_t(rows * cols), 61, 0.05f);
  auto x = test::random_normal(size_t(n * cols), 62);
  for (int64_t t = 0; t < n; ++t) x[size_t(t * cols + 5)] *= 40.0f;  // an activation outlier channel
  std::vector<float> amax(static_cast<size_t>(cols), 0.0f);
  for (int64_t t = 0; t < n; ++t)
    for (int64_t j = 0; j < cols; ++j) amax[size_t(j)] = std::max(amax[size_t(j)], std::fabs(x[size_t(t * cols + j)]));
  auto run = [&](bool smooth) {
    std::vector<float> ws = w, xs = x;
    if (smooth) {
      std::vector<internal::SmoothedLinear> fed = {{&ws, rows}};
      const auto s = internal::smoothing_scales(amax, fed, cols, 0.5);
      std::vector<float> g(static_cast<size_t>(cols), 1.0f);
      internal::fold_smoothing(s, &g, nullptr, fed);  // the norm's 1/s is what the activations get
      for (int64_t t = 0; t < n; ++t)
        for (int64_t j = 0; j < cols; ++j) xs[size_t(t * cols + j)] *= g[size_t(j)];
    }
    QuantSpec spec;
    spec.bits = 8;
    spec.group_size = 0;
    spec.scale_dtype = ScaleDType::kF32;
    auto q = quantize_rtn(ws.data(), rows, cols, spec);
    EXPECT_TRUE(q.ok());
    PackOptions po;
    po.int8_activations = true;
    auto packed = PackedLinear::Pack(*q, po);
    EXPECT_TRUE(packed.ok());
    std::vector<float> y(static_cast<size_t>(n * rows));
    packed->Forward(xs.data(), n, y.data());
    double err2 = 0, ref2 = 0;
    for (int64_t t = 0; t < n; ++t) {
      float xmax = 0;
      for (int64_t j = 0; j < cols; ++j) xmax = std::max(xmax, std::fabs(xs[size_t(t * cols + j)]));
      const double dx = xmax / 127.0;
      for (int64_t r = 0; r < rows; ++r) {
        const double dw = q->scales[size_t(r)];
        double ref = 0, bound = 0;
        for (int64_t j = 0; j < cols; ++j) {
          const double xv = xs[size_t(t * cols + j)], wv = ws[size_t(r * cols + j)];
          ref += xv * wv;
          bound += std::fabs(xv) * dw / 2 + std::fabs(wv) * dx / 2 + dx * dw / 4;
        }
        const double got = y[size_t(t * rows + r)];
        EXPECT_LE(std::fabs(got - ref), bound * 1.001 + 1e-6) << "token " << t << " row " << r;
        err2 += (got - ref) * (got - ref);
        ref2 += ref * ref;
      }
    }
    return std::sqrt(err2 / ref2);
  };
  const double plain = run(false), smoothed = run(true);
  EXPECT_LT(smoothed, plain) << "plain W8A8 " << plain << " smoothed " << smoothed;
}

TEST(SmoothQuant, ScalesFollowTheFormula) {
  std::vector<float> w = {0.5f, -2.0f, 0.0f, 1.0f, 0.25f, 0.0f};  // 2 rows x 3 cols
  std::vector<internal::SmoothedLinear> fed = {{&w, 2}};
  const std::vector<float> amax = {4.0f, 1.0f, 3.0f};
  auto s = internal::smoothing_scales(amax, fed, 3, 0.5);
  EXPECT_FLOAT_EQ(s[0], std::sqrt(4.0f) / std::sqrt(1.0f));   // max|W_:,0| = 1
  EXPECT_FLOAT_EQ(s[1], std::sqrt(1.0f) / std::sqrt(2.0f));   // max|W_:,1| = 2
  EXPECT_FLOAT_EQ(s[2], 1.0f);                                 // no weight in channel 2: left alone
  s = internal::smoothing_scales(amax, fed, 3, 1.0);
  EXPECT_FLOAT_EQ(s[0], 4.0f);  // alpha 1: all difficulty to the weights
}

TEST_P(BlockwiseTest, SmoothQuantWritesAW8A8Model) {
  TempDir dir;
  test::SyntheticModel sm;
  sm.architecture = GetParam();
  test::write_synthetic_model(dir.file("in"), sm);
  QuantizeOptions o = calibrated_options(write_windows_json(dir, random_windows(4, 16, sm.vocab, 6)), "smoothquant", 8, 0);
  auto rep = quantize_checkpoint(dir.file("in"), dir.file("out"), o);
  ASSERT_TRUE(rep.ok()) << rep.status().ToString();
  EXPECT_TRUE(rep->int8_activations);
  auto m = Model::Load(dir.file("out"));
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_TRUE((*m)->int8_activations());
  // The smoothed norms replaced the originals (fp32 in the output).
  const std::string norm = GetParam() == "OPTForCausalLM" ? "model.decoder.layers.0.self_attn_layer_norm.weight"
                                                          : "model.layers.0.input_layernorm.weight";
  const TensorInfo* t = (*m)->checkpoint().find(norm);
  ASSERT_NE(t, nullptr) << norm;
  EXPECT_EQ(t->dtype, DType::kF32);
  // W8A8 outputs stay close to the float model's.
  auto f = Model::Load(dir.file("in"));
  std::vector<int32_t> ids = random_windows(1, 12, sm.vocab, 7)[0];
  KVCache c1 = (*m)->NewCache(12), c2 = (*f)->NewCache(12);
  auto a = (*m)->Forward(ids.data(), 12, &c1);
  auto b = (*f)->Forward(ids.data(), 12, &c2);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_LT(test::relative_rms_difference(*a, *b), 0.05);
  // Smoothquant is W8A8: other specs are refused.
  o.spec.bits = 4;
  EXPECT_FALSE(quantize_checkpoint(dir.file("in"), dir.file("out4"), o).ok());
}

// On a real model: within 1% of fp32, and better than W8A8 without smoothing.
TEST(QuantizeSmoothQuant, RealModelWithinOnePercentAndBetterThanPlainW8A8) {
  LLMQ_NEED_SHARED("models/stories5M-hf");
  LLMQ_NEED_SHARED("data/tinystories/TinyStories-valid-prefix.txt");
  LLMQ_NEED_SHARED("data/tinystories/TinyStories-train-sample.txt");
  const std::string model = test::shared_path("models/stories5M-hf");
  const std::string calib = test::shared_path("data/tinystories/TinyStories-train-sample.txt");
  const std::vector<int32_t> ids = test::tinystories_eval_ids(model);
  TempDir dir;
  const QuantizeOptions sq = calibrated_options(calib, "smoothquant", 8, 0, 128, 256);
  ASSERT_TRUE(quantize_checkpoint(model, dir.file("sq"), sq).ok());
  QuantizeOptions plain;
  plain.spec = sq.spec;
  plain.int8_activations = true;
  ASSERT_TRUE(quantize_checkpoint(model, dir.file("w8a8"), plain).ok());
  auto ppl = [&](const std::string& f) { return test::perplexity_of(f, ids, 256, 40); };
  const double fp = ppl(model), s = ppl(dir.file("sq")), p = ppl(dir.file("w8a8"));
  EXPECT_LT(s, fp * 1.01) << "fp32 " << fp << " smoothquant " << s;
  EXPECT_LT(s, p) << "smoothquant " << s << " plain W8A8 " << p;
}

}  // namespace
}  // namespace llmq
