// Test helpers: shared-data paths, temp folders, synthetic checkpoints.
#include "test_util.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>

#include "io/llmq_format.h"

namespace llmq::test {
namespace fs = std::filesystem;

std::string shared_dir() {
  const char* env = std::getenv("LLMQ_SHARED");
  return env && *env ? std::string(env) : std::string(LLMQ_SHARED_DIR);
}

bool require_external_inputs() {
  const char* env = std::getenv("LLMQ_REQUIRE_SHARED");
  return env && std::string(env) == "1";
}

std::string missing_shared(const std::string& relative) {
  const fs::path p = fs::absolute(fs::path(shared_dir()) / relative).lexically_normal();
  if (fs::exists(p)) return "";
  return "needs the shared file " + p.string() + " (../shared beside the repository or LLMQ_SHARED=<dir>; see DATA.md there)";
}

std::string shared_path(const std::string& relative) {
  const std::string missing = missing_shared(relative);
  if (!missing.empty()) ADD_FAILURE() << missing;
  return fs::absolute(fs::path(shared_dir()) / relative).lexically_normal().string();
}

std::string stories260k() { return embedded_path("stories260K-hf"); }
std::string embedded_calibration_text() { return embedded_path("tinystories-train-200k.txt"); }

std::string embedded_path(const std::string& relative) {
  const fs::path p = fs::path(LLMQ_SOURCE_DIR) / "examples" / "data" / relative;
  if (!fs::exists(p)) ADD_FAILURE() << "embedded data file is missing from the repository: " << p.string();
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

std::vector<std::vector<int32_t>> random_windows(int n, int len, int vocab, uint32_t seed) {
  std::vector<std::vector<int32_t>> w(static_cast<size_t>(n), std::vector<int32_t>(static_cast<size_t>(len)));
  uint32_t s = seed;
  for (auto& win : w)
    for (auto& t : win) {
      s = s * 1664525u + 1013904223u;
      t = int32_t((s >> 8) % uint32_t(vocab));
    }
  return w;
}

std::vector<int32_t> tinystories_eval_ids(const std::string& model_folder, size_t max_chars) {
  auto tok = Tokenizer::Open(model_folder);
  EXPECT_TRUE(tok.ok()) << tok.status().ToString();
  if (!tok.ok()) return {};
  // The embedded text is the start of the shared one (examples/data/README.md).
  const std::string embedded = embedded_path("tinystories-valid-200k.txt");
  const bool short_prefix = max_chars > 0 && max_chars <= std::filesystem::file_size(embedded);
  std::string text = read_bytes(short_prefix ? embedded : shared_path("data/tinystories/TinyStories-valid-prefix.txt"));
  if (max_chars > 0 && text.size() > max_chars) text.resize(max_chars);
  auto ids = (*tok)->Encode(text);
  EXPECT_TRUE(ids.ok()) << ids.status().ToString();
  if (!ids.ok()) return {};
  ids->insert(ids->begin(), (*tok)->bos_id());
  return *ids;
}

double perplexity_of(const std::string& folder, const std::vector<int32_t>& ids, int64_t seq_len, int64_t max_chunks) {
  auto m = Model::Load(folder);
  EXPECT_TRUE(m.ok()) << m.status().ToString();
  if (!m.ok()) return 0.0;
  PerplexityOptions po;
  po.seq_len = seq_len;
  po.max_chunks = max_chunks;
  auto r = evaluate_perplexity(**m, ids, po);
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  return r.ok() ? r->perplexity : 0.0;
}

double relative_rms_difference(const std::vector<float>& a, const std::vector<float>& reference) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size() && i < reference.size(); ++i) {
    num += (double(a[i]) - reference[i]) * (double(a[i]) - reference[i]);
    den += double(reference[i]) * reference[i];
  }
  return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
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
  const int edim = opt && m.opt_embed_proj_dim > 0 ? m.opt_embed_proj_dim : m.hidden;
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
    cfg["do_layer_norm_before"] = !m.opt_post_norm;
    cfg["word_embed_proj_dim"] = edim;
    cfg["activation_function"] = "relu";
  } else {
    cfg["intermediate_size"] = m.intermediate;
    cfg["num_key_value_heads"] = m.kv_heads;
    cfg["rms_norm_eps"] = 1e-5;
    cfg["rope_theta"] = 10000.0;
    if (m.sliding_window > 0) cfg["sliding_window"] = m.sliding_window;
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
  ts.push_back(make(base + "embed_tokens.weight", {m.vocab, edim}, m.dtype, seed++, 0, 0.05f));
  if (opt) ts.push_back(make(base + "embed_positions.weight", {64 + 2, m.hidden}, m.dtype, seed++, 0, 0.05f));
  if (edim != m.hidden) {
    // Scaled so the projected activations keep the embeddings' N(0, 0.05) size.
    const float sd_in = 1.0f / std::sqrt(float(edim)), sd_out = 1.0f / std::sqrt(float(m.hidden));
    ts.push_back(make(base + "project_in.weight", {m.hidden, edim}, m.dtype, seed++, 0, sd_in));
    ts.push_back(make(base + "project_out.weight", {edim, m.hidden}, m.dtype, seed++, 0, sd_out));
  }
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
    if (!m.opt_post_norm) {  // HF builds the final norm only for pre-norm OPT
      ts.push_back(make(base + "final_layer_norm.weight", {m.hidden}, m.dtype, seed++, 1.0f, 0.02f));
      ts.push_back(make(base + "final_layer_norm.bias", {m.hidden}, m.dtype, seed++, 0.0f, 0.02f));
    }
  } else {
    ts.push_back(make(base + "norm.weight", {m.hidden}, m.dtype, seed++, 1.0f, 0.02f));
  }
  if (!m.tie_embeddings) ts.push_back(make("lm_head.weight", {m.vocab, edim}, m.dtype, seed++, 0, 0.05f));

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

