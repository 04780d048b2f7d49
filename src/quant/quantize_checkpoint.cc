// quantize_checkpoint: read a float checkpoint, quantize every decoder linear,
// write the llmq format (docs/FORMAT.md) atomically.
#include <sys/resource.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <map>
#include <nlohmann/json.hpp>

#include <filesystem>

#include "io/checkpoint_writer.h"
#include "io/file_util.h"
#include "io/llmq_format.h"
#include "llmq/checkpoint.h"
#include "llmq/kernels.h"
#include "llmq/quantize.h"
#include "llmq/tokenizer.h"
#include "quant/awq.h"
#include "quant/calibration.h"
#include "quant/smoothquant.h"

namespace llmq {
namespace fs = std::filesystem;
namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// First non-finite element of a float tensor, or -1.
int64_t first_non_finite(const TensorView& v) {
  auto r = to_float32(v);
  if (!r.ok()) return -1;
  for (size_t i = 0; i < r->size(); ++i)
    if (!std::isfinite((*r)[i])) return int64_t(i);
  return -1;
}

}  // namespace

namespace {

bool is_awq(const std::string& method) { return method == "awq" || method == "awq+gptq"; }
bool is_oac(const std::string& method) { return method == "oac" || method == "spqr+oac"; }
bool is_spqr(const std::string& method) { return method == "spqr" || method == "spqr+oac"; }
// Methods whose final quantizer is the GPTQ engine.
bool uses_gptq(const std::string& method) {
  return method == "gptq" || method == "awq+gptq" || is_spqr(method) || is_oac(method);
}

nlohmann::ordered_json awq_options_json(const AwqOptions& a) {
  return {{"grid", a.grid},           {"duo_scaling", a.duo_scaling}, {"clip", a.clip},
          {"clip_grid", a.clip_grid}, {"max_shrink", a.max_shrink},   {"clip_tokens", a.clip_tokens},
          {"gqa_v_to_o", a.gqa_v_to_o}};
}

nlohmann::ordered_json adpq_options_json(const AdpqOptions& a) {
  const char* scope = a.scope == AdpqScope::kTensor ? "tensor" : a.scope == AdpqScope::kRow ? "row" : "group";
  nlohmann::ordered_json j = {{"gamma", a.gamma}, {"scope", scope}};
  if (a.lambda > 0) j["lambda"] = a.lambda;
  else j["target_outlier_fraction"] = a.outlier_fraction;
  return j;
}

// A float32 tensor for the output (norms and biases a method rewrote).
TensorToWrite float_tensor(const std::string& name, const std::vector<float>& v) {
  TensorToWrite t{name, DType::kF32, {int64_t(v.size())}, std::vector<uint8_t>(v.size() * 4)};
  if (!v.empty()) std::memcpy(t.bytes.data(), v.data(), t.bytes.size());
  return t;
}

}  // namespace

uint64_t peak_rss_bytes() {
  struct rusage ru {};
  getrusage(RUSAGE_SELF, &ru);
  return uint64_t(ru.ru_maxrss) * 1024u;
}

std::string QuantizeReport::ToJson() const {
  nlohmann::ordered_json j;
  j["method"] = method;
  j["bits"] = spec.bits;
  j["group_size"] = spec.group_size;
  j["sym"] = spec.symmetric;
  j["scale_dtype"] = spec.scale_dtype == ScaleDType::kF16 ? "fp16" : "fp32";
  j["mse_search"] = spec.mse_search;
  j["input"] = input;
  j["output"] = output;
  j["bits_per_weight"] = bits_per_weight;
  j["input_bytes"] = input_bytes;
  j["output_bytes"] = output_bytes;
  j["seconds"] = seconds;
  j["peak_rss_bytes"] = peak_rss_bytes;
  double worst = 0, sum = 0, out_sum = 0;
  int64_t fallbacks = 0;
  for (const auto& l : layers) {
    worst = std::max(worst, l.relative_error);
    sum += l.relative_error;
    out_sum += l.output_relative_error;
    fallbacks += l.fell_back_to_rtn ? 1 : 0;
  }
  j["mean_relative_error"] = layers.empty() ? 0.0 : sum / double(layers.size());
  j["max_relative_error"] = worst;
  if (calibrated) {
    j["mean_output_relative_error"] = layers.empty() ? 0.0 : out_sum / double(layers.size());
    j["rtn_fallback_layers"] = fallbacks;
    j["calibration"] = {{"data", calibration.data},
                        {"nsamples", calibration.nsamples},
                        {"seq_len", calibration.seq_len},
                        {"seed", calibration.seed},
                        {"source_tokens", calibration.tokens},
                        {"activation_bytes", calibration.activation_bytes},
                        {"resumed_blocks", calibration.resumed_blocks}};
    j["true_sequential"] = true_sequential;
  }
  j["int8_activations"] = int8_activations;
  j["kernel_isa"] = isa_name(active_isa());  // the ISA of the kernels this process runs (LLMQ_ISA can lower it)
  if (method == "smoothquant") j["alpha"] = alpha;
  if (is_awq(method)) j["awq"] = awq_options_json(awq);
  if (is_oac(method))
    j["oac"] = {{"grad", oac.per_token ? "token" : "sequence"},
                {"once", oac.once},
                {"backward_seconds", oac_backward_seconds},
                {"quantize_seconds", oac_quantize_seconds}};
  if (is_spqr(method))
    j["spqr"] = {{"outlier_threshold", gptq.outlier_threshold},
                 {"scale_bits", spec.scale_bits},
                 {"scale_group_rows", spec.scale_group_rows},
                 {"target_bits", target_bits}};
  if (method == "adpq" || is_spqr(method)) {
    int64_t outliers = 0, weights = 0;
    for (const auto& l : layers) {
      outliers += l.outliers;
      weights += l.rows * l.cols;
    }
    if (method == "adpq") j["adpq"] = adpq_options_json(adpq);
    j["outlier_fraction"] = weights > 0 ? double(outliers) / double(weights) : 0.0;
  }
  if (uses_gptq(method))
    j["gptq"] = {{"damp", gptq.damp},
                 {"block_size", gptq.block_size},
                 {"act_order", gptq.act_order},
                 {"static_groups", gptq.static_groups}};
  nlohmann::ordered_json arr = nlohmann::ordered_json::array();
  for (const auto& l : layers) {
    nlohmann::ordered_json e = {{"module", l.module},
                                {"shape", {l.rows, l.cols}},
                                {"relative_error", l.relative_error},
                                {"bits_per_weight", l.bits_per_weight},
                                {"seconds", l.seconds}};
    if (method == "adpq" || is_spqr(method)) e["outliers"] = l.outliers;
    if (is_spqr(method)) e["outlier_threshold"] = l.outlier_threshold;
    if (calibrated) {
      e["output_relative_error"] = l.output_relative_error;
      if (l.gptq_loss >= 0) e["gptq_loss"] = l.gptq_loss;
      if (l.damp >= 0) e["damp"] = l.damp;
      e["damp_retries"] = l.damp_retries;
      e["fell_back_to_rtn"] = l.fell_back_to_rtn;
      e["dead_columns"] = l.dead_columns;
      if (l.awq_alpha >= 0) {
        e["awq_alpha"] = l.awq_alpha;
        e["awq_loss"] = l.awq_loss;
        e["awq_loss_unscaled"] = l.awq_loss_unscaled;
      }
      if (l.awq_clip_shrink >= 0) e["awq_clip_shrink"] = l.awq_clip_shrink;
    }
    arr.push_back(e);
  }
  j["layers"] = arr;
  return j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace);  // paths may hold any bytes
}

