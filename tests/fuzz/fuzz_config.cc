// libFuzzer target: config.json parsing and checking (every architecture, RoPE scaling, the keys
// the runtime refuses).
#include <cstdint>
#include <string>

#include "llmq/checkpoint.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // (Nothing sized by the config's counts is built here: Checkpoint::Open checks them against the
  // weights first, fuzz_checkpoint covers that.)
  (void)llmq::parse_model_config(std::string(reinterpret_cast<const char*>(data), size), "config.json");
  return 0;
}
