// Library version and the CPU features the kernels can use on this machine.
#ifndef LLMQ_VERSION_H_
#define LLMQ_VERSION_H_

#include "llmq/export.h"

#include <string>

namespace llmq {

// "0.1.0"
LLMQ_EXPORT const char* version();
// Space-separated features detected at run time, e.g. "avx2 fma f16c avx512f ...", or "scalar".
LLMQ_EXPORT std::string cpu_features_string();

}  // namespace llmq

#endif  // LLMQ_VERSION_H_
