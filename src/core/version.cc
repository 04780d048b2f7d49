// Library version string (set by CMake).
#include "llmq/version.h"

namespace llmq {
const char* version() { return LLMQ_VERSION_STRING; }
}  // namespace llmq
