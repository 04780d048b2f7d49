// llmq inspect: what a model folder holds.
#include <llmq/llmq.h>

#include <cstdio>
#include <map>
#include <nlohmann/json.hpp>

#include "args.h"
#include "commands.h"

namespace llmq::cli {

namespace {
const char* kHelp =
    "Usage: llmq inspect <model-or-quantized-folder | file.gguf> [--json] [--tensors]\n"
    "\n"
    "Prints the architecture, layer count, parameter count, bytes on disk and, for llmq\n"
    "quantized folders, the quantization method and bits per weight (codes + scales + zeros\n"
    "+ group index + outliers, as stored).\n"
    "\n"
    "  --tensors   list every tensor (name, dtype, shape)\n"
    "  --json      one JSON object on stdout: architecture, num_layers, hidden_size,\n"
    "              parameters, bytes_on_disk, quantized, method, bits_per_weight, tensors\n";
}  // namespace

int run_inspect(int argc, char** argv) {
  auto args = Args::Parse(argc, argv, 2, {"json", "tensors", "help"}, {});
  if (!args.ok()) return usage_error(args.status().message(), "inspect");
  if (args->has("help")) {
    std::fputs(kHelp, stdout);
    return 0;
  }
  if (args->positional().size() != 1) return usage_error("expected one model folder", "inspect");
  if (is_gguf_file(args->positional()[0])) {  // a GGUF file (llmq export gguf, or any llama.cpp model)
    auto g = inspect_gguf(args->positional()[0]);
    if (!g.ok()) return fail(g.status());
    if (args->has("json")) {
      print_json(g->ToJson());
      return 0;
    }
    std::printf("file:          %s (GGUF v%u)\n", g->path.c_str(), g->version);
    std::printf("architecture:  %s\n", g->architecture.c_str());
    std::printf("parameters:    %lld in %zu tensors, %.3f bits per weight\n", (long long)g->parameters,
                g->tensors.size(), g->bits_per_weight);
    std::printf("bytes:         %llu\n", (unsigned long long)g->file_bytes);
    std::map<std::string, int> by_type;
    for (const auto& t : g->tensors) ++by_type[t.type];
    std::printf("tensor types: ");
    for (const auto& [t, n] : by_type) std::printf(" %s x%d", t.c_str(), n);
    std::printf("\n");
    if (args->has("tensors"))
      for (const auto& t : g->tensors) {
        std::string shape;
        for (int64_t d : t.shape) shape += (shape.empty() ? "" : ", ") + std::to_string(d);
        std::printf("  %-40s %-5s [%s]\n", t.name.c_str(), t.type.c_str(), shape.c_str());
      }
    return 0;
  }
  auto ck = Checkpoint::Open(args->positional()[0]);
  if (!ck.ok()) return fail(ck.status());
  const Checkpoint& c = **ck;
  const ModelConfig& cfg = c.config();

  // Parameters: float tensors count their elements; quantized modules count rows x cols.
  // The tensors of a quantized module (codes, scales, zeros, g_idx, outliers) are its storage.
  int64_t params = 0, quant_weights = 0;
  uint64_t quant_bytes = 0;
  nlohmann::ordered_json tensors = nlohmann::ordered_json::array();
  for (const std::string& name : c.tensor_names()) {
    const TensorInfo* t = c.find(name);
    const size_t dot = name.rfind('.');
    if (dot != std::string::npos && c.is_quantized_module(name.substr(0, dot))) quant_bytes += t->nbytes;
    else if (is_float_dtype(t->dtype)) params += TensorView{t->dtype, t->shape, nullptr, nullptr}.numel();
    tensors.push_back({{"name", name}, {"dtype", dtype_name(t->dtype)}, {"shape", t->shape}});
  }
  if (c.quantization())
    for (const auto& [module, info] : c.quantization()->modules) quant_weights += info.rows * info.cols;
  params += quant_weights;
  const double bpw = quant_weights ? 8.0 * double(quant_bytes) / double(quant_weights) : 0.0;

  nlohmann::ordered_json j;
  j["folder"] = c.folder();
  j["architecture"] = cfg.architecture;
  j["num_layers"] = cfg.num_layers;
  j["hidden_size"] = cfg.hidden_size;
  j["intermediate_size"] = cfg.intermediate_size;
  j["num_heads"] = cfg.num_heads;
  j["num_kv_heads"] = cfg.num_kv_heads;
  j["vocab_size"] = cfg.vocab_size;
  j["parameters"] = params;
  j["linear_layers"] = c.linears().size();
  j["bytes_on_disk"] = c.bytes_on_disk();
  j["files"] = c.files().size();
  j["quantized"] = c.is_quantized();
  if (c.is_quantized()) {
    j["method"] = c.quantization()->method;
    j["format"] = c.quantization()->format;  // "llmq", "gptq", "awq", "compressed-tensors"
    j["checkpoint_format"] = c.quantization()->checkpoint_format;
    j["format_version"] = c.quantization()->format_version;
    j["quantized_modules"] = c.quantization()->modules.size();
    j["bits_per_weight"] = bpw;
  }
  j["kernel_isa"] = isa_name(active_isa());  // the kernels that run this model in this process
  const std::vector<std::string> unused = c.UnusedTensors();
  j["unused_tensors"] = unused;  // in the files but read by no part of the model
  j["tensors"] = tensors;
  if (args->has("json")) {
    print_json(j);
    return 0;
  }
  std::printf("folder:        %s\n", c.folder().c_str());
  std::printf("architecture:  %s\n", cfg.architecture.c_str());
  std::printf("layers:        %lld (hidden %lld, intermediate %lld, heads %lld, kv heads %lld, vocab %lld)\n",
              (long long)cfg.num_layers, (long long)cfg.hidden_size, (long long)cfg.intermediate_size,
              (long long)cfg.num_heads, (long long)cfg.num_kv_heads, (long long)cfg.vocab_size);
  std::printf("parameters:    %lld (%zu decoder linears)\n", (long long)params, c.linears().size());
  std::printf("on disk:       %llu bytes in %zu file(s)\n", (unsigned long long)c.bytes_on_disk(), c.files().size());
  if (c.is_quantized())
    std::printf("quantized:     %s (format %s %s), %zu modules, %.3f bits per weight\n", c.quantization()->method.c_str(),
                c.quantization()->format.c_str(),
                (c.quantization()->format == "llmq" ? c.quantization()->format_version : c.quantization()->checkpoint_format).c_str(),
                c.quantization()->modules.size(), bpw);
  else
    std::printf("quantized:     no\n");
  std::printf("tensors:       %zu\n", tensors.size());
  if (!unused.empty()) {
    std::fprintf(stderr, "llmq inspect: warning: %zu tensor(s) are read by no part of the model, e.g. '%s'\n",
                 unused.size(), unused[0].c_str());
  }
  if (args->has("tensors"))
    for (const auto& t : tensors)
      std::printf("  %-60s %-5s %s\n", t["name"].get<std::string>().c_str(), t["dtype"].get<std::string>().c_str(),
                  t["shape"].dump().c_str());
  return 0;
}

}  // namespace llmq::cli
