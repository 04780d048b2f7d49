// Rows "oac" and "spqr+oac": OAC (Edalati et al., arXiv 2405.17470), eq. (9)-(11): GPTQ (or SpQR)
// with the layer-input Hessian replaced by the output-adaptive one, H = Σ_n G_nᵀ G_n with
// G_n = Σ_t δ_t x_tᵀ the per-sequence gradient of the cross-entropy of the calibration text with
// respect to the weights (per token: Σ_t ‖δ_t‖² x_t x_tᵀ); the backward pass is
// BlockwiseCalibrator::CollectOutputAdaptiveHessians (algorithms.md §6).
#include "quant/method.h"

namespace llmq::internal {

HessianSource output_adaptive_hessians() {
  return [](BlockContext& ctx, const std::vector<LinearInfo>& in_stage, const BlockwiseCalibrator::WindowProgress& p) {
    // The float model's gradients: one backward pass per window serves every block (linear in depth).
    if (ctx.options.oac.once) ctx.calib.KeepOutputGradients(ctx.options.oac.gradient_memory_bytes);
    return ctx.calib.OutputAdaptiveHessians(ctx.layer, in_stage, ctx.options.oac.per_token, [&](int64_t i, int64_t n) {
      if (p) p(i, n);
    });
  };
}

// With --oac-once the next block sees this one in float, so every block's gradients are the
// float model's; otherwise block by block with the earlier blocks quantized.
bool oac_propagates_quantized(const QuantizeOptions& o) { return !o.oac.once; }

void oac_config_json(const QuantizeOptions& o, nlohmann::ordered_json* qc) {
  (*qc)["oac"] = {{"grad", o.oac.per_token ? "token" : "sequence"}, {"once", o.oac.once}};
}

void oac_report_json(const QuantizeReport& r, nlohmann::ordered_json* j) {
  (*j)["oac"] = {{"grad", r.oac.per_token ? "token" : "sequence"},
                 {"once", r.oac.once},
                 {"backward_seconds", r.oac_backward_seconds},
                 {"quantize_seconds", r.oac_quantize_seconds},
                 {"linear_in_depth", r.oac_linear_in_depth}};
}

Method oac_method() {
  Method m;
  m.name = "oac";
  m.takes = {MethodOption::kGptq, MethodOption::kActOrder, MethodOption::kOac, MethodOption::kGgmlGrid, MethodOption::kBitBudget};
  m.config_json = config_keys({oac_config_json, gptq_config_json});
  m.report_json = report_keys({oac_report_json, gptq_report_json});
  m.quantize_block = [](BlockContext& ctx) {
    return gptq_engine_block(ctx, output_adaptive_hessians(), gptq_solver(), oac_propagates_quantized(ctx.options),
                             /*rows_separable=*/true);
  };
  m.propagates_quantized = oac_propagates_quantized;
  return m;
}

Method spqr_oac_method() {
  Method m;
  m.name = "spqr+oac";
  m.takes = {MethodOption::kGptq, MethodOption::kActOrder, MethodOption::kOac, MethodOption::kOutliers};
  m.defaults = spqr_defaults;
  m.validate = spqr_validate;
  m.config_json = config_keys({oac_config_json, spqr_config_json, gptq_config_json});
  m.report_json = report_keys({oac_report_json, spqr_report_json, gptq_report_json});
  m.layer_json = spqr_layer_json;
  m.quantize_block = [](BlockContext& ctx) {
    return gptq_engine_block(ctx, output_adaptive_hessians(), spqr_solver(), oac_propagates_quantized(ctx.options));
  };
  m.propagates_quantized = oac_propagates_quantized;
  return m;
}

}  // namespace llmq::internal
