// Where a calibrated run keeps its finished blocks: a hidden folder beside the output
// (".<out>.llmq-partial") with a manifest of everything that determines the output and, per
// block, a safetensors file of its quantized and rewritten tensors and a JSON record of its
// report lines, module infos and rewritten names. A crash loses at most one block; --resume
// continues from the finished ones when the manifest matches (internal).
#ifndef LLMQ_QUANT_BLOCK_STORE_H_
#define LLMQ_QUANT_BLOCK_STORE_H_

#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "llmq/quantize.h"
#include "llmq/safetensors.h"
#include "quant/method.h"

namespace llmq::internal {

// A finished block read back: its report lines, module infos and quantized tensors.
struct FinishedBlock {
  std::vector<LayerReport> reports;
  std::map<std::string, nlohmann::json> modules;  // module -> module info json
  std::vector<std::string> rewritten;             // non-linear tensors the block rewrote
  std::shared_ptr<const SafetensorsFile> file;
};

// One solved linear as bytes (report line, quantized tensor), for the MPI ranks that did not
// solve it; unpack_linear gives back the same QuantizedLinear (the tensor through read_quantized's
// checks).
std::vector<uint8_t> pack_linear(const QuantizedLinear& l);
Result<QuantizedLinear> unpack_linear(const LinearInfo& info, const std::vector<uint8_t>& bytes);

// The row pieces of one tensor (consecutive rows, in order; a linear whose rows were solved on
// different MPI ranks) as one tensor. Only what is stored per row is joined: pieces with bilevel
// statistics, lookup codes or column-level outlier lists are refused (their rows are not
// independent).
Result<QuantizedTensor> join_row_pieces(std::vector<QuantizedTensor> pieces);

class BlockStore {
 public:
  // Creates the folder for `output_folder` with `manifest`, replacing a previous one, or with
  // `resume` reuses one whose manifest is the same (InvalidArgument when it differs).
  static Result<BlockStore> Open(const std::string& output_folder, const nlohmann::ordered_json& manifest, bool resume);

  const std::string& dir() const { return dir_; }
  // Whether block `layer` was finished (its record exists).
  bool Finished(int layer) const;
  // Writes block `layer` (tensors first, then the record, each atomically).
  Status Write(int layer, const BlockResult& block) const;
  Result<FinishedBlock> Read(int layer) const;
  // Removes the folder (the output is complete).
  void Remove() const;

 private:
  std::string stem(int layer) const;
  std::string dir_;
};

}  // namespace llmq::internal

#endif  // LLMQ_QUANT_BLOCK_STORE_H_