namespace {

nlohmann::ordered_json layer_report_to_json(const LayerReport& l) {
  return {{"module", l.module},        {"rows", l.rows},
          {"cols", l.cols},            {"relative_error", l.relative_error},
          {"bits_per_weight", l.bits_per_weight}, {"seconds", l.seconds},
          {"output_relative_error", l.output_relative_error}, {"gptq_loss", l.gptq_loss},
          {"damp", l.damp},            {"damp_retries", l.damp_retries},
          {"fell_back_to_rtn", l.fell_back_to_rtn}, {"dead_columns", l.dead_columns},
          {"awq_alpha", l.awq_alpha},  {"awq_loss", l.awq_loss},
          {"awq_loss_unscaled", l.awq_loss_unscaled}, {"awq_clip_shrink", l.awq_clip_shrink},
          {"outliers", l.outliers},    {"outlier_threshold", l.outlier_threshold}};
}

LayerReport layer_report_from_json(const nlohmann::json& j) {
  LayerReport l;
  l.module = j.at("module").get<std::string>();
  l.rows = j.at("rows").get<int64_t>();
  l.cols = j.at("cols").get<int64_t>();
  l.relative_error = j.at("relative_error").get<double>();
  l.bits_per_weight = j.at("bits_per_weight").get<double>();
  l.seconds = j.at("seconds").get<double>();
  l.output_relative_error = j.at("output_relative_error").get<double>();
  l.gptq_loss = j.at("gptq_loss").get<double>();
  l.damp = j.at("damp").get<double>();
  l.damp_retries = j.at("damp_retries").get<int>();
  l.fell_back_to_rtn = j.at("fell_back_to_rtn").get<bool>();
  l.dead_columns = j.at("dead_columns").get<int64_t>();
  l.awq_alpha = j.at("awq_alpha").get<double>();
  l.awq_loss = j.at("awq_loss").get<double>();
  l.awq_loss_unscaled = j.at("awq_loss_unscaled").get<double>();
  l.awq_clip_shrink = j.at("awq_clip_shrink").get<double>();
  l.outliers = j.at("outliers").get<int64_t>();
  l.outlier_threshold = j.at("outlier_threshold").get<double>();
  return l;
}

// SpQR with a bit budget: the outlier threshold (relative, log-bisected over 1e-3 .. 1e4) with the
// most outliers whose bits per weight stay within `target`; no outliers when even those exceed it.
// The threshold used is left in options->outlier_threshold (0: no outliers).
Result<GptqResult> spqr_to_target_bits(const float* w, int64_t rows, int64_t cols, const float* h,
                                       const QuantSpec& spec, GptqOptions* options, double target) {
  options->outlier_threshold = 0.0;  // none
  LLMQ_ASSIGN_OR_RETURN(GptqResult best, gptq_quantize(w, rows, cols, h, spec, *options));
  if (best.q.bits_per_weight() >= target) return best;
  double lo = std::log(1e-3), hi = std::log(1e4);  // bits fall as the threshold rises
  for (int it = 0; it < 14; ++it) {
    const double mid = 0.5 * (lo + hi);
    GptqOptions o = *options;
    o.outlier_threshold = std::exp(mid);
    LLMQ_ASSIGN_OR_RETURN(GptqResult r, gptq_quantize(w, rows, cols, h, spec, o));
    if (r.q.bits_per_weight() <= target) {
      hi = mid;
      best = std::move(r);
      options->outlier_threshold = o.outlier_threshold;
    } else {
      lo = mid;
    }
  }
  return best;
}

// Where a calibrated run keeps its finished blocks: a hidden folder beside the output.
std::string partial_dir_for(const std::string& output_folder) {
  std::error_code ec;
  fs::path out = fs::absolute(fs::path(output_folder), ec).lexically_normal();
  if (!out.has_filename()) out = out.parent_path();
  return (out.parent_path() / ("." + out.filename().string() + ".llmq-partial")).string();
}

std::string block_stem(const std::string& dir, int layer) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "block-%05d", layer);
  return (fs::path(dir) / buf).string();
}

