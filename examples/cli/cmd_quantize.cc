// llmq quantize: a Hugging Face checkpoint in, an llmq quantized folder out.
#include <llmq/llmq.h>

#include <unistd.h>

#include <atomic>
#include <csignal>
#include <stdexcept>
#include <cstdio>

#include "args.h"
#include "commands.h"

namespace llmq::cli {

namespace {

std::atomic<bool> g_interrupted{false};

// First Ctrl-C: stop after the current calibration window, keeping finished blocks for --resume.
// Second Ctrl-C: the default action (terminate).
void on_sigint(int) {
  g_interrupted = true;
  static const char msg[] = "\nllmq quantize: interrupted, stopping (Ctrl-C again to kill)\n";
  ssize_t ignored = ::write(2, msg, sizeof msg - 1);
  (void)ignored;
  std::signal(SIGINT, SIG_DFL);
}

const char* kHelp =
    "Usage: llmq quantize --method {rtn,gptq,awq,awq+gptq,smoothquant,adpq,spqr,oac,spqr+oac,llm.int8,billm,billm+oac}\n"
    "                     --bits {1,2,3,4,8} [--group-size G] [--sym|--asym]\n"
    "                     [--mse] [--scale-dtype fp16|fp32] [--overwrite] [--json] <in-folder> <out-folder>\n"
    "       llmq quantize --method {rtn,gptq,awq,awq+gptq,oac} --gguf-type T [--calib <data>] ... <in> <out>\n"
    "       llmq quantize --method gptq --calib <data> [--nsamples 128] [--seq-len 2048] [--seed 0]\n"
    "                     [--damp 0.01] [--act-order] [--static-groups] [--true-sequential] [--resume] ...\n"
    "\n"
    "Quantizes every decoder linear (Llama: q k v o gate up down; OPT: q k v out_proj fc1 fc2)\n"
    "of the float checkpoint in <in-folder> and writes the llmq format (docs/FORMAT.md) to\n"
    "<out-folder>, atomically: on any error nothing is left there. Embeddings, norms, biases\n"
    "and the LM head are copied unchanged. A JSON report is written to <out-folder>/llmq_report.json.\n"
    "\n"
    "  --method M         rtn (round to nearest), gptq (Hessian-calibrated),        [rtn]\n"
    "                     awq (activation-aware scales + clipping, then RTN), awq+gptq (the same, then GPTQ),\n"
    "                     smoothquant (W8A8, smoothing folded into the norms; defaults to --bits 8 --group-size 0),\n"
    "                     adpq (zero-shot, no data: adaptive-LASSO outliers in their code slots with a second\n"
    "                     scale per group, or in fp16; RTN for the rest),\n"
    "                     spqr (GPTQ + groups of 16 + 3-bit bilevel scales + Hessian-weighted fp16 outliers;\n"
    "                     defaults to --asym --group-size 16 --scale-bits 3 --zero-bits 3 --damp 1\n"
    "                     --outlier-threshold 0.2 and the leave-one-out outlier pass),\n"
    "                     oac (GPTQ with output-adaptive Hessians from a backward pass of the calibration\n"
    "                     text's cross-entropy, per block; keeps the float weights of the blocks not yet\n"
    "                     quantized in memory), spqr+oac (SpQR with those Hessians),\n"
    "                     llm.int8 (int8 per-channel weights, int8 activations per token with LLM.int8's\n"
    "                     decomposition: input columns where a token has |x| > 6 run in fp32; found per\n"
    "                     call, or with --calib fixed per linear with their weights kept exact),\n"
    "                     billm (1-bit: per block of --group-size columns the most salient columns as two\n"
    "                     residual binary bases, the rest split by magnitude into two binarized parts,\n"
    "                     GPTQ-style compensation; 2-bit lookup codes + 8 fp16 levels per row and block),\n"
    "                     billm+oac (BiLLM with OAC's output-adaptive Hessians)\n"
    "  --gguf-type T      quantize for llama.cpp (docs/GGUF.md; then `llmq export gguf`): every linear,\n"
    "                     the embeddings and the head get the ggml type llama.cpp's quantizer gives\n"
    "                     them for T, with codes and scales exactly representable in its blocks:\n"
    "                     q4_0 q4_1 q5_0 q5_1 q8_0 q2_k q3_k_s q3_k_m q3_k_l q4_k_s q4_k_m q5_k_s q5_k_m q6_k,\n"
    "                     or q3_k / q4_k / q5_k for every tensor (--pure). Replaces --bits/--group-size/--sym.\n"
    "  --bits B           2, 3, 4 or 8; 1 with --asym (a 1-bit min/max grid)        [4; billm: 2-bit lookup codes]\n"
    "  --group-size G     input columns per scale; 0 = one scale per output channel [128]\n"
    "  --sym / --asym     symmetric (no zero points) or zero-point quantization  [--sym; spqr: --asym]\n"
    "  --mse              search a shrunk range per group minimizing |q(w)-w|^2.4\n"
    "  --scale-bits B     bilevel scales: each group column's scales quantized to B bits in chunks\n"
    "                     of --scale-group-rows rows (16) with an fp16 (min, step) each; 0 = fp16 scales  [0; spqr: 3]\n"
    "  --zero-bits B      bilevel zero points (with --asym): each group's zero kept real-valued (-min/scale)\n"
    "                     and each group column's zeros quantized to B bits in the same chunks; 0 = one\n"
    "                     integer zero per byte                                     [0; spqr: 3]\n"
    "  --scale-dtype T    fp16 or fp32 scales                                       [fp16]\n"
    "  --max-shard-mb N   output shard size in MiB                                  [2048]\n"
    "\n"
    "Calibration (all but rtn and adpq; optional for llm.int8; the model runs block by block, one block in memory):\n"
    "  --calib PATH       text file, folder of .txt, .jsonl {\"text\"} rows, or token ids\n"
    "                     (.json array of windows or ids, .bin little-endian int32)\n"
    "  --nsamples N       calibration windows                                       [128]\n"
    "  --seq-len N        tokens per window (capped at the model's context)    [2048; awq: 512]\n"
    "  --seed S           window sampling seed                                      [0]\n"
    "  --damp D           dampening, fraction of mean(diag H)                       [0.01]\n"
    "  --block-size N     GPTQ lazy-batch width (speed only)                        [128]\n"
    "  --act-order        quantize columns by decreasing Hessian diagonal\n"
    "  --static-groups    group scales from the original weights (with --act-order: no g_idx)\n"
    "  --true-sequential  q/k/v -> o -> gate/up -> down inside a block, Hessians re-collected\n"
    "  --act-dtype T      calibration activations kept as fp32 or fp16              [fp32]\n"
    "  --resume           continue an interrupted run from its finished blocks\n"
    "  --awq-grid N       AWQ scale search: alpha in {0, 1/N, ..., (N-1)/N}          [20]\n"
    "  --awq-no-duo       AWQ scales mean|x|^alpha only (llm-awq) instead of AutoAWQ's duo scaling\n"
    "  --awq-no-clip      skip AWQ's clip search\n"
    "  --awq-no-gqa-vo    skip the v -> o site under grouped-query attention (the reference does)\n"
    "OAC (oac, spqr+oac):\n"
    "  --oac-grad G       sequence: H = sum_n G_n^T G_n, G_n = sum_t delta_t x_t^T; token: H = sum_t |delta_t|^2 x_t x_t^T  [sequence]\n"
    "  --oac-once         gradients of the float model (earlier blocks not quantized) instead of block by block\n"
    "  --oac-gradient-memory MIB  with --oac-once: keep each window's gradients at every block's output\n"
    "                     from one backward pass (time linear in depth) when they fit; 0: every block\n"
    "                     runs its own backward through the later blocks (quadratic)  [4096]\n"
    "SpQR:\n"
    "  --outlier-threshold T  keep weights with ((w-q)/U_jj)^2 > T * mean_j var(W_j)/U_jj^2 in fp16  [0.2]\n"
    "  --target-bits X    per linear, the threshold whose bits per weight (outliers included) come closest to X\n"
    "Bit budgets (rtn, gptq, awq, awq+gptq, oac, adpq):\n"
    "  --target-bits X    each linear gets a spec from the menu so that all linears together write at most X\n"
    "                     bits per weight with the least summed estimated loss (an exact knapsack over the linears)\n"
    "  --bit-sensitivity S  weight (||W-Q||^2, no data), hessian (tr(dW H dW^T) of the float model's inputs; needs\n"
    "                     --calib), oac (the same with OAC's output-adaptive H; best measured)  [oac with --calib, else weight]\n"
    "  --bit-menu M       bits:group pairs, e.g. 2:64,3:128,4:128      [2,3,4 x 32,64,128 and 8:128]\n"
    "                     with --gguf-type: ggml types, e.g. q3_k,q4_k,q6_k (the budget replaces the recipe\n"
    "                     for the linears; each picks among the types whose blocks fit its rows)  [q2_k .. q8_0]\n"
    "  --bit-estimate E   rtn (Q = round to nearest at each spec) or gptq (Q = GPTQ at each spec with the\n"
    "                     sensitivity's H: the error GPTQ will make; hessian or oac sensitivity)  [rtn]\n"
    "  --simplified-outliers  fit each group to all its weights (SpQR's simplified_outliers) instead of\n"
    "                     leaving its likely outliers out first (the leave-one-out pass)\n"
    "AdpQ (no calibration data):\n"
    "  --outlier-fraction F  share of weights kept as outliers (per scope)          [0.05]\n"
    "  --adpq-storage S   slot: outliers keep their code slots, read with a second fp16 scale per group\n"
    "                     (positions as per-row counts + 1- or 2-byte columns); fp16: fp16 values  [slot]\n"
    "  --adpq-lambda L    fixed threshold instead: outlier iff |w|^(1+gamma) > L\n"
    "  --adpq-gamma G     adaptive-LASSO exponent                                   [1]\n"
    "  --adpq-scope S     tensor, row or group: where the share or lambda applies   [tensor]\n"
    "BiLLM (billm, billm+oac):\n"
    "  --salient-columns N  search 1..N salient columns per block                     [49]\n"
    "  --billm-weighted-search  weight each column's error by 1/U_cc^2 (GPTQ's loss) in the searches\n"
    "                     instead of the reference's plain squared error\n"
    "  --alpha A          smoothquant migration strength, s = max|X|^A / max|W|^(1-A)  [0.5]\n"
    "  --int8-activations mark the output W8A8/W4A8: the runtime quantizes activations to int8 per token\n"
    "Activation outliers (outputs with int8 activations: llm.int8, smoothquant, --int8-activations):\n"
    "  --outlier-threshold T  input columns where a token has |x| > T leave the int8 scale   [llm.int8: 6]\n"
    "  --integer-outliers keep those columns as two int8 tiles (hi*128 + lo) on the same per-token\n"
    "                     grid instead of fp32: integer products only (Ghaffari et al.)      [T: 6]\n"
    "  --overwrite        replace a non-empty <out-folder> that llmq wrote (it holds llmq_report.json)\n"
    "  --force            replace a non-empty <out-folder> whatever it holds (never the input or its parent)\n"
    "  --json             print the report (one JSON object) on stdout\n";
}  // namespace

int run_quantize(int argc, char** argv) {
  auto args = Args::Parse(argc, argv, 2,
                          {"json", "help", "sym", "asym", "mse", "overwrite", "act-order", "static-groups",
                           "true-sequential", "resume", "int8-activations", "awq-no-duo", "awq-no-clip",
                           "awq-no-gqa-vo", "oac-once", "force", "integer-outliers", "simplified-outliers",
                           "billm-weighted-search"},
                          {"method", "bits", "group-size", "scale-dtype", "max-shard-mb", "calib", "nsamples",
                           "seq-len", "seed", "damp", "block-size", "act-dtype", "alpha", "awq-grid",
                           "outlier-fraction", "adpq-lambda", "adpq-gamma", "adpq-scope", "adpq-storage",
                           "scale-bits", "scale-group-rows", "zero-bits", "outlier-threshold", "target-bits", "oac-grad",
                           "oac-gradient-memory", "gguf-type", "salient-columns", "bit-sensitivity", "bit-menu", "bit-estimate"});
  if (!args.ok()) return usage_error(args.status().message(), "quantize");
  if (args->has("help")) {
    std::fputs(kHelp, stdout);
    return 0;
  }
  if (args->positional().size() != 2) return usage_error("expected <in-folder> <out-folder>", "quantize");
  if (args->has("sym") && args->has("asym")) return usage_error("--sym and --asym exclude each other", "quantize");
  // The method's defaults come from the library; flags override them.
  auto defaults = QuantizeOptions::ForMethod(args->get("method", "rtn"));
  if (!defaults.ok()) return usage_error(defaults.status().message(), "quantize");
  QuantizeOptions opt = *defaults;
  // Which flags the method takes comes from the library's method table.
  auto takes = [&](MethodOption o) { return method_takes(opt.method, o); };
  // "--x applies to --method a and b only", the methods from the table.
  auto only_for = [&](const std::string& flags, MethodOption o) {
    std::string list;
    const std::vector<std::string> names = methods_taking(o);
    for (size_t i = 0; i < names.size(); ++i) list += (i == 0 ? "" : i + 1 == names.size() ? " and " : ", ") + names[i];
    return usage_error(flags + " applies to --method " + list + " only", "quantize");
  };
  const bool spqr = takes(MethodOption::kOutliers);
  auto bits = args->get_int("bits", opt.spec.bits);
  auto group = args->get_int("group-size", opt.spec.group_size);
  auto scale_bits = args->get_int("scale-bits", opt.spec.scale_bits);
  auto scale_rows = args->get_int("scale-group-rows", opt.spec.scale_group_rows);
  auto zero_bits = args->get_int("zero-bits", opt.spec.zero_bits);
  if (!scale_bits.ok() || !scale_rows.ok() || *scale_rows < 1 || !zero_bits.ok())
    return usage_error("--scale-bits, --zero-bits and --scale-group-rows expect integers (rows >= 1)", "quantize");
  auto shard = args->get_int("max-shard-mb", 2048);
  if (!bits.ok()) return usage_error(bits.status().message(), "quantize");
  if (!group.ok()) return usage_error(group.status().message(), "quantize");
  if (!shard.ok() || *shard <= 0) return usage_error("--max-shard-mb expects a positive integer", "quantize");
  if (opt.spec.lookup)  // billm: the layout is the method's
    for (const char* o : {"bits", "sym", "asym", "mse", "scale-bits", "scale-group-rows", "zero-bits", "scale-dtype"})
      if (args->has(o))
        return usage_error(std::string("--") + o + " does not apply to --method " + opt.method +
                               " (it writes 2-bit lookup codes: a sign and a split or residual bit per weight; "
                               "--group-size sets its block)",
                           "quantize");
  opt.spec.bits = int(*bits);
  opt.spec.group_size = int(*group);
  if (args->has("sym") || args->has("asym")) opt.spec.symmetric = args->has("sym");
  opt.spec.mse_search = args->has("mse");
  opt.spec.scale_bits = int(*scale_bits);
  opt.spec.scale_group_rows = int(*scale_rows);
  opt.spec.zero_bits = int(*zero_bits);
  if (args->has("zero-bits") && opt.spec.symmetric)
    return usage_error("--zero-bits quantizes zero points: add --asym (symmetric codes have none)", "quantize");
  const std::string sd = args->get("scale-dtype", "fp16");
  if (sd != "fp16" && sd != "fp32") return usage_error("--scale-dtype must be fp16 or fp32", "quantize");
  opt.spec.scale_dtype = sd == "fp16" ? ScaleDType::kF16 : ScaleDType::kF32;
  if (Status st = opt.spec.Validate(); !st.ok()) return usage_error(st.message(), "quantize");
  if (args->has("gguf-type")) {
    for (const char* o : {"bits", "group-size", "sym", "asym", "mse", "scale-bits", "scale-group-rows", "zero-bits", "scale-dtype"})
      if (args->has(o))
        return usage_error(std::string("--") + o + " does not apply with --gguf-type (the ggml type fixes the layout)",
                           "quantize");
    if (!takes(MethodOption::kGgmlGrid)) return only_for("--gguf-type", MethodOption::kGgmlGrid);
    opt.gguf_type = args->get("gguf-type", "");
  }
  const std::string grad = args->get("oac-grad", "sequence");
  if (grad != "sequence" && grad != "token") return usage_error("--oac-grad must be sequence or token", "quantize");
  if (!takes(MethodOption::kOac))
    for (const char* o : {"oac-grad", "oac-once", "oac-gradient-memory"})
      if (args->has(o)) return only_for(std::string("--") + o, MethodOption::kOac);
  opt.oac.per_token = grad == "token";
  opt.oac.once = args->has("oac-once");
  auto grad_mib = args->get_int("oac-gradient-memory", opt.oac.gradient_memory_bytes >> 20);
  if (!grad_mib.ok() || *grad_mib < 0 || *grad_mib > (int64_t(1) << 40))
    return usage_error("--oac-gradient-memory expects MiB >= 0", "quantize");
  opt.oac.gradient_memory_bytes = int64_t(*grad_mib) << 20;
  // --outlier-threshold: SpQR's weight outliers, or for every other method the activation outliers.
  const double activation_default = opt.activation_outliers.threshold > 0.0 ? opt.activation_outliers.threshold
                                    : args->has("integer-outliers")        ? kLlmInt8Threshold
                                                                           : 0.0;
  auto threshold = args->get_double("outlier-threshold", spqr ? opt.gptq.outlier_threshold : activation_default);
  auto target = args->get_double("target-bits", 0.0);
  if (!threshold.ok() || !std::isfinite(*threshold) || !(*threshold > 0.0 || (!spqr && !args->has("outlier-threshold"))))
    return usage_error("--outlier-threshold expects a positive number", "quantize");
  if (!target.ok() || !(*target >= 0.0)) return usage_error("--target-bits expects a positive number", "quantize");
  const bool bit_budget = takes(MethodOption::kBitBudget) && args->has("target-bits");
  if (!spqr && !bit_budget && args->has("target-bits"))
    return usage_error("--target-bits applies to --method spqr and spqr+oac (outlier budget) and to rtn, gptq, awq, "
                       "awq+gptq, oac and adpq (a bit budget over the linears) only",
                       "quantize");
  if (!bit_budget)
    for (const char* o : {"bit-sensitivity", "bit-menu", "bit-estimate"})
      if (args->has(o)) return usage_error(std::string("--") + o + " goes with --target-bits (a bit budget)", "quantize");
  const std::string sensitivity = args->get("bit-sensitivity", "default");
  if (sensitivity == "weight") opt.bit_sensitivity = BitSensitivity::kWeight;
  else if (sensitivity == "hessian") opt.bit_sensitivity = BitSensitivity::kHessian;
  else if (sensitivity == "oac") opt.bit_sensitivity = BitSensitivity::kOutputAdaptive;
  else if (sensitivity != "default") return usage_error("--bit-sensitivity must be weight, hessian or oac", "quantize");
  const std::string estimate = args->get("bit-estimate", "rtn");
  if (estimate == "gptq") opt.bit_estimate = BitEstimate::kGptq;
  else if (estimate != "rtn") return usage_error("--bit-estimate must be rtn or gptq", "quantize");
  if (args->has("bit-menu")) {  // "2:64,3:128,8:128": bits:group pairs on the base spec
    const std::string menu = args->get("bit-menu");
    size_t pos = 0;
    while (pos <= menu.size()) {
      const size_t end = std::min(menu.find(',', pos), menu.size());
      const std::string item = menu.substr(pos, end - pos);
      const size_t colon = item.find(':');
      QuantSpec s = opt.spec;
      if (colon == std::string::npos) {  // a ggml type, for a budget with --gguf-type
        auto t = parse_ggml_type(item);
        if (!t.ok())
          return usage_error("--bit-menu expects bits:group pairs (e.g. 2:64,3:128,4:128) or, with --gguf-type, ggml "
                             "types (e.g. q3_k,q4_k,q6_k), got '" + item + "'",
                             "quantize");
        opt.bit_menu.push_back(QuantSpec::ForGgml(*t));
        pos = end + 1;
        continue;
      }
      try {
        size_t used = 0;
        s.bits = std::stoi(item.substr(0, colon), &used);
        if (used != colon) throw std::invalid_argument(item);
        s.group_size = std::stoi(item.substr(colon + 1), &used);
        if (used != item.size() - colon - 1) throw std::invalid_argument(item);
      } catch (const std::exception&) {
        return usage_error("--bit-menu expects bits:group pairs separated by commas (e.g. 2:64,3:128,4:128), got '" +
                               item + "'",
                           "quantize");
      }
      opt.bit_menu.push_back(s);
      pos = end + 1;
    }
  }
  if (spqr && args->has("integer-outliers"))
    return usage_error("--integer-outliers is for int8 activations; spqr's --outlier-threshold is about weights", "quantize");
  if (!spqr) {
    opt.activation_outliers.threshold = *threshold;
    opt.activation_outliers.integer = args->has("integer-outliers");
  }
  if (args->has("outlier-threshold") && args->has("target-bits"))
    return usage_error("--outlier-threshold and --target-bits exclude each other", "quantize");
  if (spqr) opt.gptq.outlier_threshold = *threshold;
  if (args->has("simplified-outliers")) {
    if (!spqr) return only_for("--simplified-outliers", MethodOption::kOutliers);
    opt.gptq.outlier_leave_one_out = false;
  }
  opt.target_bits = *target;
  auto fraction = args->get_double("outlier-fraction", opt.adpq.outlier_fraction);
  auto lambda = args->get_double("adpq-lambda", opt.adpq.lambda);
  auto gamma = args->get_double("adpq-gamma", opt.adpq.gamma);
  const std::string scope = args->get("adpq-scope", "tensor");
  const std::string storage = args->get("adpq-storage", "slot");
  if (storage != "slot" && storage != "fp16") return usage_error("--adpq-storage must be slot or fp16", "quantize");
  if (!fraction.ok() || !(*fraction >= 0.0 && *fraction < 1.0))
    return usage_error("--outlier-fraction expects a number in [0, 1)", "quantize");
  if (!lambda.ok() || (!(*lambda > 0.0) && args->has("adpq-lambda")))
    return usage_error("--adpq-lambda expects a positive number", "quantize");
  if (!gamma.ok() || !(*gamma >= 0.0)) return usage_error("--adpq-gamma expects a non-negative number", "quantize");
  if (scope != "tensor" && scope != "row" && scope != "group")
    return usage_error("--adpq-scope must be tensor, row or group", "quantize");
  if (!takes(MethodOption::kAdpq))
    for (const char* o : {"outlier-fraction", "adpq-lambda", "adpq-gamma", "adpq-scope", "adpq-storage"})
      if (args->has(o)) return only_for(std::string("--") + o, MethodOption::kAdpq);
  if (args->has("adpq-lambda") && args->has("outlier-fraction"))
    return usage_error("--adpq-lambda and --outlier-fraction exclude each other", "quantize");
  opt.adpq.outlier_fraction = *fraction;
  opt.adpq.lambda = *lambda;
  opt.adpq.gamma = *gamma;
  opt.adpq.scope = scope == "tensor" ? AdpqScope::kTensor : scope == "row" ? AdpqScope::kRow : AdpqScope::kGroup;
  opt.adpq.storage = storage == "slot" ? AdpqStorage::kInSlot : AdpqStorage::kFp16;
  auto awq_grid = args->get_int("awq-grid", opt.awq.grid);
  if (!awq_grid.ok() || *awq_grid < 1 || *awq_grid > 1000)
    return usage_error("--awq-grid expects an integer in 1..1000", "quantize");
  if (!takes(MethodOption::kAwq))
    for (const char* o : {"awq-grid", "awq-no-duo", "awq-no-clip", "awq-no-gqa-vo"})
      if (args->has(o)) return only_for(std::string("--") + o, MethodOption::kAwq);
  opt.awq.grid = int(*awq_grid);
  opt.awq.duo_scaling = !args->has("awq-no-duo");
  opt.awq.clip = !args->has("awq-no-clip");
  opt.awq.gqa_v_to_o = !args->has("awq-no-gqa-vo");
  auto alpha = args->get_double("alpha", opt.alpha);
  if (!alpha.ok() || !(*alpha >= 0.0 && *alpha <= 1.0)) return usage_error("--alpha expects a number in [0, 1]", "quantize");
  if (args->has("alpha") && !takes(MethodOption::kAlpha)) return only_for("--alpha", MethodOption::kAlpha);
  opt.alpha = *alpha;
  opt.int8_activations = args->has("int8-activations");
  auto salient = args->get_int("salient-columns", opt.billm.max_salient_columns - 1);
  if (!salient.ok() || *salient < 1 || *salient > 100000)
    return usage_error("--salient-columns expects a positive integer", "quantize");
  if (!takes(MethodOption::kBillm))
    for (const char* o : {"salient-columns", "billm-weighted-search"})
      if (args->has(o)) return only_for(std::string("--") + o, MethodOption::kBillm);
  opt.billm.max_salient_columns = int(*salient) + 1;
  opt.billm.hessian_weighted_search = args->has("billm-weighted-search");
  auto nsamples = args->get_int("nsamples", opt.calibration.nsamples);
  auto seq_len = args->get_int("seq-len", opt.calibration.seq_len);
  auto seed = args->get_int("seed", int64_t(opt.calibration.seed));
  auto block = args->get_int("block-size", opt.gptq.block_size);
  auto damp = args->get_double("damp", opt.gptq.damp);
  if (!nsamples.ok() || *nsamples <= 0) return usage_error("--nsamples expects a positive integer", "quantize");
  if (!seq_len.ok() || *seq_len < 2) return usage_error("--seq-len expects an integer >= 2", "quantize");
  if (!seed.ok() || *seed < 0) return usage_error("--seed expects a non-negative integer", "quantize");
  if (!block.ok() || *block <= 0) return usage_error("--block-size expects a positive integer", "quantize");
  if (!damp.ok() || !(*damp > 0.0)) return usage_error("--damp expects a positive number", "quantize");
  const std::string act = args->get("act-dtype", "fp32");
  if (act != "fp32" && act != "fp16") return usage_error("--act-dtype must be fp32 or fp16", "quantize");
  const bool calibrated = takes(MethodOption::kCalibration);
  if (method_needs_calibration(opt.method) && !args->has("calib"))
    return usage_error("--method " + opt.method + " needs --calib <data> (e.g. a text file in the model's domain)",
                       "quantize");
  // A zero-shot method's bit budget may estimate with the calibration data's Hessians.
  const bool budget_calib = takes(MethodOption::kBitBudget) && args->has("target-bits") &&
                            (opt.bit_sensitivity == BitSensitivity::kHessian ||
                             opt.bit_sensitivity == BitSensitivity::kOutputAdaptive);
  if (!calibrated && !budget_calib)
    for (const char* o : {"calib", "nsamples", "seq-len", "seed", "act-dtype", "resume"})
      if (args->has(o))
        return usage_error(std::string("--") + o + " applies to calibrated methods only (" + opt.method +
                               " is zero-shot: it takes no calibration data)",
                           "quantize");
  if (!takes(MethodOption::kGptq))
    for (const char* o : {"damp", "block-size"})
      if (args->has(o)) return only_for(std::string("--") + o, MethodOption::kGptq);
  if (!takes(MethodOption::kActOrder))
    for (const char* o : {"act-order", "static-groups"})
      if (args->has(o)) return only_for(std::string("--") + o, MethodOption::kActOrder);
  if (args->has("true-sequential") && !takes(MethodOption::kTrueSequential))
    return only_for("--true-sequential", MethodOption::kTrueSequential);
  opt.calibration.data = args->get("calib");
  opt.calibration.nsamples = *nsamples;
  opt.calibration.seq_len = *seq_len;
  opt.calibration.seed = uint64_t(*seed);
  opt.calibration.fp16_activations = act == "fp16";
  opt.gptq.damp = *damp;
  opt.gptq.block_size = int(*block);
  opt.gptq.act_order = args->has("act-order");
  opt.gptq.static_groups = args->has("static-groups");
  opt.true_sequential = args->has("true-sequential");
  opt.resume = args->has("resume");
  opt.overwrite = args->has("overwrite") || args->has("force");
  opt.force = args->has("force");
  opt.max_shard_bytes = uint64_t(*shard) << 20;
  if (Status st = opt.Validate(); !st.ok()) return usage_error(st.message(), "quantize");
  // Under mpirun rank 0 speaks for the job; the others only report their own errors.
  const int rank = distributed_rank(), ranks = distributed_size();
  ProgressPrinter bar("quantize");
  if (rank == 0) opt.progress = [&](const Progress& p) { bar.Update(p.done, p.total, p.item, p.elapsed_s); };
  opt.cancel = [] { return g_interrupted.load(); };
  std::signal(SIGINT, on_sigint);

  const std::string layout = opt.gguf_type.empty() ? opt.spec.ToString() : "gguf " + opt.gguf_type;
  if (rank == 0)
    std::fprintf(stderr, "llmq quantize: %s %s %s -> %s%s\n", opt.method.c_str(), layout.c_str(),
                 args->positional()[0].c_str(), args->positional()[1].c_str(),
                 ranks > 1 ? (" (" + std::to_string(ranks) + " MPI ranks)").c_str() : "");
  auto report = quantize_checkpoint(args->positional()[0], args->positional()[1], opt);
  bar.Finish();
  if (!report.ok() && ranks > 1) {
    // The other ranks may be waiting for this one: end them all.
    std::fprintf(stderr, "llmq quantize (rank %d of %d): error: %s\n", rank, ranks, report.status().message().c_str());
    distributed_abort(report.status().code() == StatusCode::kCancelled ? 130 : 1);
  }
  if (!report.ok()) return fail(report.status());
  if (rank != 0) return 0;
  int over = 0;  // linears whose dense part alone exceeds --target-bits: they keep no outliers
  for (const auto& l : report->layers) over += spqr && opt.target_bits > 0 && l.bits_per_weight > opt.target_bits;
  if (over > 0)
    std::fprintf(stderr, "llmq quantize: warning: %d linears exceed --target-bits %.3g even without outliers "
                 "(groups, bilevel scales or act-order's g_idx cost more); their real bits are in the report\n",
                 over, opt.target_bits);
  if (!report->unused_tensors.empty() && !args->has("json"))
    std::fprintf(stderr, "llmq quantize: warning: %zu input tensor(s) are read by no part of the model and were copied "
                 "as they are, e.g. '%s' (the list: unused_tensors in the report)\n",
                 report->unused_tensors.size(), report->unused_tensors[0].c_str());
  if (args->has("json")) {
    print_json(report->ToJson());
    return 0;
  }
  double worst = 0;
  std::string worst_name;
  for (const auto& l : report->layers)
    if (l.relative_error > worst) worst = l.relative_error, worst_name = l.module;
  std::printf("quantized %zu linears with %s (%s) in %.2f s, peak memory %.1f MiB\n", report->layers.size(),
              report->method.c_str(), report->spec.ToString().c_str(), report->seconds,
              double(report->peak_rss_bytes) / (1 << 20));
  if (report->calibrated) {
    double out_err = 0;
    int fallbacks = 0;
    for (const auto& l : report->layers) out_err += l.output_relative_error, fallbacks += l.fell_back_to_rtn;
    std::printf("calibration: %lld windows x %lld tokens; mean output relative error %.4f; %d layer(s) fell back to RTN%s\n",
                (long long)report->calibration.nsamples, (long long)report->calibration.seq_len,
                report->layers.empty() ? 0.0 : out_err / double(report->layers.size()), fallbacks,
                report->calibration.resumed_blocks ? (", " + std::to_string(report->calibration.resumed_blocks) + " block(s) resumed").c_str() : "");
  }
  std::printf("bits per weight %.3f; size %llu -> %llu bytes; worst relative error %.4f (%s)\n",
              report->bits_per_weight, (unsigned long long)report->input_bytes,
              (unsigned long long)report->output_bytes, worst, worst_name.c_str());
  std::printf("wrote %s (report: %s/llmq_report.json)\n", report->output.c_str(), report->output.c_str());
  return 0;
}

}  // namespace llmq::cli
