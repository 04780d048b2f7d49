// QuantizedTensor: bit packing, validation, storage accounting and the
// reference dequantization every kernel is tested against.
#include <cmath>
#include <cstring>

#include "llmq/float16.h"
#include "llmq/quant.h"

namespace llmq {

Status QuantSpec::Validate() const {
  if (bits != 2 && bits != 3 && bits != 4 && bits != 8)
    return Status::InvalidArgument("bits must be 2, 3, 4 or 8 (got " + std::to_string(bits) + ")");
  if (group_size < 0) return Status::InvalidArgument("group size must be >= 0 (0 = per output channel)");
  return Status::Ok();
}

std::string QuantSpec::ToString() const {
  std::string s = "w" + std::to_string(bits) + (group_size > 0 ? " g" + std::to_string(group_size) : " per-channel");
  s += symmetric ? " sym" : " asym";
  s += scale_dtype == ScaleDType::kF16 ? " fp16-scales" : " fp32-scales";
  if (mse_search) s += " mse";
  return s;
}

// With a group index there are still ceil(cols / group) groups: act-order only reorders membership.
int64_t QuantizedTensor::num_groups() const { return spec.num_groups(cols); }

uint32_t QuantizedTensor::code(int64_t r, int64_t c) const {
  const uint32_t* row = codes.data() + r * words_per_row();
  const int64_t bit = c * spec.bits;
  const int64_t w = bit >> 5, off = bit & 31;
  uint64_t v = row[w];
  if (off + spec.bits > 32) v |= uint64_t(row[w + 1]) << 32;
  return uint32_t(v >> off) & ((1u << spec.bits) - 1u);
}

void QuantizedTensor::set_code(int64_t r, int64_t c, uint32_t q) {
  uint32_t* row = codes.data() + r * words_per_row();
  const int64_t bit = c * spec.bits;
  const int64_t w = bit >> 5, off = bit & 31;
  const uint64_t mask = ((uint64_t(1) << spec.bits) - 1u) << off;
  uint64_t v = row[w];
  const bool spans = off + spec.bits > 32;
  if (spans) v |= uint64_t(row[w + 1]) << 32;
  v = (v & ~mask) | ((uint64_t(q) << off) & mask);
  row[w] = uint32_t(v);
  if (spans) row[w + 1] = uint32_t(v >> 32);
}

QuantizedTensor QuantizedTensor::Allocate(int64_t rows, int64_t cols, const QuantSpec& spec) {
  QuantizedTensor q;
  q.rows = rows;
  q.cols = cols;
  q.spec = spec;
  q.codes.assign(size_t(rows * q.words_per_row()), 0u);
  const size_t ng = size_t(rows * spec.num_groups(cols));
  q.scales.assign(ng, 1.0f);
  if (!spec.symmetric) q.zeros.assign(ng, 0);
  return q;
}

void pack_bits(const uint8_t* values, int64_t n, int bits, uint32_t* words) {
  const int64_t nwords = (n * bits + 31) / 32;
  std::memset(words, 0, size_t(nwords) * 4);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t bit = i * bits;
    const int64_t w = bit >> 5, off = bit & 31;
    const uint32_t v = values[i] & ((1u << bits) - 1u);
    words[w] |= v << off;
    if (off + bits > 32) words[w + 1] |= v >> (32 - off);
  }
}

void unpack_bits(const uint32_t* words, int64_t n, int bits, uint8_t* values) {
  for (int64_t i = 0; i < n; ++i) {
    const int64_t bit = i * bits;
    const int64_t w = bit >> 5, off = bit & 31;
    uint64_t v = words[w];
    if (off + bits > 32) v |= uint64_t(words[w + 1]) << 32;
    values[i] = uint8_t((v >> off) & ((1u << bits) - 1u));
  }
}

