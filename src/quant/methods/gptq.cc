// Row "gptq": GPTQ (Frantar et al., ICLR 2023), eq. (2)-(3): per block, H = 2 X Xᵀ of each
// linear's calibration inputs, then column by column q = quant(w_j), W_{:, j+1:} -= (w_j - q) /
// [H⁻¹]_jj · [H⁻¹]_{j, j+1:} with H⁻¹ through its upper Cholesky factor (the solver itself:
// src/quant/gptq.cc). This file also holds the block step every GPTQ-engine row shares (gptq,
// spqr, oac, spqr+oac): they differ only in where the Hessians come from and how a linear is
// solved.
#include <chrono>
#include <map>
#include <memory>
#include <optional>

#include "core/cluster.h"
#include "quant/block_store.h"
#include "quant/method.h"

namespace llmq::internal {
namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

}  // namespace

Result<BlockResult> gptq_engine_block(BlockContext& ctx, const HessianSource& hessians, const LinearSolver& solve,
                                      bool propagates_quantized) {
  const QuantizeOptions& options = ctx.options;
  const int64_t N = ctx.calib.num_windows();
  const int stages = options.true_sequential ? 4 : 1;
  BlockResult out;
  int64_t units = 0;
  for (int stage = 0; stage < stages; ++stage) {
    std::vector<LinearInfo> in_stage;
    for (const LinearInfo& l : ctx.linears)
      if (stages == 1 || input_slot(l.role) == stage) in_stage.push_back(l);
    if (in_stage.empty()) continue;
    const int64_t base = units;
    const auto th = Clock::now();
    auto collected = hessians(ctx, in_stage, [&](int64_t i, int64_t) { ctx.progress(base + i, "collecting inputs"); });
    if (!collected.ok()) return collected.status();
    out.hessian_seconds += seconds_since(th);
    units += N;
    if (ctx.cancelled()) return Status::Cancelled("interrupted");
    HessianMatrices h_of = std::move(*collected);  // one fp32 H per shared input
    // Under MPI each linear is solved on one rank and sent to the others.
    const Cluster& cluster = Cluster::World();
    std::vector<double> costs;
    for (const LinearInfo& l : in_stage) costs.push_back(double(l.cols) * double(l.cols) * double(l.rows + l.cols));
    const std::vector<int> solver = cluster.Assign(costs);
    std::vector<std::optional<QuantizedLinear>> solved(in_stage.size());
    for (size_t k = 0; k < in_stage.size(); ++k) {
      const LinearInfo& l = in_stage[k];
      if (solver[k] == cluster.rank()) {
        const auto tl = Clock::now();
        const std::vector<float>& H = *h_of[l.module];
        LLMQ_ASSIGN_OR_RETURN(std::vector<float> w, ctx.ckpt.linear_weight(l));
        double threshold = -1.0;
        auto g = solve(w.data(), l, H.data(), options, &threshold);
        if (!g.ok()) return g.status().WithContext(ctx.ckpt.folder() + ": " + l.module);
        LayerReport report = make_layer_report(l, w.data(), g->q, H.data());
        add_gptq_stats(*g, &report);
        solved[k] = QuantizedLinear{l, std::move(g->q), std::move(report)};
        solved[k]->report.outlier_threshold = threshold;
        solved[k]->report.seconds = seconds_since(tl);
        out.solve_seconds += solved[k]->report.seconds;
        units += N;
        ctx.progress(units, "gptq " + short_module_name(l.module));
      }
      h_of.erase(l.module);  // frees H once its last linear is done
    }
    for (size_t k = 0; k < in_stage.size() && cluster.distributed(); ++k) {
      std::vector<uint8_t> bytes = solved[k] ? pack_linear(*solved[k]) : std::vector<uint8_t>();
      cluster.Broadcast(&bytes, solver[k]);
      if (!solved[k]) {
        auto got = unpack_linear(in_stage[k], bytes);
        if (!got.ok()) return got.status().WithContext("linear solved on rank " + std::to_string(solver[k]));
        solved[k] = std::move(*got);
      }
    }
    for (size_t k = 0; k < in_stage.size(); ++k) {
      // Later stages of this block see this one quantized (true_sequential).
      if (propagates_quantized && stage + 1 < stages)
        LLMQ_RETURN_IF_ERROR(ctx.calib.model().SetLinearWeight(in_stage[k], dequantize(solved[k]->q)));
      out.linears.push_back(std::move(*solved[k]));
    }
    if (cluster.distributed()) ctx.progress(units = base + N * int64_t(1 + in_stage.size()), "solved");
  }
  return out;
}

HessianSource input_hessians() {
  return [](BlockContext& ctx, const std::vector<LinearInfo>& in_stage, const BlockwiseCalibrator::WindowProgress& p) {
    return ctx.calib.InputHessians(ctx.layer, in_stage, p);
  };
}

LinearSolver gptq_solver() {
  return [](const float* w, const LinearInfo& l, const float* h, const QuantizeOptions& o, double*) {
    return gptq_quantize(w, l.rows, l.cols, h, o.SpecFor(l.module), o.gptq);
  };
}

void gptq_config_json(const QuantizeOptions& o, nlohmann::ordered_json* qc) {
  (*qc)["act_order"] = o.gptq.act_order;
  (*qc)["static_groups"] = o.gptq.static_groups;
  (*qc)["damp"] = o.gptq.damp;
  (*qc)["true_sequential"] = o.true_sequential;
}

void gptq_report_json(const QuantizeReport& r, nlohmann::ordered_json* j) {
  (*j)["gptq"] = {{"damp", r.gptq.damp},
                  {"block_size", r.gptq.block_size},
                  {"act_order", r.gptq.act_order},
                  {"static_groups", r.gptq.static_groups}};
}

Method gptq_method() {
  Method m;
  m.name = "gptq";
  m.takes = {MethodOption::kGptq, MethodOption::kActOrder, MethodOption::kTrueSequential, MethodOption::kGgmlGrid, MethodOption::kBitBudget};
  m.config_json = gptq_config_json;
  m.report_json = gptq_report_json;
  m.quantize_block = [](BlockContext& ctx) { return gptq_engine_block(ctx, input_hessians(), gptq_solver(), true); };
  m.propagates_quantized = [](const QuantizeOptions&) { return true; };
  return m;
}

}  // namespace llmq::internal
