// Activation outliers for models too small to have them (issue 20, docs/OUTLIERS.md): a
// function-preserving transform of a Llama-family checkpoint that makes a few activation channels
// k times larger, the way the emergent features of large models look (LLM.int8 §4: the same few
// hidden dimensions in every layer, and the largest values at the down projection's input).
//
//  - residual-stream channels c (the same in every layer): input_layernorm.weight[c] and
//    post_attention_layernorm.weight[c] *= k, the columns c of q/k/v and of gate/up /= k;
//  - intermediate channels j (per layer): up_proj row j (and bias) *= k, down_proj column j /= k
//    (exact because down's input silu(gate x) * (up x) is linear in up's output).
//
// With k a power of two every scaling is exact in floating point, so the transformed model computes
// the same logits as the original bit for bit; only the activations the linears see change.
// Written as fp32 safetensors (one file) beside copies of the input's other files, plus
// outlier_injection.json recording k and the channels. Used by llmq-outliers and the tests.
#ifndef LLMQ_BENCH_OUTLIER_MODEL_H_
#define LLMQ_BENCH_OUTLIER_MODEL_H_

#include <llmq/llmq.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <numeric>
#include <random>
#include <set>
#include <string>
#include <vector>

namespace llmq::bench {

struct OutlierInjection {
  double k = 32.0;                 // scale of the outlier channels (a power of two keeps it exact)
  int hidden_channels = 2;         // residual-stream channels, shared by every layer
  int intermediate_channels = 2;   // down_proj input channels, chosen per layer
  uint64_t seed = 0;
};

// `count` distinct indices of [0, n), sorted.
inline std::vector<int64_t> pick_channels(int64_t n, int count, std::mt19937_64& rng) {
  std::vector<int64_t> all(static_cast<size_t>(n));
  std::iota(all.begin(), all.end(), 0);
  std::shuffle(all.begin(), all.end(), rng);
  all.resize(size_t(std::min<int64_t>(count, n)));
  std::sort(all.begin(), all.end());
  return all;
}

// Writes the transformed copy of the float Llama-family checkpoint `in` to `out` (created; must not
// exist or be empty). The summary (outlier_injection.json) goes to *summary when given.
inline Status inject_activation_outliers(const std::string& in, const std::string& out, const OutlierInjection& o,
                                         std::string* summary = nullptr) {
  namespace fs = std::filesystem;
  if (!(o.k > 0.0) || o.hidden_channels < 0 || o.intermediate_channels < 0)
    return Status::InvalidArgument("outlier injection: k must be > 0 and the channel counts >= 0");
  LLMQ_ASSIGN_OR_RETURN(auto ckpt, Checkpoint::Open(in));
  const ModelConfig& cfg = ckpt->config();
  if (cfg.family != ModelFamily::kLlama)
    return Status::NotSupported(in + ": outlier injection needs a Llama-family model (RMSNorm, gated MLP)");
  if (ckpt->is_quantized()) return Status::InvalidArgument(in + ": outlier injection needs a float checkpoint");
  std::error_code ec;
  if (fs::exists(out) && !fs::is_empty(out, ec))
    return Status::InvalidArgument(out + ": exists and is not empty");
  fs::create_directories(out, ec);
  if (ec) return Status::IOError(out + ": " + ec.message());

  std::mt19937_64 rng(o.seed);
  const std::vector<int64_t> hidden = pick_channels(cfg.hidden_size, o.hidden_channels, rng);
  std::vector<std::vector<int64_t>> inter(size_t(cfg.num_layers));
  for (auto& v : inter) v = pick_channels(cfg.intermediate_size, o.intermediate_channels, rng);
  const float k = float(o.k);

  std::map<std::string, std::vector<float>> t;
  for (const std::string& name : ckpt->tensor_names()) {
    LLMQ_ASSIGN_OR_RETURN(t[name], ckpt->get_float(name));
  }
  auto need = [&](const std::string& name) -> Result<std::vector<float>*> {
    auto it = t.find(name);
    if (it == t.end()) return Status::NotFound(in + ": tensor '" + name + "' is missing");
    return &it->second;
  };
  for (const LinearInfo& l : ckpt->linears()) {
    LLMQ_ASSIGN_OR_RETURN(std::vector<float>* w, need(l.module + ".weight"));
    const std::string layer = ckpt->base_prefix() + "layers." + std::to_string(l.layer) + ".";
    auto scale_cols = [&](const std::vector<int64_t>& cols, float f) {
      for (int64_t r = 0; r < l.rows; ++r)
        for (int64_t c : cols) (*w)[size_t(r * l.cols + c)] *= f;
    };
    switch (l.role) {
      case LinearRole::kQ: case LinearRole::kK: case LinearRole::kV: case LinearRole::kGate:
        scale_cols(hidden, 1.0f / k);
        break;
      case LinearRole::kUp: {
        scale_cols(hidden, 1.0f / k);
        for (int64_t j : inter[size_t(l.layer)])
          for (int64_t c = 0; c < l.cols; ++c) (*w)[size_t(j * l.cols + c)] *= k;
        if (l.has_bias) {
          LLMQ_ASSIGN_OR_RETURN(std::vector<float>* b, need(l.module + ".bias"));
          for (int64_t j : inter[size_t(l.layer)]) (*b)[size_t(j)] *= k;
        }
        break;
      }
      case LinearRole::kDown:
        scale_cols(inter[size_t(l.layer)], 1.0f / k);
        break;
      default:
        break;
    }
    if (l.role == LinearRole::kQ || l.role == LinearRole::kGate) {
      const std::string norm = layer + (l.role == LinearRole::kQ ? "input_layernorm" : "post_attention_layernorm");
      LLMQ_ASSIGN_OR_RETURN(std::vector<float>* nw, need(norm + ".weight"));
      for (int64_t c : hidden) (*nw)[size_t(c)] *= k;
    }
  }
  std::vector<TensorToWrite> tensors;
  for (auto& [name, v] : t) {
    TensorToWrite tw{name, DType::kF32, ckpt->find(name)->shape, {}};
    tw.bytes.resize(v.size() * sizeof(float));
    std::memcpy(tw.bytes.data(), v.data(), tw.bytes.size());
    tensors.push_back(std::move(tw));
  }
  LLMQ_RETURN_IF_ERROR(write_safetensors(out + "/model.safetensors", tensors, {{"format", "pt"}}));
  // The other files (tokenizer, generation config); config.json with the dtype written.
  for (const auto& e : fs::directory_iterator(in)) {
    const std::string f = e.path().filename().string();
    if (!e.is_regular_file() || f.find(".safetensors") != std::string::npos || f == "config.json") continue;
    fs::copy_file(e.path(), fs::path(out) / f, fs::copy_options::overwrite_existing, ec);
    if (ec) return Status::IOError(out + "/" + f + ": " + ec.message());
  }
  nlohmann::ordered_json config = nlohmann::ordered_json::parse(ckpt->config_json());
  config["torch_dtype"] = "float32";
  std::ofstream(out + "/config.json") << config.dump(2) << "\n";
  nlohmann::ordered_json s = {{"source", in}, {"k", o.k}, {"seed", o.seed}, {"hidden_channels", hidden}};
  nlohmann::ordered_json per_layer = nlohmann::ordered_json::array();
  for (const auto& v : inter) per_layer.push_back(v);
  s["intermediate_channels"] = per_layer;
  std::ofstream(out + "/outlier_injection.json") << s.dump(2) << "\n";
  if (summary != nullptr) *summary = s.dump();
  return Status::Ok();
}

}  // namespace llmq::bench

#endif  // LLMQ_BENCH_OUTLIER_MODEL_H_
