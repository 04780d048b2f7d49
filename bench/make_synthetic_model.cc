// llmq-synth: writes a Llama-style checkpoint with random weights (N(0, 0.02), fp16), one
// safetensors shard per decoder layer plus the index, holding one layer in memory at a time —
// so checkpoints larger than RAM can be made to measure the calibration driver's memory.
// Measures time and memory only, never quality.
//
// Usage: llmq-synth <out-folder> [--hidden 4096] [--intermediate 11008] [--layers 32]
//                   [--heads 32] [--kv-heads 32] [--vocab 32000]
#include "synthetic_checkpoint.h"

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

int main(int argc, char** argv) {
  if (argc < 2 || std::string(argv[1]) == "--help") {
    std::fprintf(argc < 2 ? stderr : stdout,
                 "Usage: llmq-synth <out-folder> [--hidden 4096] [--intermediate 11008] [--layers 32]\n"
                 "                  [--heads 32] [--kv-heads 32] [--vocab 32000]\n");
    return argc < 2 ? 2 : 0;
  }
  const std::string out = argv[1];
  int64_t hidden = 4096, inter = 11008, layers = 32, heads = 32, kv = 32, vocab = 32000;
  for (int i = 2; i < argc; i += 2) {
    const std::string k = argv[i];
    if (i + 1 >= argc) {
      std::fprintf(stderr, "llmq-synth: %s expects a value\n", k.c_str());
      return 2;
    }
    const int64_t v = std::atoll(argv[i + 1]);
    if (v <= 0) {
      std::fprintf(stderr, "llmq-synth: %s expects a positive integer\n", k.c_str());
      return 2;
    }
    if (k == "--hidden") hidden = v;
    else if (k == "--intermediate") inter = v;
    else if (k == "--layers") layers = v;
    else if (k == "--heads") heads = v;
    else if (k == "--kv-heads") kv = v;
    else if (k == "--vocab") vocab = v;
    else {
      std::fprintf(stderr, "llmq-synth: unknown option %s\n", k.c_str());
      return 2;
    }
  }
  if (hidden % heads != 0 || heads % kv != 0) {
    std::fprintf(stderr, "llmq-synth: --hidden must be a multiple of --heads, and --heads of --kv-heads\n");
    return 2;
  }
  std::error_code ec;
  if (std::filesystem::exists(out, ec) && !std::filesystem::is_empty(out, ec)) {
    std::fprintf(stderr, "llmq-synth: %s exists and is not empty\n", out.c_str());
    return 2;
  }
  std::filesystem::create_directories(out, ec);
  if (ec) {
    std::fprintf(stderr, "llmq-synth: cannot create %s: %s\n", out.c_str(), ec.message().c_str());
    return 1;
  }
  const llmq::Status st = llmq::bench::write_synthetic_llama(out, {hidden, inter, layers, heads, kv, vocab}, true);
  if (!st.ok()) {
    std::fprintf(stderr, "\nllmq-synth: %s\n", st.ToString().c_str());
    return 1;
  }
  std::fprintf(stderr, "\nllmq-synth: wrote %s\n", out.c_str());
  return 0;
}
