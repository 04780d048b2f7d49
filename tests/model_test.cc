// The model runtime: every architecture against a naive double-precision reference
// written independently here, KV-cache decoding vs the full pass, block-by-block vs
// full forward, tokenizer fixtures, and the reference perplexities of ../shared.
#include <gtest/gtest.h>
#include <llmq/llmq.h>

#include <omp.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>

#include "test_util.h"

namespace llmq {
namespace {

using test::TempDir;
using Vec = std::vector<double>;

// ---- A naive reference forward pass (per token, per head, in double) ----
struct NaiveModel {
  const Checkpoint& c;
  const ModelConfig& cfg;
  std::string base;
  explicit NaiveModel(const Checkpoint& ck) : c(ck), cfg(ck.config()), base(ck.base_prefix()) {}

  std::vector<float> w(const std::string& name) const {
    auto r = c.get_float(name);
    EXPECT_TRUE(r.ok()) << name;
    return r.ok() ? *r : std::vector<float>();
  }
  Vec linear(const std::string& m, const Vec& x, bool bias) const {
    const auto W = w(m + ".weight");
    const size_t cols = x.size(), rows = W.size() / cols;
    Vec y(rows, 0.0);
    for (size_t r = 0; r < rows; ++r) {
      for (size_t i = 0; i < cols; ++i) y[r] += double(W[r * cols + i]) * x[i];
    }
    if (bias) {
      const auto b = w(m + ".bias");
      for (size_t r = 0; r < rows; ++r) y[r] += b[r];
    }
    return y;
  }
  Vec norm(const std::string& m, const Vec& x) const {
    const auto g = w(m + ".weight");
    Vec y(x.size());
    if (cfg.family == ModelFamily::kOpt) {
      const auto b = w(m + ".bias");
      double mean = 0, var = 0;
      for (double v : x) mean += v;
      mean /= double(x.size());
      for (double v : x) var += (v - mean) * (v - mean);
      var /= double(x.size());
      for (size_t i = 0; i < x.size(); ++i) y[i] = (x[i] - mean) / std::sqrt(var + 1e-5) * g[i] + b[i];
    } else {
      double ss = 0;
      for (double v : x) ss += v * v;
      const double inv = 1.0 / std::sqrt(ss / double(x.size()) + cfg.norm_eps);
      for (size_t i = 0; i < x.size(); ++i) y[i] = x[i] * inv * g[i];
    }
    return y;
  }
  bool ignore_rope_scaling = false;  // to show that the scaling changes the logits
  // RoPE frequency i with the config's scaling, as Hugging Face's rope utilities define it.
  double inv_freq(int64_t i) const {
    const double base = std::pow(cfg.rope_theta, -2.0 * double(i) / double(cfg.head_dim));
    if (ignore_rope_scaling) return base;
    switch (cfg.rope_scaling) {
      case RopeScaling::kNone: return base;
      case RopeScaling::kLinear: return base / cfg.rope_factor;  // positions divided by the factor
      case RopeScaling::kLlama3: {  // _compute_llama3_parameters
        const double old = double(cfg.rope_original_max_positions);
        const double low_wavelen = old / cfg.rope_low_freq_factor, high_wavelen = old / cfg.rope_high_freq_factor;
        const double wavelen = 2.0 * M_PI / base;
        if (wavelen < high_wavelen) return base;
        if (wavelen > low_wavelen) return base / cfg.rope_factor;
        const double smooth = (old / wavelen - cfg.rope_low_freq_factor) / (cfg.rope_high_freq_factor - cfg.rope_low_freq_factor);
        return (1.0 - smooth) * base / cfg.rope_factor + smooth * base;
      }
    }
    return base;
  }
  void rope(Vec& v, int64_t heads, int64_t pos) const {
    const int64_t d = cfg.head_dim, half = d / 2;
    for (int64_t h = 0; h < heads; ++h)
      for (int64_t i = 0; i < half; ++i) {
        const double ang = double(pos) * inv_freq(i);
        const double a = v[size_t(h * d + i)], b = v[size_t(h * d + i + half)];
        v[size_t(h * d + i)] = a * std::cos(ang) - b * std::sin(ang);
        v[size_t(h * d + i + half)] = b * std::cos(ang) + a * std::sin(ang);
      }
  }
  std::vector<Vec> logits(const std::vector<int32_t>& toks) const {
    const bool opt = cfg.family == ModelFamily::kOpt;
    const int64_t H = cfg.hidden_size, T = int64_t(toks.size()), d = cfg.head_dim;
    const auto E = w(base + "embed_tokens.weight");
    std::vector<Vec> x(static_cast<size_t>(T), Vec(static_cast<size_t>(H)));
    for (int64_t t = 0; t < T; ++t)
      for (int64_t i = 0; i < H; ++i) x[size_t(t)][size_t(i)] = E[size_t(toks[size_t(t)] * H + i)];
    if (opt) {
      const auto P = w(base + "embed_positions.weight");
      for (int64_t t = 0; t < T; ++t)
        for (int64_t i = 0; i < H; ++i) x[size_t(t)][size_t(i)] += P[size_t((t + 2) * H + i)];
    }
    for (int64_t l = 0; l < cfg.num_layers; ++l) {
      const std::string p = base + "layers." + std::to_string(l) + ".";
      std::vector<Vec> q(static_cast<size_t>(T)), k(static_cast<size_t>(T)), v(static_cast<size_t>(T));
      for (int64_t t = 0; t < T; ++t) {
        const Vec xn = norm(p + (opt ? "self_attn_layer_norm" : "input_layernorm"), x[size_t(t)]);
        q[size_t(t)] = linear(p + "self_attn.q_proj", xn, cfg.attention_bias);
        k[size_t(t)] = linear(p + "self_attn.k_proj", xn, cfg.attention_bias);
        v[size_t(t)] = linear(p + "self_attn.v_proj", xn, cfg.attention_bias);
        if (!opt) {
          rope(q[size_t(t)], cfg.num_heads, t);
          rope(k[size_t(t)], cfg.num_kv_heads, t);
        }
      }
      for (int64_t t = 0; t < T; ++t) {
        Vec ctx(static_cast<size_t>(cfg.num_heads * d), 0.0);
        for (int64_t h = 0; h < cfg.num_heads; ++h) {
          const int64_t kh = h * cfg.num_kv_heads / cfg.num_heads;
          std::vector<double> s;
          double mx = -1e300;
          for (int64_t j = 0; j <= t; ++j) {
            double dot = 0;
            for (int64_t i = 0; i < d; ++i) dot += q[size_t(t)][size_t(h * d + i)] * k[size_t(j)][size_t(kh * d + i)];
            const bool visible = cfg.sliding_window <= 0 || t - j < cfg.sliding_window;
            s.push_back(visible ? dot / std::sqrt(double(d)) : -1e300);
            mx = std::max(mx, s.back());
          }
          double z = 0;
          for (auto& e : s) z += (e = e <= -1e299 ? 0.0 : std::exp(e - mx));
          for (int64_t j = 0; j <= t; ++j)
            for (int64_t i = 0; i < d; ++i) ctx[size_t(h * d + i)] += s[size_t(j)] / z * v[size_t(j)][size_t(kh * d + i)];
        }
        const Vec o = linear(p + (opt ? "self_attn.out_proj" : "self_attn.o_proj"), ctx, cfg.o_bias);
        for (int64_t i = 0; i < H; ++i) x[size_t(t)][size_t(i)] += o[size_t(i)];
        const Vec xn = norm(p + (opt ? "final_layer_norm" : "post_attention_layernorm"), x[size_t(t)]);
        Vec m;
        if (opt) {
          Vec a = linear(p + "fc1", xn, true);
          for (auto& e : a) e = std::max(e, 0.0);
          m = linear(p + "fc2", a, true);
        } else {
          Vec g = linear(p + "mlp.gate_proj", xn, false), u = linear(p + "mlp.up_proj", xn, false);
          for (size_t i = 0; i < g.size(); ++i) g[i] = g[i] / (1 + std::exp(-g[i])) * u[i];
          m = linear(p + "mlp.down_proj", g, false);
        }
        for (int64_t i = 0; i < H; ++i) x[size_t(t)][size_t(i)] += m[size_t(i)];
      }
    }
    const auto head = c.find("lm_head.weight") && !opt ? w("lm_head.weight") : E;
    std::vector<Vec> out;
    for (int64_t t = 0; t < T; ++t) {
      const Vec h = norm(base + (opt ? "final_layer_norm" : "norm"), x[size_t(t)]);
      Vec lg(static_cast<size_t>(cfg.vocab_size), 0.0);
      for (int64_t r = 0; r < cfg.vocab_size; ++r)
        for (int64_t i = 0; i < H; ++i) lg[size_t(r)] += double(head[size_t(r * H + i)]) * h[size_t(i)];
      out.push_back(lg);
    }
    return out;
  }
};

void expect_logits_close(const std::vector<float>& got, const std::vector<Vec>& want, const std::string& what) {
  const size_t V = want[0].size();
  ASSERT_EQ(got.size(), want.size() * V);
  double worst = 0;
  for (size_t t = 0; t < want.size(); ++t)
    for (size_t i = 0; i < V; ++i) worst = std::max(worst, std::fabs(double(got[t * V + i]) - want[t][i]));
  EXPECT_LT(worst, 2e-4) << what << ": max |logit - reference| = " << worst;
}

struct ArchCase {
  const char* arch;
  int sliding_window;
  bool tie;
  const char* rope_scaling = "";  // "", "linear" or "llama3"
};

class ArchitectureTest : public ::testing::TestWithParam<ArchCase> {};

TEST_P(ArchitectureTest, MatchesNaiveReferenceAndKvCache) {
  const ArchCase a = GetParam();
  TempDir d;
  test::SyntheticModel m;
  m.architecture = a.arch;
  m.tie_embeddings = a.tie;
  m.hidden = 32;
  m.intermediate = 48;
  m.heads = 4;
  m.kv_heads = std::string(a.arch) == "OPTForCausalLM" ? 4 : 2;
  m.vocab = 50;
  m.dtype = DType::kF32;
  test::write_synthetic_model(d.path(), m);
  if (a.sliding_window > 0 || *a.rope_scaling != '\0') {
    nlohmann::json cfg = nlohmann::json::parse(test::read_bytes(d.file("config.json")));
    if (a.sliding_window > 0) cfg["sliding_window"] = a.sliding_window;
    // head_dim 8, theta 1e4: wavelengths 6.3, 63, 628, 6283 positions; llama3 with an original
    // context of 64 and factors 1 / 4 keeps the first, blends the second and scales the others.
    if (std::string(a.rope_scaling) == "linear") cfg["rope_scaling"] = {{"rope_type", "linear"}, {"factor", 4.0}};
    if (std::string(a.rope_scaling) == "llama3")
      cfg["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", 8.0}, {"low_freq_factor", 1.0},
                             {"high_freq_factor", 4.0}, {"original_max_position_embeddings", 64}};
    test::write_bytes(d.file("config.json"), cfg.dump());
  }
  auto model = Model::Load(d.path());
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  const std::vector<int32_t> toks = {1, 7, 42, 3, 3, 19, 0, 49, 25, 11};
  KVCache cache = (*model)->NewCache(int64_t(toks.size()));
  auto full = (*model)->Forward(toks.data(), int64_t(toks.size()), &cache);
  ASSERT_TRUE(full.ok()) << full.status().ToString();
  NaiveModel ref((*model)->checkpoint());
  expect_logits_close(*full, ref.logits(toks), a.arch);
  if (*a.rope_scaling != '\0') {  // the scaling matters at these positions: without it the logits differ
    NaiveModel unscaled((*model)->checkpoint());
    unscaled.ignore_rope_scaling = true;
    const auto want = unscaled.logits(toks);
    double worst = 0;
    const size_t V = want[0].size();
    for (size_t t = 0; t < want.size(); ++t)
      for (size_t i = 0; i < V; ++i) worst = std::max(worst, std::fabs(double((*full)[t * V + i]) - want[t][i]));
    EXPECT_GT(worst, 1e-3) << a.rope_scaling << " scaling made no difference";
  }

  // Incremental decoding with the KV cache (prompt of 4, then one token at a time) gives the same logits.
  KVCache inc = (*model)->NewCache(int64_t(toks.size()));
  std::vector<float> got;
  auto first = (*model)->Forward(toks.data(), 4, &inc);
  ASSERT_TRUE(first.ok());
  got = *first;
  for (size_t t = 4; t < toks.size(); ++t) {
    auto step = (*model)->Forward(&toks[t], 1, &inc);
    ASSERT_TRUE(step.ok());
    got.insert(got.end(), step->begin(), step->end());
  }
  ASSERT_EQ(got.size(), full->size());
  for (size_t i = 0; i < got.size(); ++i) ASSERT_NEAR(got[i], (*full)[i], 1e-4) << a.arch << " element " << i;
}

INSTANTIATE_TEST_SUITE_P(Synthetic, ArchitectureTest,
                         ::testing::Values(ArchCase{"LlamaForCausalLM", 0, false}, ArchCase{"LlamaForCausalLM", 0, true},
                                           ArchCase{"MistralForCausalLM", 3, false},
                                           ArchCase{"Qwen2ForCausalLM", 0, true}, ArchCase{"OPTForCausalLM", 0, true},
                                           ArchCase{"LlamaForCausalLM", 0, false, "linear"},
                                           ArchCase{"LlamaForCausalLM", 0, false, "llama3"}),
                         [](const auto& info) {
                           return std::string(info.param.arch).substr(0, 5) + (info.param.tie ? "Tied" : "") +
                                  (info.param.sliding_window ? "Window" : "") +
                                  (*info.param.rope_scaling ? std::string("Rope_") + info.param.rope_scaling : "");
                         });

TEST(Model, BlockByBlockEqualsFullForwardOnRealModel) {
  const std::string folder = test::stories260k();
  auto model = Model::Load(folder);
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  const Model& m = **model;
  std::vector<int32_t> toks;
  for (int i = 0; i < 64; ++i) toks.push_back(int32_t((i * 37 + 1) % m.vocab_size()));
  KVCache c1 = m.NewCache(64);
  auto full = m.Forward(toks.data(), 64, &c1);
  ASSERT_TRUE(full.ok());
  // Driver-style walk: embed once, then every block on its own with its own cache, then the head;
  // the hook sees every linear's input with the right width.
  std::vector<float> x(static_cast<size_t>(64 * m.hidden_size()));
  ASSERT_TRUE(m.Embed(toks.data(), 64, 0, x.data()).ok());
  KVCache c2 = m.NewCache(64);
  int hooked = 0;
  for (int l = 0; l < int(m.config().num_layers); ++l) {
    m.RunBlock(l, x.data(), 64, &c2, [&](const LinearInfo& lin, const float*, int64_t n) {
      EXPECT_EQ(lin.layer, l);
      EXPECT_EQ(n, 64);
      ++hooked;
    });
  }
  std::vector<float> logits(static_cast<size_t>(64 * m.vocab_size()));
  m.Head(x.data(), 64, logits.data());
  EXPECT_EQ(hooked, int(m.checkpoint().linears().size()));
  EXPECT_EQ(logits, *full);
}

// A prompt then token-by-token decoding gives the same logits, bit for bit, with 1, 2 and 3 threads
// (the decode attention's path depends on the model, not on the thread count).
TEST(Model, DecodingIsTheSameBitsWithAnyThreadCount) {
  TempDir d;
  test::SyntheticModel sm;  // grouped-query attention: 4 query heads on 2 kv heads
  test::write_synthetic_model(d.path(), sm);
  auto model = Model::Load(d.path());
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  const std::vector<int32_t> toks = {1, 7, 42, 3, 3, 19, 0, 49};
  auto run = [&](int threads) {
    const int before = omp_get_max_threads();
    omp_set_num_threads(threads);
    KVCache cache = (*model)->NewCache(int64_t(toks.size()));
    std::vector<float> out = *(*model)->Forward(toks.data(), 3, &cache);
    for (size_t t = 3; t < toks.size(); ++t) {
      auto step = (*model)->Forward(&toks[t], 1, &cache);
      out.insert(out.end(), step->begin(), step->end());
    }
    omp_set_num_threads(before);
    return out;
  };
  const std::vector<float> one = run(1);
  for (int threads : {2, 3}) {  // 3: more threads than kv heads
    const std::vector<float> other = run(threads);
    ASSERT_EQ(one.size(), other.size());
    EXPECT_EQ(0, std::memcmp(one.data(), other.data(), one.size() * sizeof(float))) << threads << " threads";
  }
}

TEST(Model, BadInput) {
  TempDir d;
  test::SyntheticModel m;
  test::write_synthetic_model(d.path(), m);
  auto model = Model::Load(d.path());
  ASSERT_TRUE(model.ok());
  KVCache c = (*model)->NewCache(4);
  const int32_t bad[2] = {1, 5000};
  auto r = (*model)->Forward(bad, 2, &c);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("5000"), std::string::npos);
  const int32_t ok[5] = {1, 2, 3, 4, 5};
  EXPECT_FALSE((*model)->Forward(ok, 5, &c).ok());  // beyond the cache
  // A text shorter than one window.
  PerplexityOptions o;
  o.seq_len = 16;
  auto p = evaluate_perplexity(**model, {1, 2, 3}, o);
  ASSERT_FALSE(p.ok());
  EXPECT_NE(p.status().message().find("fewer than one window"), std::string::npos);
  // A tokenizer file that does not parse.
  test::write_bytes(d.file("tokenizer.model"), "this is not a protobuf");
  auto t = Tokenizer::Open(d.path());
  ASSERT_FALSE(t.ok());
  EXPECT_NE(t.status().message().find("tokenizer.model"), std::string::npos);
}

