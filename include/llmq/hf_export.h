// Hugging Face quantized checkpoints for GPU engines (vLLM, TGI, transformers, SGLang): an llmq
// quantized folder written in the GPTQ, AutoAWQ GEMM or compressed-tensors pack-quantized layout
// (docs/HF_FORMATS.md). Reading those folders needs nothing here: Checkpoint::Open takes them.
#ifndef LLMQ_HF_EXPORT_H_
#define LLMQ_HF_EXPORT_H_

#include <cstdint>
#include <string>
#include <vector>

#include "llmq/export.h"
#include "llmq/status.h"

namespace llmq {

struct LLMQ_EXPORT HfExportOptions {
  // "gptq" (AutoGPTQ / GPTQModel layout), "awq" (AutoAWQ GEMM) or "compressed-tensors"
  // (llm-compressor's pack-quantized).
  std::string format = "gptq";
  // GPTQ only: "gptq" (v1: zero points stored minus one, what every GPTQ reader takes; default)
  // or "gptq_v2" (zero points as they are).
  std::string checkpoint_format = "gptq";
  uint64_t max_shard_bytes = 2ull << 30;  // safetensors shards beyond this (with an index)
  bool overwrite = false;  // replace an output folder llmq wrote
  bool force = false;      // with overwrite: replace any folder
};

struct LLMQ_EXPORT HfExportReport {
  std::string output;
  std::string format;             // "gptq", "awq", "compressed-tensors"
  std::string checkpoint_format;  // "gptq" / "gptq_v2", "gemm", "pack-quantized"
  int bits = 0;
  int group_size = 0;             // -1: one group per output channel
  bool desc_act = false;          // act-order group index written
  int64_t quantized_modules = 0;
  std::vector<std::string> files;  // every file of the output folder
  uint64_t bytes = 0;              // their total size
  double seconds = 0;
  // keys: output, format, checkpoint_format, bits, group_size, desc_act, quantized_modules, files, bytes, seconds
  std::string ToJson() const;
};

// Writes the llmq quantized folder `folder` (or an imported GPTQ/AWQ/compressed-tensors folder)
// to `output` in `options.format`, atomically: quantized linears in the format's layout, every
// other tensor copied in its stored dtype, config.json with the format's quantization_config
// (GPTQ also quantize_config.json), tokenizer files. The codes and scales are moved, never
// re-rounded; a folder the format cannot express (ggml grids, SpQR/AdpQ outliers, bilevel or
// fp32 scales, bits or shapes the layout lacks, different bits per module) is refused with what
// it holds that the format lacks.
LLMQ_EXPORT Result<HfExportReport> export_hf(const std::string& folder, const std::string& output,
                                             const HfExportOptions& options = {});

}  // namespace llmq

#endif  // LLMQ_HF_EXPORT_H_