// Everything that determines a calibrated run's output; a resumed run must match it.
nlohmann::ordered_json run_manifest(const std::string& input_folder, const Checkpoint& ckpt,
                                    const QuantizeOptions& o) {
  std::error_code ec;
  nlohmann::ordered_json m;
  m["input"] = fs::absolute(input_folder, ec).lexically_normal().string();
  m["input_bytes"] = ckpt.bytes_on_disk();
  m["method"] = o.method;
  m["spec"] = internal::spec_to_json(o.spec);
  m["mse_search"] = o.spec.mse_search;
  m["calibration"] = {{"data", fs::absolute(o.calibration.data, ec).lexically_normal().string()},
                      {"nsamples", o.calibration.nsamples},
                      {"seq_len", o.calibration.seq_len},
                      {"seed", o.calibration.seed},
                      {"fp16_activations", o.calibration.fp16_activations}};
  m["target_bits"] = o.target_bits;
  m["oac"] = {{"per_token", o.oac.per_token}, {"once", o.oac.once}};
  m["gptq"] = {{"outlier_threshold", o.gptq.outlier_threshold},
               {"damp", o.gptq.damp},
               {"block_size", o.gptq.block_size},
               {"act_order", o.gptq.act_order},
               {"static_groups", o.gptq.static_groups},
               {"damp_retries", o.gptq.damp_retries}};
  m["true_sequential"] = o.true_sequential;
  m["alpha"] = o.alpha;
  if (is_awq(o.method)) m["awq"] = awq_options_json(o.awq);
  m["format_version"] = internal::kFormatVersion;
  return m;
}

// A finished block read back from the partial folder: its reports and quantized tensors.
struct FinishedBlock {
  std::vector<LayerReport> reports;
  std::map<std::string, nlohmann::json> modules;  // module -> module info json
  std::vector<std::string> replaced;              // non-linear tensors the block rewrote
  std::shared_ptr<const SafetensorsFile> file;
};

Result<FinishedBlock> read_finished_block(const std::string& stem) {
  FinishedBlock b;
  LLMQ_ASSIGN_OR_RETURN(std::string text, internal::read_text_file(stem + ".json"));
  nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object() || !j.contains("layers") || !j.contains("modules"))
    return Status::Corruption(stem + ".json: not a finished-block record");
  try {
    for (const auto& l : j["layers"]) b.reports.push_back(layer_report_from_json(l));
    for (auto it = j["modules"].begin(); it != j["modules"].end(); ++it) b.modules[it.key()] = it.value();
    for (const auto& r : j.value("replaced", nlohmann::json::array())) b.replaced.push_back(r.get<std::string>());
  } catch (const nlohmann::json::exception& e) {
    return Status::Corruption(stem + ".json: " + e.what());
  }
  LLMQ_ASSIGN_OR_RETURN(b.file, SafetensorsFile::Open(stem + ".safetensors"));
  return b;
}

// SmoothQuant for one block: activation ranges of the norm-fed inputs (q/k/v and gate/up, or
// OPT's fc1) on the float model, smoothing scales folded into the norm and the linears, then
// per-channel int8 RTN of every linear of the block. The rewritten norms go into the block file.
Status smooth_and_quantize_block(const Checkpoint& ckpt, internal::BlockwiseCalibrator& calib, int layer,
                                 const std::vector<LinearInfo>& linears, const QuantizeOptions& options,
                                 std::vector<TensorToWrite>* tensors, nlohmann::ordered_json* modules,
                                 nlohmann::ordered_json* reports, nlohmann::ordered_json* replaced,
                                 QuantizeReport* report, const std::function<void(int64_t)>& progress) {
  const ModelConfig& cfg = ckpt.config();
  const auto t0 = Clock::now();
  LLMQ_ASSIGN_OR_RETURN(auto amax,
                        calib.CollectInputAbsMax(layer, linears, [&](int64_t i, int64_t) { progress(i); }));
  std::map<std::string, std::vector<float>> w;
  for (const LinearInfo& l : linears) {
    LLMQ_ASSIGN_OR_RETURN(w[l.module], ckpt.linear_weight(l));
  }
  const bool opt = cfg.family == ModelFamily::kOpt;
  // Post-LN OPT has no norm in front of its linears to fold into: it is quantized unsmoothed.
  if (!opt || cfg.do_layer_norm_before) {
    const std::string p = ckpt.base_prefix() + "layers." + std::to_string(layer) + ".";
    const std::pair<int, std::string> sites[] = {{0, p + (opt ? "self_attn_layer_norm" : "input_layernorm")},
                                                 {2, p + (opt ? "final_layer_norm" : "post_attention_layernorm")}};
    for (const auto& [slot, norm] : sites) {
      std::vector<internal::SmoothedLinear> fed;
      const LinearInfo* first = nullptr;
      for (const LinearInfo& l : linears)
        if (internal::input_slot(l.role) == slot) {
          fed.push_back({&w[l.module], l.rows});
          if (first == nullptr) first = &l;
        }
      if (first == nullptr) continue;
      LLMQ_ASSIGN_OR_RETURN(std::vector<float> nw, ckpt.get_float(norm + ".weight"));
      std::vector<float> nb;
      if (opt) {
        LLMQ_ASSIGN_OR_RETURN(nb, ckpt.get_float(norm + ".bias"));
      }
      const std::vector<float> s = internal::smoothing_scales(*amax[first->module], fed, first->cols, options.alpha);
      internal::fold_smoothing(s, &nw, opt ? &nb : nullptr, fed);
      tensors->push_back(float_tensor(norm + ".weight", nw));
      replaced->push_back(norm + ".weight");
      if (opt) {
        tensors->push_back(float_tensor(norm + ".bias", nb));
        replaced->push_back(norm + ".bias");
      }
    }
  }
  for (const LinearInfo& l : linears) {
    auto q = quantize_rtn(w[l.module].data(), l.rows, l.cols, options.spec);
    if (!q.ok()) return q.status().WithContext(ckpt.folder() + ": " + l.module);
    LayerReport lr;
    lr.module = l.module;
    lr.rows = l.rows;
    lr.cols = l.cols;
    lr.relative_error = relative_error(w[l.module].data(), *q);  // against the smoothed weights
    lr.bits_per_weight = q->bits_per_weight();
    lr.seconds = seconds_since(t0) / double(linears.size());
    for (auto& t : internal::quantized_tensors(l.module, *q)) tensors->push_back(std::move(t));
    (*modules)[l.module] = internal::module_info_to_json(*q);
    reports->push_back(layer_report_to_json(lr));
    report->layers.push_back(lr);
  }
  return Status::Ok();
}

