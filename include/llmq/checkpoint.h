// Hugging Face model folders and llmq quantized folders.
//
// A folder holds config.json, one or more *.safetensors files (single file or
// sharded with model.safetensors.index.json) and tokenizer files; quantized folders are llmq's
// own (docs/FORMAT.md) or GPTQ / AWQ / compressed-tensors checkpoints (docs/HF_FORMATS.md). Checkpoint
// validates the configuration and the weights against it, and hands out
// zero-copy views of tensors, float copies of linear weights (dequantized for
// quantized folders) and the QuantizedTensor of each quantized linear.
#ifndef LLMQ_CHECKPOINT_H_
#define LLMQ_CHECKPOINT_H_

#include "llmq/export.h"

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "llmq/kernels.h"
#include "llmq/quant.h"
#include "llmq/safetensors.h"
#include "llmq/status.h"
#include "llmq/tensor.h"

namespace llmq {

enum class ModelFamily : uint8_t { kLlama, kOpt };
enum class RopeScaling : uint8_t { kNone, kLinear, kLlama3 };

// What llmq needs from config.json. Llama covers LlamaForCausalLM, MistralForCausalLM and
// Qwen2ForCausalLM (the latter with q/k/v biases).
struct LLMQ_EXPORT ModelConfig {
  std::string architecture;  // "LlamaForCausalLM", "OPTForCausalLM", ...
  ModelFamily family = ModelFamily::kLlama;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;  // OPT: ffn_dim
  int64_t num_layers = 0;
  int64_t num_heads = 0;
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;
  int64_t vocab_size = 0;
  int64_t max_position_embeddings = 0;
  double norm_eps = 1e-5;  // rms_norm_eps (Llama) or layer_norm_eps (OPT, default 1e-5)
  double rope_theta = 10000.0;
  RopeScaling rope_scaling = RopeScaling::kNone;
  double rope_factor = 1.0;
  double rope_low_freq_factor = 1.0;
  double rope_high_freq_factor = 4.0;
  int64_t rope_original_max_positions = 8192;
  bool tie_word_embeddings = false;
  bool attention_bias = false;  // q/k/v biases (Qwen2: true)
  bool o_bias = false;          // OPT: every linear has a bias
  bool mlp_bias = false;
  int64_t sliding_window = 0;   // Mistral; 0 = none
  // OPT specifics.
  bool do_layer_norm_before = true;
  int64_t word_embed_proj_dim = 0;  // == hidden_size when no projection
  int64_t bos_token_id = 1;
  int64_t eos_token_id = 2;
  std::string torch_dtype;  // "float16", "bfloat16", "float32" or empty
};

// Parses and checks config.json text; `source` names the file in messages. NotSupported for an
// unknown architecture (listing the supported ones); InvalidArgument for missing or bad fields.
LLMQ_EXPORT Result<ModelConfig> parse_model_config(const std::string& json_text, const std::string& source);

enum class LinearRole : uint8_t { kQ, kK, kV, kO, kGate, kUp, kDown, kFc1, kFc2 };
LLMQ_EXPORT const char* linear_role_name(LinearRole r);  // "q", "k", ..., "fc1"

// One linear layer of a decoder block, by its Hugging Face module name.
struct LLMQ_EXPORT LinearInfo {
  std::string module;  // e.g. "model.layers.3.self_attn.q_proj" (weight is module + ".weight")
  int layer = 0;
  LinearRole role = LinearRole::kQ;
  int64_t rows = 0;  // out_features
  int64_t cols = 0;  // in_features
  bool has_bias = false;
};

// The linears of every decoder block that quantization methods act on, in block order
// (Llama: q k v o gate up down; OPT: q k v out_proj fc1 fc2). Embeddings, norms and the
// LM head are not included: they stay in float.
// `base` is the prefix of the decoder in tensor names: "model." for Llama
// ("model.layers.N..."), "model.decoder." for OPT ("model.decoder.layers.N...").
LLMQ_EXPORT std::vector<LinearInfo> decoder_linears(const ModelConfig& config, const std::string& base);
// The usual base prefix for a family ("model." / "model.decoder.").
LLMQ_EXPORT std::string default_base_prefix(ModelFamily family);

// How one module of an llmq quantized folder was quantized.
struct LLMQ_EXPORT QuantizedModuleInfo {
  QuantSpec spec;
  int64_t rows = 0, cols = 0;
  bool has_g_idx = false;
  bool has_outliers = false;
  std::vector<int32_t> activation_outlier_columns;  // QuantizedTensor::activation_outlier_columns
};

// The quantization_config of an llmq folder (see docs/FORMAT.md), or what llmq understood of
// another tool's (GPTQ, AWQ GEMM, compressed-tensors pack-quantized; docs/HF_FORMATS.md).
struct LLMQ_EXPORT QuantizationInfo {
  std::string format = "llmq";   // "llmq", "gptq", "awq" or "compressed-tensors"
  std::string checkpoint_format; // gptq: "gptq" (v1 zeros) or "gptq_v2"; awq: "gemm"; "pack-quantized"
  std::string format_version;  // llmq: "1.0"
  std::string method;          // "rtn", "gptq", ... (another tool's folder: its quant_method)
  std::string activations = "fp32";  // "int8": run quantized linears with int8 activations (W8A8)
  ActivationOutlierOptions activation_outliers;  // int8 only: their outlier decomposition (LLM.int8)
  std::map<std::string, QuantizedModuleInfo> modules;  // by module name
  std::string gguf_type;  // made with QuantizeOptions::gguf_type ("q4_k_m"); "" otherwise
  int gguf_file_type = 0; // llama.cpp's file type id of gguf_type
};

class LLMQ_EXPORT Checkpoint {
 public:
  // Opens and validates a model folder (float, llmq-quantized, or a GPTQ / AWQ GEMM /
  // compressed-tensors pack-quantized folder, docs/HF_FORMATS.md): config.json, the safetensors
  // files and every decoder linear's presence and shape. Errors name the file and the problem.
  static Result<std::shared_ptr<const Checkpoint>> Open(const std::string& folder);

