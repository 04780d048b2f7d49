// libFuzzer target: the llmq quantized-tensor metadata in config.json (quantization_config: format
// version, spec, per-module shapes, group index, outliers).
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "io/llmq_format.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const nlohmann::json j = nlohmann::json::parse(data, data + size, nullptr, false);
  if (j.is_discarded()) return 0;
  auto info = llmq::internal::parse_quantization_config(j, "config.json");
  if (j.is_object() && j.contains("spec")) (void)llmq::internal::spec_from_json(j["spec"], "spec");
  if (j.is_object()) (void)llmq::internal::module_info_from_json(j, "module");
  (void)info;
  return 0;
}
