// libFuzzer target: calibration data files. The first byte picks the format (.json windows or ids,
// .jsonl {"text"} rows, .bin little-endian int32 ids, .txt text); the rest is the file.
#include <cstdint>
#include <memory>
#include <string>

#include "fuzz_util.h"
#include "llmq/tokenizer.h"
#include "quant/calibration.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::unique_ptr<llmq::Tokenizer> tokenizer = [] {
    auto t = llmq::Tokenizer::Open(llmq::fuzz::embedded_model());
    if (!t.ok()) std::abort();
    return std::move(*t);
  }();
  if (size == 0) return 0;
  static const char* const kExt[] = {".json", ".jsonl", ".bin", ".txt"};
  const std::string path = llmq::fuzz::write_scratch(std::string("calib") + kExt[data[0] % 4], data + 1, size - 1);
  llmq::CalibrationOptions o;
  o.data = path;
  o.nsamples = 4;
  o.seq_len = 16;
  o.seed = data[0];
  (void)llmq::internal::load_calibration_set(o, tokenizer.get(), 64, 512);
  return 0;
}
