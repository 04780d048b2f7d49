// llmq bench kernels: a quick roofline of this machine (STREAM bandwidth) and the kernels.
#include <llmq/llmq.h>

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "args.h"
#include "commands.h"

namespace llmq::cli {

namespace {
const char* kHelp =
    "Usage: llmq bench kernels [--rows R] [--cols C] [--tokens N] [--llamacpp-libs DIR] [--json]\n"
    "\n"
    "Measures, in one process (ratios stay meaningful on a busy machine): STREAM-triad memory\n"
    "bandwidth; W4 g128 and W8 GEMV bandwidth as a fraction of it; W4 GEMV and GEMM (N tokens)\n"
    "against Eigen fp32 of the same shape. Takes well under a minute. LLMQ_ISA=scalar|avx2|avx512\n"
    "forces a kernel variant.\n"
    "\n"
    "  --rows R     output features        [4096]\n"
    "  --cols C     input features         [4096]\n"
    "  --tokens N   GEMM tokens            [512]\n"
    "  --llamacpp-libs DIR  llama.cpp's libraries (default: the ones found at build time) for the\n"
    "               side-by-side ratios, measured in this run by llmq-vs-llamacpp (built beside llmq\n"
    "               when llama.cpp's libraries were found): llamacpp_w4_gemv_ratio (llmq's W4A8 /\n"
    "               llama.cpp's q4_0, 1 token, (8R)xC: beyond the last-level cache at the default)\n"
    "               and llamacpp_w4_gemm_ratio (N tokens, RxC, against llama.cpp's faster of q4_0\n"
    "               and q4_k); > 1: llmq faster. Without the helper the keys are left out.\n"
    "  --json       one JSON object on stdout (keys: stream_gbps, w4_gemv_fraction_of_stream,\n"
    "               w4_gemv_speedup_vs_eigen, w4_gemm_speedup_vs_eigen, w8a8_gemm_speedup_vs_eigen, ...)\n";

// llmq-vs-llamacpp's JSON for `args`, run beside this llmq; nullopt (with the reason on stderr) when
// the helper is missing or fails.
std::optional<nlohmann::json> side_by_side(const std::string& libs, const std::string& args) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::path helper = fs::read_symlink("/proc/self/exe", ec).parent_path() / "llmq-vs-llamacpp";
  if (ec || !fs::exists(helper)) {
    std::fprintf(stderr, "llmq bench kernels: no llmq-vs-llamacpp beside llmq (built when llama.cpp's libraries are "
                         "found); no llama.cpp ratios\n");
    return std::nullopt;
  }
  std::string cmd = "'" + helper.string() + "' " + args;
  if (!libs.empty()) cmd = "LD_LIBRARY_PATH='" + libs + "' " + cmd + " --libs '" + libs + "'";
  FILE* f = popen(cmd.c_str(), "r");
  if (f == nullptr) return std::nullopt;
  std::string out;
  char buf[4096];
  for (size_t n; (n = std::fread(buf, 1, sizeof buf, f)) > 0;) out.append(buf, n);
  const int status = pclose(f), rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  auto j = nlohmann::json::parse(out, nullptr, false);
  if (rc != 0 || j.is_discarded() || !j.contains("results")) {
    std::fprintf(stderr, "llmq bench kernels: llmq-vs-llamacpp failed (exit %d); no llama.cpp ratios\n", rc);
    return std::nullopt;
  }
  return j;
}

// The median time (ms) of `key` in the result of `type` at `tokens`, or -1.
double median_ms(const nlohmann::json& j, const std::string& type, long long tokens, const char* key) {
  for (const auto& r : j["results"])
    if (r["type"] == type && r["tokens"] == tokens && r.contains(key) && r[key].is_array()) return r[key][0].get<double>();
  return -1.0;
}
}  // namespace

