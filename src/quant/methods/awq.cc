// Rows "awq" and "awq+gptq": AWQ (Lin et al., "AWQ: Activation-aware Weight Quantization for LLM
// Compression and Acceleration", MLSys 2024), eq. (4)-(5): per scaling site the input channels of
// the linears are multiplied by s = mean|x|^alpha (AutoAWQ's duo scaling divides by the weights'
// mean^(1-alpha)), alpha searched on a grid to minimize the site's output MSE, 1/s folded into the
// norm or linear in front; then a per-group clip search, and RTN ("awq") or GPTQ ("awq+gptq") of
// the scaled weights. The searches are src/quant/awq.cc.
#include <chrono>
#include <map>
#include <memory>

#include "core/phase_clock.h"
#include "quant/awq.h"
#include "quant/method.h"

namespace llmq::internal {
namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

nlohmann::ordered_json awq_options_json(const AwqOptions& a) {
  return {{"grid", a.grid},           {"duo_scaling", a.duo_scaling}, {"clip", a.clip},
          {"clip_grid", a.clip_grid}, {"max_shrink", a.max_shrink},   {"clip_tokens", a.clip_tokens},
          {"gqa_v_to_o", a.gqa_v_to_o}};
}

// One block: the inputs of its linears on the float block, the scale search per site and the
// clip search, then RTN or GPTQ of the scaled weights; the folded norms and biases are
// rewritten tensors. awq+gptq propagates the quantized block (with the folded tensors) so the
// next block sees its error, as in GPTQ; plain AWQ propagates the float block, as the reference.
Result<BlockResult> awq_block_step(BlockContext& ctx, bool gptq) {
  const QuantizeOptions& options = ctx.options;
  const int64_t N = ctx.calib.num_windows();
  LLMQ_ASSIGN_OR_RETURN(auto inputs, ctx.calib.CollectInputs(ctx.layer, ctx.linears, [&](int64_t i, int64_t) {
    ctx.progress(i, "collecting inputs");
  }));
  ScopedPhase phase(Phase::kSolve);  // the search of scales and clips, then the per-linear quantization
  const auto t0 = Clock::now();
  LLMQ_ASSIGN_OR_RETURN(AwqBlock awq, awq_block(ctx.calib.model(), ctx.ckpt, ctx.layer, ctx.linears, inputs,
                                                ctx.calib.seq_len(),
                                                [&](const std::string& m) -> const QuantSpec& { return options.SpecFor(m); },
                                                options.awq));
  const double search_seconds = seconds_since(t0) / double(ctx.linears.size());
  BlockResult out;
  std::map<const std::vector<float>*, std::shared_ptr<const std::vector<float>>> h_of_input;
  int64_t units = N;
  for (const LinearInfo& l : ctx.linears) {
    const auto tl = Clock::now();
    const std::vector<float>* x = inputs[l.module].get();
    if (!h_of_input.count(x)) {
      ScopedPhase hessian(Phase::kHessian);
      HessianAccumulator acc(l.cols);
      acc.Add(x->data(), int64_t(x->size()) / l.cols);
      h_of_input[x] = std::make_shared<const std::vector<float>>(acc.Hessian());
    }
    const std::vector<float>& H = *h_of_input[x];
    const std::vector<float>& w = awq.weights[l.module];
    QuantizedTensor q;
    GptqResult g;
    if (gptq) {
      auto r = gptq_quantize(w.data(), l.rows, l.cols, H.data(), options.SpecFor(l.module), options.gptq);
      if (!r.ok()) return r.status().WithContext(ctx.ckpt.folder() + ": " + l.module);
      g = std::move(*r);
      q = std::move(g.q);
    } else {
      auto r = quantize_rtn(w.data(), l.rows, l.cols, options.SpecFor(l.module));
      if (!r.ok()) return r.status().WithContext(ctx.ckpt.folder() + ": " + l.module);
      q = std::move(*r);
    }
    // Errors against the scaled float weights before clipping: the clip is part of the error.
    const std::vector<float>& exact = awq.unclipped.count(l.module) ? awq.unclipped[l.module] : w;
    LayerReport lr = make_layer_report(l, exact.data(), q, H.data());
    if (gptq) add_gptq_stats(g, &lr);
    if (awq.site_of.count(l.module)) {
      const AwqSiteResult& site = awq.site_of[l.module];
      lr.awq_alpha = site.alpha;
      lr.awq_loss = site.loss;
      lr.awq_loss_unscaled = site.loss_unscaled;
    }
    if (awq.clip_shrink.count(l.module)) lr.awq_clip_shrink = awq.clip_shrink[l.module];
    lr.seconds = seconds_since(tl) + search_seconds;
    out.solve_seconds += lr.seconds;
    out.linears.push_back({l, std::move(q), lr});
    units += N;
    ctx.progress(units, (gptq ? "awq+gptq " : "awq ") + short_module_name(l.module));
  }
  out.rewritten = std::move(awq.replaced);
  return out;
}

void awq_defaults(QuantizeOptions* o) { o->calibration.seq_len = 512; }  // AWQ's reference calibrates on 512-token blocks

Status awq_validate(const QuantizeOptions& o) {
  const AwqOptions& a = o.awq;
  if (a.grid < 1 || a.grid > 1000 || a.clip_grid < 1 || a.clip_tokens < 1 || !(a.max_shrink >= 0.0 && a.max_shrink < 1.0))
    return Status::InvalidArgument("awq: grid must be in 1..1000, clip_grid and clip_tokens positive and max_shrink in [0, 1)");
  return Status::Ok();
}

void awq_config_json(const QuantizeOptions& o, nlohmann::ordered_json* qc) { (*qc)["awq"] = awq_options_json(o.awq); }
void awq_report_json(const QuantizeReport& r, nlohmann::ordered_json* j) { (*j)["awq"] = awq_options_json(r.awq); }

}  // namespace

Method awq_method() {
  Method m;
  m.name = "awq";
  m.takes = {MethodOption::kAwq, MethodOption::kGgmlGrid, MethodOption::kBitBudget};
  m.defaults = awq_defaults;
  m.validate = awq_validate;
  m.config_json = awq_config_json;
  m.report_json = awq_report_json;
  m.quantize_block = [](BlockContext& ctx) { return awq_block_step(ctx, false); };
  m.propagates_quantized = [](const QuantizeOptions&) { return false; };
  return m;
}

Method awq_gptq_method() {
  Method m;
  m.name = "awq+gptq";
  m.takes = {MethodOption::kAwq, MethodOption::kGptq, MethodOption::kActOrder, MethodOption::kGgmlGrid, MethodOption::kBitBudget};
  m.defaults = awq_defaults;
  m.validate = awq_validate;
  m.config_json = config_keys({awq_config_json, gptq_config_json});
  m.report_json = report_keys({awq_report_json, gptq_report_json});
  m.quantize_block = [](BlockContext& ctx) { return awq_block_step(ctx, true); };
  m.propagates_quantized = [](const QuantizeOptions&) { return true; };
  return m;
}

}  // namespace llmq::internal
