// UTF-8 and the few Unicode properties the tokenizers need (internal).
#ifndef LLMQ_TEXT_UNICODE_H_
#define LLMQ_TEXT_UNICODE_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace llmq::internal {

struct CodepointRange {
  uint32_t first, last;
};
extern const CodepointRange kLetterRanges[];
extern const size_t kLetterRanges_size;
extern const CodepointRange kNumberRanges[];
extern const size_t kNumberRanges_size;

bool is_letter(uint32_t cp);      // \p{L}
bool is_number(uint32_t cp);      // \p{N}
bool is_whitespace(uint32_t cp);  // \s (Unicode White_Space)

// Decodes UTF-8; an invalid byte becomes U+FFFD and consumes one byte. `len` gets the bytes used.
uint32_t decode_utf8(const std::string& s, size_t pos, size_t* len);
std::string encode_utf8(uint32_t cp);
// Splits into code points, each kept as its UTF-8 bytes.
std::vector<std::string> utf8_chars(const std::string& s);

// The byte of a byte-fallback token name "<0xHH>" (two hex digits), or -1 for any other string
// (a vocabulary may hold "<0xZZ>" or "<0x-1>"; found by fuzz_tokenizer_json).
int byte_token_value(const std::string& token);

}  // namespace llmq::internal

#endif  // LLMQ_TEXT_UNICODE_H_
