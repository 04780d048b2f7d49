// OAC's two costs (issue 9's bounds), each against a baseline measured in the same process:
//   BM_OacBackward           one calibration window (256 tokens, and the model's calibration
//                            length min(2048, context)) through the gradient engine (its taping
//                            forward, the loss, the backward to every linear) against the runtime
//                            forward of the same window: vs_forward (bound: <= 3).
//   BM_OacHessianAccumulate  the output-adaptive Hessian update of one window for one linear
//                            against the same products as plain Eigen fp32 GEMMs:
//                            vs_eigen_gemm = Eigen time / llmq time (bound: >= 0.5). Per
//                            sequence, GFLOPS counts the direct route's flops (G = Dᵀ X, then GᵀG),
//                            so where llmq goes through the n×n matrix D Dᵀ it reads above peak.
// Models: the shared ones (sorted folders of ../shared/models) and a synthetic Llama-shaped one
// (hidden 1024, 4 layers, vocab 32000; random weights: time only, never quality).
#include <benchmark/benchmark.h>
#include <llmq/llmq.h>

#include "bench_util.h"
#include "model/backward.h"
#include "quant/calibration.h"
#include "synthetic_checkpoint.h"
#include "dense.h"

#include <Eigen/Core>
#include <chrono>
#include <filesystem>

namespace {

namespace fs = std::filesystem;
using llmq::bench::RowMatF;

// args: model (0, 1: shared models; 2: synthetic Llama-shaped), tokens per window
void BM_OacBackward(benchmark::State& state) {
  const bool synthetic = state.range(0) == 2;
  const fs::path tmp = fs::temp_directory_path() / "llmq-bench-oac-synthetic";
  std::string folder = synthetic ? tmp.string() : llmq::bench::shared_model_dir(int(state.range(0)));
  if (folder.empty()) {
    state.SkipWithError("no such model under " LLMQ_SHARED_DIR "/models");
    return;
  }
  if (synthetic) {
    fs::remove_all(tmp);
    fs::create_directories(tmp);
    const llmq::Status st = llmq::bench::write_synthetic_llama(folder, {1024, 2816, 4, 16, 16, 32000}, false);
    if (!st.ok()) {
      state.SkipWithError(st.ToString().c_str());
      return;
    }
  }
  auto model = llmq::Model::Load(folder);
  if (!model.ok()) {
    state.SkipWithError(model.status().ToString().c_str());
    return;
  }
  const llmq::Model& m = **model;
  const auto& cfg = m.config();
  const int64_t n = std::min<int64_t>(state.range(1), cfg.max_position_embeddings);
  std::vector<int32_t> ids(size_t(n), 0);
  for (int64_t i = 0; i < n; ++i) ids[size_t(i)] = int32_t((i * 7919 + 1) % cfg.vocab_size);
  llmq::KVCache cache = m.NewCache(n);
  const double forward = llmq::bench::best_seconds(3, [&](int) {
    cache.length = 0;
    auto logits = m.Forward(ids.data(), n, &cache);
    benchmark::DoNotOptimize(logits);
  });
  std::vector<float> x(size_t(n * cfg.hidden_size));
  double total = 0, loss = 0;
  llmq::internal::BackwardWorkspace workspace;  // reused across windows, as the OAC driver does
  for (auto _ : state) {
    const auto t0 = std::chrono::steady_clock::now();
    if (!m.Embed(ids.data(), n, 0, x.data()).ok()) {
      state.SkipWithError("embedding failed");
      break;
    }
    auto g = llmq::internal::backward_window(m, 0, -1, x.data(), ids.data(), n, nullptr, &workspace);
    total += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (!g.ok()) {
      state.SkipWithError(g.status().ToString().c_str());
      break;
    }
    loss = g->loss;
  }
  const double per = total / double(state.iterations());
  state.counters["forward_ms"] = forward * 1e3;
  state.counters["vs_forward"] = per / forward;
  state.counters["loss"] = loss;
  state.SetLabel((synthetic ? std::string("synthetic-llama-1024x4") : fs::path(folder).filename().string()) +
                 " seq " + std::to_string(n));
  if (synthetic) fs::remove_all(tmp);
}
BENCHMARK(BM_OacBackward)->ArgsProduct({{0, 1, 2}, {256, 2048}})->Unit(benchmark::kMillisecond)->UseRealTime();

// args: rows, cols, tokens, per_token (0: per-sequence G = Σ_t δ_t x_tᵀ, H += GᵀG; 1: per-token
// H += Σ_t ‖δ_t‖² x_t x_tᵀ). The baseline is the same products as fp32 Eigen GEMMs, no scaling.
void BM_OacHessianAccumulate(benchmark::State& state) {
  const int64_t rows = state.range(0), cols = state.range(1), tokens = state.range(2);
  const bool per_token = state.range(3) != 0;
  const auto x = llmq::bench::gaussian(size_t(tokens * cols), 3, 1.0f);
  const auto delta = llmq::bench::gaussian(size_t(tokens * rows), 4, 1e-3f);
  // Eigen GEMMs through the dense layer: the Eigen of the ISA the library runs.
  std::vector<float> g(static_cast<size_t>(rows * cols)), c(static_cast<size_t>(cols * cols));
  const double gemm = llmq::bench::best_seconds(2, [&](int) {
    if (per_token) {
      llmq::dense::gemm(true, false, cols, cols, tokens, 1.0f, x.data(), cols, x.data(), cols, 0.0f, c.data(), cols);
    } else {
      llmq::dense::gemm(true, false, rows, cols, tokens, 1.0f, delta.data(), rows, x.data(), cols, 0.0f, g.data(), cols);
      llmq::dense::gemm(true, false, cols, cols, rows, 1.0f, g.data(), cols, g.data(), cols, 0.0f, c.data(), cols);
    }
    benchmark::DoNotOptimize(c.data());
  });
  llmq::HessianAccumulator acc(cols);
  double total = 0;
  for (auto _ : state) {
    const auto t0 = std::chrono::steady_clock::now();
    llmq::internal::add_output_adaptive(&acc, x.data(), delta.data(), tokens, rows, float(tokens - 1), per_token);
    total += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
  const double per = total / double(state.iterations());
  const double flops = per_token ? 2.0 * double(tokens) * double(cols) * double(cols)
                                 : 2.0 * double(rows) * double(cols) * (double(tokens) + double(cols));
  state.counters["GFLOPS"] = flops / per / 1e9;
  state.counters["vs_eigen_gemm"] = gemm / per;
  state.SetLabel(per_token ? "per-token" : "per-sequence");
}
BENCHMARK(BM_OacHessianAccumulate)
    ->ArgsProduct({{4096}, {4096}, {512, 2048}, {0, 1}})
    ->Args({11008, 4096, 2048, 0})
    ->Args({256, 256, 256, 0})
    ->Args({256, 256, 256, 1})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

}  // namespace
