// Quantizer throughput: RTN and the reference dequantization on Llama-7B-shaped
// layers, reported as weights/second and as a fraction of a plain memory copy of
// the same fp32 matrix (a noise-robust ratio on a shared machine).
#include <benchmark/benchmark.h>
#include <llmq/llmq.h>

#include "bench_util.h"

#include <cstring>
#include <random>

namespace {

using llmq::bench::gaussian;

// Shapes: Llama-7B q/k/v/o (4096x4096) and up/gate (11008x4096).
void Shapes(benchmark::internal::Benchmark* b) {
  for (int bits : {4, 8}) {
    b->Args({4096, 4096, bits, 128});
    b->Args({11008, 4096, bits, 128});
  }
  b->Args({4096, 4096, 3, 0});
  b->Unit(benchmark::kMillisecond)->UseRealTime();
}

void BM_MemcpyFp32(benchmark::State& state) {
  const size_t n = size_t(state.range(0) * state.range(1));
  std::vector<float> a = gaussian(n), b(n);
  for (auto _ : state) {
    std::memcpy(b.data(), a.data(), n * 4);
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(int64_t(state.iterations()) * int64_t(n));
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(n) * 8);
}
BENCHMARK(BM_MemcpyFp32)->Args({4096, 4096, 0, 0})->Args({11008, 4096, 0, 0})->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_RtnQuantize(benchmark::State& state) {
  const int64_t rows = state.range(0), cols = state.range(1);
  llmq::QuantSpec spec;
  spec.bits = int(state.range(2));
  spec.group_size = int(state.range(3));
  const auto w = gaussian(size_t(rows * cols));
  for (auto _ : state) {
    auto q = llmq::quantize_rtn(w.data(), rows, cols, spec);
    benchmark::DoNotOptimize(q);
  }
  state.SetItemsProcessed(int64_t(state.iterations()) * rows * cols);
  state.SetLabel(spec.ToString());
}
BENCHMARK(BM_RtnQuantize)->Apply(Shapes);

void BM_DequantizeReference(benchmark::State& state) {
  const int64_t rows = state.range(0), cols = state.range(1);
  llmq::QuantSpec spec;
  spec.bits = int(state.range(2));
  spec.group_size = int(state.range(3));
  const auto w = gaussian(size_t(rows * cols));
  auto q = llmq::quantize_rtn(w.data(), rows, cols, spec);
  std::vector<float> out(size_t(rows * cols));
  for (auto _ : state) {
    llmq::dequantize(*q, out.data());
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(int64_t(state.iterations()) * rows * cols);
  state.SetLabel(spec.ToString());
}
BENCHMARK(BM_DequantizeReference)->Apply(Shapes);

}  // namespace
