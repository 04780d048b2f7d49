// Test helpers: shared-data paths, temp folders, synthetic checkpoints.
#include "test_util.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>

namespace llmq::test {
namespace fs = std::filesystem;

std::string shared_path(const std::string& relative) {
  const fs::path p = fs::absolute(fs::path(LLMQ_SHARED_DIR) / relative);
  if (!fs::exists(p))
    ADD_FAILURE() << "required shared file is missing: " << p.string()
                  << " (the tests need ../shared beside the repository; see ../shared/DATA.md)";
  return p.lexically_normal().string();
}

TempDir::TempDir() {
  std::string tmpl = (fs::temp_directory_path() / "llmq-test-XXXXXX").string();
  path_ = ::mkdtemp(tmpl.data());
}

TempDir::~TempDir() {
  std::error_code ec;
  fs::remove_all(path_, ec);
}

std::vector<float> random_normal(size_t n, uint32_t seed, float stddev) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, stddev);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

namespace {

TensorToWrite make(const std::string& name, std::vector<int64_t> shape, DType dtype, uint32_t seed, float mean,
                   float stddev) {
  size_t n = 1;
  for (auto d : shape) n *= size_t(d);
  std::vector<float> v = random_normal(n, seed, stddev);
  for (auto& x : v) x += mean;
  TensorToWrite t{name, dtype, shape, {}};
  if (dtype == DType::kF32) {
    t.bytes.resize(n * 4);
    std::memcpy(t.bytes.data(), v.data(), n * 4);
  } else {
    std::vector<uint16_t> h(n);
    for (size_t i = 0; i < n; ++i) h[i] = dtype == DType::kF16 ? float_to_fp16(v[i]) : float_to_bf16(v[i]);
    t.bytes.resize(n * 2);
    std::memcpy(t.bytes.data(), h.data(), n * 2);
  }
  return t;
}

}  // namespace

void write_synthetic_model(const std::string& folder, const SyntheticModel& m) {
  fs::create_directories(folder);
  nlohmann::json cfg;
  cfg["architectures"] = {m.architecture};
  const bool opt = m.architecture == "OPTForCausalLM";
  cfg["hidden_size"] = m.hidden;
  cfg["num_hidden_layers"] = m.layers;
  cfg["num_attention_heads"] = m.heads;
  cfg["vocab_size"] = m.vocab;
  cfg["max_position_embeddings"] = 64;
  cfg["tie_word_embeddings"] = m.tie_embeddings;
  cfg["torch_dtype"] = m.dtype == DType::kF32 ? "float32" : m.dtype == DType::kF16 ? "float16" : "bfloat16";
  if (opt) {
    cfg["model_type"] = "opt";
    cfg["ffn_dim"] = m.intermediate;
    cfg["do_layer_norm_before"] = true;
    cfg["word_embed_proj_dim"] = m.hidden;
    cfg["activation_function"] = "relu";
  } else {
    cfg["intermediate_size"] = m.intermediate;
    cfg["num_key_value_heads"] = m.kv_heads;
    cfg["rms_norm_eps"] = 1e-5;
    cfg["rope_theta"] = 10000.0;
  }
  std::ofstream(folder + "/config.json") << cfg.dump(2);

  auto parsed = parse_model_config(cfg.dump(), "synthetic config");
  if (!parsed.ok()) {
    ADD_FAILURE() << parsed.status().ToString();
    return;
  }
  std::vector<TensorToWrite> ts;
  uint32_t seed = m.seed;
  const std::string base = default_base_prefix(parsed->family);
  ts.push_back(make(base + "embed_tokens.weight", {m.vocab, m.hidden}, m.dtype, seed++, 0, 0.05f));
  if (opt) ts.push_back(make(base + "embed_positions.weight", {64 + 2, m.hidden}, m.dtype, seed++, 0, 0.05f));
  for (int l = 0; l < m.layers; ++l) {
    const std::string p = base + "layers." + std::to_string(l) + ".";
    if (opt) {
      for (const char* ln : {"self_attn_layer_norm", "final_layer_norm"}) {
        ts.push_back(make(p + ln + ".weight", {m.hidden}, m.dtype, seed++, 1.0f, 0.02f));
        ts.push_back(make(p + ln + ".bias", {m.hidden}, m.dtype, seed++, 0.0f, 0.02f));
      }
    } else {
      ts.push_back(make(p + "input_layernorm.weight", {m.hidden}, m.dtype, seed++, 1.0f, 0.02f));
      ts.push_back(make(p + "post_attention_layernorm.weight", {m.hidden}, m.dtype, seed++, 1.0f, 0.02f));
    }
    for (const LinearInfo& lin : decoder_linears(*parsed, base)) {
      if (lin.layer != l) continue;
      ts.push_back(make(lin.module + ".weight", {lin.rows, lin.cols}, m.dtype, seed++, 0, 0.05f));
      if (lin.has_bias) ts.push_back(make(lin.module + ".bias", {lin.rows}, m.dtype, seed++, 0, 0.02f));
    }
  }
  if (opt) {
    ts.push_back(make(base + "final_layer_norm.weight", {m.hidden}, m.dtype, seed++, 1.0f, 0.02f));
    ts.push_back(make(base + "final_layer_norm.bias", {m.hidden}, m.dtype, seed++, 0.0f, 0.02f));
  } else {
    ts.push_back(make(base + "norm.weight", {m.hidden}, m.dtype, seed++, 1.0f, 0.02f));
  }
  if (!m.tie_embeddings) ts.push_back(make("lm_head.weight", {m.vocab, m.hidden}, m.dtype, seed++, 0, 0.05f));

  if (m.shards <= 1) {
    Status st = write_safetensors(folder + "/model.safetensors", ts, {{"format", "pt"}});
    if (!st.ok()) ADD_FAILURE() << st.ToString();
    return;
  }
  nlohmann::json weight_map;
  const size_t per = (ts.size() + size_t(m.shards) - 1) / size_t(m.shards);
  for (int s = 0; s < m.shards; ++s) {
    char name[64];
    std::snprintf(name, sizeof name, "model-%05d-of-%05d.safetensors", s + 1, m.shards);
    std::vector<TensorToWrite> part;
    for (size_t i = size_t(s) * per; i < std::min(ts.size(), size_t(s + 1) * per); ++i) {
      weight_map[ts[i].name] = name;
      part.push_back(ts[i]);
    }
    Status st = write_safetensors(folder + "/" + name, part);
    if (!st.ok()) ADD_FAILURE() << st.ToString();
  }
  std::ofstream(folder + "/model.safetensors.index.json") << nlohmann::json{{"weight_map", weight_map}}.dump(2);
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
}

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace llmq::test