// AWQ for one block: the inputs of its linears on the float block, the scale search per site and
// the clip search (quant/awq.h), then RTN ("awq") or GPTQ ("awq+gptq") of the scaled weights. The
// folded norms and biases go into the block file. For awq+gptq the block is left quantized (with
// the folded tensors) so the next block sees its error, as in GPTQ; plain AWQ propagates the
// float block, as the reference does.
Status awq_quantize_block(const Checkpoint& ckpt, internal::BlockwiseCalibrator& calib, int layer,
                          const std::vector<LinearInfo>& linears, const QuantizeOptions& options,
                          std::vector<TensorToWrite>* tensors, nlohmann::ordered_json* modules,
                          nlohmann::ordered_json* reports, nlohmann::ordered_json* replaced, QuantizeReport* report,
                          const std::function<void(int64_t, const std::string&)>& progress) {
  const int64_t N = calib.num_windows();
  LLMQ_ASSIGN_OR_RETURN(auto inputs, calib.CollectInputs(layer, linears, [&](int64_t i, int64_t) {
    progress(i, "collecting inputs");
  }));
  const auto t0 = Clock::now();
  LLMQ_ASSIGN_OR_RETURN(internal::AwqBlock awq, internal::awq_block(calib.model(), ckpt, layer, linears, inputs,
                                                                    calib.seq_len(), options.spec, options.awq));
  const double search_seconds = seconds_since(t0) / double(linears.size());
  const bool gptq = options.method == "awq+gptq";
  std::map<const std::vector<float>*, std::shared_ptr<const std::vector<float>>> h_of_input;
  int64_t units = N;
  for (const LinearInfo& l : linears) {
    const auto tl = Clock::now();
    const std::vector<float>* x = inputs[l.module].get();
    if (!h_of_input.count(x)) {
      HessianAccumulator acc(l.cols);
      acc.Add(x->data(), int64_t(x->size()) / l.cols);
      h_of_input[x] = std::make_shared<const std::vector<float>>(acc.Hessian());
    }
    const std::vector<float>& H = *h_of_input[x];
    const std::vector<float>& w = awq.weights[l.module];
    LayerReport lr;
    QuantizedTensor q;
    if (gptq) {
      auto g = gptq_quantize(w.data(), l.rows, l.cols, H.data(), options.spec, options.gptq);
      if (!g.ok()) return g.status().WithContext(ckpt.folder() + ": " + l.module);
      lr.gptq_loss = g->loss;
      lr.damp = g->damp;
      lr.damp_retries = g->damp_retries;
      lr.fell_back_to_rtn = g->fell_back_to_rtn;
      lr.dead_columns = g->dead_columns;
      q = std::move(g->q);
    } else {
      auto r = quantize_rtn(w.data(), l.rows, l.cols, options.spec);
      if (!r.ok()) return r.status().WithContext(ckpt.folder() + ": " + l.module);
      q = std::move(*r);
    }
    std::vector<float> deq = dequantize(q);
    // Errors against the scaled float weights before clipping: the clip is part of the error.
    const std::vector<float>& exact = awq.unclipped.count(l.module) ? awq.unclipped[l.module] : w;
    lr.module = l.module;
    lr.rows = l.rows;
    lr.cols = l.cols;
    lr.relative_error = relative_error(exact.data(), q);
    lr.output_relative_error = output_relative_error(exact.data(), deq.data(), l.rows, l.cols, H.data());
    lr.bits_per_weight = q.bits_per_weight();
    if (awq.site_of.count(l.module)) {
      const internal::AwqSiteResult& site = awq.site_of[l.module];
      lr.awq_alpha = site.alpha;
      lr.awq_loss = site.loss;
      lr.awq_loss_unscaled = site.loss_unscaled;
    }
    if (awq.clip_shrink.count(l.module)) lr.awq_clip_shrink = awq.clip_shrink[l.module];
    if (gptq) LLMQ_RETURN_IF_ERROR(calib.model().SetLinearWeight(l, std::move(deq)));
    for (auto& t : internal::quantized_tensors(l.module, q)) tensors->push_back(std::move(t));
    (*modules)[l.module] = internal::module_info_to_json(q);
    lr.seconds = seconds_since(tl) + search_seconds;
    reports->push_back(layer_report_to_json(lr));
    report->layers.push_back(lr);
    units += N;
    progress(units, (gptq ? "awq+gptq " : "awq ") + l.module.substr(l.module.rfind('.', l.module.rfind('.') - 1) + 1));
  }
  for (auto& [name, value] : awq.replaced) {
    tensors->push_back(float_tensor(name, value));
    replaced->push_back(name);
    if (gptq) LLMQ_RETURN_IF_ERROR(calib.model().SetBlockTensor(name, std::move(value)));
  }
  return Status::Ok();
}

