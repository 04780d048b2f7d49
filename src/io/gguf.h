// GGUF v3 files (llama.cpp's model format): a writer and a reader (internal). Layout and the
// loader's checks: ../shared/docs/export-formats.md §1 (ggml gguf.cpp / docs/gguf.md).
#ifndef LLMQ_IO_GGUF_H_
#define LLMQ_IO_GGUF_H_

#include <cstdint>
#include <map>
#include <string>
#include <variant>
#include <vector>

#include "llmq/status.h"

namespace llmq::internal {

// ggml tensor types a GGUF file may hold here: F32, F16 and the block types of GgmlType.
inline constexpr int kGgmlF32 = 0;
inline constexpr int kGgmlF16 = 1;
const char* ggml_type_id_name(int type);  // "f32", "f16", "q4_k", ...; "type N" if unknown
// Elements per block and bytes per block of a type id (1 and 4 for F32); false if unknown.
bool ggml_type_id_layout(int type, int64_t* block_elems, int64_t* block_bytes);

// GGUF value types (gguf.h enum gguf_type).
enum class GgufValueType : int32_t {
  kU8 = 0, kI8 = 1, kU16 = 2, kI16 = 3, kU32 = 4, kI32 = 5, kF32 = 6, kBool = 7, kString = 8, kArray = 9,
  kU64 = 10, kI64 = 11, kF64 = 12,
};

// One metadata value: a scalar, a string, or an array of one element type.
struct GgufValue {
  GgufValueType type = GgufValueType::kU32;
  GgufValueType elem = GgufValueType::kU32;  // arrays only
  std::variant<uint64_t, int64_t, double, std::string> scalar;  // integers (signed or not), floats, string
  std::vector<std::string> strings;  // array of strings
  std::vector<double> numbers;       // array of numbers (every numeric element type, as double)
  bool is_array() const { return type == GgufValueType::kArray; }
};

struct GgufTensorInfo {
  std::string name;
  std::vector<int64_t> ne;  // fastest-varying first (ggml order)
  int type = kGgmlF32;
  uint64_t offset = 0;  // from the start of the data section
  uint64_t bytes = 0;
};

class GgufWriter {
 public:
  void SetString(const std::string& key, const std::string& v);
  void SetU32(const std::string& key, uint32_t v);
  void SetI32(const std::string& key, int32_t v);
  void SetF32(const std::string& key, float v);
  void SetBool(const std::string& key, bool v);
  void SetStrings(const std::string& key, const std::vector<std::string>& v);
  void SetF32s(const std::string& key, const std::vector<float>& v);
  void SetI32s(const std::string& key, const std::vector<int32_t>& v);
  // ne fastest-varying first; `data` must hold exactly the tensor's bytes for its type.
  Status AddTensor(const std::string& name, std::vector<int64_t> ne, int type, std::vector<uint8_t> data);
  // Writes the file atomically (temporary file beside it, fsync, rename).
  Status Write(const std::string& path) const;
  uint64_t FileBytes() const;  // the size Write produces
  const std::vector<GgufTensorInfo>& tensors() const { return infos_; }

 private:
  std::string Header() const;
  std::vector<std::pair<std::string, std::string>> kv_;  // key -> encoded type + value
  std::vector<GgufTensorInfo> infos_;
  std::vector<std::vector<uint8_t>> data_;
};

struct GgufFile {
  uint32_t version = 0;
  std::map<std::string, GgufValue> kv;
  std::vector<std::string> keys;  // in file order
  std::vector<GgufTensorInfo> tensors;
  uint64_t data_offset = 0;  // file offset of the data section
  uint64_t file_bytes = 0;
};

// Parses a GGUF file's header and tensor infos and checks what ggml's loader checks (magic,
// version 3, unique keys and names, types, offsets in order and inside the file). Corruption /
// NotSupported naming the file and the problem.
Result<GgufFile> read_gguf(const std::string& path);
Result<GgufFile> parse_gguf(const uint8_t* data, size_t size, const std::string& where);
// The same for the first `size` bytes of a file of `file_size` bytes.
Result<GgufFile> parse_gguf(const uint8_t* data, size_t size, uint64_t file_size, const std::string& where);
// The bytes of one tensor of a parsed file.
Result<std::vector<uint8_t>> read_gguf_tensor(const std::string& path, const GgufFile& f, const GgufTensorInfo& t);

}  // namespace llmq::internal

#endif  // LLMQ_IO_GGUF_H_
