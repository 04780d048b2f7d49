// llmq export gguf: a model folder as a GGUF file for llama.cpp.
#include <llmq/llmq.h>

#include <cstdio>

#include "args.h"
#include "commands.h"

namespace llmq::cli {

namespace {
const char* kHelp =
    "Usage: llmq export gguf <folder> <out.gguf> [--type T] [--name N] [--overwrite] [--json]\n"
    "\n"
    "Writes <folder> as one GGUF v3 file that llama.cpp loads (docs/GGUF.md), atomically.\n"
    "A folder made with `llmq quantize --gguf-type T` is copied block for block (its codes and\n"
    "scales are never re-rounded); a float folder is written as f32 (default), f16, or with\n"
    "--type as plain round-to-nearest on llama.cpp's grids. A folder quantized in llmq's own\n"
    "layout is refused: quantize the float model with --gguf-type instead.\n"
    "Architectures: Llama and Mistral (llama.cpp arch 'llama') with a SentencePiece tokenizer.model.\n"
    "\n"
    "  --type T      f32, f16, or a GGUF type for a float folder (see llmq quantize --help)  [f32]\n"
    "  --name N      general.name                                                    [folder name]\n"
    "  --overwrite   replace an existing GGUF file at <out.gguf>\n"
    "  --json        one JSON object on stdout: output, bytes, architecture, type, tensor_types, fallbacks\n";
}  // namespace

int run_export(int argc, char** argv) {
  if (argc >= 3 && std::string(argv[2]) == "--help") {
    std::fputs(kHelp, stdout);
    return 0;
  }
  if (argc < 3 || std::string(argv[2]) != "gguf")
    return usage_error("expected 'export gguf <folder> <out.gguf>' (the only export format so far)", "export");
  auto args = Args::Parse(argc, argv, 3, {"json", "help", "overwrite"}, {"type", "name"});
  if (!args.ok()) return usage_error(args.status().message(), "export");
  if (args->has("help")) {
    std::fputs(kHelp, stdout);
    return 0;
  }
  if (args->positional().size() != 2) return usage_error("expected <folder> <out.gguf>", "export");
  GgufExportOptions o;
  o.type = args->get("type", "");
  o.name = args->get("name", "");
  o.overwrite = args->has("overwrite");
  std::fprintf(stderr, "llmq export gguf: %s -> %s\n", args->positional()[0].c_str(), args->positional()[1].c_str());
  auto r = export_gguf(args->positional()[0], args->positional()[1], o);
  if (!r.ok()) {
    if (r.status().code() == StatusCode::kInvalidArgument) return usage_error(r.status().message(), "export");
    return fail(r.status());
  }
  for (const std::string& w : r->warnings) std::fprintf(stderr, "llmq export gguf: warning: %s\n", w.c_str());
  if (args->has("json")) {
    print_json(r->ToJson());
    return 0;
  }
  std::printf("wrote %s: %s, %llu bytes, %zu tensors", r->output.c_str(), r->type.c_str(),
              (unsigned long long)r->bytes, r->tensor_types.size());
  if (!r->fallbacks.empty()) std::printf(", %zu fell back to another type", r->fallbacks.size());
  std::printf("\n");
  return 0;
}

}  // namespace llmq::cli
