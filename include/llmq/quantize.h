// Quantizing a whole checkpoint: the entry point behind `llmq quantize`.
#ifndef LLMQ_QUANTIZE_H_
#define LLMQ_QUANTIZE_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "llmq/quant.h"
#include "llmq/status.h"

namespace llmq {

// Progress of a long operation, reported through a callback (the library never prints).
struct Progress {
  int64_t done = 0;
  int64_t total = 0;
  std::string item;        // what was just finished, e.g. "model.layers.3.mlp.up_proj"
  double elapsed_s = 0.0;  // since the start of the operation
};
using ProgressCallback = std::function<void(const Progress&)>;

struct QuantizeOptions {
  std::string method = "rtn";  // quantization method; "rtn" (round to nearest)
  QuantSpec spec;              // bits, group size, symmetric, scale dtype, MSE search
  bool overwrite = false;      // replace a non-empty output folder
  uint64_t max_shard_bytes = 2ull << 30;  // output safetensors shard size
  ProgressCallback progress;   // optional
};

struct LayerReport {
  std::string module;
  int64_t rows = 0, cols = 0;
  double relative_error = 0.0;   // ||W - deq(Q)||_F / ||W||_F
  double bits_per_weight = 0.0;  // codes + scales + zeros (+ g_idx, outliers) per weight, as written
  double seconds = 0.0;
};

struct QuantizeReport {
  std::string method;
  QuantSpec spec;
  std::string input, output;
  std::vector<LayerReport> layers;
  double bits_per_weight = 0.0;  // over all quantized linears
  uint64_t input_bytes = 0, output_bytes = 0;
  double seconds = 0.0;
  uint64_t peak_rss_bytes = 0;
  // The report as one JSON object (keys documented in README.md, "JSON report").
  std::string ToJson() const;
};

// Reads the float checkpoint in `input_folder`, quantizes every decoder linear with
// options.method and writes the llmq format to `output_folder` atomically (nothing
// is left there on failure). Embeddings, norms, biases and the LM head are copied.
Result<QuantizeReport> quantize_checkpoint(const std::string& input_folder, const std::string& output_folder,
                                           const QuantizeOptions& options);

// Peak resident set size of this process so far, in bytes.
uint64_t peak_rss_bytes();

}  // namespace llmq

#endif  // LLMQ_QUANTIZE_H_
