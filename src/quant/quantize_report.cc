// QuantizeReport::ToJson: the generic keys here, each method's own keys from its row
// (method.h). Keys are documented in README.md ("JSON report").
#include <sys/resource.h>

#include <algorithm>
#include <nlohmann/json.hpp>

#include "llmq/kernels.h"
#include "llmq/quantize.h"
#include "quant/method.h"

namespace llmq {

uint64_t peak_rss_bytes() {
  struct rusage ru {};
  getrusage(RUSAGE_SELF, &ru);
  return uint64_t(ru.ru_maxrss) * 1024u;
}

std::string QuantizeReport::ToJson() const {
  const internal::Method* m = internal::find_method(method);
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
                        {"resumed_blocks", calibration.resumed_blocks},
                        {"ranks", calibration.ranks},
                        {"seconds", calibration.seconds}};
    auto phases = [](const CalibrationReport::PhaseSeconds& ph) {
      return nlohmann::ordered_json{{"load", ph.load},         {"forward", ph.forward}, {"hessian", ph.hessian},
                                    {"exchange", ph.exchange}, {"solve", ph.solve},     {"write", ph.write},
                                    {"other", ph.other}};
    };
    j["calibration"]["phase_seconds"] = phases(calibration.phase_seconds);
    if (!calibration.rank_phase_seconds.empty()) {
      j["calibration"]["rank_phase_seconds"] = nlohmann::ordered_json::array();
      for (const auto& ph : calibration.rank_phase_seconds) j["calibration"]["rank_phase_seconds"].push_back(phases(ph));
    }
    j["true_sequential"] = true_sequential;
  }
  j["int8_activations"] = int8_activations;
  if (activation_outliers.enabled())
    j["activation_outliers"] = {{"threshold", activation_outliers.threshold}, {"integer", activation_outliers.integer}};
  j["unused_tensors"] = unused_tensors;
  if (!gguf_type.empty()) {
    j["gguf_type"] = gguf_type;
    j["tensor_types"] = tensor_types;
    j["gguf_fallbacks"] = gguf_fallbacks;
  }
  if (!bit_sensitivity.empty()) {
    nlohmann::ordered_json menu = nlohmann::ordered_json::array();
    for (const QuantSpec& s : bit_menu) menu.push_back(s.ToString());
    j["bit_budget"] = {{"target_bits", target_bits},
                       {"sensitivity", bit_sensitivity},
                       {"estimate", bit_estimate},
                       {"menu", menu},
                       {"planned_bits_per_weight", bit_plan_bits},
                       {"estimated_loss", bit_plan_loss},
                       {"seconds", bit_plan_seconds}};
  }
  j["kernel_isa"] = isa_name(active_isa());  // the ISA of the kernels this process runs (LLMQ_ISA can lower it)
  if (m != nullptr && m->report_json) m->report_json(*this, &j);
  nlohmann::ordered_json arr = nlohmann::ordered_json::array();
  for (const auto& l : layers) {
    nlohmann::ordered_json e = {{"module", l.module},
                                {"shape", {l.rows, l.cols}},
                                {"relative_error", l.relative_error},
                                {"bits_per_weight", l.bits_per_weight},
                                {"seconds", l.seconds}};
    if (m != nullptr && m->layer_json) m->layer_json(l, &e);
    if (!l.bit_choice.empty()) {
      e["bit_choice"] = l.bit_choice;
      e["estimated_loss"] = l.estimated_loss;
    }
    if (calibrated) {
      e["output_relative_error"] = l.output_relative_error;
      if (l.gptq_loss >= 0) e["gptq_loss"] = l.gptq_loss;
      if (l.damp >= 0) e["damp"] = l.damp;
      e["damp_retries"] = l.damp_retries;
      e["fell_back_to_rtn"] = l.fell_back_to_rtn;
      e["dead_columns"] = l.dead_columns;
      if (l.row_pieces > 1) e["row_pieces"] = l.row_pieces;
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

}  // namespace llmq
