// Other tools' quantized Hugging Face checkpoints, both ways (internal): the GPTQ layout
// (AutoGPTQ / GPTQModel, v1 and v2 zero points, act-order g_idx), AutoAWQ's GEMM layout and
// llm-compressor's compressed-tensors pack-quantized layout. Each holds, per linear, integer
// codes with per-group scales and zero points — the same thing as a QuantizedTensor — so
// reading one is a repacking of bits (never a dequantize-to-float step) and writing one is the
// inverse. Byte layouts: ../shared/docs/export-formats.md §4-6 and docs/HF_FORMATS.md.
#ifndef LLMQ_IO_HF_QUANT_FORMAT_H_
#define LLMQ_IO_HF_QUANT_FORMAT_H_

#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "llmq/checkpoint.h"
#include "llmq/qtensor.h"
#include "llmq/safetensors.h"

namespace llmq::internal {

enum class HfLayout : uint8_t { kGptq, kAwqGemm, kCompressedTensors };

// What a foreign quantization_config says about every quantized linear.
struct HfQuantConfig {
  HfLayout layout = HfLayout::kGptq;
  std::string quant_method;       // "gptq", "awq", "compressed-tensors"
  std::string checkpoint_format;  // gptq: "gptq" (v1 zeros, stored - 1) or "gptq_v2"; awq: "gemm"; "pack-quantized"
  int bits = 4;
  int group_size = 128;  // 0: one group per row (GPTQ's -1, compressed-tensors' "channel")
  bool symmetric = true;
  bool desc_act = false;
  bool lm_head = false;  // the output head is quantized too
  bool gptq_v1() const { return layout == HfLayout::kGptq && checkpoint_format == "gptq"; }
};

// The name of the tensor that marks `module` as quantized in `layout` ("qweight" / "weight_packed").
const char* hf_marker_tensor(HfLayout layout);

// Parses another tool's quantization_config (`qc`, from config.json or quantize_config.json,
// named by `source`). NotSupported for a method or layout llmq does not read (Marlin-repacked,
// AWQ GEMV/exllama, compressed-tensors with activation quantization, ...), naming the key and
// the value; InvalidArgument for a missing or bad key.
Result<HfQuantConfig> parse_hf_quant_config(const nlohmann::json& qc, const std::string& source);

// The module's entry in QuantizationInfo, after checking every tensor's dtype and shape against
// the config and the module's [rows, cols]. `find` looks a tensor up by name (nullptr if absent).
using TensorLookup = std::function<const TensorInfo*(const std::string&)>;
Result<QuantizedModuleInfo> hf_module_info(const HfQuantConfig& config, const TensorLookup& find,
                                           const std::string& where, const std::string& module, int64_t rows,
                                           int64_t cols);

// The config that QuantizationInfo records for an imported folder (format, checkpoint_format and
// the first module's spec carry everything the readers need).
HfQuantConfig hf_config_of(const QuantizationInfo& info, const QuantizedModuleInfo& module);

// Reads a module of an imported folder into a validated QuantizedTensor. A GPTQ module whose
// config says sym but whose zeros are not all 2^(bits-1) is read with its zeros (what every
// GPTQ reader computes); a g_idx that is the plain c / group_size is dropped.
Result<QuantizedTensor> read_hf_quantized(const Checkpoint& ckpt, const std::string& module,
                                          const QuantizedModuleInfo& info);

// Why `q` cannot be written in `layout` ("" when it can): what it holds that the format lacks.
std::string hf_unexpressible(HfLayout layout, const QuantizedTensor& q);

// The tensors that store `q` for `module` in `config`'s layout (hf_unexpressible(q) must be "").
std::vector<TensorToWrite> hf_quantized_tensors(const HfQuantConfig& config, const std::string& module,
                                                const QuantizedTensor& q);

// config.json's quantization_config for `config` (and GPTQ's quantize_config.json, the same object).
nlohmann::ordered_json hf_quantization_config_json(const HfQuantConfig& config);

}  // namespace llmq::internal

#endif  // LLMQ_IO_HF_QUANT_FORMAT_H_