int run_bench(int argc, char** argv) {
  if (argc < 3 || std::string(argv[2]) == "--help") {
    std::fputs(kHelp, argc < 3 ? stderr : stdout);
    return argc < 3 ? 2 : 0;
  }
  if (std::string(argv[2]) != "kernels")
    return usage_error("unknown benchmark '" + std::string(argv[2]) + "' (available: kernels)", "bench");
  auto args = Args::Parse(argc, argv, 3, {"json", "help"}, {"rows", "cols", "tokens", "llamacpp-libs"});
  if (!args.ok()) return usage_error(args.status().message(), "bench");
  if (args->has("help")) {
    std::fputs(kHelp, stdout);
    return 0;
  }
  auto rows = args->get_int("rows", 4096), cols = args->get_int("cols", 4096), tokens = args->get_int("tokens", 512);
  if (!rows.ok() || !cols.ok() || !tokens.ok() || *rows <= 0 || *cols <= 0 || *tokens <= 0 || *rows * *cols > (1ll << 28))
    return usage_error("--rows, --cols, --tokens expect positive integers (rows x cols <= 2^28)", "bench");
  if (args->get("llamacpp-libs").find('\'') != std::string::npos)
    return usage_error("--llamacpp-libs: a folder name with a quote (') is not supported", "bench");
  auto isa = isa_from_environment();
  if (!isa.ok()) return fail(isa.status());
  std::fprintf(stderr, "llmq bench kernels: %lldx%lld, %s, measuring...\n", *rows, *cols, isa_name(*isa));
  const KernelRoofline r = measure_kernel_roofline(*rows, *cols, *tokens, *isa);
  nlohmann::ordered_json j;
  j["isa"] = isa_name(r.isa);
  j["threads"] = r.threads;
  j["shape"] = {r.rows, r.cols};
  j["gemm_tokens"] = r.gemm_tokens;
  j["stream_gbps"] = r.stream_gbps;
  j["read_gbps"] = r.read_gbps;
  j["w4_gemv_ms"] = r.w4_gemv_ms;
  j["w4_gemv_gbps"] = r.w4_gemv_gbps;
  j["w4_gemv_fraction_of_stream"] = r.w4_gemv_fraction_of_stream;
  j["eigen_gemv_ms"] = r.eigen_gemv_ms;
  j["w4_gemv_speedup_vs_eigen"] = r.w4_gemv_speedup_vs_eigen;
  j["w8_gemv_ms"] = r.w8_gemv_ms;
  j["w8_gemv_fraction_of_stream"] = r.w8_gemv_fraction_of_stream;
  j["w4_gemm_ms"] = r.w4_gemm_ms;
  j["eigen_gemm_ms"] = r.eigen_gemm_ms;
  j["w4_gemm_speedup_vs_eigen"] = r.w4_gemm_speedup_vs_eigen;
  j["w4a8_gemv_ms"] = r.w4a8_gemv_ms;
  j["w4a8_gemv_fraction_of_stream"] = r.w4a8_gemv_fraction_of_stream;
  j["w4a8_gemm_ms"] = r.w4a8_gemm_ms;
  j["w4a8_gemm_speedup_vs_eigen"] = r.w4a8_gemm_speedup_vs_eigen;
  j["w8a8_gemm_ms"] = r.w8a8_gemm_ms;
  j["w8a8_gemm_speedup_vs_eigen"] = r.w8a8_gemm_speedup_vs_eigen;
  j["w8a8_gops"] = r.w8a8_gops;
  // llama.cpp on the same blocks, in this run (bench/llamacpp_side_by_side.cc).
  double gemv_ratio = -1.0, gemv_ratio_fp32 = -1.0, gemm_ratio = -1.0;
  const std::string threads = std::to_string(r.threads), cold = *rows * 8 * *cols >= (1ll << 27) ? "1536" : "64";
  if (auto v = side_by_side(args->get("llamacpp-libs"), "--types q4_0 --shapes " + std::to_string(*rows * 8) + "x" +
                                                            std::to_string(*cols) + " --tokens 1 --threads " + threads +
                                                            " --reps 5 --cold-mib " + cold)) {
    const double l = median_ms(*v, "q4_0", 1, "llamacpp_ms"), a8 = median_ms(*v, "q4_0", 1, "llmq_a8_ms"),
                 f32 = median_ms(*v, "q4_0", 1, "llmq_ms");
    if (l > 0 && a8 > 0) gemv_ratio = l / a8;
    if (l > 0 && f32 > 0) gemv_ratio_fp32 = l / f32;
    if (auto g = side_by_side(args->get("llamacpp-libs"), "--types q4_0,q4_k --shapes " + std::to_string(*rows) + "x" +
                                                              std::to_string(*cols) + " --tokens " +
                                                              std::to_string(*tokens) + " --threads " + threads +
                                                              " --reps 3 --burst 2 --cold-mib 64")) {
      double theirs = 1e300, ours = 1e300;
      for (const char* type : {"q4_0", "q4_k"}) {
        if (const double t = median_ms(*g, type, *tokens, "llamacpp_ms"); t > 0) theirs = std::min(theirs, t);
        for (const char* key : {"llmq_ms", "llmq_a8_ms"})
          if (const double t = median_ms(*g, type, *tokens, key); t > 0) ours = std::min(ours, t);
      }
      if (theirs < 1e300 && ours < 1e300) gemm_ratio = theirs / ours;
    }
  }
  if (gemv_ratio > 0) {
    j["llamacpp_w4_gemv_ratio"] = gemv_ratio;
    j["llamacpp_w4_gemv_ratio_fp32_activations"] = gemv_ratio_fp32;
    j["llamacpp_gemv_shape"] = {*rows * 8, *cols};
  }
  if (gemm_ratio > 0) j["llamacpp_w4_gemm_ratio"] = gemm_ratio;
  if (args->has("json")) {
    print_json(j);
    return 0;
  }
  if (gemv_ratio > 0)
    std::printf("llama.cpp q4_0 GEMV %lldx%lld: llmq W4A8 %.2fx its speed (fp32 activations %.2fx)\n", *rows * 8, *cols,
                gemv_ratio, gemv_ratio_fp32);
  if (gemm_ratio > 0)
    std::printf("llama.cpp best 4-bit GEMM N=%lld: llmq %.2fx its speed\n", *tokens, gemm_ratio);
  std::printf("STREAM triad            %8.1f GB/s (%d threads); read-only %.1f GB/s\n", r.stream_gbps, r.threads,
              r.read_gbps);
  std::printf("W4 g128 GEMV %lldx%lld  %8.3f ms  %6.1f GB/s = %.0f%% of STREAM; %.1fx Eigen fp32 GEMV (%.3f ms)\n",
              (long long)r.rows, (long long)r.cols, r.w4_gemv_ms, r.w4_gemv_gbps, 100 * r.w4_gemv_fraction_of_stream,
              r.w4_gemv_speedup_vs_eigen, r.eigen_gemv_ms);
  std::printf("W8 GEMV                 %8.3f ms  %.0f%% of STREAM\n", r.w8_gemv_ms, 100 * r.w8_gemv_fraction_of_stream);
  std::printf("W4 GEMM N=%-5lld         %8.2f ms  %.2fx Eigen fp32 GEMM (%.2f ms)\n", (long long)r.gemm_tokens,
              r.w4_gemm_ms, r.w4_gemm_speedup_vs_eigen, r.eigen_gemm_ms);
  std::printf("W4A8 GEMV                %8.3f ms  %.0f%% of STREAM (int8 activations)\n", r.w4a8_gemv_ms,
              100 * r.w4a8_gemv_fraction_of_stream);
  std::printf("W4A8 GEMM N=%-5lld        %8.2f ms  %.2fx Eigen fp32 GEMM\n", (long long)r.gemm_tokens, r.w4a8_gemm_ms,
              r.w4a8_gemm_speedup_vs_eigen);
  std::printf("W8A8 GEMM N=%-5lld        %8.2f ms  %.2fx Eigen fp32 GEMM, %.0f int8 GOPS\n", (long long)r.gemm_tokens,
              r.w8a8_gemm_ms, r.w8a8_gemm_speedup_vs_eigen, r.w8a8_gops);
  return 0;
}

}  // namespace llmq::cli
