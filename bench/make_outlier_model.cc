// llmq-outliers: gives a float Llama-family checkpoint activation outliers without changing what
// it computes (bench/outlier_model.h), for measuring W8A8, SmoothQuant, LLM.int8 and integer
// outliers on models too small to have their own (docs/OUTLIERS.md).
//
// Usage: llmq-outliers <in-folder> <out-folder> [--k 32] [--hidden-channels 2]
//                      [--intermediate-channels 2] [--seed 0]
#include "outlier_model.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>

int main(int argc, char** argv) {
  const char* usage =
      "Usage: llmq-outliers <in-folder> <out-folder> [--k 32] [--hidden-channels 2]\n"
      "                     [--intermediate-channels 2] [--seed 0]\n"
      "Scales `--hidden-channels` residual-stream channels (every layer's norms, / k in q/k/v and\n"
      "gate/up) and `--intermediate-channels` down_proj inputs per layer (up_proj rows) by k: the\n"
      "same function, activations with outlier channels. Writes fp32 safetensors and\n"
      "outlier_injection.json (k and the channels) to <out-folder>.\n";
  if (argc >= 2 && std::string(argv[1]) == "--help") {
    std::fputs(usage, stdout);
    return 0;
  }
  if (argc < 3) {
    std::fputs(usage, stderr);
    return 2;
  }
  llmq::bench::OutlierInjection o;
  for (int i = 3; i < argc; i += 2) {
    const std::string k = argv[i];
    char* end = nullptr;
    const double v = i + 1 < argc ? std::strtod(argv[i + 1], &end) : NAN;
    if (i + 1 >= argc || end == argv[i + 1] || *end != '\0' || !std::isfinite(v) || v < 0) {
      std::fprintf(stderr, "llmq-outliers: %s expects a non-negative number\n", k.c_str());
      return 2;
    }
    if (k == "--k") o.k = v;
    else if (k == "--hidden-channels") o.hidden_channels = int(v);
    else if (k == "--intermediate-channels") o.intermediate_channels = int(v);
    else if (k == "--seed") o.seed = uint64_t(v);
    else {
      std::fprintf(stderr, "llmq-outliers: unknown option %s\n%s", k.c_str(), usage);
      return 2;
    }
  }
  std::string summary;
  llmq::Status st = llmq::bench::inject_activation_outliers(argv[1], argv[2], o, &summary);
  if (!st.ok()) {
    std::fprintf(stderr, "llmq-outliers: %s\n", st.ToString().c_str());
    return 1;
  }
  std::printf("%s\n", summary.c_str());
  return 0;
}
