// Pieces of the GPTQ solver that other Hessian-based solvers (BiLLM) share. Internal.
#ifndef LLMQ_QUANT_GPTQ_INTERNAL_H_
#define LLMQ_QUANT_GPTQ_INTERNAL_H_

#include <Eigen/Core>
#include <cstdint>

#include "llmq/gptq.h"

namespace llmq::internal {

using MatF = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::ColMajor>;
using RowMatF = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// HessianAccumulator sums H's lower triangle in panels of this many columns, each the same
// operations wherever it runs: MPI ranks split one Hessian's panels between them.
inline constexpr int64_t kHessianPanel = 256;
struct HessianAccess {
  static int64_t panels(int64_t cols) { return (cols + kHessianPanel - 1) / kHessianPanel; }
  // Only the panels p with mine[p] != 0 are added from now on; Hessian() then holds those
  // panels' entries (rows >= the panel's first column) and zeros elsewhere.
  static void keep_panels(HessianAccumulator* h, std::vector<uint8_t> mine) { h->panels_ = std::move(mine); }
};

// InvalidArgument naming the first non-finite weight (row, column), or a non-finite Hessian entry.
Status check_finite(const float* w, int64_t rows, int64_t cols, const float* hessian);

// GPTQ updates the weights right of each lazy batch in chunks of this many rows; row pieces of a
// linear that start at multiples of it are solved with the same bits as the whole.
constexpr int64_t kGptqRowChunk = 256;

// tr(E H Eᵀ) = Σ_i e_i H e_iᵀ over the n rows of E ([n, cols] row-major; H [cols, cols]), the
// Hessian-weighted squared error of a quantization error E; the same bits for any thread count.
double hessian_weighted_square(const float* e, int64_t n, int64_t cols, const float* hessian);

// Dead inputs (H_jj = 0: the input was always zero): H_jj = 1 and the weights of that column
// zeroed, as the reference does; returns how many.
int64_t zero_dead_columns(MatF* W, MatF* H);
// The weights' half of it: W's dead columns (by hessian [cols, cols]) zeroed; returns how many.
int64_t zero_dead_weight_columns(const float* hessian, int64_t cols, MatF* W);

// U upper triangular with UᵀU = (H + damp · mean(diag H) · I)⁻¹, the damping raised x10 on a
// failed Cholesky up to options.damp_retries times (GPTQModel's auto-increment). Records the
// damping used and the retries in *res; false (res->fell_back_to_rtn set) when every attempt failed.
bool damped_inverse_factor(const MatF& H, const GptqOptions& options, MatF* U, GptqResult* res);

// GPTQ's inverse factor of one Hessian (dead columns and act-order applied as gptq_quantize
// applies them), computed once and shared by row pieces of one linear solved apart (MPI ranks):
// gptq_quantize_with_factor gives the bits of gptq_quantize for any rows of the linear.
struct GptqFactor {
  MatF u;  // [cols, cols]; empty when every damping attempt failed (the pieces fall back to RTN)
  double damp = 0.0;
  int damp_retries = 0;
};
GptqFactor gptq_factor(const float* hessian, int64_t cols, const GptqOptions& options);
Result<GptqResult> gptq_quantize_with_factor(const float* w, int64_t rows, int64_t cols, const float* hessian,
                                             const QuantSpec& spec, const GptqOptions& options,
                                             const GptqFactor& factor);

}  // namespace llmq::internal

#endif  // LLMQ_QUANT_GPTQ_INTERNAL_H_
