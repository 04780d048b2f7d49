// llmq bench kernels: a quick roofline of this machine (STREAM bandwidth) and the kernels.
#include <llmq/llmq.h>

#include <cstdio>
#include <nlohmann/json.hpp>

#include "args.h"
#include "commands.h"

namespace llmq::cli {

namespace {
const char* kHelp =
    "Usage: llmq bench kernels [--rows R] [--cols C] [--tokens N] [--json]\n"
    "\n"
    "Measures, in one process (ratios stay meaningful on a busy machine): STREAM-triad memory\n"
    "bandwidth; W4 g128 and W8 GEMV bandwidth as a fraction of it; W4 GEMV and GEMM (N tokens)\n"
    "against Eigen fp32 of the same shape. Takes well under a minute. LLMQ_ISA=scalar|avx2|avx512\n"
    "forces a kernel variant.\n"
    "\n"
    "  --rows R     output features        [4096]\n"
    "  --cols C     input features         [4096]\n"
    "  --tokens N   GEMM tokens            [512]\n"
    "  --json       one JSON object on stdout (keys: stream_gbps, w4_gemv_fraction_of_stream,\n"
    "               w4_gemv_speedup_vs_eigen, w4_gemm_speedup_vs_eigen, w8a8_gemm_speedup_vs_eigen, ...)\n";
}  // namespace

int run_bench(int argc, char** argv) {
  if (argc < 3 || std::string(argv[2]) == "--help") {
    std::fputs(kHelp, argc < 3 ? stderr : stdout);
    return argc < 3 ? 2 : 0;
  }
  if (std::string(argv[2]) != "kernels")
    return usage_error("unknown benchmark '" + std::string(argv[2]) + "' (available: kernels)", "bench");
  auto args = Args::Parse(argc, argv, 3, {"json", "help"}, {"rows", "cols", "tokens"});
  if (!args.ok()) return usage_error(args.status().message(), "bench");
  if (args->has("help")) {
    std::fputs(kHelp, stdout);
    return 0;
  }
  auto rows = args->get_int("rows", 4096), cols = args->get_int("cols", 4096), tokens = args->get_int("tokens", 512);
  if (!rows.ok() || !cols.ok() || !tokens.ok() || *rows <= 0 || *cols <= 0 || *tokens <= 0 || *rows * *cols > (1ll << 28))
    return usage_error("--rows, --cols, --tokens expect positive integers (rows x cols <= 2^28)", "bench");
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
  if (args->has("json")) {
    print_json(j);
    return 0;
  }
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
