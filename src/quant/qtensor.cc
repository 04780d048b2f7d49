// QuantizedTensor: bit packing, validation, storage accounting and the
// reference dequantization every kernel is tested against.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "llmq/float16.h"
#include "llmq/quant.h"
#include "quant/ggml_blocks.h"

namespace llmq {

float round_half_even(float x) { return std::nearbyint(x); }  // default FE_TONEAREST mode

Status QuantSpec::Validate() const {
  if (is_ggml()) {
    if (lookup) return Status::InvalidArgument("a ggml type cannot have lookup codes");
    bool known = false;
    for (const auto& i : internal::ggml_types()) known |= i.type == ggml_type;
    if (!known) return Status::InvalidArgument("unknown ggml type id " + std::to_string(int(ggml_type)));
    const QuantSpec g = ForGgml(ggml_type);
    if (bits != g.bits || group_size != g.group_size || symmetric != g.symmetric || scale_dtype != g.scale_dtype ||
        scale_bits != 0 || zero_bits != 0)
      return Status::InvalidArgument(std::string("a ") + ggml_type_name(ggml_type) + " tensor is " + g.ToString() +
                                     " (got " + ToString() + ")");
    return Status::Ok();
  }
  if (lookup) {
    if (bits != 1 && bits != 2)
      return Status::InvalidArgument("lookup codes are 1 or 2 bits (got " + std::to_string(bits) + ")");
    if (!symmetric || scale_bits != 0 || zero_bits != 0)
      return Status::InvalidArgument("lookup codes have levels instead of scales and zero points (no asym, scale or zero bits)");
  } else if (bits == 1) {
    if (symmetric)
      return Status::InvalidArgument("1-bit codes need zero points (asym): a symmetric 1-bit grid holds only -scale and 0");
  } else if (bits != 2 && bits != 3 && bits != 4 && bits != 8) {
    return Status::InvalidArgument("bits must be 1 (asym), 2, 3, 4 or 8 (got " + std::to_string(bits) + ")");
  }
  if (group_size < 0) return Status::InvalidArgument("group size must be >= 0 (0 = per output channel)");
  if (scale_bits != 0 && (scale_bits < 2 || scale_bits > 8))
    return Status::InvalidArgument("scale bits must be 0 (plain scales) or 2..8 (got " + std::to_string(scale_bits) + ")");
  if (scale_group_rows < 1) return Status::InvalidArgument("scale group rows must be >= 1");
  if (zero_bits != 0 && (zero_bits < 2 || zero_bits > 8))
    return Status::InvalidArgument("zero bits must be 0 (integer zero points) or 2..8 (got " + std::to_string(zero_bits) + ")");
  return Status::Ok();
}

std::string QuantSpec::ToString() const {
  if (is_ggml()) return std::string("ggml ") + ggml_type_name(ggml_type) + (mse_search ? " mse" : "");
  std::string s = "w" + std::to_string(bits) + (group_size > 0 ? " g" + std::to_string(group_size) : " per-channel");
  if (lookup) return s + " lookup";
  s += symmetric ? " sym" : " asym";
  s += scale_dtype == ScaleDType::kF16 ? " fp16-scales" : " fp32-scales";
  if (scale_bits > 0) s += " scales-q" + std::to_string(scale_bits) + "/" + std::to_string(scale_group_rows);
  if (bilevel_zeros()) s += " zeros-q" + std::to_string(zero_bits) + "/" + std::to_string(scale_group_rows);
  if (mse_search) s += " mse";
  return s;
}

namespace {

float value_from_code(uint16_t min16, uint16_t step16, uint8_t code) {
  return fp16_to_float(min16) + fp16_to_float(step16) * float(code);
}

// Bilevel statistics (SpQR's second-order quantization): values[:, g] of a [rows, ng] table, in
// chunks of `chunk` rows, to `bits`-bit codes with one fp16 (min, step) pair per chunk; the values
// are replaced by what the codes give. `positive`: a positive minimum stays positive (scales).
void quantize_stat_column(std::vector<float>& values, std::vector<uint8_t>& codes, std::vector<uint16_t>& params,
                          int64_t rows, int64_t ng, int64_t g, int64_t chunk, int bits, bool positive) {
  const int maxq = (1 << bits) - 1;
  for (int64_t c = 0, nc = (rows + chunk - 1) / chunk; c < nc; ++c) {
    const int64_t r0 = c * chunk, r1 = std::min(rows, r0 + chunk);
    float mn = values[size_t(r0 * ng + g)], mx = mn;
    for (int64_t r = r0; r < r1; ++r) {
      mn = std::min(mn, values[size_t(r * ng + g)]);
      mx = std::max(mx, values[size_t(r * ng + g)]);
    }
    uint16_t min16 = float_to_fp16(mn);
    if (positive && fp16_to_float(min16) <= 0.0f && mn > 0.0f) min16 = 0x0001;  // keep scales positive
    const float lo = fp16_to_float(min16);
    const uint16_t step16 = float_to_fp16(std::max(0.0f, mx - lo) / float(maxq));
    const float step = fp16_to_float(step16);
    params[size_t((c * ng + g) * 2)] = min16;
    params[size_t((c * ng + g) * 2 + 1)] = step16;
    for (int64_t r = r0; r < r1; ++r) {
      const float v = values[size_t(r * ng + g)];
      const int code = step > 0.0f ? std::clamp(int(round_half_even((v - lo) / step)), 0, maxq) : 0;
      codes[size_t(r * ng + g)] = uint8_t(code);
      values[size_t(r * ng + g)] = value_from_code(min16, step16, uint8_t(code));
    }
  }
}

void dequantize_stats(std::vector<float>& values, const std::vector<uint8_t>& codes,
                      const std::vector<uint16_t>& params, int64_t rows, int64_t ng, int64_t chunk) {
  values.resize(size_t(rows * ng));
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t g = 0; g < ng; ++g) {
      const size_t p = size_t(((r / chunk) * ng + g) * 2);
      values[size_t(r * ng + g)] = value_from_code(params[p], params[p + 1], codes[size_t(r * ng + g)]);
    }
}

}  // namespace

