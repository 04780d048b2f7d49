// Progress of a long operation (quantizing, calibrating, evaluating), reported through a
// callback: the library never prints.
#ifndef LLMQ_PROGRESS_H_
#define LLMQ_PROGRESS_H_

#include <cstdint>
#include <functional>
#include <string>

#include "llmq/export.h"

namespace llmq {

// Progress of a long operation, reported through a callback (the library never prints).
struct LLMQ_EXPORT Progress {
  int64_t done = 0;
  int64_t total = 0;
  std::string item;        // what was just finished, e.g. "model.layers.3.mlp.up_proj"
  double elapsed_s = 0.0;  // since the start of the operation
};
using ProgressCallback = std::function<void(const Progress&)>;

}  // namespace llmq

#endif  // LLMQ_PROGRESS_H_
