// Row "gptq": GPTQ (Frantar et al., ICLR 2023), eq. (2)-(3): per block, H = 2 X Xᵀ of each
// linear's calibration inputs, then column by column q = quant(w_j), W_{:, j+1:} -= (w_j - q) /
// [H⁻¹]_jj · [H⁻¹]_{j, j+1:} with H⁻¹ through its upper Cholesky factor (the solver itself:
// src/quant/gptq.cc). This file also holds the block step every GPTQ-engine row shares (gptq,
// spqr, oac, spqr+oac): they differ only in where the Hessians come from and how a linear is
// solved.
#include <algorithm>
#include <array>
#include <chrono>
#include <map>
#include <memory>
#include <optional>

#include "core/cluster.h"
#include "core/phase_clock.h"
#include "quant/block_store.h"
#include "quant/gptq_internal.h"
#include "quant/method.h"

namespace llmq::internal {
namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// One solve of a block step: linear `linear` of the stage, rows [row_begin, row_end).
// Or, with `factor`, the inverse factor of that linear's Hessian, which its row pieces share.
struct SolveItem {
  size_t linear;
  int64_t row_begin, row_end, rows;
  double cost;
  bool factor = false;
  bool whole() const { return !factor && row_begin == 0 && row_end == rows; }
  bool piece() const { return !factor && !whole(); }
};

// Cost of GPTQ on `rows` x `cols` (units of ~10 ps on this machine's core): the inverse's Cholesky
// factor (cols³, once per solve, whatever its rows), the lazy-batch products (about 0.6 cols per
// weight) and, per weight, the in-batch rank-1 updates and the rounding (~3900). Fitted to a phase
// trace of TinyLlama-wide blocks on two ranks of one thread (docs/RESULTS.md, issue 22): 2048 x 2048
// 0.29 s, 256 x 2048 0.12 s, 5632 x 2048 0.66 s, the 5632-wide factor 1.45 s, a 1024-row piece of
// 2048 x 5632 with that factor 0.42 s.
double factor_cost(int64_t cols) { return 0.8 * double(cols) * double(cols) * double(cols); }
double rows_cost(int64_t rows, int64_t cols) { return double(rows) * double(cols) * (0.6 * double(cols) + 3900.0); }
double solve_cost(int64_t rows, int64_t cols) { return factor_cost(cols) + rows_cost(rows, cols); }

// The largest per-rank total of `items` as the cluster assigns them.
double busiest_rank(const Cluster& cluster, const std::vector<SolveItem>& items) {
  std::vector<double> costs, load(size_t(cluster.size()), 0.0);
  for (const SolveItem& it : items) costs.push_back(it.cost);
  const std::vector<int> rank = cluster.Assign(costs);
  for (size_t i = 0; i < items.size(); ++i) load[size_t(rank[i])] += costs[i];
  return *std::max_element(load.begin(), load.end());
}

// The solves of a stage, in linear order. Under MPI a linear whose rows are independent may be
// cut into one row piece per rank (pieces start at GPTQ's row chunks: the same bits as the
// whole, gptq_internal.h) when that lowers the busiest rank's estimated load: its inverse factor
// (cols³) is then one item of its own, computed on one rank first and sent to the pieces' ranks
// (TinyLlama's down projection on 2 ranks: 1.9 s of factor and 1.5 s of rows, against 2.5 s for
// the six other linears).
std::vector<SolveItem> plan_solve_items(const Cluster& cluster, const std::vector<LinearInfo>& linears,
                                        const std::vector<bool>& rows_separable) {
  std::vector<SolveItem> items;
  for (size_t k = 0; k < linears.size(); ++k)
    items.push_back({k, 0, linears[k].rows, linears[k].rows, solve_cost(linears[k].rows, linears[k].cols)});
  const int ranks = cluster.size();
  if (ranks < 2) return items;
  // Try the costliest separable linear in pieces.
  size_t widest = items.size();
  for (size_t k = 0; k < linears.size(); ++k)
    if (rows_separable[k] && (widest == items.size() || items[k].cost > items[widest].cost)) widest = k;
  if (widest == items.size()) return items;
  const LinearInfo& l = linears[widest];
  const int64_t chunks = (l.rows + kGptqRowChunk - 1) / kGptqRowChunk, pieces = std::min<int64_t>(ranks, chunks);
  if (pieces < 2) return items;
  std::vector<SolveItem> split;
  for (const SolveItem& it : items) {
    if (it.linear != widest) {
      split.push_back(it);
      continue;
    }
    split.push_back({widest, 0, l.rows, l.rows, factor_cost(l.cols), /*factor=*/true});
    for (int64_t p = 0; p < pieces; ++p) {
      const int64_t b = std::min(l.rows, chunks * p / pieces * kGptqRowChunk);
      const int64_t e = std::min(l.rows, chunks * (p + 1) / pieces * kGptqRowChunk);
      split.push_back({widest, b, e, l.rows, rows_cost(e - b, l.cols)});
    }
  }
  return busiest_rank(cluster, split) < busiest_rank(cluster, items) ? split : items;
}

// Which of this rank's whole linears it solves before the factors go round: on the rank computing
// the factors none (they are what the others wait for); on the others, the costliest first while
// they end by the time the factors are ready (a linear that would end past it by more than half of
// its own cost waits until after the pieces). Without any factor, every whole linear.
std::vector<bool> whole_items_before_factors(const Cluster& cluster, const std::vector<SolveItem>& items,
                                             const std::vector<int>& solver) {
  std::vector<double> factor_load(size_t(cluster.size()), 0.0);
  for (size_t k = 0; k < items.size(); ++k)
    if (items[k].factor) factor_load[size_t(solver[k])] += items[k].cost;
  const double ready = *std::max_element(factor_load.begin(), factor_load.end());
  std::vector<size_t> mine;
  for (size_t k = 0; k < items.size(); ++k)
    if (items[k].whole() && solver[k] == cluster.rank()) mine.push_back(k);
  std::stable_sort(mine.begin(), mine.end(), [&](size_t a, size_t b) { return items[a].cost > items[b].cost; });
  std::vector<bool> before(items.size(), false);
  double done = factor_load[size_t(cluster.rank())];
  for (size_t k : mine)
    if (ready == 0.0 || done + 0.5 * items[k].cost <= ready) {
      before[k] = true;
      done += items[k].cost;
    }
  return before;
}

// A split linear's inverse factor from rank `owner` to every rank (the damping it took first, then
// the [cols, cols] factor, absent when every damping failed).
void broadcast_factor(const Cluster& cluster, int64_t cols, int owner, GptqFactor* f) {
  double head[3] = {f->damp, double(f->damp_retries), f->u.size() > 0 ? 1.0 : 0.0};
  cluster.Broadcast(head, sizeof head, owner);
  f->damp = head[0];
  f->damp_retries = int(head[1]);
  if (head[2] == 0.0) return;
  if (cluster.rank() != owner) f->u.resize(cols, cols);
  cluster.Broadcast(f->u.data(), uint64_t(f->u.size()) * sizeof(float), owner);
}

// Under MPI: each linear's report errors (relative and output-relative error, bits per weight)
// measured on one rank — the least loaded after the solves, greedy by cost (the output error is
// two (512 x cols) x (cols x cols) products: half a second for TinyLlama's down projection, which
// the rank that solved it no longer waits for) — and sent to the others.
Status measure_reports(BlockContext& ctx, const Cluster& cluster, const std::vector<SolveItem>& items,
                       const std::vector<int>& solver, const HessianMatrices& h_of, std::vector<QuantizedLinear>* whole) {
  std::vector<double> load(size_t(cluster.size()), 0.0);
  for (size_t k = 0; k < items.size(); ++k) load[size_t(solver[k])] += items[k].cost;
  std::vector<size_t> order(whole->size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  auto report_cost = [&](size_t i) {
    const LinearInfo& l = (*whole)[i].linear;
    return 3.0 * double(std::min<int64_t>(l.rows, 512)) * double(l.cols) * double(l.cols);  // solve_cost's units
  };
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return report_cost(a) > report_cost(b); });
  std::vector<int> measurer(whole->size(), 0);
  for (size_t i : order) {
    measurer[i] = int(std::min_element(load.begin(), load.end()) - load.begin());
    load[size_t(measurer[i])] += report_cost(i);
  }
  // Every rank measures all of its linears first, then the errors go round: a broadcast after
  // each measurement kept the other rank waiting through it (the two ranks took turns).
  std::vector<std::array<double, 3>> errors(whole->size(), {0.0, 0.0, 0.0});
  for (size_t i = 0; i < whole->size(); ++i) {
    if (measurer[i] != cluster.rank()) continue;
    const QuantizedLinear& ql = (*whole)[i];
    std::optional<ScopedPhase> phase(Phase::kLoad);
    LLMQ_ASSIGN_OR_RETURN(std::vector<float> w, ctx.ckpt.linear_weight(ql.linear));
    phase.emplace(Phase::kSolve);
    const LayerReport measured = make_layer_report(ql.linear, w.data(), ql.q, h_of.at(ql.linear.module)->data());
    errors[i] = {measured.relative_error, measured.output_relative_error, measured.bits_per_weight};
  }
  for (size_t i = 0; i < whole->size(); ++i) {
    cluster.Broadcast(errors[i].data(), sizeof(double) * 3, measurer[i]);
    QuantizedLinear& ql = (*whole)[i];
    ql.report.module = ql.linear.module;
    ql.report.rows = ql.linear.rows;
    ql.report.cols = ql.linear.cols;
    ql.report.relative_error = errors[i][0];
    ql.report.output_relative_error = errors[i][1];
    ql.report.bits_per_weight = errors[i][2];
  }
  return Status::Ok();
}

}  // namespace

