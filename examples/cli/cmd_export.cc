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
const char* kHfHelp =
    "Usage: llmq export hf <folder> <out-folder> --format gptq|awq|compressed-tensors\n"
    "                      [--checkpoint-format gptq|gptq_v2] [--max-shard-mb N] [--overwrite [--force]] [--json]\n"
    "\n"
    "Writes a quantized folder for GPU engines (vLLM, TGI, transformers, SGLang), atomically\n"
    "(docs/HF_FORMATS.md). The codes and scales move into the format's layout unchanged; every\n"
    "other tensor is copied in its stored dtype, tokenizer files beside them.\n"
    "  gptq                AutoGPTQ/GPTQModel: qweight, qzeros, scales, g_idx; 2/3/4/8 bits; act-order\n"
    "                      as desc_act with the group index; config.json + quantize_config.json\n"
    "  awq                 AutoAWQ GEMM: 4-bit, zero points, groups (no act-order, no per-channel)\n"
    "  compressed-tensors  llm-compressor pack-quantized: weight_packed, weight_scale, weight_zero_point\n"
    "A folder the format cannot express (GGUF grids, SpQR/AdpQ outliers, bilevel or fp32 scales,\n"
    "W8A8, different bits per module) is refused with what it holds that the format lacks.\n"
    "GPTQ, AWQ and compressed-tensors folders are read by every llmq command directly.\n"
    "\n"
    "  --format F              gptq, awq or compressed-tensors                       (required)\n"
    "  --checkpoint-format C   gptq: 'gptq' (v1 zero points, stored minus one; every GPTQ reader\n"
    "                          takes it) or 'gptq_v2' (zero points as they are)        [gptq]\n"
    "  --max-shard-mb N        safetensors shard size in MiB (an index beyond one)      [2048]\n"
    "  --overwrite             replace an output folder llmq wrote; with --force, any folder\n"
    "  --json                  one JSON object on stdout: output, format, checkpoint_format, bits,\n"
    "                          group_size, desc_act, quantized_modules, files, bytes, seconds\n";

int run_export_hf(int argc, char** argv) {
  auto args = Args::Parse(argc, argv, 3, {"json", "help", "overwrite", "force"},
                          {"format", "checkpoint-format", "max-shard-mb"});
  if (!args.ok()) return usage_error(args.status().message(), "export");
  if (args->has("help")) {
    std::fputs(kHfHelp, stdout);
    return 0;
  }
  if (args->positional().size() != 2) return usage_error("expected <folder> <out-folder>", "export");
  if (!args->has("format")) return usage_error("--format is required (gptq, awq or compressed-tensors)", "export");
  HfExportOptions o;
  o.format = args->get("format", "");
  o.checkpoint_format = args->get("checkpoint-format", "gptq");
  auto shard = args->get_int("max-shard-mb", 2048);
  if (!shard.ok() || *shard <= 0) return usage_error("--max-shard-mb must be a positive integer", "export");
  o.max_shard_bytes = uint64_t(*shard) << 20;
  o.overwrite = args->has("overwrite");
  o.force = args->has("force");
  std::fprintf(stderr, "llmq export hf (%s): %s -> %s\n", o.format.c_str(), args->positional()[0].c_str(),
               args->positional()[1].c_str());
  auto r = export_hf(args->positional()[0], args->positional()[1], o);
  if (!r.ok()) return fail(r.status());  // exit 1, as quantize: the input or output, not the command line
  if (args->has("json")) {
    print_json(r->ToJson());
    return 0;
  }
  std::printf("wrote %s: %s (%s), %d-bit, group %d%s, %lld quantized modules, %zu files, %llu bytes\n",
              r->output.c_str(), r->format.c_str(), r->checkpoint_format.c_str(), r->bits, r->group_size,
              r->desc_act ? ", desc_act" : "", (long long)r->quantized_modules, r->files.size(),
              (unsigned long long)r->bytes);
  return 0;
}

}  // namespace

int run_export(int argc, char** argv) {
  if (argc >= 3 && std::string(argv[2]) == "--help") {
    std::fputs(kHelp, stdout);
    std::fputs("\n", stdout);
    std::fputs(kHfHelp, stdout);
    return 0;
  }
  if (argc >= 3 && std::string(argv[2]) == "hf") return run_export_hf(argc, argv);
  if (argc < 3 || std::string(argv[2]) != "gguf")
    return usage_error("expected 'export gguf <folder> <out.gguf>' or 'export hf <folder> <out-folder> --format F'",
                       "export");
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
