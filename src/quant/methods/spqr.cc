// Row "spqr": SpQR (Dettmers et al., arXiv 2306.03078), Alg. 1: GPTQ with small groups (16), the
// group scales themselves quantized to 3 bits in chunks of 16 rows (bilevel, QuantSpec.scale_bits)
// and the weights whose Hessian-weighted error ((w - q) / [H⁻¹]_jj)² exceeds tau times the mean
// kept in fp16 as a sparse part (GptqOptions.outlier_threshold; the solver is src/quant/gptq.cc).
// With target_bits the threshold is chosen per linear to meet a bit budget.
#include <cmath>

#include "quant/method.h"

namespace llmq::internal {
namespace {

// The outlier threshold (relative, log-bisected over 1e-3 .. 1e4) with the most outliers whose
// bits per weight stay within `target`; no outliers when even those exceed it. The threshold
// used is left in *threshold (0: no outliers).
Result<GptqResult> spqr_to_target_bits(const float* w, int64_t rows, int64_t cols, const float* h,
                                       const QuantSpec& spec, GptqOptions options, double target, double* threshold) {
  options.outlier_threshold = 0.0;  // none
  *threshold = 0.0;
  LLMQ_ASSIGN_OR_RETURN(GptqResult best, gptq_quantize(w, rows, cols, h, spec, options));
  if (best.q.bits_per_weight() >= target) return best;
  double lo = std::log(1e-3), hi = std::log(1e4);  // bits fall as the threshold rises
  for (int it = 0; it < 14; ++it) {
    const double mid = 0.5 * (lo + hi);
    options.outlier_threshold = std::exp(mid);
    LLMQ_ASSIGN_OR_RETURN(GptqResult r, gptq_quantize(w, rows, cols, h, spec, options));
    if (r.q.bits_per_weight() <= target) {
      hi = mid;
      best = std::move(r);
      *threshold = options.outlier_threshold;
    } else {
      lo = mid;
    }
  }
  return best;
}

}  // namespace

// SpQR's reference README: groups of 16, zero points, 3-bit bilevel scales and zeros in chunks of
// 16 rows, percdamp 1, tau 0.2, the leave-one-out outlier pass.
void spqr_defaults(QuantizeOptions* o) {
  o->spec.group_size = 16;
  o->spec.symmetric = false;
  o->spec.scale_bits = 3;
  o->spec.zero_bits = 3;
  o->spec.scale_group_rows = 16;
  o->gptq.damp = 1.0;
  o->gptq.outlier_threshold = 0.2;
  o->gptq.outlier_leave_one_out = true;
}

Status spqr_validate(const QuantizeOptions& o) {
  if (o.target_bits <= 0.0 && !(o.gptq.outlier_threshold > 0.0))  // target_bits picks it per linear
    return Status::InvalidArgument("spqr: outlier_threshold must be positive (infinity: no outliers), or give target_bits");
  return Status::Ok();
}

LinearSolver spqr_solver() {
  return [](const float* w, const LinearInfo& l, const float* h, const QuantizeOptions& o, double* threshold) {
    if (o.target_bits > 0) return spqr_to_target_bits(w, l.rows, l.cols, h, o.spec, o.gptq, o.target_bits, threshold);
    *threshold = o.gptq.outlier_threshold;
    return gptq_quantize(w, l.rows, l.cols, h, o.spec, o.gptq);
  };
}

void spqr_config_json(const QuantizeOptions& o, nlohmann::ordered_json* qc) {
  (*qc)["outlier_threshold"] = o.gptq.outlier_threshold;
  if (o.target_bits > 0) (*qc)["target_bits"] = o.target_bits;
}

void spqr_report_json(const QuantizeReport& r, nlohmann::ordered_json* j) {
  (*j)["spqr"] = {{"outlier_threshold", r.gptq.outlier_threshold},
                  {"scale_bits", r.spec.scale_bits},
                  {"zero_bits", r.spec.bilevel_zeros() ? r.spec.zero_bits : 0},
                  {"scale_group_rows", r.spec.scale_group_rows},
                  {"leave_one_out", r.gptq.outlier_leave_one_out},
                  {"target_bits", r.target_bits}};
  (*j)["outlier_fraction"] = outlier_fraction(r);
}

void spqr_layer_json(const LayerReport& l, nlohmann::ordered_json* e) {
  (*e)["outliers"] = l.outliers;
  (*e)["outlier_threshold"] = l.outlier_threshold;
}

Method spqr_method() {
  Method m;
  m.name = "spqr";
  m.takes = {MethodOption::kGptq, MethodOption::kActOrder, MethodOption::kTrueSequential, MethodOption::kOutliers};
  m.defaults = spqr_defaults;
  m.validate = spqr_validate;
  m.config_json = config_keys({spqr_config_json, gptq_config_json});
  m.report_json = report_keys({spqr_report_json, gptq_report_json});
  m.layer_json = spqr_layer_json;
  m.quantize_block = [](BlockContext& ctx) { return gptq_engine_block(ctx, input_hessians(), spqr_solver(), true); };
  m.propagates_quantized = [](const QuantizeOptions&) { return true; };
  return m;
}

}  // namespace llmq::internal
