// safetensors files: a validating, memory-mapped reader and an atomic writer.
//
// Format (https://github.com/huggingface/safetensors): 8-byte little-endian
// header length N, N bytes of JSON {name: {dtype, shape, data_offsets:[b,e]},
// "__metadata__": {str: str}}, then the data; offsets are relative to the
// start of the data. The reader rejects every inconsistency it can detect
// (see SafetensorsFile::Open) with a Corruption status naming the file.
#ifndef LLMQ_SAFETENSORS_H_
#define LLMQ_SAFETENSORS_H_

#include "llmq/export.h"

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "llmq/status.h"
#include "llmq/tensor.h"

namespace llmq {

struct LLMQ_EXPORT TensorInfo {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  uint64_t offset = 0;  // from the start of the data section
  uint64_t nbytes = 0;
};

class LLMQ_EXPORT SafetensorsFile : public std::enable_shared_from_this<SafetensorsFile> {
 public:
  // Headers larger than this are rejected as corrupt (real ones are kilobytes to a few MB).
  static constexpr uint64_t kMaxHeaderBytes = 100ull << 20;

  // Maps `path` and validates the header: length vs file size, well-formed JSON
  // without duplicate names, known dtypes, shape x dtype size == byte range,
  // ranges inside the file and not overlapping.
  static Result<std::shared_ptr<const SafetensorsFile>> Open(const std::string& path);

  const std::string& path() const { return path_; }
  uint64_t file_size() const { return file_size_; }
  // Tensors in the order of their data offsets.
  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  const TensorInfo* find(const std::string& name) const;
  // A zero-copy view into the mapping; the view keeps the file mapped. NotFound if absent.
  Result<TensorView> get(const std::string& name) const;
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  // Drops the mapped pages of a tensor from this process's memory (they are read from disk
  // again if the tensor is used again). Callers that copied a tensor use it to keep the
  // resident set at what they hold, not at everything they have read.
  void ReleasePages(const TensorInfo& t) const;

  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

 private:
  SafetensorsFile() = default;
  std::string path_;
  const uint8_t* map_ = nullptr;
  uint64_t file_size_ = 0;
  uint64_t data_start_ = 0;
  std::vector<TensorInfo> tensors_;
  std::map<std::string, size_t> index_;
  std::map<std::string, std::string> metadata_;
};

// One tensor to write: the bytes are taken as they are (row-major, little-endian).
struct LLMQ_EXPORT TensorToWrite {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  std::vector<uint8_t> bytes;
};

// The JSON header of a safetensors file holding `tensors` (in this order, contiguous), padded
// with spaces to a multiple of 8 bytes.
LLMQ_EXPORT std::string safetensors_header(const std::vector<TensorInfo>& tensors, const std::map<std::string, std::string>& metadata);

// Writes `tensors` to `path` atomically: into a temporary file in the same folder,
// flushed to disk, then renamed over `path`. On any error nothing is left behind.
LLMQ_EXPORT Status write_safetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                         const std::map<std::string, std::string>& metadata = {});

}  // namespace llmq

#endif  // LLMQ_SAFETENSORS_H_
