// GPTQ cost on Llama-7B-shaped layers: the per-layer solve given H (target: 4096x4096 in
// <= 3 s on 2 threads) and Hessian accumulation, reported against an Eigen fp32 GEMM of the
// same shape measured in the same process (ratio `vs_eigen_gemm`, noise-robust).
#include <benchmark/benchmark.h>
#include <llmq/llmq.h>

#include "bench_util.h"
#include "dense.h"

#include <Eigen/Core>
#include <chrono>
#include <random>

namespace {

using llmq::bench::gaussian;
using llmq::bench::RowMatF;

// Seconds for C = X^T X with X [tokens, cols] as an Eigen fp32 GEMM (best of 3), through the dense
// layer so that it is the Eigen of the ISA the library runs (the bench itself has no ISA flags).
double eigen_gram_seconds(const std::vector<float>& x, int64_t tokens, int64_t cols) {
  std::vector<float> c(static_cast<size_t>(cols * cols));
  return llmq::bench::best_seconds(3, [&](int) {
    llmq::dense::gemm(true, false, cols, cols, tokens, 1.0f, x.data(), cols, x.data(), cols, 0.0f, c.data(), cols);
    benchmark::DoNotOptimize(c.data());
  });
}

// A realistic H: 2048 calibration tokens with uneven channel energy.
std::vector<float> hessian_for(int64_t cols) {
  const int64_t tokens = 2048;
  auto x = gaussian(size_t(tokens * cols), 7, 1.0f);
  for (int64_t t = 0; t < tokens; ++t)
    for (int64_t c = 0; c < cols; ++c) x[size_t(t * cols + c)] *= 0.5f + float(c % 17) / 8.0f;
  llmq::HessianAccumulator acc(cols);
  acc.Add(x.data(), tokens);
  return acc.Hessian();
}

void BM_GptqLayer(benchmark::State& state) {
  const int64_t rows = state.range(0), cols = state.range(1);
  llmq::QuantSpec spec;
  spec.bits = int(state.range(2));
  spec.group_size = int(state.range(3));
  llmq::GptqOptions opt;
  opt.act_order = state.range(4) != 0;
  const auto w = gaussian(size_t(rows * cols), 1, 0.02f);
  const auto h = hessian_for(cols);
  for (auto _ : state) {
    auto r = llmq::gptq_quantize(w.data(), rows, cols, h.data(), spec, opt);
    if (!r.ok()) state.SkipWithError(r.status().ToString().c_str());
    benchmark::DoNotOptimize(r);
  }
  state.SetItemsProcessed(int64_t(state.iterations()) * rows * cols);
  state.SetLabel(spec.ToString() + (opt.act_order ? " act-order" : ""));
}
BENCHMARK(BM_GptqLayer)
    ->Args({4096, 4096, 4, 128, 0})
    ->Args({4096, 4096, 4, 128, 1})
    ->Args({11008, 4096, 4, 128, 0})
    ->Args({4096, 11008, 4, 128, 0})
    ->Args({2048, 5632, 4, 128, 0})  // TinyLlama's down projection (docs/RESULTS.md, issue 22)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->Iterations(1);

// Accumulating one 2048-token window; vs_eigen_gemm = (Eigen X^T X time) / (accumulate time).
void BM_HessianAccumulate(benchmark::State& state) {
  const int64_t tokens = state.range(0), cols = state.range(1);
  const auto x = gaussian(size_t(tokens * cols), 3, 1.0f);
  llmq::HessianAccumulator acc(cols);
  const double gemm = eigen_gram_seconds(x, tokens, cols);
  double total = 0;
  for (auto _ : state) {
    const auto t0 = std::chrono::steady_clock::now();
    acc.Add(x.data(), tokens);
    total += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
  const double per = total / double(state.iterations());
  state.counters["GFLOPS"] = 2.0 * double(tokens) * double(cols) * double(cols) / per / 1e9;
  state.counters["vs_eigen_gemm"] = gemm / per;
}
BENCHMARK(BM_HessianAccumulate)->Args({2048, 4096})->Args({2048, 11008})->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace
