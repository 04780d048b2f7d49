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

struct LLMQ_EXPORT PackOptions {
  // Quantize activations per token to int8 (symmetric, absmax / 127) on the fly and multiply
  // them with the integer codes in int32 (AVX-512 VNNI): W8A8 for 8-bit weights (SmoothQuant's
  // path), W4A8 for 2/3/4-bit. Faster for many tokens; approximate in the activations.
  bool int8_activations = false;
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

  // The kernel Forward runs for `n` tokens on `isa`: "<table> <path>", the path being gemv
  // (n < 4), gemv8 (up to 64 tokens, 8 sharing each decoded code), dequant+gemm (more tokens, or
  // a table without gemv8) or int8 (int8 activations: avx512-vnni, avx-vnni, avx2 or scalar);
  // e.g. "avx512 gemv". A layout with no SIMD path (groups that do not start at multiples of 32
  // columns, e.g. groups of 16) runs the scalar table and says so:
  // "scalar gemv (groups not 32-column aligned)".
  std::string kernel(int64_t n, Isa isa = active_isa()) const;
  // The ISA of the kernel table Forward uses on `isa` (kScalar for a layout without a SIMD path).
  Isa kernel_isa(Isa isa = active_isa()) const;

  // y[n, rows] = x[n, cols] * W^T, with W the dequantized weights plus the sparse outliers.
  void Forward(const float* x, int64_t n, float* y) const { Forward(x, n, y, active_isa()); }
  void Forward(const float* x, int64_t n, float* y, Isa isa) const;

 private:
  friend struct internal::PackedAccess;
  std::unique_ptr<kernels::PackedWeights> w_;
};

}  // namespace llmq


namespace llmq {

// A quick roofline of this machine and the kernels (behind `llmq bench kernels`): STREAM-triad
// bandwidth, W4 g128 GEMV bandwidth as a fraction of it, and W4 GEMV/GEMM against Eigen fp32
// GEMV/GEMM of the same shape, all measured in this process (best of several runs).
struct LLMQ_EXPORT KernelRoofline {
  Isa isa = Isa::kScalar;
  int threads = 0;
  int64_t rows = 0, cols = 0, gemm_tokens = 0;
  double stream_gbps = 0;                 // STREAM triad, 3 x 64 MiB arrays (3 words per element)
  double read_gbps = 0;                   // read-only sum over 2 x 64 MiB
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
