// GGUF files for llama.cpp: export of a model folder, and reading one back (docs/GGUF.md).
#ifndef LLMQ_GGUF_H_
#define LLMQ_GGUF_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "llmq/export.h"
#include "llmq/status.h"

namespace llmq {

struct LLMQ_EXPORT GgufExportOptions {
  // "" (default): what the folder holds — the ggml blocks of a folder made with
  // `quantize --gguf-type` (copied, never re-rounded), or f32 for a float folder. For a float
  // folder also "f16", or a GGUF type name (quantize --gguf-type's list): plain RTN on llama.cpp's
  // grids. A folder quantized in llmq's own layout is refused (re-quantizing would silently lose
  // its method's work): quantize it with --gguf-type instead.
  std::string type;
  // Replace an existing GGUF file at the output path (never anything else).
  bool overwrite = false;
  std::string name;  // general.name; default: the folder's name
};

struct LLMQ_EXPORT GgufExportReport {
  std::string output;
  uint64_t bytes = 0;
  std::string architecture;  // llama.cpp's: "llama"
  std::string type;          // the GGUF type written ("q4_k_m", "f32", ...)
  std::map<std::string, std::string> tensor_types;  // GGUF tensor name -> "q4_k", "f32", ...
  std::map<std::string, std::string> fallbacks;     // GGUF tensor name -> "q4_k -> q5_0"
  std::vector<std::string> warnings;                // what llama.cpp will do differently
  std::string ToJson() const;  // keys: output, bytes, architecture, type, tensor_types, fallbacks, warnings
};

// Writes `folder` (a float model, or an llmq folder made with a GGUF type) as one GGUF v3 file,
// atomically. Llama and Mistral (llama.cpp arch "llama") with a SentencePiece tokenizer.model.
LLMQ_EXPORT Result<GgufExportReport> export_gguf(const std::string& folder, const std::string& output,
                                                 const GgufExportOptions& options = {});

struct LLMQ_EXPORT GgufTensorSummary {
  std::string name;
  std::string type;            // "q4_k", "f32", ...
  std::vector<int64_t> shape;  // ggml order: fastest-varying first
  uint64_t bytes = 0;
};

struct LLMQ_EXPORT GgufSummary {
  std::string path;
  uint32_t version = 0;
  std::string architecture, name;
  int64_t file_type = -1;
  uint64_t file_bytes = 0;
  int64_t metadata_keys = 0;
  int64_t parameters = 0;
  double bits_per_weight = 0;  // tensor bytes * 8 / parameters
  std::vector<GgufTensorSummary> tensors;
  std::map<std::string, std::string> metadata;  // scalar keys as text; arrays as "[N strings]"
  std::string ToJson() const;
};

LLMQ_EXPORT bool is_gguf_file(const std::string& path);  // starts with the GGUF magic
LLMQ_EXPORT Result<GgufSummary> inspect_gguf(const std::string& path);
// One tensor's values as fp32, dequantized with the ggml block formulas (row-major, GGUF order).
LLMQ_EXPORT Result<std::vector<float>> read_gguf_tensor_f32(const std::string& path, const std::string& name);

}  // namespace llmq

#endif  // LLMQ_GGUF_H_
