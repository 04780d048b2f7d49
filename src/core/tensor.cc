// DType tables, TensorView helpers and float conversion.
#include "llmq/tensor.h"

#include <cstring>

#include "llmq/float16.h"

namespace llmq {
namespace {

struct DTypeInfo {
  DType type;
  const char* name;
  size_t size;
};
constexpr DTypeInfo kDTypes[] = {
    {DType::kF32, "F32", 4},  {DType::kF16, "F16", 2},  {DType::kBF16, "BF16", 2}, {DType::kF64, "F64", 8},
    {DType::kI8, "I8", 1},    {DType::kU8, "U8", 1},    {DType::kI16, "I16", 2},   {DType::kU16, "U16", 2},
    {DType::kI32, "I32", 4},  {DType::kU32, "U32", 4},  {DType::kI64, "I64", 8},   {DType::kU64, "U64", 8},
    {DType::kBool, "BOOL", 1},
};

}  // namespace

size_t dtype_size(DType t) { return kDTypes[size_t(t)].size; }
const char* dtype_name(DType t) { return kDTypes[size_t(t)].name; }

Result<DType> parse_dtype(std::string_view name) {
  for (const auto& d : kDTypes)
    if (name == d.name) return d.type;
  return Status::NotSupported("unknown dtype '" + std::string(name) +
                              "' (supported: F32 F16 BF16 F64 I8 U8 I16 U16 I32 U32 I64 U64 BOOL)");
}

bool is_float_dtype(DType t) { return t == DType::kF32 || t == DType::kF16 || t == DType::kBF16 || t == DType::kF64; }

int64_t TensorView::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::string shape_string(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

Result<std::vector<float>> to_float32(const TensorView& t) {
  const int64_t n = t.numel();
  std::vector<float> out(static_cast<size_t>(n));
  switch (t.dtype) {
    case DType::kF32:
      if (n > 0) std::memcpy(out.data(), t.data, size_t(n) * 4);  // (an empty tensor may have no data pointer)
      break;
    // Element by element through memcpy: safetensors data offsets need not be aligned to the
    // element size, and a misaligned typed load is undefined behaviour (found by fuzz_hf_checkpoint).
    case DType::kF16:
    case DType::kBF16: {
      const auto* p = static_cast<const uint8_t*>(t.data);
      const bool f16 = t.dtype == DType::kF16;
      for (int64_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, p + 2 * i, 2);
        out[size_t(i)] = f16 ? fp16_to_float(h) : bf16_to_float(h);
      }
      break;
    }
    case DType::kF64: {
      const auto* p = static_cast<const uint8_t*>(t.data);
      for (int64_t i = 0; i < n; ++i) {
        double d;
        std::memcpy(&d, p + 8 * i, 8);
        out[size_t(i)] = float(d);
      }
      break;
    }
    default:
      return Status::InvalidArgument(std::string("cannot convert a ") + dtype_name(t.dtype) +
                                     " tensor to float");
  }
  return out;
}

}  // namespace llmq
