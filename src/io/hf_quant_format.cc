// GPTQ, AWQ (GEMM) and compressed-tensors (pack-quantized) checkpoints <-> QuantizedTensor.
//
// All three store W[n, k] ~= scale[n, g] * (q[n, k] - zero[n, g]) with unsigned codes q in
// [0, 2^bits), exactly llmq's description; they differ only in where the bits go:
//  - GPTQ (AutoGPTQ qlinear pack, GPTQModel pack_block): qweight int32 [K*bits/32, N], column n
//    the LSB-first bit stream of row n's K codes (3-bit values straddle words: the stream is
//    continuous); qzeros int32 [G, N*bits/32], row g the bit stream of the N zeros, stored as
//    zero - 1 (masked to bits) in v1 ("gptq") and as-is in v2 ("gptq_v2"); scales [G, N];
//    g_idx int32 [K]. Symmetric zero is 2^(bits-1) (8 for 4-bit), as in llmq.
//  - AWQ GEMM (AutoAWQ WQLinear_GEMM): transposed, qweight int32 [K, N/8] packs 8 output columns
//    per word, nibble i holding column 8c + {0,2,4,6,1,3,5,7}[i]; qzeros [K/group, N/8] the same
//    way, stored as-is; scales [K/group, N]. 4-bit only.
//  - compressed-tensors pack-quantized (PackedQuantizationCompressor): weight_packed int32
//    [N, ceil(K/(32/bits))], 32/bits values per word, value i at bit bits*i; values are the signed
//    codes + 2^(bits-1), which equals llmq's unsigned code; weight_zero_point (asym) packed the
//    same way along dim 0 [ceil(N/(32/bits)), G]; weight_scale [N, G]; weight_shape [N, K].
#include "io/hf_quant_format.h"

#include <algorithm>
#include <cctype>
#include <cstring>
#include <optional>

#include "llmq/float16.h"

namespace llmq::internal {
namespace {

using json = nlohmann::json;

constexpr int kAwqOrder[8] = {0, 2, 4, 6, 1, 3, 5, 7};  // nibble i holds column 8c + kAwqOrder[i]

std::string str(int64_t v) { return std::to_string(v); }


template <typename T>
std::vector<uint8_t> bytes_of(const std::vector<T>& v) {
  std::vector<uint8_t> b(v.size() * sizeof(T));
  if (!b.empty()) std::memcpy(b.data(), v.data(), b.size());
  return b;
}

// Packs `n` values (each < 2^bits) at `per_word` values per 32-bit word, value i of a word at bit
// bits * i (compressed-tensors and AWQ words; for bits dividing 32 also GPTQ's).
void pack_words(const uint32_t* values, int64_t n, int bits, int per_word, uint32_t* words) {
  for (int64_t w = 0; w * per_word < n; ++w) {
    uint32_t word = 0;
    for (int i = 0; i < per_word && w * per_word + i < n; ++i) word |= values[w * per_word + i] << (bits * i);
    words[w] = word;
  }
}

uint32_t word_value(uint32_t word, int bits, int i) { return (word >> (bits * i)) & ((1u << bits) - 1u); }

// The spec a config describes, with the scale dtype of the stored scales.
QuantSpec spec_of(const HfQuantConfig& c, DType scale_dtype) {
  QuantSpec s;
  s.bits = c.bits;
  s.group_size = c.group_size;
  s.symmetric = c.symmetric;
  s.scale_dtype = scale_dtype == DType::kF16 ? ScaleDType::kF16 : ScaleDType::kF32;
  return s;
}

Result<int> read_int(const json& qc, std::initializer_list<const char*> keys, const std::string& source,
                     std::optional<int> dflt) {
  for (const char* k : keys) {
    if (!qc.contains(k) || qc[k].is_null()) continue;
    if (!qc[k].is_number_integer())
      return Status::InvalidArgument(source + ": quantization_config." + k + " must be an integer (got " + qc[k].dump() + ")");
    return qc[k].get<int>();
  }
  if (dflt) return *dflt;
  return Status::InvalidArgument(source + ": quantization_config has no '" + *keys.begin() + "'");
}

Result<bool> read_bool(const json& qc, const char* key, const std::string& source, bool dflt) {
  if (!qc.contains(key) || qc[key].is_null()) return dflt;
  if (!qc[key].is_boolean())
    return Status::InvalidArgument(source + ": quantization_config." + key + " must be true or false (got " +
                                   qc[key].dump() + ")");
  return qc[key].get<bool>();
}

std::string read_string(const json& qc, std::initializer_list<const char*> keys, const std::string& dflt) {
  for (const char* k : keys)
    if (qc.contains(k) && qc[k].is_string()) return qc[k].get<std::string>();
  return dflt;
}

std::string lower(std::string s) {
  for (char& ch : s) ch = char(std::tolower(static_cast<unsigned char>(ch)));
  return s;
}

Result<HfQuantConfig> parse_gptq(const json& qc, const std::string& source) {
  HfQuantConfig c;
  c.layout = HfLayout::kGptq;
  c.quant_method = "gptq";
  LLMQ_ASSIGN_OR_RETURN(c.bits, read_int(qc, {"bits"}, source, std::nullopt));
  if (c.bits != 2 && c.bits != 3 && c.bits != 4 && c.bits != 8)
    return Status::NotSupported(source + ": quantization_config.bits = " + str(c.bits) +
                                " is not supported for GPTQ (2, 3, 4 or 8)");
  LLMQ_ASSIGN_OR_RETURN(int gs, read_int(qc, {"group_size"}, source, std::nullopt));
  if (gs != -1 && gs <= 0)
    return Status::InvalidArgument(source + ": quantization_config.group_size = " + str(gs) + " (expected -1 or > 0)");
  c.group_size = gs == -1 ? 0 : gs;
  LLMQ_ASSIGN_OR_RETURN(c.symmetric, read_bool(qc, "sym", source, true));
  LLMQ_ASSIGN_OR_RETURN(c.desc_act, read_bool(qc, "desc_act", source, false));
  LLMQ_ASSIGN_OR_RETURN(bool marlin, read_bool(qc, "is_marlin_format", source, false));
  c.checkpoint_format = lower(read_string(qc, {"checkpoint_format", "format"}, "gptq"));
  if (marlin || c.checkpoint_format == "marlin")
    return Status::NotSupported(source + ": GPTQ checkpoint_format 'marlin' (weights repacked for the Marlin GPU "
                                "kernel) cannot be read; use the checkpoint in the plain GPTQ layout");
  if (c.checkpoint_format != "gptq" && c.checkpoint_format != "gptq_v2")
    return Status::NotSupported(source + ": GPTQ checkpoint_format '" + c.checkpoint_format +
                                "' is not supported (gptq or gptq_v2)");
  if (qc.contains("dynamic") && !qc["dynamic"].is_null() && !qc["dynamic"].empty())
    return Status::NotSupported(source + ": quantization_config.dynamic (per-module bits/group overrides) is not "
                                "supported");
  return c;
}

Result<HfQuantConfig> parse_awq(const json& qc, const std::string& source) {
  HfQuantConfig c;
  c.layout = HfLayout::kAwqGemm;
  c.quant_method = "awq";
  c.checkpoint_format = lower(read_string(qc, {"version"}, "gemm"));
  if (c.checkpoint_format != "gemm")
    return Status::NotSupported(source + ": AWQ version '" + c.checkpoint_format +
                                "' is not supported (only the GEMM layout; GEMV, gemv_fast, Marlin, exllama and IPEX "
                                "repack the weights differently)");
  LLMQ_ASSIGN_OR_RETURN(c.bits, read_int(qc, {"bits", "w_bit"}, source, std::nullopt));
  if (c.bits != 4)
    return Status::NotSupported(source + ": quantization_config.bits = " + str(c.bits) + " (AWQ GEMM is 4-bit only)");
  LLMQ_ASSIGN_OR_RETURN(c.group_size, read_int(qc, {"group_size", "q_group_size"}, source, std::nullopt));
  if (c.group_size <= 0)
    return Status::NotSupported(source + ": quantization_config.group_size = " + str(c.group_size) +
                                " (AWQ GEMM needs a positive group size)");
  LLMQ_ASSIGN_OR_RETURN(bool zero_point, read_bool(qc, "zero_point", source, true));
  if (!zero_point)
    return Status::NotSupported(source + ": AWQ with zero_point = false has no GEMM layout (AutoAWQ needs zeros)");
  c.symmetric = false;
  return c;
}

Result<HfQuantConfig> parse_compressed_tensors(const json& qc, const std::string& source) {
  HfQuantConfig c;
  c.layout = HfLayout::kCompressedTensors;
  c.quant_method = "compressed-tensors";
  const std::string where = source + ": quantization_config";
  c.checkpoint_format = read_string(qc, {"format"}, "");
  if (!qc.contains("config_groups") || !qc["config_groups"].is_object() || qc["config_groups"].empty())
    return Status::InvalidArgument(where + " has no config_groups");
  if (qc["config_groups"].size() != 1)
    return Status::NotSupported(where + ".config_groups has " + str(int64_t(qc["config_groups"].size())) +
                                " groups; llmq reads one scheme for every linear");
  const std::string gname = qc["config_groups"].begin().key();
  const json& g = qc["config_groups"].begin().value();
  const std::string gw = where + ".config_groups." + gname;
  if (!g.is_object()) return Status::InvalidArgument(gw + " is not an object");
  c.checkpoint_format = read_string(g, {"format"}, c.checkpoint_format);
  if (c.checkpoint_format != "pack-quantized")
    return Status::NotSupported(where + ".format '" + c.checkpoint_format +
                                "' is not supported (only pack-quantized: integer weights packed into int32)");
  for (const char* k : {"input_activations", "output_activations"})
    if (g.contains(k) && !g[k].is_null())
      return Status::NotSupported(gw + "." + k + " is set: activation quantization is not supported");
  const json targets = g.value("targets", json::array());
  bool linear = false;
  for (const auto& t : targets) linear |= t.is_string() && t.get<std::string>() == "Linear";
  if (!linear) return Status::NotSupported(gw + ".targets " + targets.dump() + " does not name \"Linear\"");
  if (!g.contains("weights") || !g["weights"].is_object())
    return Status::InvalidArgument(gw + " has no 'weights' object");
  const json& w = g["weights"];
  const std::string ww = gw + ".weights";
  if (w.value("type", std::string("int")) != "int")
    return Status::NotSupported(ww + ".type '" + w["type"].dump() + "' is not supported (int)");
  LLMQ_ASSIGN_OR_RETURN(c.bits, read_int(w, {"num_bits"}, ww, std::nullopt));
  if (c.bits != 2 && c.bits != 3 && c.bits != 4 && c.bits != 8)
    return Status::NotSupported(ww + ".num_bits = " + str(c.bits) + " is not supported (2, 3, 4 or 8)");
  LLMQ_ASSIGN_OR_RETURN(c.symmetric, read_bool(w, "symmetric", ww, true));
  LLMQ_ASSIGN_OR_RETURN(bool dynamic, read_bool(w, "dynamic", ww, false));
  if (dynamic) return Status::NotSupported(ww + ".dynamic = true: weights quantized at run time are not stored");
  const std::string strategy = read_string(w, {"strategy"}, "");
  if (strategy == "group") {
    LLMQ_ASSIGN_OR_RETURN(c.group_size, read_int(w, {"group_size"}, ww, std::nullopt));
    if (c.group_size <= 0) return Status::InvalidArgument(ww + ".group_size must be positive");
  } else if (strategy == "channel") {
    c.group_size = 0;
  } else {
    return Status::NotSupported(ww + ".strategy '" + strategy + "' is not supported (group or channel)");
  }
  c.desc_act = w.contains("actorder") && !w["actorder"].is_null();
  return c;
}

// A tensor's info, checked for dtype (any float when `dtype` is kF32 and float_ok) and shape.
Result<const TensorInfo*> expect(const TensorLookup& find, const std::string& where, const std::string& name,
                                 DType dtype, const std::vector<int64_t>& shape, bool float_ok = false) {
  const TensorInfo* t = find(name);
  if (t == nullptr) return Status::NotFound(where + ": quantized module needs tensor '" + name + "', which is missing");
  const bool dtype_ok = float_ok ? (t->dtype == DType::kF16 || t->dtype == DType::kBF16 || t->dtype == DType::kF32)
                                 : t->dtype == dtype;
  if (!dtype_ok || t->shape != shape)
    return Status::Corruption(where + ": tensor '" + name + "' is " + dtype_name(t->dtype) + " " +
                              shape_string(t->shape) + ", expected " + (float_ok ? "F16/BF16/F32" : dtype_name(dtype)) +
                              " " + shape_string(shape));
  return t;
}

// The stored tensor shapes of a module, per layout (rows = N = out_features, cols = K = in_features).
struct HfShapes {
  std::vector<int64_t> weight, zeros, scales;
};

Result<HfShapes> shapes_of(const HfQuantConfig& c, const std::string& where, const std::string& module, int64_t n,
                           int64_t k) {
  const int64_t groups = c.group_size > 0 ? (k + c.group_size - 1) / c.group_size : 1;
  switch (c.layout) {
    case HfLayout::kGptq:
      if (k * c.bits % 32 != 0 || n * c.bits % 32 != 0)
        return Status::Corruption(where + ": module '" + module + "' is [" + str(n) + ", " + str(k) + "]: GPTQ " +
                                  str(c.bits) + "-bit packs whole int32 words along both dimensions, so in and out "
                                  "features times bits must be multiples of 32");
      return HfShapes{{k * c.bits / 32, n}, {groups, n * c.bits / 32}, {groups, n}};
    case HfLayout::kAwqGemm:
      if (n % 8 != 0 || k % c.group_size != 0)
        return Status::Corruption(where + ": module '" + module + "' is [" + str(n) + ", " + str(k) +
                                  "]: AWQ GEMM needs out_features % 8 == 0 and in_features % group_size == 0");
      return HfShapes{{k, n / 8}, {groups, n / 8}, {groups, n}};
    case HfLayout::kCompressedTensors: {
      const int64_t per = 32 / c.bits;
      return HfShapes{{n, (k + per - 1) / per}, {(n + per - 1) / per, groups}, {n, groups}};
    }
  }
  return Status::Internal("unknown layout");
}

const char* zeros_name(HfLayout l) { return l == HfLayout::kCompressedTensors ? "weight_zero_point" : "qzeros"; }
const char* scales_name(HfLayout l) { return l == HfLayout::kCompressedTensors ? "weight_scale" : "scales"; }
const char* g_idx_name(HfLayout l) { return l == HfLayout::kCompressedTensors ? "weight_g_idx" : "g_idx"; }
bool has_stored_zeros(const HfQuantConfig& c) { return c.layout != HfLayout::kCompressedTensors || !c.symmetric; }

template <typename T>
Result<std::vector<T>> read_as(const Checkpoint& ckpt, const std::string& name) {
  LLMQ_ASSIGN_OR_RETURN(TensorView v, ckpt.get(name));
  std::vector<T> out(size_t(v.numel()));
  if (!out.empty()) std::memcpy(out.data(), v.data, out.size() * sizeof(T));
  ckpt.release_pages(name);
  return out;
}

}  // namespace

const char* hf_marker_tensor(HfLayout layout) {
  return layout == HfLayout::kCompressedTensors ? "weight_packed" : "qweight";
}

Result<HfQuantConfig> parse_hf_quant_config(const json& qc, const std::string& source) {
  try {  // a key of the wrong JSON type is an error naming the file, never an exception
    if (!qc.is_object()) return Status::InvalidArgument(source + ": quantization_config is not an object");
    const std::string method = lower(read_string(qc, {"quant_method"}, ""));
    if (method == "gptq") return parse_gptq(qc, source);
    if (method == "awq") return parse_awq(qc, source);
    if (method == "compressed-tensors") return parse_compressed_tensors(qc, source);
    return Status::NotSupported(source + ": quantization_config.quant_method '" + method +
                                "' is not supported (llmq reads llmq, gptq, awq and compressed-tensors)");
  } catch (const json::exception& e) {
    return Status::InvalidArgument(source + ": quantization_config: " + e.what());
  }
}

Result<QuantizedModuleInfo> hf_module_info(const HfQuantConfig& c, const TensorLookup& find, const std::string& where,
                                           const std::string& module, int64_t rows, int64_t cols) {
  LLMQ_ASSIGN_OR_RETURN(HfShapes s, shapes_of(c, where, module, rows, cols));
  const std::string p = module + ".";
  const char* marker = hf_marker_tensor(c.layout);
  const TensorInfo* w = find(p + marker);
  if (w != nullptr && w->dtype == DType::kI32 && w->shape.size() == 2 && c.layout == HfLayout::kGptq &&
      w->shape[1] == rows && w->shape != s.weight)
    return Status::Corruption(where + ": tensor '" + p + marker + "' is " + shape_string(w->shape) + ", expected " +
                              shape_string(s.weight) + " for " + str(c.bits) + "-bit codes of " + str(cols) +
                              " inputs (does quantization_config.bits match the weights?)");
  LLMQ_RETURN_IF_ERROR(expect(find, where, p + marker, DType::kI32, s.weight).status());
  LLMQ_ASSIGN_OR_RETURN(const TensorInfo* sc, expect(find, where, p + scales_name(c.layout), DType::kF32, s.scales, true));
  if (has_stored_zeros(c))
    LLMQ_RETURN_IF_ERROR(expect(find, where, p + zeros_name(c.layout), DType::kI32, s.zeros).status());
  QuantizedModuleInfo mi;
  mi.rows = rows;
  mi.cols = cols;
  mi.spec = spec_of(c, sc->dtype);
  if (find(p + g_idx_name(c.layout)) != nullptr) {
    if (c.layout == HfLayout::kAwqGemm)
      return Status::Corruption(where + ": AWQ module '" + module + "' has a g_idx tensor, which AWQ does not define");
    LLMQ_RETURN_IF_ERROR(expect(find, where, p + g_idx_name(c.layout), DType::kI32, {cols}).status());
    mi.has_g_idx = true;
  }
  if (c.layout == HfLayout::kCompressedTensors)
    LLMQ_RETURN_IF_ERROR(expect(find, where, p + "weight_shape", DType::kI32, {2}).status());
  Status st = mi.spec.Validate();
  if (!st.ok()) return st.WithContext(where + ": module '" + module + "'");
  return mi;
}

HfQuantConfig hf_config_of(const QuantizationInfo& info, const QuantizedModuleInfo& module) {
  HfQuantConfig c;
  c.layout = info.format == "awq" ? HfLayout::kAwqGemm
             : info.format == "compressed-tensors" ? HfLayout::kCompressedTensors
                                                   : HfLayout::kGptq;
  c.quant_method = info.format;
  c.checkpoint_format = info.checkpoint_format;
  c.bits = module.spec.bits;
  c.group_size = module.spec.group_size;
  c.symmetric = module.spec.symmetric;
  return c;
}

Result<QuantizedTensor> read_hf_quantized(const Checkpoint& ckpt, const std::string& module,
                                          const QuantizedModuleInfo& info) {
  const HfQuantConfig c = hf_config_of(*ckpt.quantization(), info);
  const std::string& where = ckpt.folder();
  const std::string p = module + ".";
  const int64_t n = info.rows, k = info.cols;
  auto find = [&](const std::string& name) { return ckpt.find(name); };
  // The shapes were checked at Open; check again (this reads what is on disk now).
  LLMQ_ASSIGN_OR_RETURN(QuantizedModuleInfo checked, hf_module_info(c, find, where, module, n, k));
  QuantizedTensor q = QuantizedTensor::Allocate(n, k, checked.spec);
  const int64_t groups = q.num_groups();
  const int bits = c.bits;
  const uint32_t maxq = (1u << bits) - 1u;
  LLMQ_ASSIGN_OR_RETURN(std::vector<uint32_t> w, read_as<uint32_t>(ckpt, p + hf_marker_tensor(c.layout)));
  LLMQ_ASSIGN_OR_RETURN(TensorView sv, ckpt.get(p + scales_name(c.layout)));
  LLMQ_ASSIGN_OR_RETURN(std::vector<float> s, to_float32(sv));
  std::vector<uint32_t> z;  // stored zero words, if any
  if (has_stored_zeros(c)) {
    LLMQ_ASSIGN_OR_RETURN(z, read_as<uint32_t>(ckpt, p + zeros_name(c.layout)));
  }
  std::vector<uint8_t> zeros(size_t(n * groups), uint8_t(1u << (bits - 1)));  // [n, groups]
  std::vector<uint8_t> row(size_t(std::max(n, k)));
  const int64_t wpr = q.words_per_row();
  switch (c.layout) {
    case HfLayout::kGptq: {
      // Column n of qweight is row n's code stream, word for word; row g of qzeros the zeros' stream.
      for (int64_t r = 0; r < n; ++r)
        for (int64_t i = 0; i < wpr; ++i) q.codes[size_t(r * wpr + i)] = w[size_t(i * n + r)];
      const int64_t zw = n * bits / 32;
      for (int64_t g = 0; g < groups; ++g) {
        unpack_bits(z.data() + g * zw, n, bits, row.data());
        for (int64_t r = 0; r < n; ++r)
          zeros[size_t(r * groups + g)] = uint8_t(c.gptq_v1() ? (row[size_t(r)] + 1u) & maxq : row[size_t(r)]);
      }
      for (int64_t g = 0; g < groups; ++g)
        for (int64_t r = 0; r < n; ++r) q.scales[size_t(r * groups + g)] = s[size_t(g * n + r)];
      break;
    }
    case HfLayout::kAwqGemm: {
      for (int64_t kk = 0; kk < k; ++kk)
        for (int64_t cw = 0; cw < n / 8; ++cw) {
          const uint32_t word = w[size_t(kk * (n / 8) + cw)];
          for (int i = 0; i < 8; ++i) q.set_code(8 * cw + kAwqOrder[i], kk, word_value(word, 4, i));
        }
      for (int64_t g = 0; g < groups; ++g)
        for (int64_t cw = 0; cw < n / 8; ++cw) {
          const uint32_t word = z[size_t(g * (n / 8) + cw)];
          for (int i = 0; i < 8; ++i) zeros[size_t((8 * cw + kAwqOrder[i]) * groups + g)] = uint8_t(word_value(word, 4, i));
        }
      for (int64_t g = 0; g < groups; ++g)
        for (int64_t r = 0; r < n; ++r) q.scales[size_t(r * groups + g)] = s[size_t(g * n + r)];
      break;
    }
    case HfLayout::kCompressedTensors: {
      LLMQ_ASSIGN_OR_RETURN(std::vector<int32_t> shape, read_as<int32_t>(ckpt, p + "weight_shape"));
      if (shape[0] != n || shape[1] != k)
        return Status::Corruption(where + ": tensor '" + p + "weight_shape' says [" + str(shape[0]) + ", " +
                                  str(shape[1]) + "] but the module is [" + str(n) + ", " + str(k) + "]");
      const int per = 32 / bits;
      const int64_t words = (k + per - 1) / per;
      for (int64_t r = 0; r < n; ++r)
        for (int64_t kk = 0; kk < k; ++kk)
          q.set_code(r, kk, word_value(w[size_t(r * words + kk / per)], bits, int(kk % per)));
      if (!z.empty())
        for (int64_t r = 0; r < n; ++r)
          for (int64_t g = 0; g < groups; ++g)
            zeros[size_t(r * groups + g)] = uint8_t(word_value(z[size_t((r / per) * groups + g)], bits, int(r % per)));
      q.scales = s;
      break;
    }
  }
  if (info.has_g_idx) {
    LLMQ_ASSIGN_OR_RETURN(std::vector<int32_t> g_idx, read_as<int32_t>(ckpt, p + g_idx_name(c.layout)));
    bool plain = true;
    for (int64_t kk = 0; kk < k; ++kk) {
      if (g_idx[size_t(kk)] < 0 || g_idx[size_t(kk)] >= groups)
        return Status::Corruption(where + ": tensor '" + p + g_idx_name(c.layout) + "' holds group " +
                                  str(g_idx[size_t(kk)]) + " at input " + str(kk) + ", outside [0, " + str(groups) +
                                  ")");
      plain &= g_idx[size_t(kk)] == int32_t(kk / q.spec.group_cols(k));
    }
    if (!plain) q.g_idx = std::move(g_idx);
  }
  // Zeros: symmetric when every zero is the midpoint and the config says sym; stored otherwise.
  bool mid = true;
  for (uint8_t v : zeros) mid &= v == (1u << (bits - 1));
  if (!(c.symmetric && mid)) {
    q.spec.symmetric = false;
    q.zeros = std::move(zeros);
  }
  Status st = q.Validate();
  if (!st.ok()) return st.WithContext(where + ": quantized module '" + module + "'");
  return q;
}

std::string hf_unexpressible(HfLayout layout, const QuantizedTensor& q) {
  const QuantSpec& s = q.spec;
  if (s.is_ggml())
    return std::string("codes on llama.cpp's ") + ggml_type_name(s.ggml_type) +
           " grid (export it with `llmq export gguf`)";
  if (s.lookup) return std::to_string(s.bits) + "-bit lookup codes with per-group levels (BiLLM)";
  if (q.in_slot_outliers()) return "outliers read with a second per-group scale (AdpQ)";
  if (!q.outliers.empty()) return "sparse fp16 outliers beside the dense codes (SpQR / AdpQ)";
  if (s.scale_bits > 0) return "bilevel scales (" + std::to_string(s.scale_bits) + "-bit codes of the scales)";
  if (s.bilevel_zeros()) return "bilevel zero points (" + std::to_string(s.zero_bits) + "-bit codes of real-valued zeros)";
  for (float v : q.scales)
    if (round_to_fp16(v) != v) return "scales that fp16 cannot hold exactly (quantized with fp32 scales)";
  const int64_t n = q.rows, k = q.cols;
  switch (layout) {
    case HfLayout::kGptq:
      if (s.bits != 2 && s.bits != 3 && s.bits != 4 && s.bits != 8) return std::to_string(s.bits) + "-bit codes";
      if (k * s.bits % 32 != 0 || n * s.bits % 32 != 0)
        return "shape [" + str(n) + ", " + str(k) + "], whose dimensions times " + str(s.bits) +
               " bits are not multiples of 32 (GPTQ packs whole int32 words)";
      return "";
    case HfLayout::kAwqGemm:
      if (s.bits != 4) return std::to_string(s.bits) + "-bit codes (AWQ GEMM is 4-bit only)";
      if (s.group_size <= 0) return "one group per row (AWQ needs a group size)";
      if (!q.g_idx.empty()) return "an act-order group index (AWQ has no g_idx)";
      if (n % 8 != 0 || k % s.group_size != 0)
        return "shape [" + str(n) + ", " + str(k) + "] (AWQ needs out_features % 8 == 0 and in_features % group == 0)";
      return "";
    case HfLayout::kCompressedTensors:
      if (s.bits != 2 && s.bits != 3 && s.bits != 4 && s.bits != 8) return std::to_string(s.bits) + "-bit codes";
      return "";
  }
  return "an unknown layout";
}

std::vector<TensorToWrite> hf_quantized_tensors(const HfQuantConfig& c, const std::string& module,
                                                const QuantizedTensor& q) {
  const std::string p = module + ".";
  const int64_t n = q.rows, k = q.cols, groups = q.num_groups();
  const int bits = q.spec.bits;
  const uint32_t maxq = (1u << bits) - 1u;
  std::vector<uint16_t> scales(size_t(n * groups));
  std::vector<TensorToWrite> out;
  auto zero = [&](int64_t r, int64_t g) { return uint32_t(q.zero_of(r, g)); };
  switch (c.layout) {
    case HfLayout::kGptq: {
      const int64_t wpr = q.words_per_row();
      std::vector<uint32_t> qweight(size_t(wpr * n));
      for (int64_t r = 0; r < n; ++r)
        for (int64_t i = 0; i < wpr; ++i) qweight[size_t(i * n + r)] = q.codes[size_t(r * wpr + i)];
      const int64_t zw = n * bits / 32;
      std::vector<uint32_t> qzeros(size_t(groups * zw));
      std::vector<uint8_t> zrow(static_cast<size_t>(n));
      for (int64_t g = 0; g < groups; ++g) {
        for (int64_t r = 0; r < n; ++r) zrow[size_t(r)] = uint8_t(c.gptq_v1() ? (zero(r, g) - 1u) & maxq : zero(r, g));
        pack_bits(zrow.data(), n, bits, qzeros.data() + g * zw);
      }
      for (int64_t g = 0; g < groups; ++g)
        for (int64_t r = 0; r < n; ++r) scales[size_t(g * n + r)] = float_to_fp16(q.scales[size_t(r * groups + g)]);
      std::vector<int32_t> g_idx(static_cast<size_t>(k));
      for (int64_t kk = 0; kk < k; ++kk) g_idx[size_t(kk)] = q.group_of(kk);
      out.push_back({p + "qweight", DType::kI32, {wpr, n}, bytes_of(qweight)});
      out.push_back({p + "qzeros", DType::kI32, {groups, zw}, bytes_of(qzeros)});
      out.push_back({p + "scales", DType::kF16, {groups, n}, bytes_of(scales)});
      out.push_back({p + "g_idx", DType::kI32, {k}, bytes_of(g_idx)});
      break;
    }
    case HfLayout::kAwqGemm: {
      std::vector<uint32_t> qweight(size_t(k * (n / 8))), qzeros(size_t(groups * (n / 8)));
      for (int64_t kk = 0; kk < k; ++kk)
        for (int64_t cw = 0; cw < n / 8; ++cw) {
          uint32_t word = 0;
          for (int i = 0; i < 8; ++i) word |= q.code(8 * cw + kAwqOrder[i], kk) << (4 * i);
          qweight[size_t(kk * (n / 8) + cw)] = word;
        }
      for (int64_t g = 0; g < groups; ++g)
        for (int64_t cw = 0; cw < n / 8; ++cw) {
          uint32_t word = 0;
          for (int i = 0; i < 8; ++i) word |= zero(8 * cw + kAwqOrder[i], g) << (4 * i);
          qzeros[size_t(g * (n / 8) + cw)] = word;
        }
      for (int64_t g = 0; g < groups; ++g)
        for (int64_t r = 0; r < n; ++r) scales[size_t(g * n + r)] = float_to_fp16(q.scales[size_t(r * groups + g)]);
      out.push_back({p + "qweight", DType::kI32, {k, n / 8}, bytes_of(qweight)});
      out.push_back({p + "qzeros", DType::kI32, {groups, n / 8}, bytes_of(qzeros)});
      out.push_back({p + "scales", DType::kF16, {groups, n}, bytes_of(scales)});
      break;
    }
    case HfLayout::kCompressedTensors: {
      const int per = 32 / bits;
      const int64_t words = (k + per - 1) / per;
      std::vector<uint32_t> packed(size_t(n * words)), vals(size_t(std::max(n, k)));
      for (int64_t r = 0; r < n; ++r) {
        for (int64_t kk = 0; kk < k; ++kk) vals[size_t(kk)] = q.code(r, kk);
        pack_words(vals.data(), k, bits, per, packed.data() + r * words);
      }
      for (size_t i = 0; i < scales.size(); ++i) scales[i] = float_to_fp16(q.scales[i]);
      out.push_back({p + "weight_packed", DType::kI32, {n, words}, bytes_of(packed)});
      out.push_back({p + "weight_scale", DType::kF16, {n, groups}, bytes_of(scales)});
      out.push_back({p + "weight_shape", DType::kI32, {2}, bytes_of(std::vector<int32_t>{int32_t(n), int32_t(k)})});
      if (!c.symmetric) {  // packed along the output dimension: word (w, g) holds rows w*per .. w*per+per-1
        const int64_t zrows = (n + per - 1) / per;
        std::vector<uint32_t> zp(size_t(zrows * groups), 0u);
        for (int64_t r = 0; r < n; ++r)
          for (int64_t g = 0; g < groups; ++g) zp[size_t((r / per) * groups + g)] |= zero(r, g) << (bits * (r % per));
        out.push_back({p + "weight_zero_point", DType::kI32, {zrows, groups}, bytes_of(zp)});
      }
      if (!q.g_idx.empty()) out.push_back({p + "weight_g_idx", DType::kI32, {k}, bytes_of(q.g_idx)});
      break;
    }
  }
  return out;
}

nlohmann::ordered_json hf_quantization_config_json(const HfQuantConfig& c) {
  using ojson = nlohmann::ordered_json;
  switch (c.layout) {
    case HfLayout::kGptq: {
      // AutoGPTQ's keys and GPTQModel's synonyms (format / method), as transformers and vLLM read them.
      const bool v1 = c.gptq_v1();
      return ojson{{"quant_method", "gptq"},      {"method", "gptq"},
                   {"bits", c.bits},              {"group_size", c.group_size > 0 ? c.group_size : -1},
                   {"desc_act", c.desc_act},      {"sym", c.symmetric},
                   {"true_sequential", true},     {"damp_percent", 0.01},
                   {"static_groups", false},      {"lm_head", c.lm_head},
                   {"checkpoint_format", v1 ? "gptq" : "gptq_v2"}, {"format", v1 ? "gptq" : "gptq_v2"},
                   {"pack_dtype", "int32"}};
    }
    case HfLayout::kAwqGemm:
      return ojson{{"quant_method", "awq"}, {"zero_point", true},          {"group_size", c.group_size},
                   {"bits", 4},             {"version", "gemm"},           {"modules_to_not_convert", nullptr}};
    case HfLayout::kCompressedTensors: {
      ojson weights{{"num_bits", c.bits},
                    {"type", "int"},
                    {"symmetric", c.symmetric},
                    {"strategy", c.group_size > 0 ? "group" : "channel"},
                    {"group_size", c.group_size > 0 ? ojson(c.group_size) : ojson(nullptr)},
                    {"dynamic", false},
                    {"actorder", c.desc_act ? ojson("group") : ojson(nullptr)},
                    {"block_structure", nullptr},
                    {"observer", "minmax"}};
      ojson group{{"targets", {"Linear"}},       {"weights", weights}, {"input_activations", nullptr},
                  {"output_activations", nullptr}, {"format", "pack-quantized"}};
      return ojson{{"quant_method", "compressed-tensors"},
                   {"format", "pack-quantized"},
                   {"quantization_status", "compressed"},
                   {"config_groups", {{"group_0", group}}},
                   {"ignore", c.lm_head ? ojson::array() : ojson{"lm_head"}},
                   {"kv_cache_scheme", nullptr}};
    }
  }
  return {};
}

}  // namespace llmq::internal
