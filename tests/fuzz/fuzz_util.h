// Shared pieces of the libFuzzer targets (tests/fuzz/README.md): a per-process scratch folder the
// readers under test open their input from (they take paths), and the embedded model for the
// targets that need a tokenizer or a valid shard.
#ifndef LLMQ_TESTS_FUZZ_FUZZ_UTIL_H_
#define LLMQ_TESTS_FUZZ_FUZZ_UTIL_H_

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <string>

namespace llmq::fuzz {

// A folder of this process's own (removed at exit).
inline const std::string& scratch() {
  static const std::string dir = [] {
    const char* tmp = std::getenv("TMPDIR");
    std::string d = std::string(tmp && *tmp ? tmp : "/tmp") + "/llmq-fuzz-" + std::to_string(::getpid());
    std::filesystem::create_directories(d);
    static struct Cleanup {
      std::string d;
      ~Cleanup() {
        std::error_code ec;
        std::filesystem::remove_all(d, ec);
      }
    } cleanup{d};
    return d;
  }();
  return dir;
}

// Writes bytes to scratch()/name and returns the path.
inline std::string write_scratch(const std::string& name, const void* data, size_t size) {
  const std::string path = scratch() + "/" + name;
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) std::abort();
  if (size > 0 && std::fwrite(data, 1, size, f) != size) std::abort();
  std::fclose(f);
  return path;
}

inline std::string embedded_model() { return std::string(LLMQ_SOURCE_DIR) + "/examples/data/stories260K-hf"; }

}  // namespace llmq::fuzz

#endif  // LLMQ_TESTS_FUZZ_FUZZ_UTIL_H_