void QuantizedTensor::QuantizeScaleColumn(int64_t g) {
  quantize_stat_column(scales, scale_codes, scale_params, rows, num_groups(), g, spec.scale_group_rows,
                       spec.scale_bits, true);
}

void QuantizedTensor::QuantizeZeroColumn(int64_t g) {
  quantize_stat_column(real_zeros, zero_codes, zero_params, rows, num_groups(), g, spec.scale_group_rows,
                       spec.zero_bits, false);
}

void QuantizedTensor::DequantizeScales() {
  dequantize_stats(scales, scale_codes, scale_params, rows, num_groups(), spec.scale_group_rows);
}

void QuantizedTensor::DequantizeZeros() {
  dequantize_stats(real_zeros, zero_codes, zero_params, rows, num_groups(), spec.scale_group_rows);
}

int SparseOutliers::row_count_bytes() const {
  int32_t most = 0;
  for (size_t r = 0; r + 1 < row_ptr.size(); ++r) most = std::max(most, row_ptr[r + 1] - row_ptr[r]);
  return most <= 255 ? 1 : most <= 65535 ? 2 : 0;
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
  if (spec.lookup) {
    q.levels.assign(ng * size_t(q.levels_per_group()), 0.0f);
    q.column_classes.assign(size_t(cols), 0);
    return q;
  }
  q.scales.assign(ng, 1.0f);
  if (spec.bilevel_zeros()) q.real_zeros.assign(ng, 0.0f), q.zero_codes.assign(ng, 0);
  else if (!spec.symmetric && !spec.is_ggml()) q.zeros.assign(ng, 0);
  if (spec.has_mins()) q.mins.assign(ng, 0.0f);
  if (spec.is_ggml() && internal::ggml_info(spec.ggml_type).k_quant) {
    q.scale_codes.assign(ng, 0);
    if (spec.has_mins()) q.min_codes.assign(ng, 0);
    q.super_scales.assign(size_t(rows * (cols / 256) * 2), 0);
  }
  if (spec.scale_bits > 0) {
    q.scale_codes.assign(ng, 0);
    q.scale_params.assign(size_t(q.num_scale_chunks() * q.num_groups() * 2), 0);
  }
  if (spec.bilevel_zeros()) q.zero_params.assign(size_t(q.num_scale_chunks() * q.num_groups() * 2), 0);
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
  if (int64_t(scales.size()) != (spec.lookup ? 0 : rows * ng))
    return Status::Corruption("scales hold " + std::to_string(scales.size()) + " values, expected " +
                              std::to_string(spec.lookup ? 0 : rows * ng));
  if (spec.lookup) {
    if (int64_t(levels.size()) != rows * ng * levels_per_group() || int64_t(column_classes.size()) != cols)
      return Status::Corruption("lookup levels or column classes have the wrong size");
    for (size_t i = 0; i < levels.size(); ++i)
      if (!std::isfinite(levels[i]) || round_to_fp16(levels[i]) != levels[i])
        return Status::Corruption("lookup level " + std::to_string(i) + " is not a finite fp16 value");
    for (size_t i = 0; i < column_classes.size(); ++i)
      if (column_classes[i] >= kLookupClasses)
        return Status::Corruption("column class " + std::to_string(i) + " is not 0 or 1");
    if (!outlier_scales.empty() || !activation_outlier_columns.empty())
      return Status::Corruption("lookup codes cannot have in-slot outliers or activation outlier columns");
  } else if (!levels.empty() || !column_classes.empty()) {
    return Status::Corruption("lookup levels present but the spec has no lookup codes");
  }
  for (size_t i = 0; i < scales.size(); ++i)
    if (!std::isfinite(scales[i]))
      return Status::Corruption("scale " + std::to_string(i) + " is not finite");
  const bool has_zeros = !spec.symmetric && !spec.is_ggml() && !spec.bilevel_zeros();
  if (has_zeros ? int64_t(zeros.size()) != rows * ng : !zeros.empty())
    return Status::Corruption("zeros hold " + std::to_string(zeros.size()) + " values, expected " +
                              std::to_string(has_zeros ? rows * ng : 0));
  for (size_t i = 0; i < zeros.size(); ++i)
    if (zeros[i] >= (1u << spec.bits)) return Status::Corruption("zero " + std::to_string(i) + " out of range");
  if (spec.is_ggml()) {
    LLMQ_RETURN_IF_ERROR(ValidateGgml());
  } else if (!mins.empty() || !min_codes.empty() || !super_scales.empty()) {
    return Status::Corruption("mins or super-block scales present on a tensor that is not on a ggml grid");
  } else if (spec.scale_bits > 0) {
    if (int64_t(scale_codes.size()) != rows * ng || int64_t(scale_params.size()) != num_scale_chunks() * ng * 2)
      return Status::Corruption("bilevel scales: codes or (min, step) pairs have the wrong size");
    for (size_t i = 0; i < scale_codes.size(); ++i)
      if (scale_codes[i] >= (1u << spec.scale_bits))
        return Status::Corruption("scale code " + std::to_string(i) + " out of range");
    for (uint16_t h : scale_params)
      if (!std::isfinite(fp16_to_float(h))) return Status::Corruption("bilevel scale pair is not finite");
  } else if (!scale_codes.empty() || !scale_params.empty()) {
    return Status::Corruption("scale codes present but scale_bits is 0");
  }
  if (spec.bilevel_zeros()) {
    if (int64_t(zero_codes.size()) != rows * ng || int64_t(zero_params.size()) != num_scale_chunks() * ng * 2 ||
        int64_t(real_zeros.size()) != rows * ng)
      return Status::Corruption("bilevel zeros: codes, (min, step) pairs or zero points have the wrong size");
    for (size_t i = 0; i < zero_codes.size(); ++i)
      if (zero_codes[i] >= (1u << spec.zero_bits))
        return Status::Corruption("zero code " + std::to_string(i) + " out of range");
    for (uint16_t h : zero_params)
      if (!std::isfinite(fp16_to_float(h))) return Status::Corruption("bilevel zero pair is not finite");
    for (size_t i = 0; i < real_zeros.size(); ++i)
      if (!std::isfinite(real_zeros[i])) return Status::Corruption("zero point " + std::to_string(i) + " is not finite");
  } else if (!zero_codes.empty() || !zero_params.empty() || !real_zeros.empty()) {
    return Status::Corruption("zero codes present but the spec has no bilevel zeros");
  }
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
  if (spec.bits == 8 && spec.symmetric && !spec.is_ggml())  // q8_0 stores -128 too
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c)
        if (code(r, c) == 0) return Status::Corruption("symmetric 8-bit code 0 (-128) is outside -127..127");
  const auto& o = outliers;
  if (!o.row_ptr.empty() || !o.col_idx.empty() || !o.values.empty()) {
    if (int64_t(o.row_ptr.size()) != rows + 1)
      return Status::Corruption("outlier row_ptr has " + std::to_string(o.row_ptr.size()) + " entries, expected " +
                                std::to_string(rows + 1));
    if (in_slot_outliers() ? !o.values.empty() : o.col_idx.size() != o.values.size())
      return Status::Corruption(in_slot_outliers() ? "in-slot outliers (with second scales) cannot have values"
                                                   : "outlier col_idx and values differ in length");
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
        if (!o.values.empty() && !std::isfinite(fp16_to_float(o.values[size_t(k)])))
          return Status::Corruption("outlier value in row " + std::to_string(r) + " is not finite");
      }
    }
  }
  if (!outlier_scales.empty()) {
    if (int64_t(outlier_scales.size()) != rows * ng)
      return Status::Corruption("outlier scales hold " + std::to_string(outlier_scales.size()) + " values, expected " +
                                std::to_string(rows * ng));
    if (o.col_idx.empty()) return Status::Corruption("outlier scales present but no outlier positions");
    for (size_t i = 0; i < outlier_scales.size(); ++i)
      if (!std::isfinite(outlier_scales[i]) || round_to_fp16(outlier_scales[i]) != outlier_scales[i])
        return Status::Corruption("outlier scale " + std::to_string(i) + " is not a finite fp16 value");
  }
  const auto& ac = activation_outlier_columns;
  for (size_t i = 0; i < ac.size(); ++i) {
    if (ac[i] < 0 || ac[i] >= cols)
      return Status::Corruption("activation outlier column " + std::to_string(ac[i]) + " is outside [0, " +
                                std::to_string(cols) + ")");
    if (i > 0 && ac[i] <= ac[i - 1]) return Status::Corruption("activation outlier columns are not strictly increasing");
  }
  return Status::Ok();
}