// A calibrated method (GPTQ, AWQ or SmoothQuant) over the whole model, block by block
// (algorithms.md §2.4). Finished blocks go to `partial`; on return every block is there.
Status run_calibrated(const std::string& input_folder, const Checkpoint& ckpt, const QuantizeOptions& options,
                const std::string& partial, QuantizeReport* report, const Clock::time_point t0) {
  const ModelConfig& cfg = ckpt.config();
  const bool smoothquant = options.method == "smoothquant", awq = is_awq(options.method);
  // The next block sees this one quantized (GPTQ) or in float (SmoothQuant, AWQ with RTN).
  // OAC with --oac-once: the next block sees this one in float, so every block's gradients are
  // the float model's.
  const bool oac = is_oac(options.method);
  const bool propagate_quantized = uses_gptq(options.method) && !(oac && options.oac.once);
  // Pre-tokenized data (.json / .bin ids) needs no tokenizer.
  std::unique_ptr<Tokenizer> tokenizer;
  if (!internal::is_token_id_file(options.calibration.data)) {
    LLMQ_ASSIGN_OR_RETURN(tokenizer, Tokenizer::Open(input_folder));
  }
  const int64_t context = cfg.max_position_embeddings > 0 ? cfg.max_position_embeddings : options.calibration.seq_len;
  LLMQ_ASSIGN_OR_RETURN(internal::CalibrationSet set,
                        internal::load_calibration_set(options.calibration, tokenizer.get(), context, cfg.vocab_size));
  report->calibrated = true;
  report->calibration.data = options.calibration.data;
  report->calibration.nsamples = int64_t(set.windows.size());
  report->calibration.seq_len = set.seq_len;
  report->calibration.seed = options.calibration.seed;
  report->calibration.tokens = set.source_tokens;
  LLMQ_ASSIGN_OR_RETURN(auto calib, internal::BlockwiseCalibrator::Create(input_folder, std::move(set),
                                                                          options.calibration.fp16_activations));
  report->calibration.activation_bytes = calib->activation_bytes();
  const std::vector<LinearInfo> all = ckpt.linears();
  const int64_t L = cfg.num_layers, N = calib->num_windows();
  // Progress in window passes: per block, one pass per stage plus the final pass, plus one
  // pass-equivalent per linear for the GPTQ solve itself.
  const int stages = options.true_sequential ? 4 : 1;
  const int64_t per_linear = int64_t(all.size()) / std::max<int64_t>(1, L);
  const int64_t per_block = (stages + 1 + per_linear) * N;
  bool cancelled = false;
  auto progress = [&](int layer, int64_t units, const std::string& item) {
    if (options.cancel && !cancelled) cancelled = options.cancel();
    if (options.progress)
      options.progress({layer * per_block + std::min(units, per_block), L * per_block,
                        "block " + std::to_string(layer + 1) + "/" + std::to_string(L) + " " + item,
                        seconds_since(t0)});
  };

  auto stop = [&]() {
    return Status::Cancelled("interrupted; finished blocks are kept in " + partial +
                             " (run the same command with --resume to continue)");
  };
  for (int layer = 0; layer < int(L); ++layer) {
    if (cancelled) return stop();
    std::vector<LinearInfo> linears;
    for (const LinearInfo& l : all)
      if (l.layer == layer) linears.push_back(l);
    const std::string stem = block_stem(partial, layer);
    std::error_code ec;
    if (options.resume && fs::exists(stem + ".json", ec)) {
      auto done = read_finished_block(stem);
      if (done.ok() && done->modules.size() == linears.size()) {
        LLMQ_RETURN_IF_ERROR(calib->model().LoadBlock(layer));
        for (const LinearInfo& l : linears) {
          if (!done->modules.count(l.module)) return Status::Corruption(stem + ".json: no entry for " + l.module);
          LLMQ_ASSIGN_OR_RETURN(QuantizedModuleInfo mi,
                                internal::module_info_from_json(done->modules[l.module], stem + ".json"));
          LLMQ_ASSIGN_OR_RETURN(QuantizedTensor q, internal::read_quantized(*done->file, l.module, mi));
          if (propagate_quantized) LLMQ_RETURN_IF_ERROR(calib->model().SetLinearWeight(l, dequantize(q)));
        }
        if (propagate_quantized)
          for (const std::string& name : done->replaced) {
            LLMQ_ASSIGN_OR_RETURN(TensorView v, done->file->get(name));
            LLMQ_ASSIGN_OR_RETURN(std::vector<float> value, to_float32(v));
            LLMQ_RETURN_IF_ERROR(calib->model().SetBlockTensor(name, std::move(value)));
          }
        for (auto& r : done->reports) report->layers.push_back(r);
        ++report->calibration.resumed_blocks;
        LLMQ_RETURN_IF_ERROR(calib->Advance(layer, [&](int64_t i, int64_t) { progress(layer, per_block - N + i, "replaying finished block"); }));
        calib->model().ReleaseBlock(layer);
        continue;
      }
    }
    std::vector<TensorToWrite> tensors;
    nlohmann::ordered_json modules = nlohmann::ordered_json::object(), reports = nlohmann::ordered_json::array();
    nlohmann::ordered_json replaced = nlohmann::ordered_json::array();  // non-linear tensors this block rewrites
    int64_t units = 0;
    if (smoothquant) {
      LLMQ_RETURN_IF_ERROR(smooth_and_quantize_block(ckpt, *calib, layer, linears, options, &tensors, &modules,
                                                     &reports, &replaced, report, [&](int64_t i) {
                                                       progress(layer, i, "collecting activation ranges");
                                                     }));
      units = N * (stages + per_linear);
    }
    if (awq) {
      LLMQ_RETURN_IF_ERROR(awq_quantize_block(ckpt, *calib, layer, linears, options, &tensors, &modules, &reports,
                                              &replaced, report, [&](int64_t u, const std::string& item) {
                                                progress(layer, u, item);
                                              }));
      units = N * (stages + per_linear);
    }
    for (int stage = 0; stage < (smoothquant || awq ? 0 : stages); ++stage) {
      std::vector<LinearInfo> in_stage;
      for (const LinearInfo& l : linears)
        if (stages == 1 || internal::input_slot(l.role) == stage) in_stage.push_back(l);
      if (in_stage.empty()) continue;
      const int64_t base = units;
      const auto tb = Clock::now();
      auto collected = oac ? calib->CollectOutputAdaptiveHessians(layer, in_stage, options.oac.per_token,
                                                                  [&](int64_t i, int64_t) {
                                                                    progress(layer, base + i, "backward");
                                                                  })
                           : calib->CollectHessians(layer, in_stage, [&](int64_t i, int64_t) {
                               progress(layer, base + i, "collecting inputs");
                             });
      if (!collected.ok()) return collected.status();
      auto hessians = std::move(*collected);
      if (oac) report->oac_backward_seconds += seconds_since(tb);
      units += N;
      if (cancelled) return stop();
      // One fp32 H per shared input; the fp64 accumulators are freed before the solves.
      std::map<std::string, std::shared_ptr<const std::vector<float>>> h_of;
      {
        std::map<const HessianAccumulator*, std::shared_ptr<const std::vector<float>>> by_acc;
        for (const LinearInfo& l : in_stage) {
          const HessianAccumulator* acc = hessians[l.module].get();
          if (!by_acc.count(acc)) by_acc[acc] = std::make_shared<const std::vector<float>>(acc->Hessian());
          h_of[l.module] = by_acc[acc];
        }
        hessians.clear();
      }
      for (const LinearInfo& l : in_stage) {
        const auto tl = Clock::now();
        const std::vector<float>& H = *h_of[l.module];
        LLMQ_ASSIGN_OR_RETURN(std::vector<float> w, ckpt.linear_weight(l));
        GptqOptions gopt = options.gptq;
        auto g = options.target_bits > 0
                     ? spqr_to_target_bits(w.data(), l.rows, l.cols, H.data(), options.spec, &gopt, options.target_bits)
                     : gptq_quantize(w.data(), l.rows, l.cols, H.data(), options.spec, gopt);
        if (!g.ok()) return g.status().WithContext(input_folder + ": " + l.module);
        std::vector<float> deq = dequantize(g->q);
        LayerReport lr;
        lr.module = l.module;
        lr.rows = l.rows;
        lr.cols = l.cols;
        lr.relative_error = relative_error(w.data(), g->q);
        lr.output_relative_error = output_relative_error(w.data(), deq.data(), l.rows, l.cols, H.data());
        lr.bits_per_weight = g->q.bits_per_weight();
        lr.gptq_loss = g->loss;
        lr.damp = g->damp;
        lr.damp_retries = g->damp_retries;
        lr.fell_back_to_rtn = g->fell_back_to_rtn;
        lr.dead_columns = g->dead_columns;
        lr.outliers = g->outliers;
        if (is_spqr(options.method)) lr.outlier_threshold = gopt.outlier_threshold;
        // The next block sees this one quantized, except for OAC's float-model gradients (--oac-once).
        if (propagate_quantized) LLMQ_RETURN_IF_ERROR(calib->model().SetLinearWeight(l, std::move(deq)));
        for (auto& t : internal::quantized_tensors(l.module, g->q)) tensors.push_back(std::move(t));
        modules[l.module] = internal::module_info_to_json(g->q);
        lr.seconds = seconds_since(tl);
        if (oac) report->oac_quantize_seconds += lr.seconds;
        reports.push_back(layer_report_to_json(lr));
        report->layers.push_back(lr);
        h_of.erase(l.module);  // frees H once its last linear is done
        units += N;
        progress(layer, units, "gptq " + l.module.substr(l.module.rfind('.', l.module.rfind('.') - 1) + 1));
      }
    }
    // Finished blocks are on disk before the next one starts: a crash loses at most one block.
    LLMQ_RETURN_IF_ERROR(write_safetensors(stem + ".safetensors", tensors, {{"producer", "llmq"}}));
    LLMQ_RETURN_IF_ERROR(internal::write_text_file_atomic(
        stem + ".json",
        nlohmann::ordered_json({{"layers", reports}, {"modules", modules}, {"replaced", replaced}}).dump(1) + "\n"));
    const int64_t base = units;
    LLMQ_RETURN_IF_ERROR(calib->Advance(layer, [&](int64_t i, int64_t) { progress(layer, base + i, "propagating"); }));
    calib->model().ReleaseBlock(layer);
  }
  return Status::Ok();
}

