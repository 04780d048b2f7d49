// A Llama-style checkpoint with random weights (N(0, 0.02), fp16), one safetensors shard per
// decoder layer plus the index, holding one layer in memory at a time — so checkpoints larger
// than RAM can be made. Used by llmq-synth and by the benchmarks that need realistic shapes;
// measures time and memory only, never quality.
#ifndef LLMQ_BENCH_SYNTHETIC_CHECKPOINT_H_
#define LLMQ_BENCH_SYNTHETIC_CHECKPOINT_H_

#include <llmq/llmq.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <random>
#include <string>
#include <vector>

namespace llmq::bench {

struct SyntheticShape {
  int64_t hidden = 4096, intermediate = 11008, layers = 32, heads = 32, kv_heads = 32, vocab = 32000;
};

inline llmq::TensorToWrite random_tensor(const std::string& name, std::vector<int64_t> shape, std::mt19937& rng, float sd,
                                  bool ones = false) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  std::vector<uint16_t> v(static_cast<size_t>(n));
  std::normal_distribution<float> dist(0.0f, sd);
  for (auto& x : v) x = llmq::float_to_fp16(ones ? 1.0f : dist(rng));
  llmq::TensorToWrite t{name, llmq::DType::kF16, std::move(shape), {}};
  t.bytes.resize(v.size() * 2);
  std::memcpy(t.bytes.data(), v.data(), t.bytes.size());
  return t;
}


// Writes config.json, the shards and the index into `out` (which must exist and be empty).
inline llmq::Status write_synthetic_llama(const std::string& out, const SyntheticShape& s, bool progress) {
  const int64_t hidden = s.hidden, inter = s.intermediate, layers = s.layers, heads = s.heads, kv = s.kv_heads,
                vocab = s.vocab;
  const int64_t hd = hidden / heads;
  std::mt19937 rng(1);
  auto shard = [&](int64_t i) {
    char b[64];
    std::snprintf(b, sizeof b, "model-%05lld-of-%05lld.safetensors", (long long)(i + 1), (long long)(layers + 1));
    return std::string(b);
  };
  std::string weight_map;
  auto write = [&](int64_t i, const std::vector<llmq::TensorToWrite>& ts) -> llmq::Status {
    LLMQ_RETURN_IF_ERROR(llmq::write_safetensors(out + "/" + shard(i), ts, {{"format", "pt"}}));
    for (const auto& t : ts) weight_map += (weight_map.empty() ? "" : ",\n") + std::string("    \"") + t.name + "\": \"" + shard(i) + "\"";
    return llmq::Status::Ok();
  };
  for (int64_t l = 0; l < layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    std::vector<llmq::TensorToWrite> ts;
    ts.push_back(random_tensor(p + "input_layernorm.weight", {hidden}, rng, 0, true));
    ts.push_back(random_tensor(p + "post_attention_layernorm.weight", {hidden}, rng, 0, true));
    ts.push_back(random_tensor(p + "self_attn.q_proj.weight", {heads * hd, hidden}, rng, 0.02f));
    ts.push_back(random_tensor(p + "self_attn.k_proj.weight", {kv * hd, hidden}, rng, 0.02f));
    ts.push_back(random_tensor(p + "self_attn.v_proj.weight", {kv * hd, hidden}, rng, 0.02f));
    ts.push_back(random_tensor(p + "self_attn.o_proj.weight", {hidden, heads * hd}, rng, 0.02f));
    ts.push_back(random_tensor(p + "mlp.gate_proj.weight", {inter, hidden}, rng, 0.02f));
    ts.push_back(random_tensor(p + "mlp.up_proj.weight", {inter, hidden}, rng, 0.02f));
    ts.push_back(random_tensor(p + "mlp.down_proj.weight", {hidden, inter}, rng, 0.02f));
    LLMQ_RETURN_IF_ERROR(write(l, ts));
    if (progress) std::fprintf(stderr, "\rllmq-synth: layer %lld/%lld", (long long)(l + 1), (long long)layers);
  }
  LLMQ_RETURN_IF_ERROR(write(layers, {random_tensor("model.embed_tokens.weight", {vocab, hidden}, rng, 0.02f),
                 random_tensor("model.norm.weight", {hidden}, rng, 0, true),
                 random_tensor("lm_head.weight", {vocab, hidden}, rng, 0.02f)}));
  std::ofstream(out + "/model.safetensors.index.json") << "{\n  \"metadata\": {},\n  \"weight_map\": {\n" << weight_map
                                                      << "\n  }\n}\n";
  std::ofstream(out + "/config.json")
      << "{\n  \"architectures\": [\"LlamaForCausalLM\"],\n  \"model_type\": \"llama\",\n  \"hidden_size\": " << hidden
      << ",\n  \"intermediate_size\": " << inter << ",\n  \"num_hidden_layers\": " << layers
      << ",\n  \"num_attention_heads\": " << heads << ",\n  \"num_key_value_heads\": " << kv
      << ",\n  \"vocab_size\": " << vocab
      << ",\n  \"max_position_embeddings\": 2048,\n  \"rms_norm_eps\": 1e-05,\n  \"rope_theta\": 10000.0,\n"
         "  \"hidden_act\": \"silu\",\n  \"tie_word_embeddings\": false,\n  \"torch_dtype\": \"float16\"\n}\n";
  return llmq::Status::Ok();
}

}  // namespace llmq::bench

#endif  // LLMQ_BENCH_SYNTHETIC_CHECKPOINT_H_
