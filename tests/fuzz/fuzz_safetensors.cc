// libFuzzer target: the safetensors reader (header length, JSON header, dtypes, shapes, offsets)
// and reading every tensor it accepts.
#include <cstdint>

#include "fuzz_util.h"
#include "llmq/safetensors.h"
#include "llmq/tensor.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = llmq::fuzz::write_scratch("model.safetensors", data, size);
  auto file = llmq::SafetensorsFile::Open(path);
  if (!file.ok()) return 0;
  for (const llmq::TensorInfo& t : (*file)->tensors()) {
    auto view = (*file)->get(t.name);
    if (!view.ok()) continue;
    if (view->nbytes() <= (1u << 20)) (void)llmq::to_float32(*view);
  }
  return 0;
}
