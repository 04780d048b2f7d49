// llmq eval ppl: perplexity of a float or quantized model on a text file;
// llmq generate: greedy or sampled continuation of a prompt.
#include <llmq/llmq.h>
#include <llmq/model.h>
#include <llmq/tokenizer.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>

#include "args.h"
#include "commands.h"

namespace llmq::cli {

namespace {

const char* kPplHelp =
    "Usage: llmq eval ppl <model-or-quantized-folder> --data <text-file> [--seq-len N] [--max-chunks K] [--json]\n"
    "\n"
    "Perplexity with the protocol of the GPTQ/AWQ/SpQR papers: the whole file is tokenized\n"
    "once with the model's tokenizer and its BOS (if any) in front, cut into consecutive\n"
    "non-overlapping windows of N tokens (full windows only, the first K), each window run\n"
    "from position 0 and scored on its tokens 2..N; perplexity = exp(mean NLL).\n"
    "(For WikiText-2 use the test rows joined with \"\\n\\n\".)\n"
    "\n"
    "  --data FILE       the evaluation text (UTF-8)\n"
    "  --seq-len N       window length                      [model context, at most 2048]\n"
    "  --max-chunks K    evaluate only the first K windows  [all]\n"
    "  --int8-activations  quantized linears take int8 activations per token (W4A8/W8A8 kernels)\n"
    "  --outlier-threshold T  int8 activations with LLM.int8's decomposition: the input columns where\n"
    "                    a token has |x| > T run in fp32 (overrides the folder's own; implies int8)\n"
    "  --integer-outliers  ... or as int8 tiles on the same grid (integer outliers)  [T: 6]\n"
    "  --allow-extrapolation  accept a --seq-len beyond the model's context (max_position_embeddings)\n"
    "  --json            one JSON object on stdout: perplexity, mean_nll, tokens, predictions,\n"
    "                    seq_len, chunks, seconds, tokens_per_second, model, data, quantized,\n"
    "                    int8_activations, kernel_isa, kernels; with outliers activation_outliers\n"
    "                    {threshold, integer, outlier_column_share, layers: {module: share}}\n";

const char* kGenHelp =
    "Usage: llmq generate <model-or-quantized-folder> --prompt TEXT [-n 64] [--temperature 0]\n"
    "                     [--top-k 0] [--seed 0] [--json]\n"
    "\n"
    "Streams the continuation of TEXT (after a BOS) to stdout. Temperature 0 is greedy.\n"
    "\n"
    "  -n, --max-tokens N  tokens to generate (stops early at EOS)     [64]\n"
    "  --temperature T     sampling temperature; 0 = greedy           [0]\n"
    "  --top-k K           sample among the K most likely; 0 = all    [0]\n"
    "  --seed S            sampling seed                              [0]\n"
    "  --fp32-activations  run quantized linears with fp32 activations (exact); by default those\n"
    "                      that can (integer zero points) take int8 activations per token (W4A8/W8A8)\n"
    "  --int8-activations, --outlier-threshold T, --integer-outliers   as in `llmq eval ppl`\n"
    "  --json              print {prompt, text, ids, new_tokens, tokens_per_second (prompt included),\n"
    "                      prompt_tokens, prompt_tokens_per_second, decode_steps, decode_tokens_per_second,\n"
    "                      kernel_isa, kernels (decoding's), prompt_kernels (the prompt's)}\n"
    "                      instead of streaming\n";

Result<std::string> read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::NotFound(path + ": cannot open the text file");
  std::ostringstream ss;
  ss << in.rdbuf();
  if (ss.str().empty()) return Status::InvalidArgument(path + ": the text file is empty");
  return ss.str();
}

// --int8-activations, --outlier-threshold T, --integer-outliers: how the quantized linears take
// their activations. "" or the usage error.
std::string runtime_options(const Args& args, ModelLoadOptions* lo) {
  lo->int8_activations = args.has("int8-activations");
  const bool integer = args.has("integer-outliers");
  auto t = args.get_double("outlier-threshold", integer ? kLlmInt8Threshold : 0.0);
  if (!t.ok() || !std::isfinite(*t) || !(*t > 0.0 || (!args.has("outlier-threshold") && !integer)))
    return "--outlier-threshold expects a positive number";
  lo->activation_outliers.threshold = *t;
  lo->activation_outliers.integer = integer;
  return "";
}

// The decomposition's statistics for --json: mean share of outlier columns per call, per linear.
nlohmann::ordered_json outlier_json(const Model& m) {
  const ActivationOutlierOptions& o = m.activation_outliers();
  nlohmann::ordered_json layers = nlohmann::ordered_json::object();
  double sum = 0;
  const auto stats = m.ActivationOutlierStatistics();
  for (const auto& [module, st] : stats) {
    layers[module] = st.share();
    sum += st.share();
  }
  return {{"threshold", o.threshold}, {"integer", o.integer},
          {"outlier_column_share", stats.empty() ? 0.0 : sum / double(stats.size())}, {"layers", layers}};
}

}  // namespace

