// Small filesystem helpers shared by the readers and writers (internal).
#ifndef LLMQ_IO_FILE_UTIL_H_
#define LLMQ_IO_FILE_UTIL_H_

#include <string>
#include <vector>

#include "llmq/status.h"

namespace llmq::internal {

// Reads a whole (small) file. NotFound / IOError naming the path.
Result<std::string> read_text_file(const std::string& path);
// Writes `data` to `path` through a temporary file in the same folder + fsync + rename.
Status write_file_atomic(const std::string& path, const void* data, size_t size);
// The same for data given as consecutive pieces.
struct Chunk {
  const void* data;
  size_t size;
};
Status write_file_atomic(const std::string& path, const std::vector<Chunk>& chunks);
Status write_text_file_atomic(const std::string& path, const std::string& text);
// "error text" for the current errno.
std::string errno_text();

}  // namespace llmq::internal

#endif  // LLMQ_IO_FILE_UTIL_H_