// ---- Tokenizer fixtures from the reference SentencePiece library ----
class TokenizerFixture : public ::testing::TestWithParam<const char*> {};

TEST_P(TokenizerFixture, MatchesReferenceIds) {
  LLMQ_NEED_SHARED("fixtures/tokenizer-ids.json");
  const std::string fixture_path = test::shared_path("fixtures/tokenizer-ids.json");
  std::ifstream in(fixture_path);
  ASSERT_TRUE(in) << "cannot read " << fixture_path;
  const nlohmann::json fx = nlohmann::json::parse(in)["tokenizers"][GetParam()];
  for (const auto& t : fx["texts"]) LLMQ_NEED_SHARED(t["file"].get<std::string>());
  LLMQ_NEED_SHARED(fx["file"].get<std::string>());
  auto tok = Tokenizer::OpenSentencePiece(test::shared_path(fx["file"].get<std::string>()));
  ASSERT_TRUE(tok.ok()) << tok.status().ToString();
  test::expect_matches_tokenizer_fixture(**tok, GetParam(), false);
}

INSTANTIATE_TEST_SUITE_P(Shared, TokenizerFixture, ::testing::Values("tok512", "llama2"));

TEST(Sha256, KnownVector) {
  EXPECT_EQ(test::sha256_hex("abc", 3), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

// ---- Reference perplexities (../shared/DATA.md), fp32, within 0.1% ----
struct PplCase {
  const char* model;
  const char* text;
  int64_t seq_len, chunks, predictions;
  double ppl;
};

class ReferencePerplexity : public ::testing::TestWithParam<PplCase> {};

TEST_P(ReferencePerplexity, MatchesIndependentImplementation) {
  const PplCase k = GetParam();
  // "embedded/..." names the repository's copy (examples/data), anything else a file of ../shared.
  auto path = [](const std::string& name) {
    return name.rfind("embedded/", 0) == 0 ? test::embedded_path(name.substr(9)) : test::shared_path(name);
  };
  for (const char* name : {k.model, k.text})
    if (std::string(name).rfind("embedded/", 0) != 0) LLMQ_NEED_SHARED(name);
  const std::string folder = path(k.model);
  auto model = Model::Load(folder);
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  auto tok = Tokenizer::Open(folder);
  ASSERT_TRUE(tok.ok()) << tok.status().ToString();
  auto ids = (*tok)->Encode(test::read_bytes(path(k.text)));
  ASSERT_TRUE(ids.ok());
  ids->insert(ids->begin(), (*tok)->bos_id());
  PerplexityOptions o;
  o.seq_len = k.seq_len;
  o.max_chunks = k.chunks;
  auto r = evaluate_perplexity(**model, *ids, o);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->predictions, k.predictions);
  EXPECT_NEAR(r->perplexity, k.ppl, k.ppl * 1e-3) << k.model << " on " << k.text;
  EXPECT_NEAR(r->perplexity, k.ppl, k.ppl * 2e-6) << "expected an exact fp32 match";
}

INSTANTIATE_TEST_SUITE_P(
    Shared, ReferencePerplexity,
    ::testing::Values(PplCase{"models/stories260K-hf", "data/tinystories/TinyStories-valid-prefix.txt", 256, 40, 10200, 4.106889},
                      PplCase{"models/stories5M-hf", "data/tinystories/TinyStories-valid-prefix.txt", 256, 40, 10200, 5.862298},
                      PplCase{"models/stories260K-hf", "data/tinystories/TinyStories-valid-prefix.txt", 512, 0, 391937, 5.046806},
                      PplCase{"models/stories260K-hf", "data/wikitext-2-raw-v1-test.txt", 512, 0, 813001, 122.3729},
                      // The embedded copies: the text is the start of the prefix, so its first 40 windows are the same.
                      PplCase{"embedded/stories260K-hf", "embedded/tinystories-valid-200k.txt", 256, 40, 10200, 4.106889}),
    [](const auto& info) {
      const std::string model = info.param.model;
      std::string name = (model.rfind("embedded/", 0) == 0 ? "embedded_" : "") + model.substr(model.find("stories") + 7) +
                         (std::string(info.param.text).find("wiki") !=
                         std::string::npos ? "_wikitext" : "_tinystories") + "_seq" + std::to_string(info.param.seq_len);
      for (char& ch : name) if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
      return name;
    });

TEST(Model, QuantizedModelRunsAndDegradesGracefully) {
  const std::string folder = test::stories260k();
  TempDir d;
  QuantizeOptions o;
  o.spec.bits = 8;
  o.spec.group_size = 0;
  ASSERT_TRUE(quantize_checkpoint(folder, d.file("q8"), o).ok());
  o.spec.bits = 3;
  o.spec.group_size = 32;
  ASSERT_TRUE(quantize_checkpoint(folder, d.file("q3"), o).ok());
  auto tok = Tokenizer::Open(folder);
  ASSERT_TRUE(tok.ok());
  auto ids = (*tok)->Encode(test::read_bytes(test::embedded_path("tinystories-valid-200k.txt")).substr(0, 60000));
  ids->insert(ids->begin(), 1);
  PerplexityOptions po;
  po.seq_len = 256;
  po.max_chunks = 20;
  double ppl[3];
  int i = 0;
  for (const std::string& m : {folder, d.file("q8"), d.file("q3")}) {
    auto model = Model::Load(m);
    ASSERT_TRUE(model.ok()) << model.status().ToString();
    auto r = evaluate_perplexity(**model, *ids, po);
    ASSERT_TRUE(r.ok());
    ppl[i++] = r->perplexity;
  }
  EXPECT_NEAR(ppl[1], ppl[0], ppl[0] * 0.01) << "8-bit RTN should be within 1% of fp32";
  EXPECT_GT(ppl[2], ppl[1]) << "3-bit RTN should be worse than 8-bit";
  EXPECT_LT(ppl[2], ppl[0] * 3) << "3-bit g32 RTN should still be a working model";
}


// prefer_int8_activations (generate's default): every linear whose layout allows it takes int8
// activations (ggml's float mins too: q4_1), real-valued zero points (bilevel) stay fp32 instead of
// failing to load; the logits stay close to the fp32-activation ones.
TEST(Model, PreferInt8ActivationsWhereTheLayoutAllowsIt) {
  const std::string folder = test::stories260k();
  TempDir d;
  QuantizeOptions o;
  o.spec = test::quant_spec(4, 32);
  ASSERT_TRUE(quantize_checkpoint(folder, d.file("w4"), o).ok());
  QuantizeOptions mins;
  mins.gguf_type = "q4_1";
  ASSERT_TRUE(quantize_checkpoint(folder, d.file("q41"), mins).ok());
  QuantizeOptions real_zeros;
  real_zeros.spec = test::quant_spec(3, 16, /*sym=*/false);
  real_zeros.spec.scale_bits = real_zeros.spec.zero_bits = 3;
  ASSERT_TRUE(quantize_checkpoint(folder, d.file("bilevel"), real_zeros).ok());
  ModelLoadOptions prefer;
  prefer.prefer_int8_activations = true;
  auto w4 = Model::Load(d.file("w4"), prefer);
  auto w4_fp32 = Model::Load(d.file("w4"));
  auto q41 = Model::Load(d.file("q41"), prefer);
  auto bilevel = Model::Load(d.file("bilevel"), prefer);
  ASSERT_TRUE(w4.ok() && w4_fp32.ok() && q41.ok() && bilevel.ok()) << q41.status().ToString() << bilevel.status().ToString();
  for (const auto& [kernel, count] : (*w4)->QuantizedKernels(8)) EXPECT_NE(kernel.find("int8"), std::string::npos) << kernel;
  for (const auto& [kernel, count] : (*q41)->QuantizedKernels(8)) EXPECT_NE(kernel.find("int8"), std::string::npos) << kernel;
  for (const auto& [kernel, count] : (*bilevel)->QuantizedKernels(8))
    EXPECT_EQ(kernel.find("int8"), std::string::npos) << kernel;
  ModelLoadOptions strict;
  strict.int8_activations = true;
  EXPECT_TRUE(Model::Load(d.file("q41"), strict).ok());
  EXPECT_FALSE(Model::Load(d.file("bilevel"), strict).ok());  // asked for int8 everywhere: a clear error
  const std::vector<int32_t> ids = test::tinystories_eval_ids(folder, 4000);
  KVCache a = (*w4)->NewCache(64), b = (*w4_fp32)->NewCache(64);
  auto la = (*w4)->Forward(ids.data(), 64, &a);
  auto lb = (*w4_fp32)->Forward(ids.data(), 64, &b);
  ASSERT_TRUE(la.ok() && lb.ok());
  const double diff = test::relative_rms_difference(*la, *lb);
  EXPECT_GT(diff, 0.0);   // the int8 path really ran
  EXPECT_LT(diff, 0.02);  // and stays close
}

// Quantized linears run through the packed kernels; the same model with every linear
// replaced by its dequantized float weights is the reference (issue: within 0.1% in ppl).
TEST(Model, KernelPathEqualsDequantizedReference) {
  LLMQ_NEED_SHARED("models/stories5M-hf");
  const std::string folder = test::shared_path("models/stories5M-hf");
  TempDir d;
  QuantizeOptions o;
  o.spec.bits = 4;
  o.spec.group_size = 128;
  o.spec.symmetric = false;
  ASSERT_TRUE(quantize_checkpoint(folder, d.file("q4"), o).ok());
  auto tok = Tokenizer::Open(folder);
  auto ids = (*tok)->Encode(test::read_bytes(test::embedded_path("tinystories-valid-200k.txt")).substr(0, 30000));
  ids->insert(ids->begin(), 1);
  auto kernels = Model::Load(d.file("q4"));
  auto reference = test::load_dequantized(d.file("q4"));
  ASSERT_TRUE(kernels.ok() && reference.ok());
  PerplexityOptions po;
  po.seq_len = 128;
  po.max_chunks = 8;
  auto a = evaluate_perplexity(**kernels, *ids, po);
  auto b = evaluate_perplexity(**reference, *ids, po);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_NEAR(a->perplexity, b->perplexity, b->perplexity * 1e-3);
  // Int8 activations (W4A8 through the VNNI kernels): measured +0.02% on stories5M; allow 0.5%.
  ModelLoadOptions i8;
  i8.int8_activations = true;
  auto w4a8 = Model::Load(d.file("q4"), i8);
  ASSERT_TRUE(w4a8.ok());
  auto c = evaluate_perplexity(**w4a8, *ids, po);
  ASSERT_TRUE(c.ok());
  EXPECT_NEAR(c->perplexity, b->perplexity, b->perplexity * 5e-3);
  EXPECT_NE(c->perplexity, a->perplexity);  // it really took the int8 path
  // Decoding (one token at a time: the GEMV path) agrees with the batched pass.
  KVCache c1 = (*kernels)->NewCache(16), c2 = (*reference)->NewCache(16);
  for (int t = 0; t < 16; ++t) {
    auto la = (*kernels)->Forward(ids->data() + t, 1, &c1);
    auto lb = (*reference)->Forward(ids->data() + t, 1, &c2);
    ASSERT_TRUE(la.ok() && lb.ok());
    double worst = 0;
    for (size_t k = 0; k < la->size(); ++k) worst = std::max(worst, double(std::fabs((*la)[k] - (*lb)[k])));
    EXPECT_LT(worst, 1e-3) << "token " << t;
  }
}

}  // namespace
}  // namespace llmq