int run_eval(int argc, char** argv) {
  if (argc < 3 || std::string(argv[2]) == "--help") {
    std::fputs(kPplHelp, argc < 3 ? stderr : stdout);
    return argc < 3 ? 2 : 0;
  }
  if (std::string(argv[2]) != "ppl") return usage_error("unknown eval task '" + std::string(argv[2]) + "' (available: ppl)", "eval ppl");
  auto args = Args::Parse(argc, argv, 3, {"json", "help", "int8-activations", "integer-outliers", "allow-extrapolation"},
                          {"data", "seq-len", "max-chunks", "outlier-threshold"});
  if (!args.ok()) return usage_error(args.status().message(), "eval ppl");
  if (args->has("help")) {
    std::fputs(kPplHelp, stdout);
    return 0;
  }
  if (args->positional().size() != 1) return usage_error("expected one model folder", "eval ppl");
  if (!args->has("data")) return usage_error("--data <text-file> is required", "eval ppl");
  auto seq = args->get_int("seq-len", 0);
  auto chunks = args->get_int("max-chunks", 0);
  if (!seq.ok() || *seq < 0 || *seq == 1) return usage_error("--seq-len expects an integer >= 2", "eval ppl");
  if (!chunks.ok() || *chunks < 0) return usage_error("--max-chunks expects a non-negative integer", "eval ppl");
  const std::string folder = args->positional()[0], data = args->get("data");

  auto text = read_text(data);
  if (!text.ok()) return fail(text.status());
  ModelLoadOptions lo;
  if (std::string e = runtime_options(*args, &lo); !e.empty()) return usage_error(e, "eval ppl");
  auto model = Model::Load(folder, lo);
  if (!model.ok()) return fail(model.status());
  const int64_t context = (*model)->config().max_position_embeddings;
  if (context > 0 && *seq > context && !args->has("allow-extrapolation"))
    return usage_error("--seq-len " + std::to_string(*seq) + " exceeds the model's context of " + std::to_string(context) +
                           " positions (max_position_embeddings in config.json); pass --allow-extrapolation to evaluate "
                           "beyond it anyway",
                       "eval ppl");
  auto tok = Tokenizer::Open(folder);
  if (!tok.ok()) return fail(tok.status());
  std::fprintf(stderr, "llmq eval ppl: tokenizing %s (%zu bytes)\n", data.c_str(), text->size());
  auto ids = (*tok)->Encode(*text);
  if (!ids.ok()) return fail(ids.status());
  // One tokenization with the tokenizer's own prefix (BOS for Llama, </s> for OPT, none for GPT-2 / Qwen2).
  const std::vector<int32_t> prefix = (*tok)->prefix_ids();
  ids->insert(ids->begin(), prefix.begin(), prefix.end());
  PerplexityOptions opt;
  opt.seq_len = *seq;
  opt.max_chunks = *chunks;
  ProgressPrinter bar("ppl");
  opt.progress = [&](const Progress& p) { bar.Update(p.done, p.total, p.item, p.elapsed_s); };
  auto r = evaluate_perplexity(**model, *ids, opt);
  bar.Finish();
  if (!r.ok()) return fail(r.status().WithContext(data));
  if (args->has("json")) {
    nlohmann::ordered_json j = {{"perplexity", r->perplexity}, {"mean_nll", r->mean_nll}, {"tokens", r->tokens},
                                {"predictions", r->predictions}, {"seq_len", r->seq_len}, {"chunks", r->chunks},
                                {"seconds", r->seconds}, {"tokens_per_second", r->tokens_per_second},
                                {"model", folder}, {"data", data},
                                {"quantized", (*model)->checkpoint().is_quantized()},
                                {"int8_activations", (*model)->int8_activations()},
                                {"kernel_isa", isa_name(active_isa())},
                                // the quantized kernels each window's forward pass runs, with their linears
                                {"kernels", (*model)->QuantizedKernels(r->seq_len)}};
    if ((*model)->activation_outliers().enabled()) j["activation_outliers"] = outlier_json(**model);
    print_json(j);
    return 0;
  }
  std::printf("perplexity %.6f (mean NLL %.6f) over %lld predictions: %lld windows of %lld tokens (text: %lld tokens)\n",
              r->perplexity, r->mean_nll, (long long)r->predictions, (long long)r->chunks, (long long)r->seq_len,
              (long long)r->tokens);
  std::printf("%.2f s, %.0f tokens/s\n", r->seconds, r->tokens_per_second);
  return 0;
}