Status QuantizedTensor::ValidateGgml() const {
  const auto& info = internal::ggml_info(spec.ggml_type);
  const int64_t ng = num_groups();
  if (cols % info.block_elems != 0)
    return Status::Corruption(std::string(info.name) + " needs a multiple of " + std::to_string(info.block_elems) +
                              " columns (got " + std::to_string(cols) + ")");
  if (!g_idx.empty() || !outliers.empty())
    return Status::Corruption(std::string(info.name) + " blocks have no group index and no outliers");
  if (int64_t(mins.size()) != (info.has_mins ? rows * ng : 0))
    return Status::Corruption("mins hold " + std::to_string(mins.size()) + " values, expected " +
                              std::to_string(info.has_mins ? rows * ng : 0));
  for (size_t i = 0; i < mins.size(); ++i)
    if (!std::isfinite(mins[i])) return Status::Corruption("min " + std::to_string(i) + " is not finite");
  if (!info.k_quant) {
    if (!scale_codes.empty() || !min_codes.empty() || !super_scales.empty() || !scale_params.empty())
      return Status::Corruption(std::string(info.name) + " has one fp16 scale per block, no scale codes");
    for (size_t i = 0; i < scales.size(); ++i)
      if (round_to_fp16(scales[i]) != scales[i] || (!mins.empty() && round_to_fp16(mins[i]) != mins[i]))
        return Status::Corruption(std::string(info.name) + " scale or min " + std::to_string(i) + " is not an fp16 value");
    return Status::Ok();
  }
  if (int64_t(scale_codes.size()) != rows * ng ||
      int64_t(min_codes.size()) != (info.has_mins ? rows * ng : 0) ||
      int64_t(super_scales.size()) != rows * (cols / 256) * 2 || !scale_params.empty())
    return Status::Corruption(std::string(info.name) + " super-block scales or scale codes have the wrong size");
  for (size_t i = 0; i < scale_codes.size(); ++i)
    if (info.scale_code_bits < 8 && scale_codes[i] >= (1u << info.scale_code_bits))
      return Status::Corruption(std::string(info.name) + " scale code " + std::to_string(i) + " out of range");
  for (size_t i = 0; i < min_codes.size(); ++i)
    if (min_codes[i] >= (1u << info.min_code_bits))
      return Status::Corruption(std::string(info.name) + " min code " + std::to_string(i) + " out of range");
  // scales and mins must be what the stored codes give (they are derived, never free).
  QuantizedTensor copy;
  copy.rows = rows;
  copy.cols = cols;
  copy.spec = spec;
  copy.scale_codes = scale_codes;
  copy.min_codes = min_codes;
  copy.super_scales = super_scales;
  copy.scales.resize(scales.size());
  copy.mins.resize(mins.size());
  for (int64_t r = 0; r < rows; ++r) copy.ggml_k_scales(r);
  for (size_t i = 0; i < scales.size(); ++i)
    if (std::memcmp(&copy.scales[i], &scales[i], 4) != 0 || (!mins.empty() && std::memcmp(&copy.mins[i], &mins[i], 4) != 0))
      return Status::Corruption(std::string(info.name) + " scale or min " + std::to_string(i) +
                                " differs from d * code of its super-block");
  return Status::Ok();
}

