// measure_kernel_roofline: STREAM triad and the main kernels against Eigen, in one process,
// so the ratios hold on a noisy shared machine.
#include <omp.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <random>

#include <unistd.h>

#include "llmq/kernels.h"
#include "llmq/rtn.h"
#include "packed.h"
#include "dense.h"

namespace llmq {
namespace {


template <typename F>
double best_seconds(F&& f, int reps) {
  double best = 1e30;
  for (int i = 0; i < reps; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    f();
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  return best;
}

std::vector<float> gaussian(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, 0.02f);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

}  // namespace

MemoryBandwidth measure_memory_bandwidth(int threads, int64_t array_bytes) {
  if (threads <= 0) threads = omp_get_max_threads();
  // STREAM's rule: arrays beyond the last-level cache. 64 MiB arrays read 35% fast on this
  // machine's 480 MiB L3; from 256 MiB the triad is flat (docs/RESULTS.md).
  const long llc = sysconf(_SC_LEVEL3_CACHE_SIZE);
  const int64_t bytes = array_bytes > 0 ? array_bytes
                                        : std::min<int64_t>(int64_t(2) << 30, std::max<int64_t>(int64_t(256) << 20, llc > 0 ? llc : 0));
  const int64_t n = std::max<int64_t>(1024, bytes / 4 / 1024 * 1024);
  std::vector<float> a(static_cast<size_t>(n)), b(static_cast<size_t>(n)), c(static_cast<size_t>(n));
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t i = 0; i < n; ++i) {  // first touch by the threads that use the pages (the same split)
    a[size_t(i)] = 0.0f;
    b[size_t(i)] = 1.0f;
    c[size_t(i)] = 2.0f;
  }
  MemoryBandwidth bw;
  bw.array_bytes = n * 4;
  // Each thread its contiguous share (the pages it touched first), with this ISA's vectors (the
  // baseline build's SSE loops measured 10% lower).
  auto share = [&](auto&& body) {
#pragma omp parallel num_threads(threads)
    {
      const int64_t nt = omp_get_num_threads(), t = omp_get_thread_num();
      const int64_t i0 = n * t / nt / 64 * 64, i1 = t + 1 == nt ? n : n * (t + 1) / nt / 64 * 64;
      body(i0, i1);
    }
  };
  const double t = best_seconds([&] { share([&](int64_t i0, int64_t i1) { dense::triad(&a[size_t(i0)], &b[size_t(i0)], &c[size_t(i0)], 3.0f, i1 - i0); }); }, 5);
  bw.triad_gbps = 3.0 * 4.0 * double(n) / t / 1e9;
  std::atomic<float> sink{0.0f};
  const double tr = best_seconds([&] {
    share([&](int64_t i0, int64_t i1) { sink.store(sink.load() + dense::read_sum(&b[size_t(i0)], &c[size_t(i0)], i1 - i0)); });
  }, 5);
  bw.read_gbps = 2.0 * 4.0 * double(n) / tr / 1e9 + 0.0 * double(sink.load());
  return bw;
}

KernelRoofline measure_kernel_roofline(int64_t rows, int64_t cols, int64_t gemm_tokens, Isa isa) {
  KernelRoofline r;
  r.isa = isa;
  r.threads = omp_get_max_threads();
  r.rows = rows;
  r.cols = cols;
  r.gemm_tokens = gemm_tokens;
  const MemoryBandwidth bw = measure_memory_bandwidth(0);
  r.stream_gbps = bw.triad_gbps;
  r.read_gbps = bw.read_gbps;
  const auto w = gaussian(size_t(rows * cols), 1);
  const auto x = gaussian(size_t(gemm_tokens * cols), 2);
  std::vector<float> y(size_t(gemm_tokens * rows));
  QuantSpec spec;
  spec.bits = 4;
  spec.group_size = 128;
  // GEMV is timed from DRAM, as in decoding: each run reads the next of several copies of
  // the weights, together well beyond the last-level cache (>= 256 MiB).
  const uint64_t kColdBytes = 256ull << 20;
  auto copies = [&](uint64_t bytes) { return int(std::max<uint64_t>(2, kColdBytes / std::max<uint64_t>(1, bytes) + 1)); };
  const QuantizedTensor q4 = *quantize_rtn(w.data(), rows, cols, spec);
  spec.bits = 8;
  const QuantizedTensor q8 = *quantize_rtn(w.data(), rows, cols, spec);
  std::vector<PackedLinear> w4s, w8s;
  for (int i = 0, n = copies(q4.storage_bytes()); i < n; ++i) {
    auto p = PackedLinear::Pack(q4);
    w4s.push_back(std::move(*p));
  }
  for (int i = 0, n = copies(q8.storage_bytes()); i < n; ++i) {
    auto p = PackedLinear::Pack(q8);
    w8s.push_back(std::move(*p));
  }
  // The fp32 baseline is Eigen through the dense layer, in the copy of the same ISA.
  std::vector<std::vector<float>> ws(size_t(copies(uint64_t(rows * cols) * 4)), w);
  const PackedLinear& w4 = w4s[0];
  std::vector<float> yv(static_cast<size_t>(rows));
  size_t i4 = 0, i8 = 0, ie = 0;
  r.w4_gemv_ms = 1e3 * best_seconds([&] { w4s[i4++ % w4s.size()].Forward(x.data(), 1, y.data(), isa); }, 40);
  r.w8_gemv_ms = 1e3 * best_seconds([&] { w8s[i8++ % w8s.size()].Forward(x.data(), 1, y.data(), isa); }, 40);
  r.eigen_gemv_ms = 1e3 * best_seconds([&] {
    dense::gemm(isa, false, true, 1, rows, cols, 1.0f, x.data(), cols, ws[ie++ % ws.size()].data(), cols, 0.0f, yv.data(), rows);
  }, 12);
  r.w4_gemv_gbps = double(w4.bytes()) / (r.w4_gemv_ms * 1e-3) / 1e9;
  r.w4_gemv_fraction_of_stream = r.w4_gemv_gbps / r.stream_gbps;
  r.w8_gemv_fraction_of_stream = double(w8s[0].bytes()) / (r.w8_gemv_ms * 1e-3) / 1e9 / r.stream_gbps;
  r.w4_gemv_speedup_vs_eigen = r.eigen_gemv_ms / r.w4_gemv_ms;
  std::vector<float> Y(static_cast<size_t>(gemm_tokens * rows));
  r.w4_gemm_ms = 1e3 * best_seconds([&] { w4.Forward(x.data(), gemm_tokens, y.data(), isa); }, 3);
  r.eigen_gemm_ms = 1e3 * best_seconds([&] {
    dense::gemm(isa, false, true, gemm_tokens, rows, cols, 1.0f, x.data(), cols, w.data(), cols, 0.0f, Y.data(), rows);
  }, 3);
  r.w4_gemm_speedup_vs_eigen = r.eigen_gemm_ms / r.w4_gemm_ms;
  PackOptions int8_mode;
  int8_mode.int8_activations = true;
  auto w4a8 = PackedLinear::Pack(q4, int8_mode);
  QuantSpec pc;
  pc.bits = 8;
  pc.group_size = 0;  // W8A8: per-output-channel int8 weights
  auto w8a8 = PackedLinear::Pack(*quantize_rtn(w.data(), rows, cols, pc), int8_mode);
  {  // W4A8 GEMV (decode with int8 activations), cold weights as above.
    std::vector<PackedLinear> cold;
    for (int i = 0, n = copies(q4.storage_bytes()); i < n; ++i) {
      auto p = PackedLinear::Pack(q4, int8_mode);
      cold.push_back(std::move(*p));
    }
    size_t k = 0;
    r.w4a8_gemv_ms = 1e3 * best_seconds([&] { cold[k++ % cold.size()].Forward(x.data(), 1, y.data(), isa); }, 40);
    r.w4a8_gemv_fraction_of_stream = double(cold[0].bytes()) / (r.w4a8_gemv_ms * 1e-3) / 1e9 / r.stream_gbps;
  }
  r.w4a8_gemm_ms = 1e3 * best_seconds([&] { w4a8->Forward(x.data(), gemm_tokens, y.data(), isa); }, 3);
  r.w8a8_gemm_ms = 1e3 * best_seconds([&] { w8a8->Forward(x.data(), gemm_tokens, y.data(), isa); }, 3);
  r.w4a8_gemm_speedup_vs_eigen = r.eigen_gemm_ms / r.w4a8_gemm_ms;
  r.w8a8_gemm_speedup_vs_eigen = r.eigen_gemm_ms / r.w8a8_gemm_ms;
  r.w8a8_gops = 2.0 * double(rows) * double(cols) * double(gemm_tokens) / (r.w8a8_gemm_ms * 1e-3) / 1e9;
  return r;
}

}  // namespace llmq