  const std::string& folder() const { return folder_; }
  const ModelConfig& config() const { return config_; }
  const std::string& config_json() const { return config_json_; }  // config.json as read
  const std::vector<std::shared_ptr<const SafetensorsFile>>& files() const { return files_; }
  uint64_t bytes_on_disk() const;  // all safetensors files

  // Every stored tensor name, in file order.
  std::vector<std::string> tensor_names() const;
  // Tensors no part of the model reads (e.g. a rotary_emb.inv_freq buffer, or layers beyond
  // num_hidden_layers): they are copied by quantize but have no effect, so commands report them.
  std::vector<std::string> UnusedTensors() const;
  const TensorInfo* find(const std::string& name) const;
  Result<TensorView> get(const std::string& name) const;  // zero-copy
  // A tensor converted to fp32 (InvalidArgument if it is not a float tensor). The copy is
  // the caller's; the tensor's mapped pages are dropped from memory afterwards.
  Result<std::vector<float>> get_float(const std::string& name) const;
  // Drops a tensor's mapped pages from memory (see SafetensorsFile::ReleasePages).
  void release_pages(const std::string& name) const;

  // Prefix of the decoder's tensors ("model." or "model.decoder."; some OPT exports omit "model.").
  const std::string& base_prefix() const { return base_prefix_; }
  std::vector<LinearInfo> linears() const { return decoder_linears(config_, base_prefix_); }
  bool is_quantized() const { return quantization_ != nullptr; }
  const QuantizationInfo* quantization() const { return quantization_.get(); }
  bool is_quantized_module(const std::string& module) const;
  // The stored QuantizedTensor of a quantized module, validated (another tool's layout is repacked,
  // never dequantized). NotFound if not quantized.
  Result<QuantizedTensor> get_quantized(const std::string& module) const;
  // A linear's weight as fp32 [rows, cols]: converted, or dequantized when quantized.
  Result<std::vector<float>> linear_weight(const LinearInfo& linear) const;

 private:
  Checkpoint() = default;
  std::string folder_;
  std::string config_json_;
  ModelConfig config_;
  std::string base_prefix_;
  std::vector<std::shared_ptr<const SafetensorsFile>> files_;
  std::map<std::string, size_t> file_of_;  // tensor name -> index in files_
  std::shared_ptr<QuantizationInfo> quantization_;
};

// Tokenizer and generation files copied beside the weights when a model is written.
extern const char* const kTokenizerFiles[];

}  // namespace llmq

#endif  // LLMQ_CHECKPOINT_H_