size_t QuantizedTensor::storage_bytes() const {
  if (spec.is_ggml()) return size_t(rows * internal::ggml_row_bytes(spec.ggml_type, cols));
  const size_t scale_bytes = spec.scale_dtype == ScaleDType::kF16 ? 2 : 4;
  size_t b = codes.size() * 4 + zeros.size() + g_idx.size() * 4;
  if (spec.lookup) b += levels.size() * 2 + size_t((cols + 31) / 32) * 4;  // fp16 levels + 1-bit column classes
  if (spec.scale_bits > 0)  // the packed codes + the fp16 pairs
    b += size_t(scale_code_words()) * 4 + scale_params.size() * 2;
  else
    b += scales.size() * scale_bytes;
  if (spec.bilevel_zeros()) b += size_t(zero_code_words()) * 4 + zero_params.size() * 2;
  if (!outliers.empty()) {  // what llmq_format.cc writes
    const int count_bytes = outliers.row_count_bytes();
    b += count_bytes > 0 ? size_t(rows) * size_t(count_bytes) : outliers.row_ptr.size() * 4;
    b += outliers.col_idx.size() * size_t(SparseOutliers::column_bytes(cols)) + outliers.values.size() * 2;
    b += outlier_scales.size() * 2;
  }
  return b;
}