Status QuantizedTensor::Validate() const {
  LLMQ_RETURN_IF_ERROR(spec.Validate());
  if (rows <= 0 || cols <= 0)
    return Status::Corruption("shape [" + std::to_string(rows) + ", " + std::to_string(cols) + "] is empty");
  const int64_t ng = num_groups();
  if (int64_t(codes.size()) != rows * words_per_row())
    return Status::Corruption("codes hold " + std::to_string(codes.size()) + " words, expected " +
                              std::to_string(rows * words_per_row()));
  if (int64_t(scales.size()) != rows * ng)
    return Status::Corruption("scales hold " + std::to_string(scales.size()) + " values, expected " +
                              std::to_string(rows * ng));
  for (size_t i = 0; i < scales.size(); ++i)
    if (!std::isfinite(scales[i]))
      return Status::Corruption("scale " + std::to_string(i) + " is not finite");
  if (spec.symmetric ? !zeros.empty() : int64_t(zeros.size()) != rows * ng)
    return Status::Corruption("zeros hold " + std::to_string(zeros.size()) + " values, expected " +
                              std::to_string(spec.symmetric ? 0 : rows * ng));
  for (size_t i = 0; i < zeros.size(); ++i)
    if (zeros[i] >= (1u << spec.bits)) return Status::Corruption("zero " + std::to_string(i) + " out of range");
  if (!g_idx.empty()) {
    if (int64_t(g_idx.size()) != cols)
      return Status::Corruption("g_idx has " + std::to_string(g_idx.size()) + " entries, expected " +
                                std::to_string(cols));
    for (size_t i = 0; i < g_idx.size(); ++i)
      if (g_idx[i] < 0 || g_idx[i] >= ng)
        return Status::Corruption("g_idx[" + std::to_string(i) + "] = " + std::to_string(g_idx[i]) +
                                  " is outside [0, " + std::to_string(ng) + ")");
  }
  // Padding bits past the last code of each row must be zero so files are canonical.
  const int64_t used = cols * spec.bits, wpr = words_per_row();
  if (used % 32) {
    const uint32_t pad_mask = ~((1u << (used % 32)) - 1u);
    for (int64_t r = 0; r < rows; ++r)
      if (codes[size_t(r * wpr + wpr - 1)] & pad_mask)
        return Status::Corruption("row " + std::to_string(r) + " has non-zero padding bits");
  }
  if (spec.bits == 8 && spec.symmetric)
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c)
        if (code(r, c) == 0) return Status::Corruption("symmetric 8-bit code 0 (-128) is outside -127..127");
  const auto& o = outliers;
  if (!o.row_ptr.empty() || !o.col_idx.empty() || !o.values.empty()) {
    if (int64_t(o.row_ptr.size()) != rows + 1)
      return Status::Corruption("outlier row_ptr has " + std::to_string(o.row_ptr.size()) + " entries, expected " +
                                std::to_string(rows + 1));
    if (o.col_idx.size() != o.values.size())
      return Status::Corruption("outlier col_idx and values differ in length");
    if (o.row_ptr[0] != 0 || size_t(o.row_ptr.back()) != o.col_idx.size())
      return Status::Corruption("outlier row_ptr does not span [0, nnz]");
    for (int64_t r = 0; r < rows; ++r) {
      if (o.row_ptr[size_t(r + 1)] < o.row_ptr[size_t(r)])
        return Status::Corruption("outlier row_ptr decreases at row " + std::to_string(r));
      for (int32_t k = o.row_ptr[size_t(r)]; k < o.row_ptr[size_t(r + 1)]; ++k) {
        if (o.col_idx[size_t(k)] < 0 || o.col_idx[size_t(k)] >= cols)
          return Status::Corruption("outlier column " + std::to_string(o.col_idx[size_t(k)]) + " in row " +
                                    std::to_string(r) + " is outside [0, " + std::to_string(cols) + ")");
        if (k > o.row_ptr[size_t(r)] && o.col_idx[size_t(k)] <= o.col_idx[size_t(k - 1)])
          return Status::Corruption("outlier columns of row " + std::to_string(r) + " are not strictly increasing");
        if (!std::isfinite(fp16_to_float(o.values[size_t(k)])))
          return Status::Corruption("outlier value in row " + std::to_string(r) + " is not finite");
      }
    }
  }
  return Status::Ok();
}

size_t QuantizedTensor::storage_bytes() const {
  const size_t scale_bytes = spec.scale_dtype == ScaleDType::kF16 ? 2 : 4;
  size_t b = codes.size() * 4 + scales.size() * scale_bytes + zeros.size() + g_idx.size() * 4;
  if (!outliers.empty())
    b += outliers.row_ptr.size() * 4 + outliers.col_idx.size() * (cols <= 65536 ? 2 : 4) + outliers.values.size() * 2;
  return b;
}

void dequantize(const QuantizedTensor& q, float* out) {
  const int64_t ng = q.num_groups();
  std::vector<uint8_t> row_codes(static_cast<size_t>(q.cols));
#pragma omp parallel for schedule(static) firstprivate(row_codes)
  for (int64_t r = 0; r < q.rows; ++r) {
    unpack_bits(q.codes.data() + r * q.words_per_row(), q.cols, q.spec.bits, row_codes.data());
    float* o = out + r * q.cols;
    for (int64_t c = 0; c < q.cols; ++c) {
      const int g = q.group_of(c);
      o[c] = q.scales[size_t(r * ng + g)] * float(int(row_codes[size_t(c)]) - q.zero_of(r, g));
    }
    if (!q.outliers.empty())
      for (int32_t k = q.outliers.row_ptr[size_t(r)]; k < q.outliers.row_ptr[size_t(r + 1)]; ++k)
        o[q.outliers.col_idx[size_t(k)]] += fp16_to_float(q.outliers.values[size_t(k)]);
  }
}

std::vector<float> dequantize(const QuantizedTensor& q) {
  std::vector<float> out(static_cast<size_t>(q.rows * q.cols));
  dequantize(q, out.data());
  return out;
}

}  // namespace llmq
