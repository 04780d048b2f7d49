// Status::ToString.
#include "llmq/status.h"

namespace llmq {

std::string Status::ToString() const {
  const char* name = "OK";
  switch (code_) {
    case StatusCode::kOk: return "OK";
    case StatusCode::kInvalidArgument: name = "Invalid argument"; break;
    case StatusCode::kNotFound: name = "Not found"; break;
    case StatusCode::kNotSupported: name = "Not supported"; break;
    case StatusCode::kCorruption: name = "Corruption"; break;
    case StatusCode::kIOError: name = "IO error"; break;
    case StatusCode::kFailedPrecondition: name = "Failed precondition"; break;
    case StatusCode::kOutOfMemory: name = "Out of memory"; break;
    case StatusCode::kInternal: name = "Internal error"; break;
    case StatusCode::kCancelled: name = "Cancelled"; break;
  }
  return std::string(name) + ": " + message_;
}

}  // namespace llmq