Result<BlockResult> gptq_engine_block(BlockContext& ctx, const HessianSource& hessians, const LinearSolver& solve,
                                      bool propagates_quantized, bool rows_separable) {
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
    // Under MPI each linear is solved on one rank and sent to the others; the costliest one may
    // be solved in row pieces when the solver's rows are independent (GPTQ: every row is
    // quantized with the same H, so the pieces are the whole's rows, bit for bit).
    const Cluster& cluster = Cluster::World();
    std::vector<bool> separable;
    for (const LinearInfo& l : in_stage) {
      const QuantSpec& spec = options.SpecFor(l.module);
      separable.push_back(rows_separable && spec.scale_bits == 0 && !spec.bilevel_zeros() && !spec.lookup &&
                          !(options.gptq.outlier_threshold > 0.0));
    }
    const std::vector<SolveItem> items = plan_solve_items(cluster, in_stage, separable);
    std::vector<double> costs;
    for (const SolveItem& it : items) costs.push_back(it.cost);
    const std::vector<int> solver = cluster.Assign(costs);
    std::vector<std::optional<QuantizedLinear>> solved(items.size());
    // A split linear's inverse factor, by linear (row pieces: GPTQ's solver, rows_separable).
    std::map<size_t, GptqFactor> factors;
    auto solve_item = [&](size_t k) -> Status {
      const SolveItem& it = items[k];
      const LinearInfo& l = in_stage[it.linear];
      const auto tl = Clock::now();
      const std::vector<float>& H = *h_of[l.module];
      std::optional<ScopedPhase> phase(Phase::kLoad);
      LLMQ_ASSIGN_OR_RETURN(std::vector<float> w, ctx.ckpt.linear_weight(l));
      phase.emplace(Phase::kSolve);
      LinearInfo piece = l;
      piece.rows = it.row_end - it.row_begin;
      double threshold = -1.0;
      auto g = it.piece() ? gptq_quantize_with_factor(w.data() + it.row_begin * l.cols, piece.rows, l.cols, H.data(),
                                                      options.SpecFor(l.module), options.gptq, factors.at(it.linear))
                          : solve(w.data() + it.row_begin * l.cols, piece, H.data(), options, &threshold);
      if (!g.ok()) return g.status().WithContext(ctx.ckpt.folder() + ": " + l.module);
      // Under MPI the report's errors are measured later, by the rank with the least work.
      LayerReport report;
      if (!cluster.distributed()) report = make_layer_report(l, w.data(), g->q, H.data());
      add_gptq_stats(*g, &report);
      solved[k] = QuantizedLinear{piece, std::move(g->q), std::move(report)};
      solved[k]->report.outlier_threshold = threshold;
      solved[k]->report.seconds = seconds_since(tl);
      out.solve_seconds += solved[k]->report.seconds;
      units += N;
      ctx.progress(units, "gptq " + short_module_name(l.module));
      return Status::Ok();
    };
    // This rank's factors first (the pieces on other ranks wait for them); meanwhile the other
    // ranks solve whole linears worth about as long (the broadcast of the factors is a meeting:
    // whoever comes first waits); then the factors go round, then the pieces, then the rest of the
    // whole linears.
    const std::vector<bool> before_factors = whole_items_before_factors(cluster, items, solver);
    for (size_t k = 0; k < items.size(); ++k)
      if (items[k].factor && solver[k] == cluster.rank()) {
        const LinearInfo& l = in_stage[items[k].linear];
        ScopedPhase phase(Phase::kSolve);
        factors[items[k].linear] = gptq_factor(h_of[l.module]->data(), l.cols, options.gptq);
      }
    for (size_t k = 0; k < items.size(); ++k)
      if (before_factors[k]) LLMQ_RETURN_IF_ERROR(solve_item(k));
    for (size_t k = 0; k < items.size(); ++k)
      if (items[k].factor) broadcast_factor(cluster, in_stage[items[k].linear].cols, solver[k], &factors[items[k].linear]);
    for (size_t k = 0; k < items.size(); ++k)
      if (items[k].piece() && solver[k] == cluster.rank()) LLMQ_RETURN_IF_ERROR(solve_item(k));
    for (size_t k = 0; k < items.size(); ++k)
      if (items[k].whole() && solver[k] == cluster.rank() && !before_factors[k]) LLMQ_RETURN_IF_ERROR(solve_item(k));
    factors.clear();
    // All the solved linears go round first, then each rank unpacks the others' (unpacking
    // between the broadcasts kept the other rank waiting).
    std::vector<std::vector<uint8_t>> sent(items.size());
    for (size_t k = 0; k < items.size() && cluster.distributed(); ++k) {
      if (items[k].factor) continue;
      if (solved[k]) sent[k] = pack_linear(*solved[k]);
      cluster.Broadcast(&sent[k], solver[k]);
    }
    for (size_t k = 0; k < items.size() && cluster.distributed(); ++k) {
      if (solved[k] || items[k].factor) continue;
      LinearInfo piece = in_stage[items[k].linear];
      piece.rows = items[k].row_end - items[k].row_begin;
      auto got = unpack_linear(piece, sent[k]);
      if (!got.ok()) return got.status().WithContext("linear solved on rank " + std::to_string(solver[k]));
      solved[k] = std::move(*got);
      std::vector<uint8_t>().swap(sent[k]);
    }
    // Every linear whole again: row pieces joined, their statistics combined; under MPI the report's
    // errors are measured on the whole by the least loaded rank (measure_reports).
    std::vector<QuantizedLinear> whole;
    for (size_t k = 0; k < items.size();) {
      const LinearInfo& l = in_stage[items[k].linear];
      if (items[k].factor) {
        ++k;
        continue;
      }
      if (items[k].whole()) {
        whole.push_back(std::move(*solved[k]));
        ++k;
        continue;
      }
      std::vector<QuantizedTensor> pieces;
      LayerReport report = solved[k]->report;
      double seconds = 0.0, loss = 0.0;
      int64_t outliers = 0;
      size_t pieces_joined = 0;
      for (const size_t linear = items[k].linear; k < items.size() && items[k].linear == linear; ++k, ++pieces_joined) {
        seconds += solved[k]->report.seconds;
        loss += solved[k]->report.gptq_loss;
        outliers += solved[k]->report.outliers;
        pieces.push_back(std::move(solved[k]->q));
      }
      auto q = join_row_pieces(std::move(pieces));
      if (!q.ok()) return q.status().WithContext(l.module);
      report.module = l.module;
      report.rows = l.rows;
      report.cols = l.cols;
      report.seconds = seconds;
      report.gptq_loss = loss;
      report.outliers = outliers;
      report.row_pieces = int(pieces_joined);
      whole.push_back(QuantizedLinear{l, std::move(*q), std::move(report)});
    }
    if (cluster.distributed()) LLMQ_RETURN_IF_ERROR(measure_reports(ctx, cluster, items, solver, h_of, &whole));
    for (const LinearInfo& l : in_stage) h_of.erase(l.module);
    for (size_t k = 0; k < in_stage.size(); ++k) {
      // Later stages of this block see this one quantized (true_sequential).
      if (propagates_quantized && stage + 1 < stages)
        LLMQ_RETURN_IF_ERROR(ctx.calib.model().SetLinearWeight(in_stage[k], dequantize(whole[k].q)));
      out.linears.push_back(std::move(whole[k]));
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
  m.quantize_block = [](BlockContext& ctx) {
    return gptq_engine_block(ctx, input_hessians(), gptq_solver(), true, /*rows_separable=*/true);
  };
  m.propagates_quantized = [](const QuantizeOptions&) { return true; };
  return m;
}

}  // namespace llmq::internal
