// The model runtime: a CPU forward pass over a checkpoint's graph, used for
// perplexity, generation and (block by block) by the calibration driver.
//
// A Model is embeddings -> decoder blocks -> final norm -> LM head. Each block
// can be run on its own (Embed, RunBlock, Head), which is how a calibration
// driver walks the model one block at a time. Compute is fp32 (Eigen + OpenMP).
#ifndef LLMQ_MODEL_H_
#define LLMQ_MODEL_H_

#include "llmq/export.h"

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "llmq/checkpoint.h"
#include "llmq/kernels.h"
#include "llmq/progress.h"
#include "llmq/status.h"

namespace llmq {

namespace internal {
struct ModelAccess;
}

// Keys and values of past positions, per layer, for incremental decoding.
struct LLMQ_EXPORT KVCache {
  int64_t capacity = 0;  // positions
  int64_t length = 0;    // positions filled
  std::vector<std::vector<float>> k, v;  // per layer: [capacity, num_kv_heads * head_dim]
};

// Called with the input of every linear as it runs: x is [n, linear.cols] row-major.
using LinearInputHook = std::function<void(const LinearInfo& linear, const float* x, int64_t n)>;

struct LLMQ_EXPORT ModelLoadOptions {
  // false: only embeddings, final norm and LM head are loaded; each decoder block is
  // materialized by LoadBlock and dropped by ReleaseBlock (the calibration driver's
  // streaming mode: about one block of weights in memory at a time).
  bool load_blocks = true;
  // Quantized linears run with int8 activations quantized per token (W4A8 / W8A8 through the
  // VNNI kernels): faster prompt processing, slightly different numbers. Float linears are unaffected.
  // Checkpoints whose quantization_config says "activations": "int8" (W8A8) always run this way.
  bool int8_activations = false;
  // Quantized linears whose layout allows it (integer zero points: all but the ggml types with float
  // mins such as q4_k) take int8 activations, the others fp32. `llmq generate` runs this way unless
  // told --fp32-activations: on a ~1B q4_0 model it doubled prompt and decode tokens/s, at
  // +0.01..0.12% perplexity on the shared models (docs/RESULTS.md, issue 25).
  bool prefer_int8_activations = false;
  // The outlier decomposition of those int8 activations (LLM.int8, integer outliers; llmq/kernels.h).
  // enabled(): used instead of the checkpoint's quantization_config.activation_outliers, and
  // implies int8_activations.
  ActivationOutlierOptions activation_outliers;
};

class LLMQ_EXPORT Model {
 public:
  // Loads the weights of a float or llmq-quantized folder. Quantized linears are
  // dequantized on the fly when they run (no float copy is kept).
  static Result<std::unique_ptr<Model>> Load(const std::string& folder, const ModelLoadOptions& options = {});
  ~Model();

  const ModelConfig& config() const;
  const Checkpoint& checkpoint() const;
  bool int8_activations() const;  // quantized linears take int8 activations (option or W8A8 checkpoint)
  const ActivationOutlierOptions& activation_outliers() const;  // their decomposition (threshold 0: none)
  // Per quantized linear of the loaded blocks (module name): what the decomposition did so far.
  std::map<std::string, ActivationOutlierStats> ActivationOutlierStatistics() const;
  int64_t hidden_size() const { return config().hidden_size; }
  int64_t vocab_size() const { return config().vocab_size; }

  KVCache NewCache(int64_t capacity) const;

  // Logits [n, vocab] for tokens at positions cache.length .. cache.length + n, which are
  // appended to the cache. With a fresh cache this is the full forward pass of a sequence.
  Result<std::vector<float>> Forward(const int32_t* tokens, int64_t n, KVCache* cache) const;

  // The same, piece by piece. x is [n, hidden] row-major; start_pos is the position of row 0.
  Status Embed(const int32_t* tokens, int64_t n, int64_t start_pos, float* x) const;
  void RunBlock(int layer, float* x, int64_t n, KVCache* cache, const LinearInputHook& hook = nullptr) const;
  void Head(const float* x, int64_t n, float* logits) const;  // final norm + LM head

  // One half of block `layer` on its already-normalized input xn [n, hidden] at positions
  // 0..n-1: y = o(attention(xn)) or y = the MLP of xn, [n, hidden]. What AWQ's scale search
  // inspects. InvalidArgument when the block is not loaded.
  enum class BlockPart { kAttention, kMlp };
  Status RunBlockPart(int layer, BlockPart part, const float* xn, int64_t n, float* y) const;

  // Streaming: materialize / drop the weights of one decoder block. RunBlock needs the block loaded.
  Status LoadBlock(int layer);
  void ReleaseBlock(int layer);
  bool block_loaded(int layer) const;
  // Which quantized kernels a forward pass of `n` tokens runs: PackedLinear::kernel(n) of every
  // quantized linear of the loaded blocks, with how many linears run it (empty for a float model).
  std::map<std::string, int64_t> QuantizedKernels(int64_t n) const;
  // Replaces a (loaded) linear's weight by a float [rows, cols] matrix, e.g. the
  // dequantized result of a method, so that later blocks see the quantization error.
  Status SetLinearWeight(const LinearInfo& linear, std::vector<float> weight);
  // Replaces a (loaded) block's norm weight or bias, or a linear's bias, by name, e.g.
  // "model.layers.3.input_layernorm.weight" after a method folded scales into it.
  Status SetBlockTensor(const std::string& name, std::vector<float> value);

  struct Impl;

 private:
  friend struct internal::ModelAccess;  // src/model/model_impl.h: the weights, for the backward pass
  Model();
  std::unique_ptr<Impl> impl_;
};

struct LLMQ_EXPORT PerplexityOptions {
  int64_t seq_len = 0;     // 0: the model's context, capped at 2048
  int64_t max_chunks = 0;  // 0: every full window
  ProgressCallback progress;
};

struct LLMQ_EXPORT PerplexityResult {
  double perplexity = 0.0;
  double mean_nll = 0.0;
  int64_t tokens = 0;       // tokens in the whole text (with the BOS)
  int64_t predictions = 0;  // chunks * (seq_len - 1)
  int64_t seq_len = 0;
  int64_t chunks = 0;
  double seconds = 0.0;
  double tokens_per_second = 0.0;  // tokens processed by the forward pass per second
};

// The GPTQ/AWQ-paper protocol: the whole text tokenized once with one BOS in front,
// cut into consecutive non-overlapping windows of seq_len (full windows only, the first
// max_chunks), each window run from position 0 and scored on its tokens 2..seq_len.
LLMQ_EXPORT Result<PerplexityResult> evaluate_perplexity(const Model& model, const std::vector<int32_t>& ids,
                                             const PerplexityOptions& options);

}  // namespace llmq

#endif  // LLMQ_MODEL_H_
