// llmq quantize: a Hugging Face checkpoint in, an llmq quantized folder out.
#include <llmq/llmq.h>

#include <cstdio>

#include "args.h"
#include "commands.h"

namespace llmq::cli {

namespace {
const char* kHelp =
    "Usage: llmq quantize --method rtn --bits {2,3,4,8} [--group-size G] [--sym|--asym]\n"
    "                     [--mse] [--scale-dtype fp16|fp32] [--overwrite] [--json] <in-folder> <out-folder>\n"
    "\n"
    "Quantizes every decoder linear (Llama: q k v o gate up down; OPT: q k v out_proj fc1 fc2)\n"
    "of the float checkpoint in <in-folder> and writes the llmq format (docs/FORMAT.md) to\n"
    "<out-folder>, atomically: on any error nothing is left there. Embeddings, norms, biases\n"
    "and the LM head are copied unchanged. A JSON report is written to <out-folder>/llmq_report.json.\n"
    "\n"
    "  --method M         rtn (round to nearest)                                    [rtn]\n"
    "  --bits B           2, 3, 4 or 8                                              [4]\n"
    "  --group-size G     input columns per scale; 0 = one scale per output channel [128]\n"
    "  --sym / --asym     symmetric (no zero points) or zero-point quantization     [--sym]\n"
    "  --mse              search a shrunk range per group minimizing |q(w)-w|^2.4\n"
    "  --scale-dtype T    fp16 or fp32 scales                                       [fp16]\n"
    "  --max-shard-mb N   output shard size in MiB                                  [2048]\n"
    "  --overwrite        replace a non-empty <out-folder>\n"
    "  --json             print the report (one JSON object) on stdout\n";
}  // namespace

int run_quantize(int argc, char** argv) {
  auto args = Args::Parse(argc, argv, 2, {"json", "help", "sym", "asym", "mse", "overwrite"},
                          {"method", "bits", "group-size", "scale-dtype", "max-shard-mb"});
  if (!args.ok()) return usage_error(args.status().message(), "quantize");
  if (args->has("help")) {
    std::fputs(kHelp, stdout);
    return 0;
  }
  if (args->positional().size() != 2) return usage_error("expected <in-folder> <out-folder>", "quantize");
  if (args->has("sym") && args->has("asym")) return usage_error("--sym and --asym exclude each other", "quantize");
  QuantizeOptions opt;
  opt.method = args->get("method", "rtn");
  auto bits = args->get_int("bits", 4);
  auto group = args->get_int("group-size", 128);
  auto shard = args->get_int("max-shard-mb", 2048);
  if (!bits.ok()) return usage_error(bits.status().message(), "quantize");
  if (!group.ok()) return usage_error(group.status().message(), "quantize");
  if (!shard.ok() || *shard <= 0) return usage_error("--max-shard-mb expects a positive integer", "quantize");
  opt.spec.bits = int(*bits);
  opt.spec.group_size = int(*group);
  opt.spec.symmetric = !args->has("asym");
  opt.spec.mse_search = args->has("mse");
  const std::string sd = args->get("scale-dtype", "fp16");
  if (sd != "fp16" && sd != "fp32") return usage_error("--scale-dtype must be fp16 or fp32", "quantize");
  opt.spec.scale_dtype = sd == "fp16" ? ScaleDType::kF16 : ScaleDType::kF32;
  if (Status st = opt.spec.Validate(); !st.ok()) return usage_error(st.message(), "quantize");
  opt.overwrite = args->has("overwrite");
  opt.max_shard_bytes = uint64_t(*shard) << 20;
  ProgressPrinter bar("quantize");
  opt.progress = [&](const Progress& p) { bar.Update(p.done, p.total, p.item, p.elapsed_s); };

  std::fprintf(stderr, "llmq quantize: %s %s -> %s\n", opt.spec.ToString().c_str(), args->positional()[0].c_str(),
               args->positional()[1].c_str());
  auto report = quantize_checkpoint(args->positional()[0], args->positional()[1], opt);
  bar.Finish();
  if (!report.ok()) return fail(report.status());
  if (args->has("json")) {
    std::printf("%s\n", report->ToJson().c_str());
    return 0;
  }
  double worst = 0;
  std::string worst_name;
  for (const auto& l : report->layers)
    if (l.relative_error > worst) worst = l.relative_error, worst_name = l.module;
  std::printf("quantized %zu linears with %s (%s) in %.2f s, peak memory %.1f MiB\n", report->layers.size(),
              report->method.c_str(), report->spec.ToString().c_str(), report->seconds,
              double(report->peak_rss_bytes) / (1 << 20));
  std::printf("bits per weight %.3f; size %llu -> %llu bytes; worst relative error %.4f (%s)\n",
              report->bits_per_weight, (unsigned long long)report->input_bytes,
              (unsigned long long)report->output_bytes, worst, worst_name.c_str());
  std::printf("wrote %s (report: %s/llmq_report.json)\n", report->output.c_str(), report->output.c_str());
  return 0;
}

}  // namespace llmq::cli
