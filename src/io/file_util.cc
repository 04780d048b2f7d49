// Filesystem helpers: whole-file reads and atomic (temp + fsync + rename) writes.
#include "io/file_util.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <vector>

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

namespace llmq::internal {
namespace {

uint64_t fnv1a(uint64_t h, const char* p, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    h ^= uint8_t(p[i]);
    h *= 1099511628211ull;
  }
  return h;
}

std::string file_fingerprint(const std::filesystem::path& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const uint64_t size = fs::file_size(path, ec);
  if (ec) return path.filename().string() + ":unreadable";
  const auto mtime = fs::last_write_time(path, ec).time_since_epoch().count();
  uint64_t h = 1469598103934665603ull;
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f != nullptr) {
    std::vector<char> buf(64 << 10);
    auto sample = [&](uint64_t offset, size_t n) {
      n = size_t(std::min<uint64_t>(n, size > offset ? size - offset : 0));
      if (n == 0 || std::fseek(f, long(offset), SEEK_SET) != 0) return;
      const size_t got = std::fread(buf.data(), 1, n, f);
      h = fnv1a(h, buf.data(), got);
    };
    sample(0, buf.size());
    for (uint64_t i = 1; i <= 64; ++i) sample(size / 65 * i, 4096);
    if (size > buf.size()) sample(size - buf.size(), buf.size());
    std::fclose(f);
  }
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", (unsigned long long)h);
  return path.filename().string() + ":" + std::to_string(size) + ":" + std::to_string(mtime) + ":" + hex;
}

}  // namespace

std::string content_fingerprint(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::exists(path, ec)) return "missing";
  if (!fs::is_directory(path, ec)) return file_fingerprint(path);
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(path, ec))
    if (e.is_regular_file(ec)) files.push_back(e.path());
  std::sort(files.begin(), files.end());
  std::string out;
  for (const auto& f : files) out += (out.empty() ? "" : " ") + file_fingerprint(f);
  return out;
}

}  // namespace llmq::internal
