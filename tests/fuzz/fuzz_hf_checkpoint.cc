// libFuzzer target: another tool's quantized folder (GPTQ, AWQ GEMM, compressed-tensors
// pack-quantized): config.json with its quantization_config and model.safetensors (the input,
// split at its first NUL byte). Checkpoint::Open checks every module's tensors against the
// config; each module is then read (repacked into a QuantizedTensor) and dequantized.
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <string>

#include "fuzz_util.h"
#include "llmq/checkpoint.h"
#include "llmq/qtensor.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  namespace fs = std::filesystem;
  static const std::string folder = [] {
    const std::string f = llmq::fuzz::scratch() + "/hf";
    fs::create_directories(f);
    return f;
  }();
  const uint8_t* nul = static_cast<const uint8_t*>(std::memchr(data, 0, size));
  if (nul == nullptr) return 0;
  const size_t config_size = size_t(nul - data);
  llmq::fuzz::write_scratch("hf/config.json", data, config_size);
  llmq::fuzz::write_scratch("hf/model.safetensors", nul + 1, size - config_size - 1);
  auto ck = llmq::Checkpoint::Open(folder);
  if (!ck.ok()) return 0;
  for (const auto& [module, info] : (*ck)->quantization()->modules) {
    auto q = (*ck)->get_quantized(module);
    if (q.ok()) (void)llmq::dequantize(*q);
  }
  return 0;
}
