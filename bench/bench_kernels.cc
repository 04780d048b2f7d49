// Quantized kernels against Eigen fp32 on the same shapes, on this machine's threads.
// Shapes: Llama-7B (4096x4096, 11008x4096 = up/gate, 4096x11008 = down) and stories5M
// (768x256, 256x768); N = 1, 8, 32, 128, 512 tokens. Counters:
//   GBps        bytes of codes + scales + zero terms read per second (GEMV: compare with
//               BM_StreamTriad / BM_ReadOnly in the same run)
//   vs_eigen    Eigen fp32 time of the same shape / this kernel's time (> 1: faster)
// GEMV runs rotate over enough copies of the weights to defeat the last-level cache.
#include <benchmark/benchmark.h>
#include <llmq/llmq.h>

#include "bench_util.h"
#include "dense.h"

#include <Eigen/Core>
#include <algorithm>
#include <chrono>
#include <map>
#include <random>

namespace {

using llmq::bench::gaussian;
using llmq::bench::RowMatF;
constexpr uint64_t kColdBytes = 256ull << 20;

// Eigen fp32 seconds for [n, cols] x [rows, cols]^T (cold weights for n == 1), cached per shape.
double eigen_seconds(int64_t rows, int64_t cols, int64_t n) {
  static std::map<std::tuple<int64_t, int64_t, int64_t>, double> cache;
  auto key = std::make_tuple(rows, cols, n);
  if (cache.count(key)) return cache[key];
  const auto w = gaussian(size_t(rows * cols), 1);
  const auto x = gaussian(size_t(n * cols), 2);
  const size_t copies = n == 1 ? std::max<size_t>(2, kColdBytes / size_t(rows * cols * 4) + 1) : 1;
  // Eigen through the dense layer: the Eigen of the ISA the library runs.
  std::vector<std::vector<float>> ws(copies, w);
  std::vector<float> y(static_cast<size_t>(n * rows));
  return cache[key] = llmq::bench::best_seconds(n == 1 ? 20 : 3, [&](int i) {
    llmq::dense::gemm(false, true, n, rows, cols, 1.0f, x.data(), cols, ws[size_t(i) % copies].data(), cols, 0.0f, y.data(), rows);
  });
}

void BM_StreamTriad(benchmark::State& state) {
  const int64_t n = 16 << 20;
  std::vector<float> a(static_cast<size_t>(n)), b(static_cast<size_t>(n), 1.0f), c(static_cast<size_t>(n), 2.0f);
  for (auto _ : state) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; ++i) a[size_t(i)] = b[size_t(i)] + 3.0f * c[size_t(i)];
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * n * 12);
}
BENCHMARK(BM_StreamTriad)->Unit(benchmark::kMillisecond)->UseRealTime();

// args: rows, cols, bits, group, tokens, int8 activations
// Copies of one packed tensor: for one token, enough to exceed the cache (each call reads cold weights).
std::vector<llmq::PackedLinear> cold_copies(const llmq::QuantizedTensor& q, const llmq::PackOptions& po, int64_t n) {
  std::vector<llmq::PackedLinear> packs;
  const size_t copies = n == 1 ? std::max<size_t>(2, kColdBytes / q.storage_bytes() + 1) : 1;
  for (size_t i = 0; i < copies; ++i) {
    auto p = llmq::PackedLinear::Pack(q, po);
    packs.push_back(std::move(*p));
  }
  return packs;
}

// Times Forward over the copies in turn (the benchmark loop); returns seconds per call and sets
// the bytes processed.
double timed_forward(benchmark::State& state, const std::vector<llmq::PackedLinear>& packs, const float* x, int64_t n,
                     float* y) {
  size_t i = 0;
  double total = 0;
  for (auto _ : state) {
    const auto t0 = std::chrono::steady_clock::now();
    packs[i++ % packs.size()].Forward(x, n, y);
    benchmark::ClobberMemory();
    total += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(packs[0].bytes()));
  return total / double(state.iterations());
}

void BM_QuantizedLinear(benchmark::State& state) {
  const int64_t rows = state.range(0), cols = state.range(1), n = state.range(4);
  llmq::QuantSpec spec;
  spec.bits = int(state.range(2));
  spec.group_size = int(state.range(3));
  llmq::PackOptions po;
  po.int8_activations = state.range(5) != 0;
  const auto w = gaussian(size_t(rows * cols), 1);
  const auto x = gaussian(size_t(n * cols), 2);
  auto q = llmq::quantize_rtn(w.data(), rows, cols, spec);
  const std::vector<llmq::PackedLinear> packs = cold_copies(*q, po, n);
  std::vector<float> y(size_t(n * rows));
  const double per_call = timed_forward(state, packs, x.data(), n, y.data());
  state.counters["vs_eigen"] = eigen_seconds(rows, cols, n) / per_call;
  state.SetLabel(spec.ToString() + (po.int8_activations ? " int8-act" : "") + " " + packs[0].kernel(n));  // the kernel that ran
}

