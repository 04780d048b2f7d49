// Quantized matrix multiplication on the CPU: a QuantizedTensor packed once into the
// kernels' layout (docs/KERNELS.md), then y = x W^T for one token (GEMV, decode) or many
// (GEMM, prompt processing and calibration) with fp32 activations.
//
// Kernels exist as a scalar reference (always built) and AVX2 / AVX-512 variants chosen
// at run time from the CPU's features. LLMQ_ISA=scalar|avx2|avx512 in the environment
// forces one (tests and benchmarks use this to compare every path with the reference).
#ifndef LLMQ_KERNELS_H_
#define LLMQ_KERNELS_H_

#include "llmq/export.h"

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "llmq/qtensor.h"
#include "llmq/status.h"

namespace llmq {

namespace kernels {
struct PackedWeights;
}
namespace internal {
struct PackedAccess;  // kernels/packed.h: the packed layout, for tests and benchmarks
}

enum class Isa { kScalar, kAvx2, kAvx512 };
LLMQ_EXPORT const char* isa_name(Isa isa);  // "scalar", "avx2", "avx512"
LLMQ_EXPORT bool isa_supported(Isa isa);    // compiled in and supported by this CPU
// The best supported ISA, or LLMQ_ISA when it names a supported one.
LLMQ_EXPORT Isa active_isa();
// Parses LLMQ_ISA: the ISA it names, or InvalidArgument for an unknown or unsupported value
// (unset: the best supported ISA). Use it to report a bad setting; active_isa() ignores one.
LLMQ_EXPORT Result<Isa> isa_from_environment();

// LLM.int8()'s mixed-precision decomposition (Dettmers et al., 2022, §3.2) of the int8 activations:
// the input columns holding outliers are taken out of the per-token int8 scale, so that a few
// large channels do not flatten every other value to a handful of levels (docs/OUTLIERS.md).
inline constexpr double kLlmInt8Threshold = 6.0;  // LLM.int8()'s outlier threshold (paper §3.2)

struct LLMQ_EXPORT ActivationOutlierOptions {
  // > 0: the outlier columns of a call are those where any of its tokens has |x| > threshold
  // (the paper's 6.0), found per call. 0 with `columns` empty: no decomposition.
  double threshold = 0.0;
  // A fixed set of outlier columns (source column indices, e.g. found on calibration data):
  // used instead of the per-call search, which it makes unnecessary.
  std::vector<int32_t> columns;
  // false (LLM.int8): the outlier columns are multiplied in fp32 with the dequantized weights.
  // true (integer outliers, Ghaffari et al. 2023): the outlier values stay integers on the same
  // per-token grid as the rest, held as hi * 128 + lo with two int8 tiles (lo in the ordinary int8
  // activation row, hi in a short outlier row), so every product is int8 x int8 -> int32.
  bool integer = false;
  bool enabled() const { return threshold > 0.0 || !columns.empty(); }
};

struct LLMQ_EXPORT PackOptions {
  // Quantize activations per token to int8 (symmetric, absmax / 127) on the fly and multiply
  // them with the integer codes in int32 (AVX-512 VNNI): W8A8 for 8-bit weights (SmoothQuant's
  // path), W4A8 for 2/3/4-bit. Faster for many tokens; approximate in the activations.
  bool int8_activations = false;
  // Outlier decomposition of those int8 activations (needs int8_activations).
  ActivationOutlierOptions outliers;
};

// What the outlier decomposition of one linear did since it was packed (counts over Forward calls).
struct LLMQ_EXPORT ActivationOutlierStats {
  int64_t calls = 0;            // Forward calls
  int64_t outlier_columns = 0;  // sum over calls of the outlier columns of the call
  int64_t cols = 0;             // input columns of the linear
  // Mean share of the input columns that were outlier columns in a call.
  double share() const { return calls > 0 && cols > 0 ? double(outlier_columns) / double(calls * cols) : 0.0; }
};

// Threads for llmq's parallel work (kernels, forward pass, GPTQ, Hessians): n > 0 sets it,
// 0 restores the OpenMP default (OMP_NUM_THREADS, else every core). Process-wide.
LLMQ_EXPORT void set_num_threads(int n);
LLMQ_EXPORT int num_threads();

class LLMQ_EXPORT PackedLinear {
 public:
  // Converts (validates, reorders act-order columns, repacks codes); the QuantizedTensor can be dropped.
  static Result<PackedLinear> Pack(const QuantizedTensor& q, const PackOptions& options = {});
  PackedLinear();
  ~PackedLinear();
  PackedLinear(PackedLinear&&) noexcept;
  PackedLinear& operator=(PackedLinear&&) noexcept;

  int64_t rows() const;  // out_features
  int64_t cols() const;  // in_features
  int bits() const;
  bool int8_activations() const;
  uint64_t bytes() const;  // bytes a GEMV reads (codes + scales + zero terms + outliers)
  const ActivationOutlierOptions& activation_outliers() const;
  ActivationOutlierStats activation_outlier_stats() const;