QuantSpec quant_spec(int bits, int group_size, bool symmetric, ScaleDType scale_dtype) {
  QuantSpec s;
  s.bits = bits;
  s.group_size = group_size;
  s.symmetric = symmetric;
  s.scale_dtype = scale_dtype;
  return s;
}

uint64_t module_bytes_on_disk(const Checkpoint& c, const std::string& module) {
  uint64_t bytes = 0;
  for (const std::string& name : c.tensor_names())
    if (name.rfind(module + ".", 0) == 0) bytes += c.find(name)->nbytes;
  return bytes;
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

namespace llmq::test {

// FIPS 180-4 SHA-256, used only to compare token-id streams with the fixtures' hashes.
std::string sha256_hex(const void* data, size_t size) {
  static const uint32_t k[64] = {
      0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5, 0xd807aa98,
      0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786,
      0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8,
      0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13,
      0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819,
      0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a,
      0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
      0xc67178f2};
  uint32_t h[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
  std::vector<uint8_t> msg(static_cast<const uint8_t*>(data), static_cast<const uint8_t*>(data) + size);
  msg.push_back(0x80);
  while (msg.size() % 64 != 56) msg.push_back(0);
  const uint64_t bits = uint64_t(size) * 8;
  for (int i = 7; i >= 0; --i) msg.push_back(uint8_t(bits >> (8 * i)));
  auto rotr = [](uint32_t x, int n) { return (x >> n) | (x << (32 - n)); };
  for (size_t off = 0; off < msg.size(); off += 64) {
    uint32_t w[64];
    for (int i = 0; i < 16; ++i)
      w[i] = uint32_t(msg[off + 4 * i]) << 24 | uint32_t(msg[off + 4 * i + 1]) << 16 |
             uint32_t(msg[off + 4 * i + 2]) << 8 | msg[off + 4 * i + 3];
    for (int i = 16; i < 64; ++i) {
      const uint32_t s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >> 3);
      const uint32_t s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >> 10);
      w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], hh = h[7];
    for (int i = 0; i < 64; ++i) {
      const uint32_t t1 = hh + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + k[i] + w[i];
      const uint32_t t2 = (rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
      hh = g, g = f, f = e, e = d + t1, d = c, c = b, b = a, a = t1 + t2;
    }
    h[0] += a, h[1] += b, h[2] += c, h[3] += d, h[4] += e, h[5] += f, h[6] += g, h[7] += hh;
  }
  char out[65];
  for (int i = 0; i < 8; ++i) std::snprintf(out + 8 * i, 9, "%08x", h[i]);
  return std::string(out, 64);
}

void expect_matches_tokenizer_fixture(const Tokenizer& tok, const std::string& name, bool special_tokens_in_text) {
  const std::string fixture_path = shared_path("fixtures/tokenizer-ids.json");
  std::ifstream in(fixture_path);
  ASSERT_TRUE(in) << "cannot read " << fixture_path;
  const nlohmann::json fx = nlohmann::json::parse(in)["tokenizers"][name];
  EXPECT_EQ(tok.vocab_size(), fx["vocab_size"].get<int64_t>());
  EXPECT_EQ(tok.bos_id(), fx["bos_id"].get<int>());
  EXPECT_EQ(tok.eos_id(), fx["eos_id"].get<int>());
  for (const auto& s : fx["strings"]) {
    const std::string text = s["text"];
    auto ids = tok.Encode(text);
    ASSERT_TRUE(ids.ok());
    if (special_tokens_in_text && text.find("<s>") != std::string::npos) {
      EXPECT_EQ(ids->front(), fx["bos_id"].get<int>()) << "text: " << text;
      continue;
    }
    EXPECT_EQ(*ids, s["ids"].get<std::vector<int32_t>>()) << "text: " << text;
    auto back = tok.Decode(*ids);
    ASSERT_TRUE(back.ok());
    EXPECT_EQ(*back, s["decoded"].get<std::string>()) << "text: " << text;
  }
  for (auto it = fx["texts"].begin(); it != fx["texts"].end(); ++it) {
    const auto& t = it.value();
    auto ids = tok.Encode(read_bytes(shared_path(t["file"].get<std::string>())));
    ASSERT_TRUE(ids.ok());
    ASSERT_EQ(int64_t(ids->size()), t["count"].get<int64_t>()) << it.key();
    const auto first = t["first_ids"].get<std::vector<int32_t>>(), last = t["last_ids"].get<std::vector<int32_t>>();
    EXPECT_TRUE(std::equal(first.begin(), first.end(), ids->begin())) << it.key();
    EXPECT_TRUE(std::equal(last.begin(), last.end(), ids->end() - int64_t(last.size()))) << it.key();
    EXPECT_EQ(sha256_hex(ids->data(), ids->size() * 4), t["sha256_int32le"].get<std::string>()) << it.key();
  }
}

std::string missing_llamacpp_client() {
#ifdef LLMQ_LLAMACPP_CLIENT
  if (std::filesystem::exists(LLMQ_LLAMACPP_CLIENT)) return "";
#endif
  return "needs llama.cpp's libraries from npm (run: npm install --omit=optional --ignore-scripts --prefix " +
         std::string(LLMQ_SOURCE_DIR) + "/tests/oracle, then re-run cmake) to build tests/llamacpp/llamacpp_client";
}

std::string run_llamacpp_client(const std::string& args) {
#ifdef LLMQ_LLAMACPP_CLIENT
  // Under the sanitizer build the client is instrumented but llama.cpp's libraries are not: their
  // allocations at exit are not this project's leaks.
  const std::string cmd = "ASAN_OPTIONS=detect_leaks=0 " + std::string(LLMQ_LLAMACPP_CLIENT) + " " + args;
  FILE* p = popen(cmd.c_str(), "r");
  std::string out;
  char buf[4096];
  while (p != nullptr && std::fgets(buf, sizeof buf, p) != nullptr) out += buf;
  const int rc = p != nullptr ? pclose(p) : -1;
  EXPECT_EQ(rc, 0) << cmd;
  return out;
#else
  ADD_FAILURE() << "the llama.cpp client was not built: " << args;
  return "";
#endif
}

std::shared_ptr<const SafetensorsFile> write_module(const TempDir& dir, const QuantizedTensor& q, uint64_t* bytes) {
  const std::string path = dir.file("t.safetensors");
  EXPECT_TRUE(write_safetensors(path, internal::quantized_tensors("m", q)).ok());
  auto file = SafetensorsFile::Open(path);
  if (!file.ok()) {
    ADD_FAILURE() << file.status().ToString();
    return nullptr;
  }
  *bytes = 0;
  for (const TensorInfo& t : (*file)->tensors()) *bytes += t.nbytes;
  return std::move(*file);
}

Result<QuantizedTensor> read_module(const SafetensorsFile& file, const QuantizedTensor& q) {
  LLMQ_ASSIGN_OR_RETURN(auto info, internal::module_info_from_json(internal::module_info_to_json(q), "test"));
  return internal::read_quantized(file, "m", info);
}

Result<std::unique_ptr<Model>> load_dequantized(const std::string& folder) {
  LLMQ_ASSIGN_OR_RETURN(auto m, Model::Load(folder));
  for (const LinearInfo& l : m->checkpoint().linears()) {
    LLMQ_ASSIGN_OR_RETURN(auto w, m->checkpoint().linear_weight(l));  // dense part + outliers, in float
    LLMQ_RETURN_IF_ERROR(m->SetLinearWeight(l, std::move(w)));
  }
  return m;
}

void expect_kernels_match_dequantized(const std::string& folder, const std::vector<int32_t>& ids, float rel_tol) {
  auto kernels = Model::Load(folder);
  auto reference = load_dequantized(folder);
  ASSERT_TRUE(kernels.ok()) << kernels.status().ToString();
  ASSERT_TRUE(reference.ok()) << reference.status().ToString();
  const int64_t n = int64_t(ids.size());
  KVCache ck = (*kernels)->NewCache(n), cr = (*reference)->NewCache(n);
  auto lk = (*kernels)->Forward(ids.data(), n, &ck), lr = (*reference)->Forward(ids.data(), n, &cr);
  ASSERT_TRUE(lk.ok() && lr.ok());
  float scale = 0;
  for (float v : *lr) scale = std::max(scale, std::fabs(v));
  for (size_t i = 0; i < lr->size(); ++i) ASSERT_NEAR((*lk)[i], (*lr)[i], rel_tol * scale) << folder << " logit " << i;
}

}  // namespace llmq::test