void Shapes(benchmark::internal::Benchmark* b) {
  const std::vector<std::pair<int64_t, int64_t>> shapes = {{4096, 4096}, {11008, 4096}, {4096, 11008}, {768, 256}, {256, 768}};
  for (auto [rows, cols] : shapes)
    for (int64_t n : {1, 8, 32, 128, 512}) {
      b->Args({rows, cols, 4, 128, n, 0});
      if (n >= 8) b->Args({rows, cols, 4, 128, n, 1});
      if (n >= 8) b->Args({rows, cols, 8, 0, n, 1});
      if (n == 1) b->Args({rows, cols, 8, 0, n, 0});
    }
  b->Unit(benchmark::kMillisecond)->UseRealTime();
}
BENCHMARK(BM_QuantizedLinear)->Apply(Shapes);

// SpQR's storage (w4 groups of 16, 3-bit bilevel scales and zeros, 1% fp16 outliers spread over
// the rows): the SIMD kernels' 16-column-group path and sparse add against the scalar reference
// in the same run (vs_scalar). args: rows, cols, tokens.
void BM_SpqrLinear(benchmark::State& state) {
  const int64_t rows = state.range(0), cols = state.range(1), n = state.range(2);
  llmq::QuantSpec spec;
  spec.bits = 4;
  spec.group_size = 16;
  spec.symmetric = false;
  spec.scale_bits = spec.zero_bits = 3;
  const auto w = gaussian(size_t(rows * cols), 1);
  const auto x = gaussian(size_t(n * cols), 2);
  auto q = llmq::quantize_rtn(w.data(), rows, cols, spec);
  llmq::SparseOutliers& o = q->outliers;
  o.row_ptr.assign(size_t(rows + 1), 0);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = (r * 37) % 100; c < cols; c += 100) {  // 1% of each row
      o.col_idx.push_back(int32_t(c));
      o.values.push_back(llmq::float_to_fp16(0.01f * float(c % 7)));
    }
    o.row_ptr[size_t(r + 1)] = int32_t(o.col_idx.size());
  }
  const std::vector<llmq::PackedLinear> packs = cold_copies(*q, llmq::PackOptions(), n);
  std::vector<float> y(size_t(n * rows));
  const double per_call = timed_forward(state, packs, x.data(), n, y.data());
  const auto t0 = std::chrono::steady_clock::now();  // the scalar reference, 3 calls, same copies
  for (int k = 0; k < 3; ++k) packs[size_t(k) % packs.size()].Forward(x.data(), n, y.data(), llmq::Isa::kScalar);
  const double scalar = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / 3;
  state.counters["vs_scalar"] = scalar / per_call;
  state.SetLabel(spec.ToString() + " 1% outliers " + packs[0].kernel(n));
}
BENCHMARK(BM_SpqrLinear)->Args({4096, 4096, 1})->Args({4096, 4096, 32})->Args({4096, 4096, 512})
    ->Unit(benchmark::kMillisecond)->UseRealTime();

// BiLLM's lookup codes (2 bits per weight, 8 fp16 levels per row and block of 128 columns, about
// 4% salient columns): the per-ISA lookup kernels against the scalar reference (vs_scalar) and
// against w4 g128 symmetric RTN on the same shape (vs_w4), both timed in the same run on cold
// copies. Random codes and levels: the kernels do not depend on how BiLLM chose them.
// args: rows, cols, tokens.
void BM_BillmLinear(benchmark::State& state) {
  const int64_t rows = state.range(0), cols = state.range(1), n = state.range(2);
  llmq::QuantizedTensor q = llmq::QuantizedTensor::Allocate(rows, cols, llmq::billm_spec(128));
  const auto levels = gaussian(q.levels.size(), 3);
  for (size_t i = 0; i < levels.size(); ++i) q.levels[i] = llmq::round_to_fp16(0.02f * levels[i]);
  for (int64_t c = 0; c < cols; ++c) q.column_classes[size_t(c)] = c % 25 == 0;
  uint32_t state_bits = 12345;
  for (uint32_t& word : q.codes) word = state_bits = state_bits * 1664525u + 1013904223u;
  const auto x = gaussian(size_t(n * cols), 2);
  const std::vector<llmq::PackedLinear> packs = cold_copies(q, llmq::PackOptions(), n);
  std::vector<float> y(size_t(n * rows));
  const auto w = gaussian(size_t(rows * cols), 1);
  const std::vector<llmq::PackedLinear> w4 = cold_copies(*llmq::quantize_rtn(w.data(), rows, cols, llmq::QuantSpec()), llmq::PackOptions(), n);
  auto seconds = [&](const std::vector<llmq::PackedLinear>& p, llmq::Isa isa, int calls) {
    return llmq::bench::best_seconds(calls, [&](int i) { p[size_t(i) % p.size()].Forward(x.data(), n, y.data(), isa); });
  };
  const double t_w4 = seconds(w4, llmq::active_isa(), n == 1 ? 20 : 5);
  const double per_call = timed_forward(state, packs, x.data(), n, y.data());
  state.counters["vs_scalar"] = seconds(packs, llmq::Isa::kScalar, 3) / per_call;
  state.counters["vs_w4"] = t_w4 / per_call;
  state.SetLabel(q.spec.ToString() + " " + packs[0].kernel(n));
}
BENCHMARK(BM_BillmLinear)->Args({4096, 4096, 1})->Args({11008, 4096, 1})->Args({4096, 4096, 8})
    ->Args({4096, 4096, 512})->Unit(benchmark::kMillisecond)->UseRealTime();

