// GPTQ: Hessian-aware post-training quantization of one linear layer, and the
// Hessian accumulator that feeds it.
//
// Frantar, Ashkboos, Hoefler, Alistarh, "GPTQ: Accurate Post-Training Quantization
// for Generative Pre-trained Transformers" (ICLR 2023). Minimizes ||W X - Q X||_F^2
// column by column; after quantizing column j every remaining column absorbs the
// error through the upper Cholesky factor U of H^-1 (H = 2 X X^T):
//   W[:, j+1:] -= ((w_j - q_j) / U_jj) * U[j, j+1:]
// Details and reference defaults: ../shared/docs/algorithms.md §2.
#ifndef LLMQ_GPTQ_H_
#define LLMQ_GPTQ_H_

#include "llmq/export.h"

#include <cstdint>
#include <vector>

#include "llmq/quant.h"
#include "llmq/status.h"

namespace llmq {

namespace internal {
struct HessianAccess;
}

// H = 2/N * sum over the N input rows x of x x^T, for one linear's input (width `cols`).
// Rows are multiplied in fp32 (Eigen GEMM) and summed into fp64 every few thousand rows,
// so long calibration runs do not lose precision.
class LLMQ_EXPORT HessianAccumulator {
 public:
  explicit HessianAccumulator(int64_t cols);
  // x is [n, cols] row-major.
  void Add(const float* x, int64_t n);
  // Adds x^T S x for a symmetric positive semi-definite S ([n, n] row-major) that weights the n
  // rows and their cross terms (Add is S = I); counts n rows. OAC's per-sequence Hessian uses it
  // with S = Δ Δ^T (the gradients' inner products) when that is cheaper than forming Δ^T x.
  void AddWeighted(const float* x, int64_t n, const float* s);
  int64_t cols() const { return cols_; }
  int64_t rows_seen() const { return rows_; }
  // [cols, cols] row-major (symmetric). All zeros when nothing was added.
  std::vector<float> Hessian() const;

 private:
  friend struct internal::HessianAccess;  // MPI ranks: each adds some of the panels
  void Flush() const;
  std::vector<uint8_t> panels_;  // the 256-column panels this one adds (empty: all)
  int64_t cols_ = 0, rows_ = 0;
  mutable int64_t pending_ = 0;
  mutable std::vector<float> partial_;  // fp32 sum since the last flush
  mutable std::vector<double> sum_;     // fp64 running sum
};

struct LLMQ_EXPORT GptqOptions {
  double damp = 0.01;         // percdamp: H += damp * mean(diag H) * I
  int block_size = 128;       // lazy-batch width; changes speed, not the result
  bool act_order = false;     // columns in order of decreasing diag(H); a g_idx is stored
  bool static_groups = false; // group parameters from the original weights (keeps act_order's g_idx trivial)
  int damp_retries = 4;       // on a failed Cholesky: retry with damp x10, this many times
  // SpQR (algorithms.md §5): > 0 keeps every weight whose Hessian-weighted error
  // ((w - q) / U_jj)^2 exceeds outlier_threshold * mean_j(var(W[:, j]) / U_jj^2) in fp16 (the
  // sparse part); its error is then ~0 and nothing is propagated for it. 0 (or infinity): none.
  double outlier_threshold = 0.0;
  // SpQR's leave-one-out pass (with outliers, groups chosen as columns are reached): each group's
  // parameters are fitted without its likely outliers, the weights whose removal lowers the
  // group's Hessian-weighted error by more than the threshold (algorithms.md §5.2). false: fitted
  // to every weight (the reference's simplified_outliers).
  bool outlier_leave_one_out = false;
};

struct LLMQ_EXPORT GptqResult {
  QuantizedTensor q;
  double loss = 0.0;          // sum over weights of (w - q)^2 / U_jj^2 / 2 (the paper's objective)
  double damp = 0.0;          // the relative damping that succeeded
  int damp_retries = 0;       // how many times the damping was raised
  bool fell_back_to_rtn = false;  // every Cholesky failed: the layer is plain RTN
  int64_t dead_columns = 0;   // inputs that were always zero (H_jj = 0): their weights are zeroed
  int64_t outliers = 0;       // weights kept in fp16 (SpQR)
};

// Quantizes w [rows, cols] (row-major) given its input Hessian [cols, cols] (row-major).
// Group parameters are found on the error-compensated weights as the columns are
// reached (or on the original weights with static_groups / per-channel specs). With bilevel
// scales in the spec (SpQR) each group column's scales are quantized before its codes are found.
LLMQ_EXPORT Result<GptqResult> gptq_quantize(const float* w, int64_t rows, int64_t cols, const float* hessian,
                                 const QuantSpec& spec, const GptqOptions& options = {});

// ||(W - W_hat) X||_F / ||W X||_F computed from H (proportional to X X^T), on at most
// `max_rows` evenly spaced rows (exact when rows <= max_rows).
LLMQ_EXPORT double output_relative_error(const float* w, const float* w_hat, int64_t rows, int64_t cols, const float* hessian,
                             int64_t max_rows = 512);

}  // namespace llmq

#endif  // LLMQ_GPTQ_H_
