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

// The pieces a byte-level pre-tokenizer regex cuts `text` into, before the byte mapping
// (flavour: "gpt2", "llama3" or "qwen2"). For tests.
std::vector<std::string> split_pretokens_for_test(const std::string& text, const std::string& flavour);

}  // namespace llmq::internal

#endif  // LLMQ_TEXT_HF_TOKENIZER_H_
