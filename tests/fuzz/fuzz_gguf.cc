// libFuzzer target: the GGUF reader behind `llmq inspect <file.gguf>` (header, metadata values and
// arrays, tensor infos, offsets) and the ggml block decoding of every tensor it accepts.
#include <cstdint>

#include "fuzz_util.h"
#include "llmq/gguf.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = llmq::fuzz::write_scratch("model.gguf", data, size);
  auto summary = llmq::inspect_gguf(path);
  if (!summary.ok()) return 0;
  (void)summary->ToJson();
  for (const auto& t : summary->tensors)
    if (t.bytes <= (1u << 20)) (void)llmq::read_gguf_tensor_f32(path, t.name);
  return 0;
}
