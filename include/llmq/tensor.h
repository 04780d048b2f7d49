// Dense tensors: element types and a view over borrowed or owned memory.
//
// A TensorView is how checkpoints hand out weights without copying them: its
// data may point into a memory-mapped file that the view keeps alive through
// `owner`. Views are row-major and contiguous (safetensors' layout).
#ifndef LLMQ_TENSOR_H_
#define LLMQ_TENSOR_H_

#include "llmq/export.h"

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "llmq/status.h"

namespace llmq {

// Element types. The names are safetensors' dtype strings.
enum class DType : uint8_t { kF32, kF16, kBF16, kF64, kI8, kU8, kI16, kU16, kI32, kU32, kI64, kU64, kBool };

LLMQ_EXPORT size_t dtype_size(DType t);
LLMQ_EXPORT const char* dtype_name(DType t);  // "F32", "F16", ...
// Parses a safetensors dtype string; NotSupported for anything unknown (e.g. "F8_E4M3").
LLMQ_EXPORT Result<DType> parse_dtype(std::string_view name);
LLMQ_EXPORT bool is_float_dtype(DType t);  // F32, F16, BF16, F64

struct LLMQ_EXPORT TensorView {
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  const void* data = nullptr;
  // Keeps the storage (an mmap or a heap buffer) alive while views exist. May be null for borrowed memory.
  std::shared_ptr<const void> owner;

  int64_t numel() const;
  size_t nbytes() const { return size_t(numel()) * dtype_size(dtype); }
  template <typename T> const T* as() const { return static_cast<const T*>(data); }
};

LLMQ_EXPORT std::string shape_string(const std::vector<int64_t>& shape);  // "[512, 256]"

// Converts any float tensor (F32/F16/BF16/F64) to fp32. InvalidArgument for integer dtypes.
LLMQ_EXPORT Result<std::vector<float>> to_float32(const TensorView& t);

}  // namespace llmq

#endif  // LLMQ_TENSOR_H_
