// libFuzzer target: tokenizer.json (models, normalizers, pre-tokenizers, added tokens,
// post-processors), then encoding and decoding with what it accepts.
#include <cstdint>
#include <string>

#include "fuzz_util.h"
#include "text/hf_tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = llmq::fuzz::write_scratch("tokenizer.json", data, size);
  auto tok = llmq::internal::open_hf_tokenizer(path);
  if (!tok.ok()) return 0;
  // A fixed text with ASCII, accents, an emoji, digits and special-looking tokens, and the tail of
  // the input itself as text.
  const std::string tail(reinterpret_cast<const char*>(data) + size / 2, size - size / 2);
  for (const std::string& text : {std::string("Hello world,  héllo 😀 12345 <s></s> <|endoftext|>\n\tx"), tail}) {
    auto ids = (*tok)->EncodeWithSpecialTokens(text);
    if (ids.ok()) (void)(*tok)->Decode(*ids);
  }
  return 0;
}
