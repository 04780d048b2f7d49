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

// A fingerprint of a file or of the regular files of a folder (not recursive), for telling
// whether inputs changed since an earlier run: per file its name, size, modification time and a
// 64-bit FNV-1a hash of its first and last 64 KiB and of 64 evenly spaced 4 KiB samples
// (so a multi-GB shard costs ~0.4 MB of reads). "missing" when the path does not exist.
std::string content_fingerprint(const std::string& path);

}  // namespace llmq::internal

#endif  // LLMQ_IO_FILE_UTIL_H_
