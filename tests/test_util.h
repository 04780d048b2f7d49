// Helpers shared by the tests: paths into ../shared, temporary folders and
// small synthetic checkpoints with hand-checkable configurations.
#ifndef LLMQ_TESTS_TEST_UTIL_H_
#define LLMQ_TESTS_TEST_UTIL_H_

#include <llmq/llmq.h>

#include <cstdint>
#include <string>
#include <vector>

namespace llmq::test {

// The larger models and texts: LLMQ_SHARED=<dir> if set, else ../shared beside the repository.
std::string shared_dir();
// Absolute path of a file under shared_dir(); fails the current test (naming the file) if missing.
// Tests call LLMQ_NEED_SHARED(relative) first, so that a missing file skips them instead.
std::string shared_path(const std::string& relative);
// Absolute path of a file embedded in the repository (examples/data: the default model and texts).
std::string embedded_path(const std::string& relative);
// The embedded stories260K-hf model folder, and the embedded calibration text (TinyStories train).
std::string stories260k();
std::string embedded_calibration_text();
// LLMQ_REQUIRE_SHARED=1 (CI sets it): a missing external input (a shared file, the npm
// reference libraries of tests/oracle) fails the test instead of skipping it.
bool require_external_inputs();
// "" when shared_dir()/relative exists, else a message naming the missing file.
std::string missing_shared(const std::string& relative);

// "" when tests/llamacpp/llamacpp_client (llama.cpp from npm, docs/GGUF.md) was built, else what is missing.
std::string missing_llamacpp_client();
// Runs the client with `args`; its stdout (one JSON object). Fails the current test on a non-zero exit.
std::string run_llamacpp_client(const std::string& args);

// Skips the current test (or fails it under LLMQ_REQUIRE_SHARED=1) with `message` when it is not empty.
#define LLMQ_SKIP_IF_MISSING(message)                                         \
  do {                                                                        \
    const std::string llmq_missing_ = (message);                              \
    if (!llmq_missing_.empty()) {                                             \
      if (::llmq::test::require_external_inputs()) FAIL() << llmq_missing_;   \
      GTEST_SKIP() << llmq_missing_;                                          \
    }                                                                         \
  } while (0)
// The test needs shared_dir()/relative.
#define LLMQ_NEED_SHARED(relative) LLMQ_SKIP_IF_MISSING(::llmq::test::missing_shared(relative))

// A fresh empty folder, removed with everything in it on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

std::vector<float> random_normal(size_t n, uint32_t seed, float stddev = 1.0f);
// ||a - reference|| / ||reference|| (root mean square, in double): how far an approximate output is.
double relative_rms_difference(const std::vector<float>& a, const std::vector<float>& reference);

// n windows of len token ids in [0, vocab) from a fixed LCG (calibration sets for synthetic models).
std::vector<std::vector<int32_t>> random_windows(int n, int len, int vocab, uint32_t seed);

struct SyntheticModel {
  std::string architecture = "LlamaForCausalLM";  // or "OPTForCausalLM", "Qwen2ForCausalLM", "MistralForCausalLM"
  int hidden = 64, intermediate = 96, layers = 2, heads = 4, kv_heads = 2, vocab = 128;
  bool tie_embeddings = false;
  int sliding_window = 0;         // Llama family: > 0 writes "sliding_window" (Mistral style)
  bool opt_post_norm = false;     // OPT: do_layer_norm_before = false (OPT-350m), no final norm
  int opt_embed_proj_dim = 0;     // OPT: word_embed_proj_dim; != hidden adds project_in / project_out
  DType dtype = DType::kF16;
  int shards = 1;  // > 1 writes model-0000k-of-0000n.safetensors + index
  uint32_t seed = 1;
};

// Writes config.json and random weights (N(0, 0.05)) for `m` into `folder`.
void write_synthetic_model(const std::string& folder, const SyntheticModel& m);

// The TinyStories validation prefix, its first max_chars characters (0: all; the embedded copy when
// it is long enough, else ../shared's), encoded
// with `model_folder`'s tokenizer with one BOS in front: the evaluation ids of the real-model tests.
std::vector<int32_t> tinystories_eval_ids(const std::string& model_folder, size_t max_chars = 0);
// Perplexity of the model in `folder` on `ids` (windows of seq_len, the first max_chunks); fails the test on error.
double perplexity_of(const std::string& folder, const std::vector<int32_t>& ids, int64_t seq_len, int64_t max_chunks);

// A QuantSpec from its main fields (the rest at their defaults).
QuantSpec quant_spec(int bits, int group_size, bool symmetric = true, ScaleDType scale_dtype = ScaleDType::kF16);
// Bytes of every tensor of quantized `module` in checkpoint `c`: what its storage_bytes() must equal.
uint64_t module_bytes_on_disk(const Checkpoint& c, const std::string& module);
// The model in `folder` with every quantized linear replaced by its dequantized float weights.
Result<std::unique_ptr<Model>> load_dequantized(const std::string& folder);
// The model run through the kernels gives the logits of its dequantized weights on `ids` (one
// window), within rel_tol of the largest logit.
void expect_kernels_match_dequantized(const std::string& folder, const std::vector<int32_t>& ids, float rel_tol = 1e-4f);
// q written as module "m" of one safetensors file in `dir` and opened again; *bytes = its tensors' bytes.
std::shared_ptr<const SafetensorsFile> write_module(const TempDir& dir, const QuantizedTensor& q, uint64_t* bytes);
// Module "m" read back through the quantization_config entry q would have.
Result<QuantizedTensor> read_module(const SafetensorsFile& file, const QuantizedTensor& q);

// Writes raw bytes to a file (for corrupt-input tests).
void write_bytes(const std::string& path, const std::string& bytes);
std::string read_bytes(const std::string& path);

}  // namespace llmq::test

#endif  // LLMQ_TESTS_TEST_UTIL_H_

namespace llmq::test {
// SHA-256 of a byte string, as lowercase hex (for fixture hashes).
std::string sha256_hex(const void* data, size_t size);

// Checks `tok` against ../shared/fixtures/tokenizer-ids.json entry `name` (strings, decoded
// strings, whole-file id counts, first ids and hashes). With `special_tokens_in_text` (Hugging
// Face tokenizers), strings containing a literal "<s>" must map it to BOS instead.
void expect_matches_tokenizer_fixture(const Tokenizer& tok, const std::string& name, bool special_tokens_in_text);
}  // namespace llmq::test
