// llmq: the command-line tool. It uses only the public headers <llmq/...>, so it
// doubles as the worked example of driving the library from a tool or engine.
//
// Every command prints its numbers as text, or with --json one JSON object on stdout;
// progress and logs go to stderr. Exit code 0 on success, 1 on any error (one line
// naming the file and the problem), 2 on bad usage.
#include <llmq/llmq.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <nlohmann/json.hpp>
#include <string>

#include "args.h"
#include "commands.h"

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace llmq::cli {

int fail(const Status& st) {
  std::fprintf(stderr, "llmq: error: %s\n", st.message().c_str());
  return st.code() == StatusCode::kCancelled ? 130 : 1;  // 130: the shell's code for SIGINT
}

void print_json(const std::string& json_text) { std::printf("%s\n", json_text.c_str()); }
void print_json(const nlohmann::ordered_json& j) {
  print_json(j.dump(2, ' ', false, nlohmann::ordered_json::error_handler_t::replace));
}

int usage_error(const std::string& msg, const char* command) {
  std::fprintf(stderr, "llmq %s: %s\nTry 'llmq %s --help'.\n", command, msg.c_str(), command);
  return 2;
}

namespace {

const char* kMainHelp =
    "llmq - post-training quantization of large language models\n"
    "\n"
    "Usage: llmq <command> [options]\n"
    "\n"
    "Commands:\n"
    "  inspect <folder>              architecture, tensors, parameters and bits per weight of a model folder\n"
    "  quantize <in> <out>           quantize every linear of a Hugging Face checkpoint into the llmq format\n"
    "  eval ppl <folder> --data F    perplexity of a float or quantized model on a text file\n"
    "  generate <folder> --prompt P  stream a continuation of a prompt\n"
    "  export gguf <folder> <file>   write a float folder or one quantized with --gguf-type as GGUF for llama.cpp\n"
    "  export hf <folder> <out>      write a quantized folder as GPTQ, AWQ or compressed-tensors for GPU engines\n"
    "  bench kernels                 memory bandwidth and the quantized kernels against Eigen\n"
    "\n"
    "Options:\n"
    "  --help                        this text; 'llmq <command> --help' for a command\n"
    "  --version                     version and the CPU features the kernels use\n"
    "  --threads N                   threads for kernels, forward pass and GPTQ (default: OMP_NUM_THREADS or all cores)\n"
    "\n"
    "Commands that report numbers accept --json and then print one JSON object on stdout.\n";

}  // namespace
}  // namespace llmq::cli

namespace {
int run(int argc, char** argv);
}  // namespace

// Whatever escapes a command (a bug, or memory exhausted) ends as one error line and exit 1, never
// as an abort.
int main(int argc, char** argv) {
#if defined(__GLIBC__)
  // Keep freed memory in the process. A calibration run allocates and frees the same large buffers
  // every block (window activations, Hessian panels, weights, inputs sent between ranks); glibc hands
  // every allocation above 32 MB back to the kernel on free, and the next block faults it in again,
  // page by page. On a 4-layer, 1B-wide model that was 17 s of system time in a 40 s two-rank run
  // (docs/RESULTS.md, issue 22). The heap's peak stays the run's peak.
  mallopt(M_MMAP_MAX, 0);
  mallopt(M_TRIM_THRESHOLD, -1);  // never trim: the next block needs the same memory
#endif
  try {
    // Under mpirun (a build with MPI) this process joins the job; `llmq quantize` then spreads
    // its calibration over the ranks (llmq/distributed.h). Otherwise nothing happens.
    if (llmq::Status st = llmq::distributed_start(&argc, &argv); !st.ok()) {
      std::fprintf(stderr, "llmq: error: %s\n", st.message().c_str());
      return 1;
    }
    const int code = run(argc, argv);
    llmq::distributed_stop();
    return code;
  } catch (const std::bad_alloc&) {
    std::fputs("llmq: error: out of memory\n", stderr);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "llmq: error: internal error: %s\n", e.what());
  }
  return 1;
}

namespace {
int run(int argc, char** argv) {
  using namespace llmq::cli;
  // --threads N (any position, any command): threads for the kernels, forward pass and GPTQ.
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a != "--threads" && a.rfind("--threads=", 0) != 0) continue;
    const bool joined = a.size() > 9;
    const auto bad = [] {
      std::fputs("llmq: --threads expects a positive integer\n", stderr);
      return 2;
    };
    if (!joined && i + 1 >= argc) return bad();
    const std::string v = joined ? a.substr(10) : argv[i + 1];
    char* end = nullptr;
    const long n = std::strtol(v.c_str(), &end, 10);
    if (v.empty() || *end != '\0' || n <= 0 || n > 4096) return bad();
    llmq::set_num_threads(int(n));
    const int drop = joined ? 1 : 2;
    for (int k = i; k + drop < argc; ++k) argv[k] = argv[k + drop];
    argc -= drop;
    break;
  }
  if (argc < 2) {
    std::fputs(kMainHelp, stderr);
    return 2;
  }
  const std::string cmd = argv[1];
  if (cmd == "--help" || cmd == "-h" || cmd == "help") {
    std::fputs(kMainHelp, stdout);
    return 0;
  }
  if (cmd == "--version") {
    std::printf("llmq %s\ncpu: %s\nkernels: %s (chosen at run time; LLMQ_ISA=scalar|avx2|avx512 lowers it)\n", llmq::version(),
                llmq::cpu_features_string().c_str(), llmq::isa_name(llmq::active_isa()));
    return 0;
  }
  if (cmd == "inspect") return run_inspect(argc, argv);
  if (cmd == "quantize") return run_quantize(argc, argv);
  if (cmd == "eval") return run_eval(argc, argv);
  if (cmd == "generate") return run_generate(argc, argv);
  if (cmd == "bench") return run_bench(argc, argv);
  if (cmd == "export") return run_export(argc, argv);
  std::fprintf(stderr, "llmq: unknown command '%s'\n\n%s", cmd.c_str(), kMainHelp);
  return 2;
}
}  // namespace
