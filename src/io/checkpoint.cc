// Model folders: config.json parsing, safetensors discovery (single or sharded),
// and validation of every decoder weight against the configuration.
#include "llmq/checkpoint.h"

#include <algorithm>
#include <optional>
#include <tuple>
#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>

#include "io/file_util.h"
#include "io/hf_names.h"
#include "io/hf_quant_format.h"
#include "io/llmq_format.h"

namespace llmq {
namespace fs = std::filesystem;
using nlohmann::json;

const char* const kTokenizerFiles[] = {"tokenizer.model",         "tokenizer.json", "tokenizer_config.json",
                                       "special_tokens_map.json", "vocab.json",     "merges.txt",
                                       "generation_config.json",  "added_tokens.json", nullptr};

namespace {

constexpr const char* kSupported =
    "LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM, OPTForCausalLM";

// Field readers that name config.json and the field on error.
struct ConfigReader {
  const json& j;
  const std::string& source;
  Status status;

  int64_t required_int(const char* key) {
    if (!status.ok()) return 0;
    if (!j.contains(key) || j[key].is_null()) {
      status = Status::InvalidArgument(source + ": missing required field '" + key + "'");
      return 0;
    }
    if (!j[key].is_number_integer() || j[key].get<int64_t>() <= 0) {
      status = Status::InvalidArgument(source + ": field '" + key + "' must be a positive integer (got " +
                                       j[key].dump() + ")");
      return 0;
    }
    return j[key].get<int64_t>();
  }
  int64_t optional_int(const char* key, int64_t dflt) {
    if (!status.ok() || !j.contains(key) || j[key].is_null()) return dflt;
    return required_int(key);
  }
  double optional_number(const char* key, double dflt) {
    if (!status.ok() || !j.contains(key) || j[key].is_null()) return dflt;
    if (!j[key].is_number()) {
      status = Status::InvalidArgument(source + ": field '" + key + "' must be a number (got " + j[key].dump() + ")");
      return dflt;
    }
    return j[key].get<double>();
  }
  bool optional_bool(const char* key, bool dflt) {
    if (!status.ok() || !j.contains(key) || j[key].is_null()) return dflt;
    if (!j[key].is_boolean()) {
      status = Status::InvalidArgument(source + ": field '" + key + "' must be true or false");
      return dflt;
    }
    return j[key].get<bool>();
  }
};

Status parse_rope_scaling(const json& j, const std::string& source, ModelConfig* c) {
  if (!j.contains("rope_scaling") || j["rope_scaling"].is_null()) return Status::Ok();
  const json& r = j["rope_scaling"];
  if (!r.is_object()) return Status::InvalidArgument(source + ": rope_scaling must be an object or null");
  const json& type_field = r.contains("rope_type") ? r["rope_type"] : r.contains("type") ? r["type"] : json();
  if (!type_field.is_null() && !type_field.is_string())
    return Status::InvalidArgument(source + ": rope_scaling.rope_type must be a string (got " + type_field.dump() + ")");
  const std::string type = type_field.is_string() ? type_field.get<std::string>() : std::string();
  const std::string where = source + ": rope_scaling";  // messages name the nested object
  ConfigReader rr{r, where, Status::Ok()};
  if (type == "default" || type.empty()) {
    c->rope_scaling = RopeScaling::kNone;
  } else if (type == "linear") {
    c->rope_scaling = RopeScaling::kLinear;
    c->rope_factor = rr.optional_number("factor", 1.0);
  } else if (type == "llama3") {
    c->rope_scaling = RopeScaling::kLlama3;
    c->rope_factor = rr.optional_number("factor", 8.0);
    c->rope_low_freq_factor = rr.optional_number("low_freq_factor", 1.0);
    c->rope_high_freq_factor = rr.optional_number("high_freq_factor", 4.0);
    c->rope_original_max_positions = rr.optional_int("original_max_position_embeddings", 8192);
  } else {
    return Status::NotSupported(source + ": rope_scaling type '" + type +
                                "' is not supported (supported: none, linear, llama3)");
  }
  if (!rr.status.ok()) return rr.status;
  if (c->rope_factor <= 0) return Status::InvalidArgument(source + ": rope_scaling factor must be positive");
  return Status::Ok();
}

// Config keys that change the function a model computes but that llmq's runtime does not
// implement: refused with the key and its value instead of running a different model. A key at
// its neutral value (the one the runtime does implement) is accepted.
Status refuse_unimplemented_keys(const json& j, const ModelConfig& c, const std::string& source) {
  auto refuse = [&](const char* key, const std::string& why) {
    return Status::NotSupported(source + ": " + key + " = " + j[key].dump() + " is not supported (" + why + ")");
  };
  auto is = [&](const char* key) { return j.contains(key) && !j[key].is_null(); };
  if (c.family == ModelFamily::kLlama) {
    if (is("hidden_act") && j["hidden_act"] != "silu" && j["hidden_act"] != "swish")
      return refuse("hidden_act", "the MLP is SwiGLU with silu");
    if (is("partial_rotary_factor") && !(j["partial_rotary_factor"].is_number() && j["partial_rotary_factor"].get<double>() == 1.0))
      return refuse("partial_rotary_factor", "RoPE rotates every head dimension");
    // Neutral values: 1 for the multipliers, 1/sqrt(head_dim) for the attention scale; softcapping: none.
    const double neutral_attention = c.head_dim > 0 ? 1.0 / std::sqrt(double(c.head_dim)) : 0.0;
    for (const char* key : {"embedding_multiplier", "residual_multiplier", "logits_scaling", "attention_multiplier",
                            "attn_logit_softcapping", "final_logit_softcapping"}) {
      if (!is(key)) continue;
      const std::string k = key;
      const double neutral = k == "attention_multiplier" ? neutral_attention : 1.0;
      const bool softcap = k.find("softcapping") != std::string::npos;
      if (softcap || !j[key].is_number() || std::fabs(j[key].get<double>() - neutral) > 1e-6 * neutral)
        return refuse(key, "no scaling or capping of embeddings, residuals, attention scores or logits is implemented");
    }
    for (const char* key : {"qk_norm", "use_qk_norm", "qk_layernorm"})
      if (is(key) && j[key] != false) return refuse(key, "no normalization of queries and keys is implemented");
    if (c.architecture == "Qwen2ForCausalLM" && c.sliding_window > 0 && is("max_window_layers") &&
        j["max_window_layers"].is_number_integer() && j["max_window_layers"].get<int64_t>() > 0 &&
        j["max_window_layers"].get<int64_t>() < c.num_layers)
      return refuse("max_window_layers", "with use_sliding_window the window would apply to some layers only");
    if (!(c.norm_eps >= 0.0) || !std::isfinite(c.norm_eps))
      return Status::InvalidArgument(source + ": rms_norm_eps must be a finite number >= 0 (got " + std::to_string(c.norm_eps) + ")");
    if (!(c.rope_theta > 0.0) || !std::isfinite(c.rope_theta))
      return Status::InvalidArgument(source + ": rope_theta must be a finite positive number (got " + std::to_string(c.rope_theta) + ")");
  } else {
    if (is("layer_norm_elementwise_affine") && j["layer_norm_elementwise_affine"] != true)
      return refuse("layer_norm_elementwise_affine", "the layer norms have weights and biases");
    if (is("scale_embedding") && j["scale_embedding"] != false) return refuse("scale_embedding", "embeddings are not scaled");
  }
  return Status::Ok();
}

}  // namespace

namespace {

// Another tool's quantization config: config.json's quantization_config, else AutoGPTQ's
// quantize_config.json / quant_config.json beside it. nullopt for a float folder.
Result<std::optional<internal::HfQuantConfig>> read_foreign_quant_config(const std::string& folder, const json& cj,
                                                                         const std::string& config_path) {
  if (cj.contains("quantization_config")) {
    LLMQ_ASSIGN_OR_RETURN(auto c, internal::parse_hf_quant_config(cj["quantization_config"], config_path));
    return std::optional<internal::HfQuantConfig>(c);
  }
  std::error_code ec;
  for (const char* name : {"quantize_config.json", "quant_config.json"}) {
    const std::string path = (fs::path(folder) / name).string();
    if (!fs::exists(path, ec)) continue;
    LLMQ_ASSIGN_OR_RETURN(std::string text, internal::read_text_file(path));
    json qc;
    try {
      qc = json::parse(text);
    } catch (const json::exception& e) {
      return Status::InvalidArgument(path + ": not valid JSON: " + e.what());
    }
    LLMQ_ASSIGN_OR_RETURN(auto c, internal::parse_hf_quant_config(qc, path));
    return std::optional<internal::HfQuantConfig>(c);
  }
  return std::optional<internal::HfQuantConfig>();
}

Result<json> parse_config_json(const std::string& json_text, const std::string& source) {
  json j;
  try {
    j = json::parse(json_text);
  } catch (const json::exception& e) {
    return Status::InvalidArgument(source + ": not valid JSON: " + e.what());
  }
  if (!j.is_object()) return Status::InvalidArgument(source + ": not a JSON object");
  return j;
}

Result<ModelConfig> config_from_json_unchecked(const json& j, const std::string& source);

// Any value of an unexpected JSON type that a field read below did not anticipate becomes an error
// naming the file, never an exception escaping the library (found by fuzz_config).
Result<ModelConfig> config_from_json(const json& j, const std::string& source) {
  try {
    return config_from_json_unchecked(j, source);
  } catch (const json::exception& e) {
    return Status::InvalidArgument(source + ": a field has a value of the wrong type: " + e.what());
  }
}

Result<ModelConfig> config_from_json_unchecked(const json& j, const std::string& source) {
  ModelConfig c;
  if (j.contains("architectures") && j["architectures"].is_array() && !j["architectures"].empty() &&
      j["architectures"][0].is_string()) {
    c.architecture = j["architectures"][0].get<std::string>();
  } else if (j.contains("model_type") && j["model_type"].is_string()) {
    const std::string mt = j["model_type"].get<std::string>();
    if (mt == "llama") c.architecture = "LlamaForCausalLM";
    else if (mt == "mistral") c.architecture = "MistralForCausalLM";
    else if (mt == "qwen2") c.architecture = "Qwen2ForCausalLM";
    else if (mt == "opt") c.architecture = "OPTForCausalLM";
    else c.architecture = mt;
  } else {
    return Status::InvalidArgument(source + ": has neither 'architectures' nor 'model_type'");
  }
  ConfigReader r{j, source, Status::Ok()};
  if (c.architecture == "LlamaForCausalLM" || c.architecture == "MistralForCausalLM" ||
      c.architecture == "Qwen2ForCausalLM") {
    c.family = ModelFamily::kLlama;
    c.hidden_size = r.required_int("hidden_size");
    c.intermediate_size = r.required_int("intermediate_size");
    c.num_layers = r.required_int("num_hidden_layers");
    c.num_heads = r.required_int("num_attention_heads");
    c.num_kv_heads = r.optional_int("num_key_value_heads", c.num_heads);
    c.vocab_size = r.required_int("vocab_size");
    c.max_position_embeddings = r.optional_int("max_position_embeddings", 2048);
    c.norm_eps = r.optional_number("rms_norm_eps", 1e-6);
    c.rope_theta = r.optional_number("rope_theta", 10000.0);
    c.tie_word_embeddings = r.optional_bool("tie_word_embeddings", false);
    const bool qwen2 = c.architecture == "Qwen2ForCausalLM";
    c.attention_bias = r.optional_bool("attention_bias", qwen2);
    c.mlp_bias = r.optional_bool("mlp_bias", false);
    if (c.architecture == "MistralForCausalLM" || qwen2) {
      const bool use_sw = qwen2 ? r.optional_bool("use_sliding_window", false) : true;
      if (use_sw && j.contains("sliding_window") && j["sliding_window"].is_number_integer())
        c.sliding_window = j["sliding_window"].get<int64_t>();
    }
    if (!r.status.ok()) return r.status;
    c.head_dim = r.optional_int("head_dim", c.num_heads ? c.hidden_size / c.num_heads : 0);
    LLMQ_RETURN_IF_ERROR(parse_rope_scaling(j, source, &c));
  } else if (c.architecture == "OPTForCausalLM") {
    c.family = ModelFamily::kOpt;
    c.hidden_size = r.required_int("hidden_size");
    c.intermediate_size = r.required_int("ffn_dim");
    c.num_layers = r.required_int("num_hidden_layers");
    c.num_heads = r.required_int("num_attention_heads");
    c.num_kv_heads = c.num_heads;
    c.vocab_size = r.required_int("vocab_size");
    c.max_position_embeddings = r.optional_int("max_position_embeddings", 2048);
    c.norm_eps = 1e-5;
    c.do_layer_norm_before = r.optional_bool("do_layer_norm_before", true);
    c.word_embed_proj_dim = r.optional_int("word_embed_proj_dim", c.hidden_size);
    c.tie_word_embeddings = r.optional_bool("tie_word_embeddings", true);
    const bool bias = r.optional_bool("enable_bias", true);
    c.attention_bias = c.o_bias = c.mlp_bias = bias;
    if (j.contains("activation_function") && j["activation_function"] != "relu")
      return Status::NotSupported(source + ": OPT activation_function " + j["activation_function"].dump() +
                                  " is not supported (only relu)");
    if (!r.status.ok()) return r.status;
    c.head_dim = c.hidden_size / c.num_heads;
  } else {
    return Status::NotSupported(source + ": architecture '" + c.architecture +
                                "' is not supported (supported: " + kSupported + ")");
  }
  if (!r.status.ok()) return r.status;
  c.bos_token_id = j.value("bos_token_id", json(1)).is_number_integer() ? j.value("bos_token_id", int64_t(1)) : 1;
  c.eos_token_id = j.value("eos_token_id", json(2)).is_number_integer() ? j.value("eos_token_id", int64_t(2)) : 2;
  c.torch_dtype = j.value("torch_dtype", json("")).is_string() ? j.value("torch_dtype", std::string()) : "";
  if (c.family == ModelFamily::kLlama) {
    if (c.num_heads % c.num_kv_heads != 0)
      return Status::InvalidArgument(source + ": num_attention_heads (" + std::to_string(c.num_heads) +
                                     ") is not a multiple of num_key_value_heads (" +
                                     std::to_string(c.num_kv_heads) + ")");
    if (c.head_dim % 2 != 0)
      return Status::InvalidArgument(source + ": head_dim " + std::to_string(c.head_dim) + " must be even for RoPE");
  } else if (c.hidden_size % c.num_heads != 0) {
    return Status::InvalidArgument(source + ": hidden_size is not a multiple of num_attention_heads");
  }
  LLMQ_RETURN_IF_ERROR(refuse_unimplemented_keys(j, c, source));
  return c;
}

}  // namespace

Result<ModelConfig> parse_model_config(const std::string& json_text, const std::string& source) {
  LLMQ_ASSIGN_OR_RETURN(json j, parse_config_json(json_text, source));
  return config_from_json(j, source);
}

const char* linear_role_name(LinearRole r) {
  static const char* const kNames[] = {"q", "k", "v", "o", "gate", "up", "down", "fc1", "fc2"};
  return kNames[size_t(r)];
}

std::string default_base_prefix(ModelFamily family) {
  return family == ModelFamily::kOpt ? "model.decoder." : "model.";
}

namespace internal {

std::string block_prefix(const std::string& base, int64_t layer) { return base + "layers." + std::to_string(layer) + "."; }

std::string block_norm(const ModelConfig& c, const std::string& base, int64_t layer, BlockNorm which) {
  const bool opt = c.family == ModelFamily::kOpt;
  const bool attn = which == BlockNorm::kAttention;
  return block_prefix(base, layer) +
         (opt ? (attn ? "self_attn_layer_norm" : "final_layer_norm") : (attn ? "input_layernorm" : "post_attention_layernorm"));
}

std::string final_norm(const ModelConfig& c, const std::string& base) {
  return base + (c.family == ModelFamily::kOpt ? "final_layer_norm" : "norm");
}
std::string embed_tokens(const std::string& base) { return base + "embed_tokens"; }
std::string embed_positions(const std::string& base) { return base + "embed_positions"; }
std::string project_in(const std::string& base) { return base + "project_in"; }
std::string project_out(const std::string& base) { return base + "project_out"; }

}  // namespace internal

std::vector<std::string> Checkpoint::UnusedTensors() const {
  const ModelConfig& c = config_;
  const std::string& base = base_prefix_;
  std::set<std::string> used = {internal::embed_tokens(base) + ".weight", internal::embed_positions(base) + ".weight",
                                internal::final_norm(c, base) + ".weight", internal::final_norm(c, base) + ".bias",
                                internal::kLmHeadWeight};
  std::vector<std::string> prefixes = {internal::project_in(base) + ".", internal::project_out(base) + "."};
  for (const LinearInfo& l : linears()) prefixes.push_back(l.module + ".");  // weight, bias, quantized parts
  if (quantization_)  // quantized embeddings / head (GGUF types)
    for (const auto& [module, _] : quantization_->modules) prefixes.push_back(module + ".");
  for (int64_t layer = 0; layer < c.num_layers; ++layer)
    for (auto which : {internal::BlockNorm::kAttention, internal::BlockNorm::kMlp}) {
      const std::string n = internal::block_norm(c, base, layer, which);
      used.insert(n + ".weight");
      used.insert(n + ".bias");
    }
  std::vector<std::string> out;
  for (const auto& [name, _] : file_of_) {
    if (used.count(name)) continue;
    bool part = false;
    for (const std::string& p : prefixes) part |= name.compare(0, p.size(), p) == 0;
    if (!part) out.push_back(name);
  }
  return out;
}

std::vector<LinearInfo> decoder_linears(const ModelConfig& c, const std::string& base) {
  std::vector<LinearInfo> out;
  const int64_t h = c.hidden_size, qd = c.num_heads * c.head_dim, kvd = c.num_kv_heads * c.head_dim;
  const int64_t f = c.intermediate_size;
  for (int64_t l = 0; l < c.num_layers; ++l) {
    const std::string p = internal::block_prefix(base, l);
    auto add = [&](const std::string& name, LinearRole role, int64_t rows, int64_t cols, bool bias) {
      out.push_back({p + name, int(l), role, rows, cols, bias});
    };
    if (c.family == ModelFamily::kLlama) {
      add("self_attn.q_proj", LinearRole::kQ, qd, h, c.attention_bias);
      add("self_attn.k_proj", LinearRole::kK, kvd, h, c.attention_bias);
      add("self_attn.v_proj", LinearRole::kV, kvd, h, c.attention_bias);
      add("self_attn.o_proj", LinearRole::kO, h, qd, false);
      add("mlp.gate_proj", LinearRole::kGate, f, h, c.mlp_bias);
      add("mlp.up_proj", LinearRole::kUp, f, h, c.mlp_bias);
      add("mlp.down_proj", LinearRole::kDown, h, f, c.mlp_bias);
    } else {
      add("self_attn.q_proj", LinearRole::kQ, h, h, c.attention_bias);
      add("self_attn.k_proj", LinearRole::kK, h, h, c.attention_bias);
      add("self_attn.v_proj", LinearRole::kV, h, h, c.attention_bias);
      add("self_attn.out_proj", LinearRole::kO, h, h, c.o_bias);
      add("fc1", LinearRole::kFc1, f, h, c.mlp_bias);
      add("fc2", LinearRole::kFc2, h, f, c.mlp_bias);
    }
  }
  return out;
}

Result<std::shared_ptr<const Checkpoint>> Checkpoint::Open(const std::string& folder) {
  std::shared_ptr<Checkpoint> ck(new Checkpoint());
  ck->folder_ = folder;
  std::error_code ec;
  if (!fs::is_directory(folder, ec))
    return Status::NotFound(folder + ": not a model folder (no such directory)");
  const std::string config_path = (fs::path(folder) / "config.json").string();
  LLMQ_ASSIGN_OR_RETURN(ck->config_json_, internal::read_text_file(config_path));
  LLMQ_ASSIGN_OR_RETURN(json cj, parse_config_json(ck->config_json_, config_path));
  LLMQ_ASSIGN_OR_RETURN(ck->config_, config_from_json(cj, config_path));

  // Weights: sharded index, single model.safetensors, or every *.safetensors file.
  const fs::path index_path = fs::path(folder) / "model.safetensors.index.json";
  std::vector<std::string> shard_files;
  std::map<std::string, std::string> weight_map;
  if (fs::exists(index_path, ec)) {
    LLMQ_ASSIGN_OR_RETURN(std::string text, internal::read_text_file(index_path.string()));
    json idx;
    try {
      idx = json::parse(text);
    } catch (const json::exception& e) {
      return Status::Corruption(index_path.string() + ": not valid JSON: " + e.what());
    }
    if (!idx.is_object() || !idx.contains("weight_map") || !idx["weight_map"].is_object())
      return Status::Corruption(index_path.string() + ": has no 'weight_map' object");
    std::set<std::string> uniq;
    for (auto it = idx["weight_map"].begin(); it != idx["weight_map"].end(); ++it) {
      if (!it.value().is_string())
        return Status::Corruption(index_path.string() + ": weight_map entry '" + it.key() + "' is not a file name");
      const std::string file = it.value().get<std::string>();
      if (file.find('/') != std::string::npos || file == ".." || file.empty())
        return Status::Corruption(index_path.string() + ": weight_map names '" + file + "', not a file in the folder");
      weight_map[it.key()] = file;
      if (uniq.insert(file).second) shard_files.push_back(file);
    }
    std::sort(shard_files.begin(), shard_files.end());
  } else if (fs::exists(fs::path(folder) / "model.safetensors", ec)) {
    shard_files.push_back("model.safetensors");
  } else {
    for (const auto& e : fs::directory_iterator(folder, ec))
      if (e.path().extension() == ".safetensors") shard_files.push_back(e.path().filename().string());
    std::sort(shard_files.begin(), shard_files.end());
  }
  if (shard_files.empty())
    return Status::NotFound(folder + ": no *.safetensors weights (only safetensors checkpoints are supported)");
  for (const std::string& name : shard_files) {
    const std::string path = (fs::path(folder) / name).string();
    if (!fs::exists(path, ec))
      return Status::NotFound(path + ": shard named in model.safetensors.index.json is missing");
    LLMQ_ASSIGN_OR_RETURN(auto file, SafetensorsFile::Open(path));
    for (const TensorInfo& t : file->tensors()) {
      if (ck->file_of_.count(t.name))
        return Status::Corruption(path + ": tensor '" + t.name + "' is also stored in " +
                                  ck->files_[ck->file_of_[t.name]]->path());
      if (!weight_map.empty()) {
        auto it = weight_map.find(t.name);
        if (it == weight_map.end() || it->second != name)
          return Status::Corruption(path + ": tensor '" + t.name + "' is not mapped to this file by " +
                                    index_path.string());
      }
      ck->file_of_[t.name] = ck->files_.size();
    }
    ck->files_.push_back(std::move(file));
  }
  for (const auto& [tensor, file] : weight_map)
    if (!ck->file_of_.count(tensor))
      return Status::Corruption(index_path.string() + ": tensor '" + tensor + "' is mapped to " + file +
                                " but that file does not contain it");

  // llmq's quantization_config, or another tool's (config.json, or AutoGPTQ's quantize_config.json).
  LLMQ_ASSIGN_OR_RETURN(ck->quantization_, internal::parse_quantization_config(cj, config_path));
  std::optional<internal::HfQuantConfig> hf;
  if (!ck->quantization_) {
    LLMQ_ASSIGN_OR_RETURN(hf, read_foreign_quant_config(folder, cj, config_path));
    if (hf) {
      ck->quantization_ = std::make_shared<QuantizationInfo>();
      ck->quantization_->format = hf->quant_method;
      ck->quantization_->checkpoint_format = hf->checkpoint_format;
      ck->quantization_->method = hf->quant_method;
    }
  }

  // Decoder prefix: the family default, or without "model." as some OPT exports store it.
  const ModelConfig& c = ck->config_;
  ck->base_prefix_ = default_base_prefix(c.family);
  const std::string probe = "layers.0.";
  auto has_prefix = [&](const std::string& base) {
    for (const auto& [name, _] : ck->file_of_)
      if (name.rfind(base + probe, 0) == 0) return true;
    return false;
  };
  if (!has_prefix(ck->base_prefix_) && c.family == ModelFamily::kOpt && has_prefix("decoder."))
    ck->base_prefix_ = "decoder.";

  // The layers the weights hold, before anything is sized by the config's count (a config that
  // promises a billion layers must not allocate for them).
  {
    const std::string layers = ck->base_prefix_ + "layers.";
    int64_t held = 0;
    for (const auto& [name, _] : ck->file_of_) {
      if (name.compare(0, layers.size(), layers) != 0) continue;
      const size_t end = name.find('.', layers.size());
      const std::string idx = name.substr(layers.size(), end == std::string::npos ? std::string::npos : end - layers.size());
      if (!idx.empty() && idx.size() < 10 && idx.find_first_not_of("0123456789") == std::string::npos)
        held = std::max<int64_t>(held, std::stoll(idx) + 1);
    }
    if (c.num_layers > held)
      return Status::NotFound(config_path + ": num_hidden_layers is " + std::to_string(c.num_layers) +
                              " but the weights hold " + std::to_string(held) + " decoder layer(s) (" + layers + "0.." +
                              std::to_string(held > 0 ? held - 1 : 0) + ")");
  }

  // Another tool's folder: every linear (and the head) stored in its layout is a quantized module.
  if (hf) {
    auto find = [&](const std::string& name) { return ck->find(name); };
    std::vector<std::tuple<std::string, int64_t, int64_t>> candidates;
    for (const LinearInfo& lin : ck->linears()) candidates.emplace_back(lin.module, lin.rows, lin.cols);
    if (!c.tie_word_embeddings)
      candidates.emplace_back("lm_head", c.vocab_size, c.family == ModelFamily::kOpt ? c.word_embed_proj_dim : c.hidden_size);
    for (const auto& [module, rows, cols] : candidates) {
      if (!ck->find(module + "." + internal::hf_marker_tensor(hf->layout))) continue;
      LLMQ_ASSIGN_OR_RETURN(ck->quantization_->modules[module],
                            internal::hf_module_info(*hf, find, config_path, module, rows, cols));
    }
    if (ck->quantization_->modules.empty())
      return Status::NotFound(config_path + ": quantization_config says " + hf->quant_method + " but no tensor is named '<module>." +
                              internal::hf_marker_tensor(hf->layout) + "'");
  }

  // Every decoder linear must be present with the configured shape.
  for (const LinearInfo& lin : ck->linears()) {
    if (ck->is_quantized_module(lin.module)) {
      const QuantizedModuleInfo& qi = ck->quantization_->modules.at(lin.module);
      if (qi.rows != lin.rows || qi.cols != lin.cols)
        return Status::Corruption(config_path + ": quantized module '" + lin.module + "' has shape [" +
                                  std::to_string(qi.rows) + ", " + std::to_string(qi.cols) + "] but the config needs [" +
                                  std::to_string(lin.rows) + ", " + std::to_string(lin.cols) + "]");
      continue;
    }
    const std::string w = lin.module + ".weight";
    const TensorInfo* t = ck->find(w);
    if (t == nullptr) return Status::NotFound(folder + ": weight '" + w + "' is missing");
    if (t->shape != std::vector<int64_t>{lin.rows, lin.cols})
      return Status::InvalidArgument(folder + ": weight '" + w + "' has shape " + shape_string(t->shape) +
                                     " but config.json implies [" + std::to_string(lin.rows) + ", " +
                                     std::to_string(lin.cols) + "]");
    if (!is_float_dtype(t->dtype))
      return Status::NotSupported(folder + ": weight '" + w + "' has dtype " + dtype_name(t->dtype) +
                                  " (float weights expected)");
  }
  if (ck->quantization_ && !hf)
    for (const auto& [module, qi] : ck->quantization_->modules) {
      const char* part = qi.spec.is_ggml() ? internal::kGgmlBlocks : internal::kCodes;
      if (!ck->find(module + "." + part))
        return Status::NotFound(folder + ": quantized module '" + module + "' has no '" + module + "." + part +
                                "' tensor");
    }
  return std::shared_ptr<const Checkpoint>(std::move(ck));
}

uint64_t Checkpoint::bytes_on_disk() const {
  uint64_t n = 0;
  for (const auto& f : files_) n += f->file_size();
  return n;
}

std::vector<std::string> Checkpoint::tensor_names() const {
  std::vector<std::string> names;
  for (const auto& f : files_)
    for (const TensorInfo& t : f->tensors()) names.push_back(t.name);
  return names;
}

const TensorInfo* Checkpoint::find(const std::string& name) const {
  auto it = file_of_.find(name);
  return it == file_of_.end() ? nullptr : files_[it->second]->find(name);
}

Result<TensorView> Checkpoint::get(const std::string& name) const {
  auto it = file_of_.find(name);
  if (it == file_of_.end()) return Status::NotFound(folder_ + ": no tensor named '" + name + "'");
  return files_[it->second]->get(name);
}

Result<std::vector<float>> Checkpoint::get_float(const std::string& name) const {
  LLMQ_ASSIGN_OR_RETURN(TensorView v, get(name));
  auto r = to_float32(v);
  if (!r.ok()) return r.status().WithContext(folder_ + ": tensor '" + name + "'");
  release_pages(name);
  return r;
}

void Checkpoint::release_pages(const std::string& name) const {
  auto it = file_of_.find(name);
  if (it == file_of_.end()) return;
  const SafetensorsFile& f = *files_[it->second];
  if (const TensorInfo* t = f.find(name)) f.ReleasePages(*t);
}

bool Checkpoint::is_quantized_module(const std::string& module) const {
  return quantization_ && quantization_->modules.count(module) > 0;
}

Result<QuantizedTensor> Checkpoint::get_quantized(const std::string& module) const {
  if (!is_quantized_module(module)) return Status::NotFound(folder_ + ": module '" + module + "' is not quantized");
  if (quantization_->format != "llmq") return internal::read_hf_quantized(*this, module, quantization_->modules.at(module));
  return internal::read_quantized(*this, module, quantization_->modules.at(module));
}

Result<std::vector<float>> Checkpoint::linear_weight(const LinearInfo& linear) const {
  if (is_quantized_module(linear.module)) {
    LLMQ_ASSIGN_OR_RETURN(QuantizedTensor q, get_quantized(linear.module));
    return dequantize(q);
  }
  return get_float(linear.module + ".weight");
}

}  // namespace llmq