int run_generate(int argc, char** argv) {
  auto args = Args::Parse(argc, argv, 2, {"json", "help", "int8-activations", "integer-outliers", "fp32-activations"},
                          {"prompt", "n", "max-tokens", "temperature", "top-k", "seed", "outlier-threshold"});
  if (!args.ok()) return usage_error(args.status().message(), "generate");
  if (args->has("help")) {
    std::fputs(kGenHelp, stdout);
    return 0;
  }
  if (args->positional().size() != 1) return usage_error("expected one model folder", "generate");
  auto n = args->has("n") ? args->get_int("n", 64) : args->get_int("max-tokens", 64);
  auto temp = args->get_double("temperature", 0.0);
  auto topk = args->get_int("top-k", 0);
  auto seed = args->get_int("seed", 0);
  if (!n.ok() || *n <= 0) return usage_error("-n expects a positive integer", "generate");
  if (!temp.ok() || !(*temp >= 0) || !std::isfinite(*temp))
    return usage_error("--temperature expects a finite number >= 0", "generate");
  if (!topk.ok() || *topk < 0) return usage_error("--top-k expects a non-negative integer", "generate");
  if (!seed.ok()) return usage_error(seed.status().message(), "generate");
  const std::string folder = args->positional()[0], prompt = args->get("prompt");
  ModelLoadOptions lo;
  if (std::string e = runtime_options(*args, &lo); !e.empty()) return usage_error(e, "generate");
  if (args->has("fp32-activations") && (lo.int8_activations || lo.activation_outliers.enabled()))
    return usage_error("--fp32-activations excludes --int8-activations and the outlier options", "generate");
  lo.prefer_int8_activations = !args->has("fp32-activations");
  auto model = Model::Load(folder, lo);
  if (!model.ok()) return fail(model.status());
  auto tok = Tokenizer::Open(folder);
  if (!tok.ok()) return fail(tok.status());
  auto ids = (*tok)->Encode(prompt);
  if (!ids.ok()) return fail(ids.status());
  const std::vector<int32_t> prefix = (*tok)->prefix_ids();
  ids->insert(ids->begin(), prefix.begin(), prefix.end());
  if (ids->empty())
    return fail(Status::InvalidArgument(folder + ": the prompt is empty and the tokenizer adds no BOS token; give a --prompt"));
  const Model& m = **model;
  const int64_t ctx = m.config().max_position_embeddings;
  if (int64_t(ids->size()) >= ctx) return fail(Status::InvalidArgument("the prompt is longer than the model's context"));
  const int64_t steps = std::min<int64_t>(*n, ctx - int64_t(ids->size()));
  KVCache cache = m.NewCache(int64_t(ids->size()) + steps);
  std::mt19937_64 rng{static_cast<uint64_t>(*seed)};
  std::vector<int32_t> out_ids;
  const bool json = args->has("json");
  if (!json) {
    std::printf("%s", prompt.c_str());
    std::fflush(stdout);
  }
  const auto t0 = std::chrono::steady_clock::now();
  auto logits = m.Forward(ids->data(), int64_t(ids->size()), &cache);
  const double prompt_secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  int64_t decode_steps = 0;  // single-token forward passes after the prompt
  const int64_t V = m.vocab_size();
  for (int64_t s = 0; s < steps; ++s) {
    if (!logits.ok()) return fail(logits.status());
    const float* l = logits->data() + (int64_t(logits->size()) / V - 1) * V;
    int32_t next = 0;
    if (*temp == 0.0) {
      next = int32_t(std::max_element(l, l + V) - l);
    } else {
      std::vector<std::pair<float, int32_t>> c;
      for (int64_t i = 0; i < V; ++i) c.push_back({l[i], int32_t(i)});
      std::sort(c.begin(), c.end(), [](auto& a, auto& b) { return a.first > b.first || (a.first == b.first && a.second < b.second); });
      if (*topk > 0 && int64_t(c.size()) > *topk) c.resize(size_t(*topk));
      std::vector<double> p;
      for (auto& [v, i] : c) p.push_back(std::exp((double(v) - double(c[0].first)) / *temp));
      std::discrete_distribution<size_t> d(p.begin(), p.end());
      next = c[d(rng)].second;
    }
    if (next == (*tok)->eos_id()) break;
    out_ids.push_back(next);
    if (!json) {
      std::printf("%s", (*tok)->TokenText(next).c_str());
      std::fflush(stdout);
    }
    if (s + 1 < steps) {
      logits = m.Forward(&next, 1, &cache);
      ++decode_steps;
    }
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const double decode_secs = secs - prompt_secs;  // includes sampling, as a user's decode loop does
  auto text = (*tok)->Decode(out_ids);
  if (!text.ok()) return fail(text.status());
  if (json) {
    std::vector<int32_t> all = *ids;
    all.insert(all.end(), out_ids.begin(), out_ids.end());
    nlohmann::ordered_json j = {{"prompt", prompt}, {"text", *text}, {"ids", all},
                                {"new_tokens", out_ids.size()},
                                {"tokens_per_second", secs > 0 ? double(out_ids.size()) / secs : 0.0},
                                {"prompt_tokens", ids->size()},
                                {"prompt_tokens_per_second", prompt_secs > 0 ? double(ids->size()) / prompt_secs : 0.0},
                                {"decode_steps", decode_steps},
                                {"decode_tokens_per_second", decode_secs > 0 ? double(decode_steps) / decode_secs : 0.0},
                                {"kernel_isa", isa_name(active_isa())},
                                {"kernels", m.QuantizedKernels(1)},  // decoding: one token at a time
                                {"prompt_kernels", m.QuantizedKernels(int64_t(ids->size()))}};  // the prompt, in one batch
    print_json(j);
  } else {
    std::printf("\n");
    std::fflush(stdout);  // the text ends before the statistics on stderr, also when both are piped
    std::fprintf(stderr, "%zu tokens in %.2f s (%.1f tokens/s)\n", out_ids.size(), secs,
                 secs > 0 ? double(out_ids.size()) / secs : 0.0);
  }
  return 0;
}

}  // namespace llmq::cli
