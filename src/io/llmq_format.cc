// The llmq quantized checkpoint format, version 1 (byte layout: docs/FORMAT.md).
#include "io/llmq_format.h"

#include <cmath>
#include <cstring>
#include <map>

#include "io/json_util.h"
#include "llmq/float16.h"
#include "quant/ggml_blocks.h"

namespace llmq::internal {
namespace {

template <typename T>
std::vector<uint8_t> bytes_of(const std::vector<T>& v) {
  std::vector<uint8_t> b(v.size() * sizeof(T));
  if (!b.empty()) std::memcpy(b.data(), v.data(), b.size());
  return b;
}

const std::string& where(const Checkpoint& c) { return c.folder(); }
const std::string& where(const SafetensorsFile& f) { return f.path(); }

// Tensors held in memory (parse_quantized), named like a file's.
struct TensorsInMemory {
  std::string label;
  std::map<std::string, TensorView> views;
  std::map<std::string, TensorInfo> infos;
  Result<TensorView> get(const std::string& name) const {
    auto it = views.find(name);
    if (it == views.end()) return Status::Corruption(label + ": no tensor '" + name + "'");
    return it->second;
  }
  const TensorInfo* find(const std::string& name) const {
    auto it = infos.find(name);
    return it == infos.end() ? nullptr : &it->second;
  }
};
const std::string& where(const TensorsInMemory& t) { return t.label; }

// Src is a Checkpoint or a SafetensorsFile (both have find and get).
template <typename T, typename Src>
Result<std::vector<T>> read_vector(const Src& ckpt, const std::string& name, DType dtype,
                                   const std::vector<int64_t>& shape) {
  LLMQ_ASSIGN_OR_RETURN(TensorView v, ckpt.get(name));
  if (v.dtype != dtype || v.shape != shape)
    return Status::Corruption(where(ckpt) + ": tensor '" + name + "' is " + dtype_name(v.dtype) + " " +
                              shape_string(v.shape) + ", expected " + dtype_name(dtype) + " " + shape_string(shape));
  std::vector<T> out(size_t(v.numel()));
  if (!out.empty()) std::memcpy(out.data(), v.data, out.size() * sizeof(T));
  return out;
}

}  // namespace

std::vector<TensorToWrite> quantized_tensors(const std::string& module, const QuantizedTensor& q) {
  const std::string p = module + ".";
  const int64_t ng = q.num_groups();
  std::vector<TensorToWrite> out;
  if (q.spec.is_ggml()) {  // the blocks exactly as a GGUF file holds them
    out.push_back({p + kGgmlBlocks, DType::kU8, {q.rows, ggml_row_bytes(q.spec.ggml_type, q.cols)}, encode_ggml(q)});
    return out;
  }
  out.push_back({p + kCodes, DType::kI32, {q.rows, q.words_per_row()}, bytes_of(q.codes)});
  if (q.spec.lookup) {
    std::vector<uint16_t> h(q.levels.size());
    for (size_t i = 0; i < h.size(); ++i) h[i] = float_to_fp16(q.levels[i]);
    out.push_back({p + kLookupLevels, DType::kF16, {q.rows, ng, QuantizedTensor::kLookupClasses, int64_t(1) << q.spec.bits},
                   bytes_of(h)});
    std::vector<uint32_t> packed(size_t((q.cols + 31) / 32), 0u);
    pack_bits(q.column_classes.data(), q.cols, 1, packed.data());
    out.push_back({p + kColumnClasses, DType::kI32, {(q.cols + 31) / 32}, bytes_of(packed)});
  } else if (q.spec.scale_bits > 0) {
    std::vector<uint32_t> packed(size_t(q.scale_code_words()), 0u);
    pack_bits(q.scale_codes.data(), q.rows * ng, q.spec.scale_bits, packed.data());
    out.push_back({p + kScaleCodes, DType::kI32, {q.scale_code_words()}, bytes_of(packed)});
    out.push_back({p + kScaleParams, DType::kF16, {q.num_scale_chunks(), ng, 2}, bytes_of(q.scale_params)});
  } else if (q.spec.scale_dtype == ScaleDType::kF16) {
    std::vector<uint16_t> h(q.scales.size());
    for (size_t i = 0; i < h.size(); ++i) h[i] = float_to_fp16(q.scales[i]);
    out.push_back({p + kScales, DType::kF16, {q.rows, ng}, bytes_of(h)});
  } else {
    out.push_back({p + kScales, DType::kF32, {q.rows, ng}, bytes_of(q.scales)});
  }
  if (q.spec.bilevel_zeros()) {
    std::vector<uint32_t> packed(size_t(q.zero_code_words()), 0u);
    pack_bits(q.zero_codes.data(), q.rows * ng, q.spec.zero_bits, packed.data());
    out.push_back({p + kZeroCodes, DType::kI32, {q.zero_code_words()}, bytes_of(packed)});
    out.push_back({p + kZeroParams, DType::kF16, {q.num_scale_chunks(), ng, 2}, bytes_of(q.zero_params)});
  } else if (!q.spec.symmetric) {
    out.push_back({p + kZeros, DType::kU8, {q.rows, ng}, bytes_of(q.zeros)});
  }
  if (!q.g_idx.empty()) out.push_back({p + kGIdx, DType::kI32, {q.cols}, bytes_of(q.g_idx)});
  if (!q.outliers.empty()) {  // as QuantizedTensor::storage_bytes counts them
    const SparseOutliers& o = q.outliers;
    const int64_t nnz = int64_t(o.nnz());
    const int count_bytes = o.row_count_bytes();
    if (count_bytes == 0) {
      out.push_back({p + kOutlierRowPtr, DType::kI32, {q.rows + 1}, bytes_of(o.row_ptr)});
    } else {
      std::vector<uint16_t> counts(size_t(q.rows));
      for (int64_t r = 0; r < q.rows; ++r) counts[size_t(r)] = uint16_t(o.row_ptr[size_t(r + 1)] - o.row_ptr[size_t(r)]);
      if (count_bytes == 1)
        out.push_back({p + kOutlierRowCounts, DType::kU8, {q.rows}, bytes_of(std::vector<uint8_t>(counts.begin(), counts.end()))});
      else
        out.push_back({p + kOutlierRowCounts, DType::kU16, {q.rows}, bytes_of(counts)});
    }
    const int col_bytes = SparseOutliers::column_bytes(q.cols);
    if (col_bytes == 1)
      out.push_back({p + kOutlierColIdx, DType::kU8, {nnz}, bytes_of(std::vector<uint8_t>(o.col_idx.begin(), o.col_idx.end()))});
    else if (col_bytes == 2)
      out.push_back({p + kOutlierColIdx, DType::kU16, {nnz}, bytes_of(std::vector<uint16_t>(o.col_idx.begin(), o.col_idx.end()))});
    else
      out.push_back({p + kOutlierColIdx, DType::kI32, {nnz}, bytes_of(o.col_idx)});
    if (q.in_slot_outliers()) {
      std::vector<uint16_t> h(q.outlier_scales.size());
      for (size_t i = 0; i < h.size(); ++i) h[i] = float_to_fp16(q.outlier_scales[i]);
      out.push_back({p + kOutlierScales, DType::kF16, {q.rows, ng}, bytes_of(h)});
    } else {
      out.push_back({p + kOutlierValues, DType::kF16, {nnz}, bytes_of(o.values)});
    }
  }
  return out;
}

namespace {

template <typename Src>
Result<QuantizedTensor> read_quantized_from(const Src& ckpt, const std::string& module,
                                            const QuantizedModuleInfo& info) {
  const std::string p = module + ".";
  QuantizedTensor q;
  q.rows = info.rows;
  q.cols = info.cols;
  q.spec = info.spec;
  const int64_t ng = q.num_groups();
  if (q.spec.is_ggml()) {
    if (q.cols % ggml_info(q.spec.ggml_type).block_elems != 0)
      return Status::Corruption(where(ckpt) + ": module '" + module + "' is " + ggml_type_name(q.spec.ggml_type) +
                                " with " + std::to_string(q.cols) + " columns, not a whole number of blocks");
    LLMQ_ASSIGN_OR_RETURN(auto blocks, read_vector<uint8_t>(ckpt, p + kGgmlBlocks, DType::kU8,
                                                            {q.rows, ggml_row_bytes(q.spec.ggml_type, q.cols)}));
    auto decoded = decode_ggml(q.spec.ggml_type, q.rows, q.cols, blocks.data(), blocks.size());
    if (!decoded.ok()) return decoded.status().WithContext(where(ckpt) + ": quantized module '" + module + "'");
    if (info.has_g_idx || info.has_outliers)
      return Status::Corruption(where(ckpt) + ": module '" + module + "' on a ggml grid cannot have g_idx or outliers");
    return std::move(*decoded);
  }
  LLMQ_ASSIGN_OR_RETURN(q.codes, read_vector<uint32_t>(ckpt, p + kCodes, DType::kI32, {q.rows, q.words_per_row()}));
  if (q.spec.lookup) {
    LLMQ_ASSIGN_OR_RETURN(auto h, read_vector<uint16_t>(ckpt, p + kLookupLevels, DType::kF16,
                                                        {q.rows, ng, QuantizedTensor::kLookupClasses, int64_t(1) << q.spec.bits}));
    q.levels.resize(h.size());
    for (size_t i = 0; i < h.size(); ++i) q.levels[i] = fp16_to_float(h[i]);
    LLMQ_ASSIGN_OR_RETURN(auto packed, read_vector<uint32_t>(ckpt, p + kColumnClasses, DType::kI32, {(q.cols + 31) / 32}));
    q.column_classes.resize(size_t(q.cols));
    unpack_bits(packed.data(), q.cols, 1, q.column_classes.data());
    if (q.cols % 32 != 0 && (packed.back() >> (q.cols % 32)) != 0)
      return Status::Corruption(where(ckpt) + ": module '" + module + "' has non-zero padding bits after its column classes");
  } else if (q.spec.scale_bits > 0) {
    LLMQ_ASSIGN_OR_RETURN(auto packed, read_vector<uint32_t>(ckpt, p + kScaleCodes, DType::kI32, {q.scale_code_words()}));
    LLMQ_ASSIGN_OR_RETURN(q.scale_params, read_vector<uint16_t>(ckpt, p + kScaleParams, DType::kF16,
                                                                {q.num_scale_chunks(), ng, 2}));
    q.scale_codes.resize(size_t(q.rows * ng));
    unpack_bits(packed.data(), q.rows * ng, q.spec.scale_bits, q.scale_codes.data());
    for (size_t i = 0; i < q.scale_codes.size(); ++i)
      if (q.scale_codes[i] >= (1u << q.spec.scale_bits))
        return Status::Corruption(where(ckpt) + ": module '" + module + "' has a scale code out of range");
    q.DequantizeScales();
  } else if (q.spec.scale_dtype == ScaleDType::kF16) {
    LLMQ_ASSIGN_OR_RETURN(auto h, read_vector<uint16_t>(ckpt, p + kScales, DType::kF16, {q.rows, ng}));
    q.scales.resize(h.size());
    for (size_t i = 0; i < h.size(); ++i) q.scales[i] = fp16_to_float(h[i]);
  } else {
    LLMQ_ASSIGN_OR_RETURN(q.scales, read_vector<float>(ckpt, p + kScales, DType::kF32, {q.rows, ng}));
  }
  if (q.spec.bilevel_zeros()) {
    LLMQ_ASSIGN_OR_RETURN(auto packed, read_vector<uint32_t>(ckpt, p + kZeroCodes, DType::kI32, {q.zero_code_words()}));
    LLMQ_ASSIGN_OR_RETURN(q.zero_params, read_vector<uint16_t>(ckpt, p + kZeroParams, DType::kF16,
                                                               {q.num_scale_chunks(), ng, 2}));
    q.zero_codes.resize(size_t(q.rows * ng));
    unpack_bits(packed.data(), q.rows * ng, q.spec.zero_bits, q.zero_codes.data());
    q.DequantizeZeros();
  } else if (!q.spec.symmetric) {
    LLMQ_ASSIGN_OR_RETURN(q.zeros, read_vector<uint8_t>(ckpt, p + kZeros, DType::kU8, {q.rows, ng}));
  }
  if (info.has_g_idx) {
    LLMQ_ASSIGN_OR_RETURN(q.g_idx, read_vector<int32_t>(ckpt, p + kGIdx, DType::kI32, {q.cols}));
  }
  q.activation_outlier_columns = info.activation_outlier_columns;
  if (info.has_outliers) {
    const std::string here = where(ckpt) + ": module '" + module + "'";
    SparseOutliers& o = q.outliers;
    if (const TensorInfo* counts = ckpt.find(p + kOutlierRowCounts); counts != nullptr) {
      // Per-row counts (U8 or U16), summed into row pointers; the sum cannot overflow int64.
      std::vector<int64_t> n(size_t(q.rows));
      if (counts->dtype == DType::kU8) {
        LLMQ_ASSIGN_OR_RETURN(auto c8, read_vector<uint8_t>(ckpt, p + kOutlierRowCounts, DType::kU8, {q.rows}));
        n.assign(c8.begin(), c8.end());
      } else {
        LLMQ_ASSIGN_OR_RETURN(auto c16, read_vector<uint16_t>(ckpt, p + kOutlierRowCounts, DType::kU16, {q.rows}));
        n.assign(c16.begin(), c16.end());
      }
      o.row_ptr.assign(size_t(q.rows + 1), 0);
      int64_t total = 0;
      for (int64_t r = 0; r < q.rows; ++r) {
        total += n[size_t(r)];
        if (total > q.rows * q.cols) return Status::Corruption(here + " has more outliers than weights");
        o.row_ptr[size_t(r + 1)] = int32_t(total);
      }
    } else {
      LLMQ_ASSIGN_OR_RETURN(o.row_ptr, read_vector<int32_t>(ckpt, p + kOutlierRowPtr, DType::kI32, {q.rows + 1}));
    }
    const TensorInfo* ci = ckpt.find(p + kOutlierColIdx);
    if (ci == nullptr || ci->shape.size() != 1) return Status::Corruption(here + " has no 1-D outlier_col_idx tensor");
    const int64_t nnz = ci->shape[0];
    if (ci->dtype == DType::kU8) {
      LLMQ_ASSIGN_OR_RETURN(auto c8, read_vector<uint8_t>(ckpt, p + kOutlierColIdx, DType::kU8, {nnz}));
      o.col_idx.assign(c8.begin(), c8.end());
    } else if (ci->dtype == DType::kU16) {
      LLMQ_ASSIGN_OR_RETURN(auto c16, read_vector<uint16_t>(ckpt, p + kOutlierColIdx, DType::kU16, {nnz}));
      o.col_idx.assign(c16.begin(), c16.end());
    } else {
      LLMQ_ASSIGN_OR_RETURN(o.col_idx, read_vector<int32_t>(ckpt, p + kOutlierColIdx, DType::kI32, {nnz}));
    }
    if (ckpt.find(p + kOutlierScales) != nullptr) {
      LLMQ_ASSIGN_OR_RETURN(auto h, read_vector<uint16_t>(ckpt, p + kOutlierScales, DType::kF16, {q.rows, ng}));
      q.outlier_scales.resize(h.size());
      for (size_t i = 0; i < h.size(); ++i) q.outlier_scales[i] = fp16_to_float(h[i]);
    } else {
      LLMQ_ASSIGN_OR_RETURN(o.values, read_vector<uint16_t>(ckpt, p + kOutlierValues, DType::kF16, {nnz}));
    }
  }
  Status st = q.Validate();
  if (!st.ok()) return st.WithContext(where(ckpt) + ": quantized module '" + module + "'");
  return q;
}

}  // namespace

Result<QuantizedTensor> read_quantized(const Checkpoint& ckpt, const std::string& module,
                                       const QuantizedModuleInfo& info) {
  return read_quantized_from(ckpt, module, info);
}

Result<QuantizedTensor> read_quantized(const SafetensorsFile& file, const std::string& module,
                                       const QuantizedModuleInfo& info) {
  return read_quantized_from(file, module, info);
}

// Layout: 8-byte little-endian length of a JSON header {"info": module info, "tensors": [[name,
// dtype, shape, nbytes], ...]}, the header, then the tensors' bytes one after the other.
std::vector<uint8_t> quantized_bytes(const std::string& module, const QuantizedTensor& q) {
  std::vector<TensorToWrite> tensors = quantized_tensors(module, q);
  nlohmann::ordered_json list = nlohmann::ordered_json::array();
  for (const TensorToWrite& t : tensors) list.push_back({t.name, dtype_name(t.dtype), t.shape, t.bytes.size()});
  std::vector<uint8_t> out =
      json_framed(nlohmann::ordered_json({{"info", module_info_to_json(q)}, {"tensors", list}}).dump());
  for (const TensorToWrite& t : tensors) out.insert(out.end(), t.bytes.begin(), t.bytes.end());
  return out;
}

Result<QuantizedTensor> parse_quantized(const std::string& module, const std::vector<uint8_t>& bytes) {
  const std::string label = "quantized bytes of " + module;
  auto [header, start] = json_unframed(bytes);
  if (header.is_discarded() || !header.is_object() || !header.contains("info") || !header.contains("tensors"))
    return Status::Corruption(label + ": not a quantized tensor's header");
  TensorsInMemory src{label, {}, {}};
  uint64_t offset = start;
  try {
    for (const auto& t : header["tensors"]) {
      const uint64_t size = t.at(3).get<uint64_t>();
      if (size > bytes.size() - offset) return Status::Corruption(label + ": truncated tensor data");
      LLMQ_ASSIGN_OR_RETURN(DType dtype, parse_dtype(t.at(1).get<std::string>()));
      TensorView v{dtype, t.at(2).get<std::vector<int64_t>>(), bytes.data() + offset, nullptr};
      if (v.nbytes() != size) return Status::Corruption(label + ": a tensor's shape does not match its size");
      const std::string name = t.at(0).get<std::string>();
      src.infos[name] = TensorInfo{name, dtype, v.shape, offset, size};
      src.views[name] = std::move(v);
      offset += size;
    }
  } catch (const nlohmann::json::exception& e) {
    return Status::Corruption(label + ": " + e.what());
  }
  LLMQ_ASSIGN_OR_RETURN(QuantizedModuleInfo info, module_info_from_json(header["info"], label));
  return read_quantized_from(src, module, info);
}

static Result<QuantizedModuleInfo> module_info_from_json_unchecked(const nlohmann::json& m, const std::string& where) {
  QuantizedModuleInfo mi;
  LLMQ_ASSIGN_OR_RETURN(mi.spec, spec_from_json(m, where));
  if (!m.contains("shape") || !m["shape"].is_array() || m["shape"].size() != 2 ||
      !m["shape"][0].is_number_integer() || !m["shape"][1].is_number_integer())
    return Status::Corruption(where + ": needs 'shape' [out_features, in_features]");
  mi.rows = m["shape"][0].get<int64_t>();
  mi.cols = m["shape"][1].get<int64_t>();
  if (mi.rows <= 0 || mi.cols <= 0) return Status::Corruption(where + ": shape must be positive");
  mi.has_g_idx = m.value("g_idx", false);
  mi.has_outliers = m.value("outliers", false);
  if (m.contains("activation_outlier_columns")) {
    const auto& a = m["activation_outlier_columns"];
    if (!a.is_array()) return Status::Corruption(where + ": activation_outlier_columns must be an array of column indices");
    for (const auto& c : a) {
      if (!c.is_number_integer()) return Status::Corruption(where + ": activation_outlier_columns must hold integers");
      mi.activation_outlier_columns.push_back(c.get<int32_t>());
    }
  }
  return mi;
}

Result<QuantizedModuleInfo> module_info_from_json(const nlohmann::json& m, const std::string& where) {
  try {  // a value of the wrong JSON type is a corrupt file, not an exception (found by fuzzing)
    return module_info_from_json_unchecked(m, where);
  } catch (const nlohmann::json::exception& e) {
    return Status::Corruption(where + ": " + e.what());
  }
}


nlohmann::ordered_json module_info_to_json(const QuantizedTensor& q) {
  nlohmann::ordered_json m = spec_to_json(q.spec);
  m["shape"] = {q.rows, q.cols};
  m["g_idx"] = !q.g_idx.empty();
  m["outliers"] = !q.outliers.empty();
  if (!q.activation_outlier_columns.empty()) m["activation_outlier_columns"] = q.activation_outlier_columns;
  return m;
}

nlohmann::json spec_to_json(const QuantSpec& spec) {
  nlohmann::json j = {{"bits", spec.bits},
                      {"group_size", spec.group_size},
                      {"sym", spec.symmetric},
                      {"scale_dtype", spec.scale_dtype == ScaleDType::kF16 ? "fp16" : "fp32"}};
  if (spec.is_ggml()) j["ggml_type"] = ggml_type_name(spec.ggml_type);
  if (spec.scale_bits > 0 || spec.bilevel_zeros()) j["scale_group_rows"] = spec.scale_group_rows;
  if (spec.scale_bits > 0) j["scale_bits"] = spec.scale_bits;
  if (spec.bilevel_zeros()) j["zero_bits"] = spec.zero_bits;
  if (spec.lookup) j["lookup"] = true;
  return j;
}

static Result<QuantSpec> spec_from_json_unchecked(const nlohmann::json& j, const std::string& where) {
  QuantSpec s;
  if (!j.is_object() || !j.contains("bits") || !j["bits"].is_number_integer() || !j.contains("group_size") ||
      !j["group_size"].is_number_integer() || !j.contains("sym") || !j["sym"].is_boolean())
    return Status::Corruption(where + ": needs integer 'bits', integer 'group_size' and boolean 'sym'");
  s.bits = j["bits"].get<int>();
  s.group_size = j["group_size"].get<int>();
  s.symmetric = j["sym"].get<bool>();
  const std::string sd = j.value("scale_dtype", std::string("fp16"));
  if (sd == "fp16") s.scale_dtype = ScaleDType::kF16;
  else if (sd == "fp32") s.scale_dtype = ScaleDType::kF32;
  else return Status::Corruption(where + ": scale_dtype '" + sd + "' is not fp16 or fp32");
  if (j.contains("lookup") && !j["lookup"].is_boolean()) return Status::Corruption(where + ": 'lookup' must be a boolean");
  s.lookup = j.value("lookup", false);
  for (const char* key : {"scale_bits", "scale_group_rows", "zero_bits"})
    if (j.contains(key) && !j[key].is_number_integer())
      return Status::Corruption(where + ": '" + key + "' must be an integer");
  s.scale_bits = j.value("scale_bits", 0);
  s.scale_group_rows = j.value("scale_group_rows", 16);
  s.zero_bits = j.value("zero_bits", 0);
  if (j.contains("ggml_type")) {
    if (!j["ggml_type"].is_string()) return Status::Corruption(where + ": 'ggml_type' must be a string");
    auto t = parse_ggml_type(j["ggml_type"].get<std::string>());
    if (!t.ok()) return Status::Corruption(where + ": " + t.status().message());
    s.ggml_type = *t;
  }
  Status st = s.Validate();
  if (!st.ok()) return Status::Corruption(where + ": " + st.message());
  return s;
}

Result<QuantSpec> spec_from_json(const nlohmann::json& j, const std::string& where) {
  try {  // a value of the wrong JSON type is a corrupt file, not an exception (found by fuzzing)
    return spec_from_json_unchecked(j, where);
  } catch (const nlohmann::json::exception& e) {
    return Status::Corruption(where + ": " + e.what());
  }
}


static Result<std::shared_ptr<QuantizationInfo>> parse_quantization_config_unchecked(const nlohmann::json& config,
                                                                    const std::string& source) {
  if (!config.contains("quantization_config")) return std::shared_ptr<QuantizationInfo>();
  const nlohmann::json& qc = config["quantization_config"];
  if (!qc.is_object() || qc.value("quant_method", std::string()) != kLlmqQuantMethod)
    return std::shared_ptr<QuantizationInfo>();
  auto info = std::make_shared<QuantizationInfo>();
  info->format_version = qc.value("format_version", std::string());
  int major = -1;
  try {
    major = std::stoi(info->format_version.substr(0, info->format_version.find('.')));
  } catch (...) {
  }
  if (major != kFormatMajor)
    return Status::NotSupported(source + ": llmq format version '" + info->format_version +
                                "' is not supported by this llmq (reads major version " + std::to_string(kFormatMajor) +
                                ")");
  info->method = qc.value("method", std::string());
  info->gguf_type = qc.value("gguf_type", std::string());
  info->gguf_file_type = qc.value("gguf_file_type", 0);
  info->activations = qc.value("activations", std::string("fp32"));
  if (info->activations != "fp32" && info->activations != "int8")
    return Status::Corruption(source + ": quantization_config.activations '" + info->activations +
                              "' is neither fp32 nor int8");
  if (qc.contains("activation_outliers")) {
    const nlohmann::json& ao = qc["activation_outliers"];
    const std::string where = source + ": quantization_config.activation_outliers";
    if (!ao.is_object() || !ao.contains("threshold") || !ao["threshold"].is_number() ||
        (ao.contains("integer") && !ao["integer"].is_boolean()))
      return Status::Corruption(where + " must be {\"threshold\": number, \"integer\": bool}");
    info->activation_outliers.threshold = ao["threshold"].get<double>();
    info->activation_outliers.integer = ao.value("integer", false);
    if (!(std::isfinite(info->activation_outliers.threshold) && info->activation_outliers.threshold > 0.0))
      return Status::Corruption(where + ".threshold must be a positive number");
    if (info->activations != "int8")
      return Status::Corruption(where + " is set but the activations are " + info->activations + ", not int8");
  }
  if (!qc.contains("modules") || !qc["modules"].is_object())
    return Status::Corruption(source + ": quantization_config has no 'modules' object");
  for (auto it = qc["modules"].begin(); it != qc["modules"].end(); ++it) {
    const std::string where = source + ": quantization_config.modules['" + it.key() + "']";
    LLMQ_ASSIGN_OR_RETURN(QuantizedModuleInfo mi, module_info_from_json(it.value(), where));
    info->modules[it.key()] = mi;
  }
  return info;
}

Result<std::shared_ptr<QuantizationInfo>> parse_quantization_config(const nlohmann::json& config,
                                                                    const std::string& source) {
  try {  // a value of the wrong JSON type is a corrupt config, not an exception (found by fuzz_quantization_config)
    return parse_quantization_config_unchecked(config, source);
  } catch (const nlohmann::json::exception& e) {
    return Status::Corruption(source + ": quantization_config: " + e.what());
  }
}

}  // namespace llmq::internal