// Creates (or, with resume, reuses) the partial folder of a calibrated run.
Status prepare_partial_dir(const std::string& partial, const nlohmann::ordered_json& manifest, bool resume) {
  std::error_code ec;
  const std::string mpath = (fs::path(partial) / "manifest.json").string();
  if (fs::exists(partial, ec)) {
    if (resume) {
      auto text = internal::read_text_file(mpath);
      nlohmann::json old = text.ok() ? nlohmann::json::parse(*text, nullptr, false) : nlohmann::json();
      if (!old.is_discarded() && old == nlohmann::json(manifest)) return Status::Ok();
      return Status::InvalidArgument(partial + ": holds a run with different inputs or options (see its manifest.json); "
                                     "run without --resume to start over");
    }
    fs::remove_all(partial, ec);
    if (ec) return Status::IOError(partial + ": cannot remove the previous partial run: " + ec.message());
  }
  fs::create_directories(partial, ec);
  if (ec) return Status::IOError(partial + ": cannot create the folder for finished blocks: " + ec.message());
  return internal::write_text_file_atomic(mpath, manifest.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n");
}

}  // namespace

Result<QuantizeReport> quantize_checkpoint(const std::string& input_folder, const std::string& output_folder,
                                           const QuantizeOptions& options) {
  const auto t0 = Clock::now();
  LLMQ_RETURN_IF_ERROR(options.Validate());
  const bool smoothquant = options.method == "smoothquant";
  // Methods that rewrite norms or biases (folded scales): those tensors come from the block files.
  const bool rewrites_tensors = smoothquant || is_awq(options.method);
  const bool calibrated = uses_gptq(options.method) || rewrites_tensors;  // the block-by-block path
  const bool adpq = options.method == "adpq";
  LLMQ_ASSIGN_OR_RETURN(auto ckpt, Checkpoint::Open(input_folder));
  if (ckpt->is_quantized())
    return Status::InvalidArgument(input_folder + ": is already quantized by llmq; quantize the float checkpoint");
  // Fail on an unusable output folder before hours of calibration.
  LLMQ_ASSIGN_OR_RETURN(auto writer,
                        internal::CheckpointWriter::Create(output_folder, options.overwrite, options.max_shard_bytes, input_folder));

  QuantizeReport report;
  report.method = options.method;
  report.spec = options.spec;
  report.input = input_folder;
  report.output = output_folder;
  report.input_bytes = ckpt->bytes_on_disk();
  report.gptq = options.gptq;
  report.awq = options.awq;
  report.adpq = options.adpq;
  report.target_bits = options.target_bits;
  report.oac = options.oac;
  report.true_sequential = options.true_sequential;
  report.alpha = smoothquant ? options.alpha : 0.0;
  report.int8_activations = smoothquant || options.int8_activations;

  std::string partial;
  if (calibrated) {
    partial = partial_dir_for(output_folder);
    LLMQ_RETURN_IF_ERROR(prepare_partial_dir(partial, run_manifest(input_folder, *ckpt, options), options.resume));
    LLMQ_RETURN_IF_ERROR(run_calibrated(input_folder, *ckpt, options, partial, &report, t0));
  }

  std::map<std::string, LinearInfo> linear_of_weight;
  for (const LinearInfo& l : ckpt->linears()) linear_of_weight[l.module + ".weight"] = l;
  const int64_t total = int64_t(linear_of_weight.size());
  nlohmann::ordered_json modules = nlohmann::ordered_json::object();
  std::map<std::string, const LayerReport*> report_of;
  for (const LayerReport& l : report.layers) report_of[l.module] = &l;
  std::map<int, FinishedBlock> blocks;  // GPTQ: finished blocks, opened as needed
  std::map<std::string, int> replaced_by;  // non-linear tensor -> the block that rewrote it
  if (rewrites_tensors)
    for (int l = 0; l < int(ckpt->config().num_layers); ++l) {
      LLMQ_ASSIGN_OR_RETURN(FinishedBlock b, read_finished_block(block_stem(partial, l)));
      for (const auto& name : b.replaced) replaced_by[name] = l;
    }
  double weighted_bits = 0;
  int64_t quantized_weights = 0;

  for (const std::string& name : ckpt->tensor_names()) {
    LLMQ_ASSIGN_OR_RETURN(TensorView view, ckpt->get(name));
    auto lin = linear_of_weight.find(name);
    if (lin == linear_of_weight.end() && replaced_by.count(name)) {
      const int layer = replaced_by[name];
      if (!blocks.count(layer)) {
        LLMQ_ASSIGN_OR_RETURN(blocks[layer], read_finished_block(block_stem(partial, layer)));
      }
      LLMQ_ASSIGN_OR_RETURN(TensorView v, blocks[layer].file->get(name));
      std::vector<uint8_t> bytes(v.nbytes());
      if (!bytes.empty()) std::memcpy(bytes.data(), v.data, bytes.size());
      LLMQ_RETURN_IF_ERROR(writer->Add({name, v.dtype, v.shape, std::move(bytes)}));
      continue;
    }
    if (lin == linear_of_weight.end()) {
      if (is_float_dtype(view.dtype)) {
        const int64_t bad = first_non_finite(view);
        if (bad >= 0)
          return Status::InvalidArgument(input_folder + ": tensor '" + name + "' has a non-finite value (NaN or Inf) at element " +
                                         std::to_string(bad));
      }
      std::vector<uint8_t> bytes(view.nbytes());
      if (!bytes.empty()) std::memcpy(bytes.data(), view.data, bytes.size());
      LLMQ_RETURN_IF_ERROR(writer->Add({name, view.dtype, view.shape, std::move(bytes)}));
      ckpt->release_pages(name);  // written out: keep the resident set at about one tensor
      continue;
    }
    const LinearInfo& l = lin->second;
    if (calibrated) {
      if (!blocks.count(l.layer)) {
        LLMQ_ASSIGN_OR_RETURN(blocks[l.layer], read_finished_block(block_stem(partial, l.layer)));
      }
      const FinishedBlock& b = blocks[l.layer];
      auto m = b.modules.find(l.module);
      if (m == b.modules.end()) return Status::Corruption(b.file->path() + ": no tensors for " + l.module);
      for (const TensorInfo& t : b.file->tensors()) {
        // The module's quantized parts; a bias this block rewrote (AWQ folds scales into the
        // bias of the linear in front of a site) is written once, under its own name, below.
        if (t.name.compare(0, l.module.size() + 1, l.module + ".") != 0 || replaced_by.count(t.name)) continue;
        LLMQ_ASSIGN_OR_RETURN(TensorView v, b.file->get(t.name));
        std::vector<uint8_t> bytes(v.nbytes());
        if (!bytes.empty()) std::memcpy(bytes.data(), v.data, bytes.size());
        LLMQ_RETURN_IF_ERROR(writer->Add({t.name, v.dtype, v.shape, std::move(bytes)}));
        b.file->ReleasePages(t);
      }
      nlohmann::ordered_json mj = m->second;
      mj["relative_error"] = report_of.count(l.module) ? report_of[l.module]->relative_error : 0.0;
      modules[l.module] = mj;
      if (report_of.count(l.module)) {
        weighted_bits += report_of[l.module]->bits_per_weight * double(l.rows * l.cols);
        quantized_weights += l.rows * l.cols;
      }
      blocks.erase(l.layer - 1);  // earlier blocks are done with
      continue;
    }
    if (options.cancel && options.cancel())  // Ctrl-C: the writer removes its temporary folder
      return Status::Cancelled("interrupted; nothing was written to " + output_folder);
    const auto tl = Clock::now();
    LLMQ_ASSIGN_OR_RETURN(std::vector<float> w, ckpt->get_float(name));
    auto q = adpq ? quantize_adpq(w.data(), l.rows, l.cols, options.spec, options.adpq)
                  : quantize_rtn(w.data(), l.rows, l.cols, options.spec);
    if (!q.ok()) return q.status().WithContext(input_folder + ": tensor '" + name + "'");
    LayerReport lr;
    lr.outliers = int64_t(q->outliers.nnz());
    lr.module = l.module;
    lr.rows = l.rows;
    lr.cols = l.cols;
    lr.relative_error = relative_error(w.data(), *q);
    lr.bits_per_weight = q->bits_per_weight();
    for (auto& t : internal::quantized_tensors(l.module, *q)) LLMQ_RETURN_IF_ERROR(writer->Add(std::move(t)));
    lr.seconds = seconds_since(tl);
    weighted_bits += lr.bits_per_weight * double(l.rows * l.cols);
    quantized_weights += l.rows * l.cols;
    nlohmann::ordered_json m = internal::module_info_to_json(*q);
    m["relative_error"] = lr.relative_error;
    modules[l.module] = m;
    report.layers.push_back(lr);
    if (options.progress)
      options.progress({int64_t(report.layers.size()), total, l.module, seconds_since(t0)});
  }
  report.bits_per_weight = quantized_weights ? weighted_bits / double(quantized_weights) : 0.0;

  nlohmann::ordered_json config = nlohmann::ordered_json::parse(ckpt->config_json());
  nlohmann::ordered_json qc = {{"quant_method", internal::kLlmqQuantMethod},
                               {"format_version", internal::kFormatVersion},
                               {"method", options.method}};
  const nlohmann::json spec_json = internal::spec_to_json(options.spec);
  for (auto it = spec_json.begin(); it != spec_json.end(); ++it) qc[it.key()] = it.value();
  if (report.int8_activations) qc["activations"] = "int8";
  if (smoothquant) qc["alpha"] = options.alpha;
  if (is_awq(options.method)) qc["awq"] = awq_options_json(options.awq);
  if (adpq) qc["adpq"] = adpq_options_json(options.adpq);
  if (is_oac(options.method)) qc["oac"] = {{"grad", options.oac.per_token ? "token" : "sequence"}, {"once", options.oac.once}};
  if (is_spqr(options.method)) {
    qc["outlier_threshold"] = options.gptq.outlier_threshold;
    if (options.target_bits > 0) qc["target_bits"] = options.target_bits;
  }
  if (uses_gptq(options.method)) {
    qc["act_order"] = options.gptq.act_order;
    qc["static_groups"] = options.gptq.static_groups;
    qc["damp"] = options.gptq.damp;
    qc["true_sequential"] = options.true_sequential;
  }
  if (calibrated) {
    qc["calibration"] = {{"nsamples", report.calibration.nsamples},
                         {"seq_len", report.calibration.seq_len},
                         {"seed", report.calibration.seed}};
  }
  qc["bits_per_weight"] = report.bits_per_weight;
  qc["modules"] = modules;
  config["quantization_config"] = qc;
  report.seconds = seconds_since(t0);
  report.peak_rss_bytes = peak_rss_bytes();
  blocks.clear();
  LLMQ_RETURN_IF_ERROR(writer->Commit(config.dump(2) + "\n", input_folder, {}));
  // Reopening validates what was written (and gives its size for the report).
  auto out = Checkpoint::Open(output_folder);
  if (!out.ok()) return out.status().WithContext("written output does not read back");
  report.output_bytes = (*out)->bytes_on_disk();
  report.seconds = seconds_since(t0);
  report.peak_rss_bytes = peak_rss_bytes();
  LLMQ_RETURN_IF_ERROR(internal::write_text_file_atomic(output_folder + "/llmq_report.json", report.ToJson() + "\n"));
  if (!partial.empty()) {
    std::error_code ec;
    fs::remove_all(partial, ec);  // the output is complete; finished blocks are no longer needed
  }
  return report;
}

}  // namespace llmq
