// BiLLM: 1-bit post-training quantization of one linear layer (Huang et al., "BiLLM: Pushing the
// Limit of Post-Training Quantization for LLMs", ICML 2024, arXiv 2402.04291).
//
// Per block of `group_size` input columns (the paper's 128), with U the upper Cholesky factor of
// H⁻¹ (H = 2 X Xᵀ, or OAC's output-adaptive Hessian):
//  - salience s_rc = w_rc² / U_cc² summed per column; the k most salient columns (k searched) are
//    binarized twice, residually: w ≈ μ1 + α1·sign(w - μ1) + μ2 + α2·sign(r - μ2), r the first
//    residual (the paper's eq. 6-7, "binary residual approximation");
//  - the other weights are split at a break point p of |w| into a concentrated (|w| < p) and a
//    sparse part, each binarized on its own: w ≈ μ + α·sign(w - μ) (eq. 8-9, "optimal splitting");
//  - μ = the mean and α = the mean |w - μ| of each row's weights of that part in the block;
//  - the block's error is compensated on the later columns as GPTQ does, once per block
//    (W[:, later] -= ((W - Q) / diag U) · U[block, later]).
// Stored as lookup codes (QuantSpec::lookup, 2 bits per weight): a sign and a split bit, or two
// residual signs, index the block's 4 levels of the weight's column class.
#ifndef LLMQ_BILLM_H_
#define LLMQ_BILLM_H_

#include <cstdint>

#include "llmq/export.h"
#include "llmq/gptq.h"
#include "llmq/quant.h"
#include "llmq/status.h"

namespace llmq {

struct LLMQ_EXPORT BillmOptions {
  // Salient columns per block: every count 1 .. max_salient_columns - 1 is tried (the reference's
  // up_lim of 50 over blocks of 128), keeping the one with the least Hessian-weighted error.
  int max_salient_columns = 50;
  // Break points tried for the non-salient split: this many quantiles of |w| evenly spaced over
  // [0.1, 0.9] (the reference's 81).
  int split_candidates = 81;
  // Both searches minimize the block's squared error, each column's weighted by 1 (false: the
  // reference's plain MSE) or by 1 / U_cc² (true: GPTQ's loss, what the compensation cannot undo).
  // Measured over 3 seeds: plain 16% lower perplexity on stories260K, 0.5% higher on stories5M
  // (docs/RESULTS.md).
  bool hessian_weighted_search = false;
};

// The spec BiLLM writes: 2-bit lookup codes in blocks of `block` columns (0: one block per row).
LLMQ_EXPORT QuantSpec billm_spec(int block = 128);

// Quantizes w [rows, cols] (row-major) given its Hessian [cols, cols] (row-major). `spec` must be
// billm_spec(block). gptq.damp (relative damping) and gptq.damp_retries apply; act_order and
// outliers do not. GptqResult.loss is the Hessian-weighted error sum ((w - q) / U_cc)² / 2.
LLMQ_EXPORT Result<GptqResult> billm_quantize(const float* w, int64_t rows, int64_t cols, const float* hessian,
                                              const QuantSpec& spec, const GptqOptions& gptq = {},
                                              const BillmOptions& options = {});

}  // namespace llmq

#endif  // LLMQ_BILLM_H_
