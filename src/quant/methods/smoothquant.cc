// Row "smoothquant": SmoothQuant (Xiao et al., ICML 2023), eq. (4): per input channel j of the
// linears a norm feeds, s_j = max|X_j|^alpha / max|W_:,j|^(1-alpha); X/s is folded into the
// norm (weight and bias), W·s into the linears, then per-channel int8 RTN of every linear; the
// output runs W8A8 (int8 activations per token). Gated MLPs also smooth down_proj's input
// through up_proj's rows. The scale math is src/quant/smoothquant.cc.
#include <chrono>
#include <map>

#include "io/hf_names.h"
#include "quant/method.h"
#include "quant/smoothquant.h"

namespace llmq::internal {
namespace {

using Clock = std::chrono::steady_clock;

// One block: activation ranges of the norm-fed inputs (q/k/v and gate/up, or OPT's fc1) on the
// float model, the smoothing folded, every linear quantized. Post-LN OPT has no norm in front of
// its linears to fold into: it is quantized unsmoothed.
Result<BlockResult> smoothquant_block(BlockContext& ctx) {
  const Checkpoint& ckpt = ctx.ckpt;
  const ModelConfig& cfg = ckpt.config();
  const auto t0 = Clock::now();
  LLMQ_ASSIGN_OR_RETURN(auto amax, ctx.calib.CollectInputAbsMax(ctx.layer, ctx.linears, [&](int64_t i, int64_t) {
    ctx.progress(i, "collecting activation ranges");
  }));
  std::map<std::string, std::vector<float>> w;
  for (const LinearInfo& l : ctx.linears) {
    LLMQ_ASSIGN_OR_RETURN(w[l.module], ckpt.linear_weight(l));
  }
  BlockResult out;
  const bool opt = cfg.family == ModelFamily::kOpt;
  if (!opt || cfg.do_layer_norm_before) {
    const std::pair<int, BlockNorm> sites[] = {{0, BlockNorm::kAttention}, {2, BlockNorm::kMlp}};  // input slots
    for (const auto& [slot, which] : sites) {
      const std::string norm = block_norm(cfg, ckpt.base_prefix(), ctx.layer, which);
      std::vector<SmoothedLinear> fed;
      const LinearInfo* first = nullptr;
      for (const LinearInfo& l : ctx.linears)
        if (input_slot(l.role) == slot) {
          fed.push_back({&w[l.module], l.rows});
          if (first == nullptr) first = &l;
        }
      if (first == nullptr) continue;
      LLMQ_ASSIGN_OR_RETURN(std::vector<float> nw, ckpt.get_float(norm + ".weight"));
      std::vector<float> nb;
      if (opt) {
        LLMQ_ASSIGN_OR_RETURN(nb, ckpt.get_float(norm + ".bias"));
      }
      const std::vector<float> s = smoothing_scales(*amax[first->module], fed, first->cols, ctx.options.alpha);
      fold_smoothing(s, &nw, opt ? &nb : nullptr, fed);
      out.rewritten.emplace_back(norm + ".weight", std::move(nw));
      if (opt) out.rewritten.emplace_back(norm + ".bias", std::move(nb));
    }
    // Gated MLP: down's input is linear in up's output, so up's rows carry down's smoothing
    // (llm-compressor's and deepcompressor's up -> down mapping; the paper's OPT has ReLU there).
    const LinearInfo *up = nullptr, *down = nullptr;
    for (const LinearInfo& l : ctx.linears) {
      if (l.role == LinearRole::kUp) up = &l;
      if (l.role == LinearRole::kDown) down = &l;
    }
    if (up != nullptr && down != nullptr) {
      std::vector<SmoothedLinear> fed{{&w[down->module], down->rows}};
      const std::vector<float> s = smoothing_scales(*amax[down->module], fed, down->cols, ctx.options.alpha);
      std::vector<float> up_bias;
      if (up->has_bias) {
        LLMQ_ASSIGN_OR_RETURN(up_bias, ckpt.get_float(up->module + ".bias"));
      }
      fold_smoothing_into_rows(s, &w[up->module], up->cols, &up_bias, fed);
      if (up->has_bias) out.rewritten.emplace_back(up->module + ".bias", std::move(up_bias));
    }
  }
  for (const LinearInfo& l : ctx.linears) {
    auto q = quantize_rtn(w[l.module].data(), l.rows, l.cols, ctx.options.spec);
    if (!q.ok()) return q.status().WithContext(ckpt.folder() + ": " + l.module);
    LayerReport lr = make_layer_report(l, w[l.module].data(), *q);  // against the smoothed weights
    lr.seconds = std::chrono::duration<double>(Clock::now() - t0).count() / double(ctx.linears.size());
    out.linears.push_back({l, std::move(*q), lr});
  }
  return out;
}

}  // namespace

Method smoothquant_method() {
  Method m;
  m.name = "smoothquant";
  m.takes = {MethodOption::kAlpha};
  m.defaults = [](QuantizeOptions* o) {  // W8A8: int8 per-channel weights
    o->spec.bits = 8;
    o->spec.group_size = 0;
  };
  m.validate = [](const QuantizeOptions& o) {
    if (o.spec.bits != 8 || o.spec.group_size != 0 || !o.spec.symmetric)
      return Status::InvalidArgument("smoothquant is W8A8: it needs --bits 8 --group-size 0 --sym (got " +
                                     o.spec.ToString() + ")");
    return Status::Ok();
  };
  m.config_json = [](const QuantizeOptions& o, nlohmann::ordered_json* qc) { (*qc)["alpha"] = o.alpha; };
  m.report_json = [](const QuantizeReport& r, nlohmann::ordered_json* j) { (*j)["alpha"] = r.alpha; };
  m.int8_activations = true;
  m.quantize_block = smoothquant_block;
  m.propagates_quantized = [](const QuantizeOptions&) { return false; };
  return m;
}

}  // namespace llmq::internal
