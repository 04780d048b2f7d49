// A SentencePiece model's vocabulary as llama.cpp's "llama" (SPM) tokenizer stores it in GGUF:
// pieces, scores, token types and the special ids (internal; the GGUF exporter's input).
#ifndef LLMQ_TEXT_SPM_VOCAB_H_
#define LLMQ_TEXT_SPM_VOCAB_H_

#include <cstdint>
#include <string>
#include <vector>

#include "llmq/status.h"

namespace llmq::internal {

struct SpmVocab {
  std::vector<std::string> pieces;
  std::vector<float> scores;
  // llama_token_type: 1 normal, 2 unknown, 3 control, 5 unused, 6 byte.
  std::vector<int32_t> types;
  int32_t bos = -1, eos = -1, unk = -1, pad = -1;
  // Normalizer behaviour, observed by encoding: a "▁" in front of the text; runs of spaces collapsed.
  bool add_dummy_prefix = true;
  bool removes_extra_whitespace = false;
};

Result<SpmVocab> read_spm_vocab(const std::string& model_path);

}  // namespace llmq::internal

#endif  // LLMQ_TEXT_SPM_VOCAB_H_