  // The kernel Forward runs for `n` tokens on `isa`: "<table> <path>", the path being gemv
  // (n < 4), gemv8 (up to 64 tokens, 8 sharing each decoded code), dequant+gemm (more tokens, or
  // a table without gemv8) or int8 (int8 activations: avx512-vnni, avx-vnni, avx2 or scalar);
  // e.g. "avx512 gemv"; with the outlier decomposition the int8 path says "+ fp32 outliers" or
  // "+ int8-tiled outliers". A layout with no SIMD path (groups that do not start at multiples of 32
  // columns, e.g. groups of 16) runs the scalar table and says so:
  // "scalar gemv (groups not 32-column aligned)".
  std::string kernel(int64_t n, Isa isa = active_isa()) const;
  // The ISA of the kernel table Forward uses on `isa` (kScalar for a layout without a SIMD path).
  Isa kernel_isa(Isa isa = active_isa()) const;

  // y[n, rows] = x[n, cols] * W^T, with W the dequantized weights plus the sparse outliers. x and y
  // must not overlap (x is read while y is written). Thread-safe: each calling thread has its own
  // scratch buffers, kept between calls.
  void Forward(const float* x, int64_t n, float* y) const { Forward(x, n, y, active_isa()); }
  void Forward(const float* x, int64_t n, float* y, Isa isa) const;
  // ys[i][n, rows_i] = x[n, cols] * W_iᵀ for `count` linears that read the same input (a block's q, k
  // and v; gate and up), the same bits as one Forward each. At decode (up to 2 tokens) with int8
  // activations and no activation outliers, one parallel region runs all of them and linears with
  // the same packed layout share one quantized input; otherwise it is one Forward after another.
  static void ForwardShared(const PackedLinear* const* linears, float* const* ys, int count, const float* x, int64_t n,
                            Isa isa = active_isa());

 private:
  friend struct internal::PackedAccess;
  std::unique_ptr<kernels::PackedWeights> w_;
};

}  // namespace llmq


namespace llmq {

// This machine's memory bandwidth with `threads` OpenMP threads (0: OpenMP's default), best of
// several runs: the STREAM triad a = b + s c (12 bytes counted per element, as STREAM does) and a
// read-only sum over b and c (what a GEMV does). Each array holds `array_bytes`; 0 = beyond the
// last-level cache, as STREAM requires: max(256 MiB, the LLC's size), at most 2 GiB (64 MiB
// arrays partly stay in this machine's 480 MiB L3 and read up to 35% fast; docs/RESULTS.md).
struct LLMQ_EXPORT MemoryBandwidth {
  double triad_gbps = 0, read_gbps = 0;
  int64_t array_bytes = 0;  // bytes per array
};
LLMQ_EXPORT MemoryBandwidth measure_memory_bandwidth(int threads = 0, int64_t array_bytes = 0);

// A quick roofline of this machine and the kernels (behind `llmq bench kernels`): STREAM-triad
// bandwidth, W4 g128 GEMV bandwidth as a fraction of it, and W4 GEMV/GEMM against Eigen fp32
// GEMV/GEMM of the same shape, all measured in this process (best of several runs).
struct LLMQ_EXPORT KernelRoofline {
  Isa isa = Isa::kScalar;
  int threads = 0;
  int64_t rows = 0, cols = 0, gemm_tokens = 0;
  double stream_gbps = 0;                 // STREAM triad (measure_memory_bandwidth)
  double read_gbps = 0;                   // read-only sum over two of its arrays
  double w4_gemv_ms = 0, eigen_gemv_ms = 0;
  double w4_gemv_gbps = 0;                // packed bytes read / time
  double w4_gemv_fraction_of_stream = 0;
  double w4_gemv_speedup_vs_eigen = 0;
  double w8_gemv_ms = 0, w8_gemv_fraction_of_stream = 0;
  double w4_gemm_ms = 0, eigen_gemm_ms = 0;
  double w4_gemm_speedup_vs_eigen = 0;
  double w4a8_gemv_ms = 0, w4a8_gemv_fraction_of_stream = 0; // 4-bit weights x int8 activations
  double w4a8_gemm_ms = 0, w4a8_gemm_speedup_vs_eigen = 0;
  double w8a8_gemm_ms = 0, w8a8_gemm_speedup_vs_eigen = 0;   // per-channel int8 weights x int8 activations
  double w8a8_gops = 0;                                       // int8 multiply-adds x 2 per second / 1e9
};
LLMQ_EXPORT KernelRoofline measure_kernel_roofline(int64_t rows = 4096, int64_t cols = 4096, int64_t gemm_tokens = 512,
                                       Isa isa = active_isa());

}  // namespace llmq

#endif  // LLMQ_KERNELS_H_
