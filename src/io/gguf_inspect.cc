// inspect_gguf / read_gguf_tensor_f32: a GGUF file read back (for `llmq inspect` and the export
// round-trip tests), tensors dequantized with the ggml block formulas (quant/ggml_blocks.h).
#include <cstring>
#include <nlohmann/json.hpp>

#include "io/gguf.h"
#include "llmq/float16.h"
#include "llmq/gguf.h"
#include "quant/ggml_blocks.h"

namespace llmq {
namespace {

std::string value_text(const internal::GgufValue& v) {
  using T = internal::GgufValueType;
  if (v.is_array())
    return "[" + std::to_string(v.elem == T::kString ? v.strings.size() : v.numbers.size()) +
           (v.elem == T::kString ? " strings]" : " numbers]");
  if (const auto* s = std::get_if<std::string>(&v.scalar)) return *s;
  if (const auto* u = std::get_if<uint64_t>(&v.scalar)) return v.type == T::kBool ? (*u ? "true" : "false") : std::to_string(*u);
  if (const auto* i = std::get_if<int64_t>(&v.scalar)) return std::to_string(*i);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.9g", std::get<double>(v.scalar));
  return buf;
}

}  // namespace

Result<GgufSummary> inspect_gguf(const std::string& path) {
  LLMQ_ASSIGN_OR_RETURN(internal::GgufFile f, internal::read_gguf(path));
  GgufSummary s;
  s.path = path;
  s.version = f.version;
  s.file_bytes = f.file_bytes;
  s.metadata_keys = int64_t(f.keys.size());
  for (const std::string& k : f.keys) s.metadata[k] = value_text(f.kv.at(k));
  if (s.metadata.count("general.architecture")) s.architecture = s.metadata["general.architecture"];
  if (s.metadata.count("general.name")) s.name = s.metadata["general.name"];
  if (auto it = f.kv.find("general.file_type"); it != f.kv.end() && std::holds_alternative<uint64_t>(it->second.scalar))
    s.file_type = int64_t(std::get<uint64_t>(it->second.scalar));
  uint64_t bytes = 0;
  for (const auto& t : f.tensors) {
    int64_t n = 1;
    for (int64_t d : t.ne) n *= d;
    s.parameters += n;
    bytes += t.bytes;
    s.tensors.push_back({t.name, internal::ggml_type_id_name(t.type), t.ne, t.bytes});
  }
  s.bits_per_weight = s.parameters > 0 ? 8.0 * double(bytes) / double(s.parameters) : 0.0;
  return s;
}

std::string GgufSummary::ToJson() const {
  nlohmann::ordered_json j;
  j["path"] = path;
  j["format"] = "gguf";
  j["version"] = version;
  j["architecture"] = architecture;
  j["name"] = name;
  j["file_type"] = file_type;
  j["file_bytes"] = file_bytes;
  j["parameters"] = parameters;
  j["bits_per_weight"] = bits_per_weight;
  j["metadata_keys"] = metadata_keys;
  nlohmann::ordered_json t = nlohmann::ordered_json::array();
  for (const auto& x : tensors) t.push_back({{"name", x.name}, {"type", x.type}, {"shape", x.shape}, {"bytes", x.bytes}});
  j["tensors"] = t;
  j["metadata"] = metadata;
  return j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace);
}

Result<std::vector<float>> read_gguf_tensor_f32(const std::string& path, const std::string& name) {
  LLMQ_ASSIGN_OR_RETURN(internal::GgufFile f, internal::read_gguf(path));
  for (const auto& t : f.tensors) {
    if (t.name != name) continue;
    LLMQ_ASSIGN_OR_RETURN(std::vector<uint8_t> b, internal::read_gguf_tensor(path, f, t));
    int64_t n = 1;
    for (int64_t d : t.ne) n *= d;
    std::vector<float> out(static_cast<size_t>(n));
    if (n == 0) return out;  // a dimension of 0 (found by fuzz_gguf: rows = n / ne[0] divided by zero)
    if (t.type == internal::kGgmlF32) {
      std::memcpy(out.data(), b.data(), b.size());
    } else if (t.type == internal::kGgmlF16) {
      for (int64_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, b.data() + 2 * i, 2);
        out[size_t(i)] = fp16_to_float(h);
      }
    } else {
      const int64_t rows = n / t.ne[0];
      const int64_t rb = internal::ggml_row_bytes(GgmlType(t.type), t.ne[0]);
      for (int64_t r = 0; r < rows; ++r)
        internal::dequantize_ggml_row(GgmlType(t.type), b.data() + r * rb, t.ne[0], out.data() + r * t.ne[0]);
    }
    return out;
  }
  return Status::NotFound(path + ": no tensor named '" + name + "'");
}

}  // namespace llmq