void dequantize(const QuantizedTensor& q, float* out) {
  const int64_t ng = q.num_groups();
  std::vector<uint8_t> row_codes(static_cast<size_t>(q.cols));
#pragma omp parallel for schedule(static) firstprivate(row_codes)
  for (int64_t r = 0; r < q.rows; ++r) {
    unpack_bits(q.codes.data() + r * q.words_per_row(), q.cols, q.spec.bits, row_codes.data());
    float* o = out + r * q.cols;
    if (q.spec.lookup) {  // levels [rows, ng, classes, 2^bits]
      const int64_t per_class = int64_t(1) << q.spec.bits;
      const float* lv = q.levels.data() + r * ng * q.levels_per_group();
      for (int64_t c = 0; c < q.cols; ++c)
        o[c] = lv[(q.group_of(c) * QuantizedTensor::kLookupClasses + q.column_classes[size_t(c)]) * per_class +
                  row_codes[size_t(c)]];
    } else
      for (int64_t c = 0; c < q.cols; ++c) {
        const int g = q.group_of(c);
        o[c] = q.scales[size_t(r * ng + g)] * (float(row_codes[size_t(c)]) - q.zero_value(r, g));
      }
    if (!q.mins.empty())  // w = scale * code - min (ggml types with mins; zero is 0)
      for (int64_t c = 0; c < q.cols; ++c) o[c] -= q.mins[size_t(r * ng + q.group_of(c))];
    if (q.outliers.empty()) continue;
    for (int32_t k = q.outliers.row_ptr[size_t(r)]; k < q.outliers.row_ptr[size_t(r + 1)]; ++k) {
      const int32_t c = q.outliers.col_idx[size_t(k)];
      if (q.in_slot_outliers()) {  // the code read with the group's second scale
        const int g = q.group_of(c);
        o[c] = q.outlier_scales[size_t(r * ng + g)] * (float(row_codes[size_t(c)]) - q.zero_value(r, g));
      } else {
        o[c] += fp16_to_float(q.outliers.values[size_t(k)]);
      }
    }
  }
}

std::vector<float> dequantize(const QuantizedTensor& q) {
  std::vector<float> out(static_cast<size_t>(q.rows * q.cols));
  dequantize(q, out.data());
  return out;
}

}  // namespace llmq
