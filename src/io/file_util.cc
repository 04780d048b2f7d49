// Filesystem helpers: whole-file reads and atomic (temp + fsync + rename) writes.
#include "io/file_util.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace llmq::internal {

std::string errno_text() { return std::strerror(errno); }

Result<std::string> read_text_file(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return Status::NotFound(path + ": no such file");
  if (std::filesystem::is_directory(path, ec)) return Status::InvalidArgument(path + ": is a directory, not a file");
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::IOError(path + ": cannot open: " + errno_text());
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return Status::IOError(path + ": read failed");
  return ss.str();
}

Status write_file_atomic(const std::string& path, const void* data, size_t size) {
  return write_file_atomic(path, std::vector<Chunk>{{data, size}});
}

Status write_file_atomic(const std::string& path, const std::vector<Chunk>& chunks) {
  const std::string tmp = path + ".tmp-" + std::to_string(::getpid());
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return Status::IOError(path + ": cannot create: " + errno_text());
  for (const Chunk& chunk : chunks) {
  const auto* p = static_cast<const uint8_t*>(chunk.data);
  size_t left = chunk.size;
  while (left > 0) {
    const ssize_t n = ::write(fd, p, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      const std::string err = errno_text();
      ::close(fd);
      ::unlink(tmp.c_str());
      return Status::IOError(path + ": write failed: " + err);
    }
    p += n;
    left -= size_t(n);
  }
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    const std::string err = errno_text();
    ::unlink(tmp.c_str());
    return Status::IOError(path + ": flush failed: " + err);
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const std::string err = errno_text();
    ::unlink(tmp.c_str());
    return Status::IOError(path + ": rename failed: " + err);
  }
  return Status::Ok();
}

Status write_text_file_atomic(const std::string& path, const std::string& text) {
  return write_file_atomic(path, text.data(), text.size());
}

}  // namespace llmq::internal
