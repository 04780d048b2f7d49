// Hugging Face tokenizer.json (BPE model) tokenizer (internal; see hf_tokenizer.cc).
#ifndef LLMQ_TEXT_HF_TOKENIZER_H_
#define LLMQ_TEXT_HF_TOKENIZER_H_

#include <memory>
#include <string>
#include <vector>

#include "llmq/tokenizer.h"

namespace llmq::internal {

// Opens `path` (a tokenizer.json); tokenizer_config.json beside it names BOS/EOS.
// NotSupported for models, normalizers or pre-tokenizers llmq does not implement.
Result<std::unique_ptr<Tokenizer>> open_hf_tokenizer(const std::string& path);

// What llama.cpp's byte-level BPE ("gpt2") vocabulary holds of a tokenizer.json (GGUF export).
struct HfBpeVocab {
  std::vector<std::string> tokens;  // by id, as spelled in the file (byte-level symbols)
  std::vector<int32_t> types;       // llama_token_type: 1 normal, 3 control (special added), 4 user-defined (other added)
  std::vector<std::string> merges;  // "a b", by rank
  std::string pre;                  // llama.cpp's pre-tokenizer name: "gpt-2", "llama-bpe" or "qwen2"
  std::vector<int32_t> prefix, suffix;  // the post-processor's tokens around one sequence
  int32_t bos = -1, eos = -1;
  // Added tokens with lstrip / rstrip / single_word: GGUF has no such flags, so llama.cpp matches
  // them plainly and text where a flag matters tokenizes differently there.
  std::vector<std::string> flagged_added_tokens;
};
// NotSupported for a tokenizer.json llama.cpp's byte-level BPE cannot reproduce (SentencePiece-style
// normalizers or Metaspace, byte fallback, a regex / ignore_merges combination no llama.cpp
// pre-tokenizer name has).
Result<HfBpeVocab> read_hf_bpe_vocab(const std::string& path);

// The pieces a byte-level pre-tokenizer regex cuts `text` into, before the byte mapping
// (flavour: "gpt2", "llama3" or "qwen2"). For tests.
std::vector<std::string> split_pretokens_for_test(const std::string& text, const std::string& flavour);

}  // namespace llmq::internal

#endif  // LLMQ_TEXT_HF_TOKENIZER_H_