// LLM.int8's decomposition (docs/OUTLIERS.md) on W8 per-channel weights: 8 outlier input
// columns (|x| >= 20) in N(0, 1) activations, about LLM.int8's 0.1-0.2% of a 4096-wide layer.
// args: rows, cols, tokens, mode: 0 plain W8A8, 1 LLM.int8 per call (fp32 outliers), 2 per call
// with integer outliers, 3 fixed columns (fp32, their own weights), 4 fixed columns integer.
// Counters: vs_w8a8 = plain W8A8 time / this time, vs_fp32_act = fp32-activation W8 time / this time,
// all three the best of several runs here on the same weights and activations (> 1: faster).
void BM_Int8Outliers(benchmark::State& state) {
  const int64_t rows = state.range(0), cols = state.range(1), n = state.range(2), mode = state.range(3);
  llmq::QuantSpec spec;
  spec.bits = 8;
  spec.group_size = 0;
  const auto w = gaussian(size_t(rows * cols), 1);
  auto x = gaussian(size_t(n * cols), 2);
  std::vector<int32_t> outlier_cols;
  for (int64_t k = 0; k < 8; ++k) outlier_cols.push_back(int32_t((k * 997 + 13) % cols));
  std::sort(outlier_cols.begin(), outlier_cols.end());
  for (int64_t t = 0; t < n; ++t)  // N(0, 1) activations; the outlier columns 20 (>= 6, the threshold) and up
    for (int32_t c : outlier_cols) x[size_t(t * cols + c)] = 20.0f + std::fabs(x[size_t(t * cols + c)]) * 20.0f;
  auto q = llmq::quantize_rtn(w.data(), rows, cols, spec);
  auto pack = [&](int m) {
    llmq::PackOptions po;
    po.int8_activations = m >= 0;
    if (m == 1 || m == 2) po.outliers.threshold = llmq::kLlmInt8Threshold;
    if (m == 3 || m == 4) po.outliers.columns = outlier_cols;
    po.outliers.integer = m == 2 || m == 4;
    std::vector<llmq::PackedLinear> packs;
    const size_t copies = n == 1 ? std::max<size_t>(2, kColdBytes / q->storage_bytes() + 1) : 1;
    for (size_t i = 0; i < copies; ++i) {
      auto p = llmq::PackedLinear::Pack(*q, po);
      packs.push_back(std::move(*p));
    }
    return packs;
  };
  std::vector<float> y(size_t(n * rows));
  auto time_of = [&](std::vector<llmq::PackedLinear>& packs) {
    return llmq::bench::best_seconds(n == 1 ? 20 : 5, [&](int i) { packs[size_t(i) % packs.size()].Forward(x.data(), n, y.data()); });
  };
  auto plain = pack(0), fp32_act = pack(-1), packs = pack(int(mode));
  const double t_plain = time_of(plain), t_fp32 = time_of(fp32_act);
  size_t i = 0;
  double total = 0;
  for (auto _ : state) {
    const auto t0 = std::chrono::steady_clock::now();
    packs[i++ % packs.size()].Forward(x.data(), n, y.data());
    benchmark::ClobberMemory();
    total += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
  (void)total;
  const double t = time_of(packs);  // best of several, like the two baselines
  state.counters["vs_w8a8"] = t_plain / t;
  state.counters["vs_fp32_act"] = t_fp32 / t;
  state.counters["outlier_cols"] = packs[0].activation_outlier_stats().calls > 0
                                       ? double(packs[0].activation_outlier_stats().outlier_columns) /
                                             double(packs[0].activation_outlier_stats().calls)
                                       : 0.0;
  state.SetLabel(packs[0].kernel(n));
}
BENCHMARK(BM_Int8Outliers)
    ->ArgsProduct({{4096}, {4096}, {1, 32, 512}, {0, 1, 2, 3, 4}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

}  // namespace
