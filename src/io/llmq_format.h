// The llmq quantized checkpoint format (docs/FORMAT.md): tensor names per
// quantized module and the quantization_config block of config.json (internal).
#ifndef LLMQ_IO_LLMQ_FORMAT_H_
#define LLMQ_IO_LLMQ_FORMAT_H_

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "llmq/checkpoint.h"
#include "llmq/quant.h"
#include "llmq/safetensors.h"

namespace llmq::internal {

inline constexpr const char* kLlmqQuantMethod = "llmq";
inline constexpr const char* kFormatVersion = "1.2";
inline constexpr int kFormatMajor = 1;

// Tensor-name suffixes of a quantized module (appended to "<module>.").
inline constexpr const char* kCodes = "qcodes";
inline constexpr const char* kScales = "qscales";
inline constexpr const char* kScaleCodes = "qscale_codes";    // bilevel scales: [rows, groups] codes packed contiguously, I32 [words]
inline constexpr const char* kScaleParams = "qscale_params";  // bilevel scales: F16 [chunks, groups, 2] (min, step)
inline constexpr const char* kZeros = "qzeros";
inline constexpr const char* kZeroCodes = "qzero_codes";    // bilevel zeros: as kScaleCodes (format 1.1)
inline constexpr const char* kZeroParams = "qzero_params";  // bilevel zeros: as kScaleParams (format 1.1)
inline constexpr const char* kGgmlBlocks = "ggml_blocks";  // ggml grids: U8 [rows, row bytes], the blocks as in GGUF
inline constexpr const char* kGIdx = "g_idx";
inline constexpr const char* kLookupLevels = "qlevels";           // lookup codes: F16 [rows, groups, 2, 2^bits] (1.2)
inline constexpr const char* kColumnClasses = "qcolumn_classes";  // lookup codes: 1 bit per column, I32 [words] (1.2)
inline constexpr const char* kOutlierRowPtr = "outlier_row_ptr";
inline constexpr const char* kOutlierRowCounts = "outlier_row_counts";  // U8/U16 [rows], instead of row_ptr (1.1)
inline constexpr const char* kOutlierScales = "outlier_scales";         // in-slot outliers: F16 [rows, groups] (1.1)
inline constexpr const char* kOutlierColIdx = "outlier_col_idx";
inline constexpr const char* kOutlierValues = "outlier_values";

// The tensors that store `q` for `module`, in write order.
std::vector<TensorToWrite> quantized_tensors(const std::string& module, const QuantizedTensor& q);

// Reads back what quantized_tensors wrote, checked against `info` and validated.
Result<QuantizedTensor> read_quantized(const Checkpoint& ckpt, const std::string& module,
                                       const QuantizedModuleInfo& info);

Result<QuantizedTensor> read_quantized(const SafetensorsFile& file, const std::string& module,
                                       const QuantizedModuleInfo& info);

// One entry of quantization_config.modules: the spec, "shape", "g_idx" and "outliers".
nlohmann::ordered_json module_info_to_json(const QuantizedTensor& q);
// One quantized tensor as bytes (its module info and the tensors quantized_tensors writes), for
// another process (MPI ranks); parse_quantized reads them back through read_quantized's checks.
std::vector<uint8_t> quantized_bytes(const std::string& module, const QuantizedTensor& q);
Result<QuantizedTensor> parse_quantized(const std::string& module, const std::vector<uint8_t>& bytes);
Result<QuantizedModuleInfo> module_info_from_json(const nlohmann::json& m, const std::string& where);

nlohmann::json spec_to_json(const QuantSpec& spec);
Result<QuantSpec> spec_from_json(const nlohmann::json& j, const std::string& where);

// Parses config.json's quantization_config when it is llmq's (nullptr when absent or another tool's).
Result<std::shared_ptr<QuantizationInfo>> parse_quantization_config(const nlohmann::json& config,
                                                                    const std::string& source);

}  // namespace llmq::internal

#endif  // LLMQ_IO_LLMQ_FORMAT_H_
