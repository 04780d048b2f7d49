// libFuzzer target: a model folder's config.json and model.safetensors.index.json (the input, split
// at its first NUL byte) over a fixed valid shard (the embedded model's weights, as
// model.safetensors): Checkpoint::Open's cross-checks of config, index, shards and shapes.
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <string>

#include "fuzz_util.h"
#include "llmq/checkpoint.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  namespace fs = std::filesystem;
  static const std::string folder = [] {
    const std::string f = llmq::fuzz::scratch() + "/model";
    fs::create_directories(f);
    fs::copy_file(llmq::fuzz::embedded_model() + "/model.safetensors", f + "/model.safetensors",
                  fs::copy_options::overwrite_existing);
    return f;
  }();
  const uint8_t* nul = static_cast<const uint8_t*>(std::memchr(data, 0, size));
  const size_t config_size = nul ? size_t(nul - data) : size;
  llmq::fuzz::write_scratch("model/config.json", data, config_size);
  const std::string index = folder + "/model.safetensors.index.json";
  std::error_code ec;
  if (nul != nullptr) llmq::fuzz::write_scratch("model/model.safetensors.index.json", nul + 1, size - config_size - 1);
  else fs::remove(index, ec);
  auto ck = llmq::Checkpoint::Open(folder);
  if (ck.ok()) (void)(*ck)->UnusedTensors();
  return 0;
}
