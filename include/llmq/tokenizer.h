// Tokenizers: SentencePiece tokenizer.model files (through the reference library) and
// Hugging Face tokenizer.json BPE tokenizers, chosen from a model folder.
#ifndef LLMQ_TOKENIZER_H_
#define LLMQ_TOKENIZER_H_

#include "llmq/export.h"

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "llmq/status.h"

namespace llmq {

class LLMQ_EXPORT Tokenizer {
 public:
  // Opens the tokenizer of a model folder: tokenizer.model (SentencePiece) when present, else
  // tokenizer.json (Hugging Face BPE: byte-level or SentencePiece-style). Errors name the file.
  static Result<std::unique_ptr<Tokenizer>> Open(const std::string& folder);
  // Opens a SentencePiece model file directly.
  static Result<std::unique_ptr<Tokenizer>> OpenSentencePiece(const std::string& path);
  virtual ~Tokenizer() = default;

  // Token ids of `text`, without BOS/EOS.
  virtual Result<std::vector<int32_t>> Encode(const std::string& text) const = 0;
  virtual Result<std::string> Decode(const std::vector<int32_t>& ids) const = 0;
  // The text of one token (for streaming output); byte tokens give their byte.
  virtual std::string TokenText(int32_t id) const = 0;
  // The special tokens the reference library puts around one sequence when asked to add them
  // (tokenizer.json: its post-processor, e.g. Llama's <s>, OPT's </s>, none for GPT-2 / Qwen2;
  // tokenizer.model: BOS). Perplexity and generation put prefix_ids() in front of the text.
  virtual std::vector<int32_t> prefix_ids() const = 0;
  virtual std::vector<int32_t> suffix_ids() const = 0;
  // prefix_ids() + Encode(text) + suffix_ids(): the reference library's ids with special tokens.
  Result<std::vector<int32_t>> EncodeWithSpecialTokens(const std::string& text) const;
  virtual int32_t bos_id() const = 0;
  virtual int32_t eos_id() const = 0;
  virtual int64_t vocab_size() const = 0;
};

}  // namespace llmq

#endif  // LLMQ_TOKENIZER_H_
