// quantize_checkpoint: read a float checkpoint, quantize every decoder linear,
// write the llmq format (docs/FORMAT.md) atomically.
#include <sys/resource.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <map>
#include <nlohmann/json.hpp>

#include "io/checkpoint_writer.h"
#include "io/file_util.h"
#include "io/llmq_format.h"
#include "llmq/checkpoint.h"
#include "llmq/quantize.h"

namespace llmq {
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
  double worst = 0, sum = 0;
  for (const auto& l : layers) {
    worst = std::max(worst, l.relative_error);
    sum += l.relative_error;
  }
  j["mean_relative_error"] = layers.empty() ? 0.0 : sum / double(layers.size());
  j["max_relative_error"] = worst;
  nlohmann::ordered_json arr = nlohmann::ordered_json::array();
  for (const auto& l : layers)
    arr.push_back({{"module", l.module},
                   {"shape", {l.rows, l.cols}},
                   {"relative_error", l.relative_error},
                   {"bits_per_weight", l.bits_per_weight},
                   {"seconds", l.seconds}});
  j["layers"] = arr;
  return j.dump(2);
}

Result<QuantizeReport> quantize_checkpoint(const std::string& input_folder, const std::string& output_folder,
                                           const QuantizeOptions& options) {
  const auto t0 = Clock::now();
  LLMQ_RETURN_IF_ERROR(options.spec.Validate());
  if (options.method != "rtn")
    return Status::InvalidArgument("unknown method '" + options.method + "' (available: rtn)");
  LLMQ_ASSIGN_OR_RETURN(auto ckpt, Checkpoint::Open(input_folder));
  if (ckpt->is_quantized())
    return Status::InvalidArgument(input_folder + ": is already quantized by llmq; quantize the float checkpoint");
  LLMQ_ASSIGN_OR_RETURN(auto writer,
                        internal::CheckpointWriter::Create(output_folder, options.overwrite, options.max_shard_bytes));

  QuantizeReport report;
  report.method = options.method;
  report.spec = options.spec;
  report.input = input_folder;
  report.output = output_folder;
  report.input_bytes = ckpt->bytes_on_disk();

  std::map<std::string, LinearInfo> linear_of_weight;
  for (const LinearInfo& l : ckpt->linears()) linear_of_weight[l.module + ".weight"] = l;
  const int64_t total = int64_t(linear_of_weight.size());
  nlohmann::ordered_json modules = nlohmann::ordered_json::object();
  double weighted_bits = 0;
  int64_t quantized_weights = 0;

  for (const std::string& name : ckpt->tensor_names()) {
    LLMQ_ASSIGN_OR_RETURN(TensorView view, ckpt->get(name));
    auto lin = linear_of_weight.find(name);
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
      continue;
    }
    const LinearInfo& l = lin->second;
    const auto tl = Clock::now();
    LLMQ_ASSIGN_OR_RETURN(std::vector<float> w, ckpt->get_float(name));
    auto q = quantize_rtn(w.data(), l.rows, l.cols, options.spec);
    if (!q.ok()) return q.status().WithContext(input_folder + ": tensor '" + name + "'");
    LayerReport lr;
    lr.module = l.module;
    lr.rows = l.rows;
    lr.cols = l.cols;
    lr.relative_error = relative_error(w.data(), *q);
    lr.bits_per_weight = q->bits_per_weight();
    for (auto& t : internal::quantized_tensors(l.module, *q)) LLMQ_RETURN_IF_ERROR(writer->Add(std::move(t)));
    lr.seconds = seconds_since(tl);
    weighted_bits += lr.bits_per_weight * double(l.rows * l.cols);
    quantized_weights += l.rows * l.cols;
    nlohmann::ordered_json m = internal::spec_to_json(options.spec);
    m["shape"] = {l.rows, l.cols};
    m["g_idx"] = !q->g_idx.empty();
    m["outliers"] = !q->outliers.empty();
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
  qc["bits_per_weight"] = report.bits_per_weight;
  qc["modules"] = modules;
  config["quantization_config"] = qc;
  report.seconds = seconds_since(t0);
  report.peak_rss_bytes = peak_rss_bytes();
  LLMQ_RETURN_IF_ERROR(writer->Commit(config.dump(2) + "\n", input_folder, {}));
  // Reopening validates what was written (and gives its size for the report).
  auto out = Checkpoint::Open(output_folder);
  if (!out.ok()) return out.status().WithContext("written output does not read back");
  report.output_bytes = (*out)->bytes_on_disk();
  report.seconds = seconds_since(t0);
  report.peak_rss_bytes = peak_rss_bytes();
  LLMQ_RETURN_IF_ERROR(internal::write_text_file_atomic(output_folder + "/llmq_report.json", report.ToJson() + "\n"));
  return report;
}

}  // namespace llmq
