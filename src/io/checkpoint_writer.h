// Writes a model folder atomically: everything goes into a temporary folder
// beside the target, which is renamed into place only by Commit(). An error or
// a crash before that leaves no partial output (internal).
#ifndef LLMQ_IO_CHECKPOINT_WRITER_H_
#define LLMQ_IO_CHECKPOINT_WRITER_H_

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "llmq/safetensors.h"
#include "llmq/status.h"

namespace llmq::internal {

// What an existing, non-empty output folder may be replaced with.
enum class ReplacePolicy {
  kNever,       // refuse (the default: --overwrite not given)
  kLlmqOutput,  // only a folder llmq wrote (--overwrite): it holds llmq_report.json or a
                // config.json whose quantization_config is llmq's
  kAnything,    // any folder (--overwrite --force)
};

// The policy of the --overwrite / --force flags.
inline ReplacePolicy replace_policy(bool overwrite, bool force) {
  return !overwrite ? ReplacePolicy::kNever : force ? ReplacePolicy::kAnything : ReplacePolicy::kLlmqOutput;
}

// Whether `folder` is an output of llmq (see ReplacePolicy::kLlmqOutput).
bool written_by_llmq(const std::string& folder);

class CheckpointWriter {
 public:
  // Fails if `out_dir` exists and is not empty and `replace` does not allow replacing it, or its
  // parent is not writable, or (when `input_dir` is given) it is the input folder, lies inside it
  // or holds it, symbolic links resolved: replacing it would destroy the input.
  static Result<std::unique_ptr<CheckpointWriter>> Create(const std::string& out_dir, ReplacePolicy replace,
                                                          uint64_t max_shard_bytes, const std::string& input_dir = "");
  ~CheckpointWriter();

  // Appends a tensor's bytes to the current shard's data file (nothing is kept in memory); the
  // shard is finished once it holds max_shard_bytes.
  Status Add(TensorToWrite tensor);
  // Writes the last shard, the index (when sharded), config.json, the given extra text files and
  // the tokenizer files found in `copy_from`, then moves the folder into place.
  Status Commit(const std::string& config_json, const std::string& copy_from,
                const std::map<std::string, std::string>& extra_files);
  const std::string& temp_dir() const { return tmp_; }

 private:
  CheckpointWriter() = default;
  Status FlushShard();
  std::string out_, tmp_;
  ReplacePolicy replace_ = ReplacePolicy::kNever;
  bool committed_ = false;
  uint64_t max_shard_bytes_ = 0, buffered_ = 0;
  int data_fd_ = -1;                  // the current shard's data section, written as tensors arrive
  std::vector<TensorInfo> pending_;   // its tensors (offsets follow the order of Add)
  std::vector<std::vector<std::string>> shard_names_;  // tensor names per written shard
};

}  // namespace llmq::internal

#endif  // LLMQ_IO_CHECKPOINT_WRITER_H_
