// GPTQ (Frantar et al., ICLR 2023, Algorithm 1): the OBQ update
//   delta_F = -(w_q - quant(w_q)) / [H_F^-1]_qq * (H_F^-1)_{:,q}
// applied column by column in a fixed order, rewritten with the upper Cholesky factor
// U of H^-1 (row j of U is the update for column j once columns < j are gone) and
// lazy batches: inside a block of `block_size` columns the update is rank-1, the rest of
// the matrix is updated once per block with a GEMM. Order of operations follows the
// reference `fasterquant` (../shared/docs/algorithms.md §2.3).
#include "llmq/gptq.h"

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <numeric>

#include "llmq/float16.h"
#include "dense.h"
#include "quant/ggml_blocks.h"
#include "quant/ggml_grid.h"
#include "quant/gptq_internal.h"

namespace llmq {

using internal::MatF;
using internal::RowMatF;

namespace internal {

bool damped_inverse_factor(const MatF& H, const GptqOptions& options, MatF* U, GptqResult* res) {
  const int64_t cols = H.cols();
  const float mean_diag = H.diagonal().mean();
  U->resize(cols, cols);
  double damp = options.damp;
  for (int attempt = 0; attempt <= options.damp_retries; ++attempt, damp *= 10.0) {
    MatF Hd = H;
    Hd.diagonal().array() += float(damp) * mean_diag;
    // U upper triangular with UᵀU = H⁻¹ (kernels/dense: one Cholesky and one triangular inverse).
    if (dense::upper_cholesky_of_inverse(Hd.data(), cols, U->data())) {
      res->damp = damp;
      res->damp_retries = attempt;
      return true;
    }
  }
  res->fell_back_to_rtn = true;
  res->damp_retries = options.damp_retries;
  res->damp = damp / 10.0;
  return false;
}

Status check_finite(const float* w, int64_t rows, int64_t cols, const float* hessian) {
  for (int64_t i = 0; i < rows * cols; ++i)
    if (!std::isfinite(w[i]))
      return Status::InvalidArgument("non-finite weight at row " + std::to_string(i / cols) + ", column " +
                                     std::to_string(i % cols));
  for (int64_t i = 0; i < cols * cols; ++i)
    if (!std::isfinite(hessian[i])) return Status::InvalidArgument("the Hessian has a non-finite entry");
  return Status::Ok();
}

double hessian_weighted_square(const float* e, int64_t n, int64_t cols, const float* hessian) {
  // E H through the dense layer (this ISA's GEMM: Eigen's own product here would be the
  // baseline build's), then the row-wise dot products with E in double.
  std::vector<float> eh(size_t(n * cols));
  dense::gemm(false, false, n, cols, cols, 1.0f, e, cols, hessian, cols, 0.0f, eh.data(), cols);
  double total = 0.0;
  for (int64_t i = 0; i < n * cols; ++i) total += double(eh[size_t(i)]) * double(e[i]);
  return total;
}

int64_t zero_dead_weight_columns(const float* hessian, int64_t cols, MatF* W) {
  int64_t dead = 0;
  for (int64_t j = 0; j < cols; ++j)
    if (hessian[j * cols + j] == 0.0f) {
      W->col(j).setZero();
      ++dead;
    }
  return dead;
}

int64_t zero_dead_columns(MatF* W, MatF* H) {
  const int64_t dead = zero_dead_weight_columns(H->data(), H->cols(), W);
  for (int64_t j = 0; j < H->cols(); ++j)
    if ((*H)(j, j) == 0.0f) (*H)(j, j) = 1.0f;
  return dead;
}

}  // namespace internal

namespace {

// Rows summed in fp32 before they are folded into the fp64 total.
constexpr int64_t kFlushRows = 4096;

// Sum over the n values of ((q(x) - x) / d)^2 with the group parameters fitted to them.
double fitted_error(const float* x, const float* d, int64_t n, const QuantSpec& spec) {
  const GroupParams p = rtn_group_params(x, n, spec);
  double e = 0.0;
  for (int64_t k = 0; k < n; ++k) {
    const double r = (double(dequantize_value(rtn_quantize_value(x[k], p, spec), p)) - double(x[k])) / double(d[k]);
    e += r * r;
  }
  return e;
}

// SpQR's leave-one-out outlier pass at the start of a group (Dettmers et al., Alg. 1; the
// reference's get_leave_one_out_error): weight i is a likely outlier when fitting the group
// without it lowers the Hessian-weighted error of the others by more than tau,
//   sum_k ((q(x_k) - x_k) / d_k)^2  -  sum_{k != i} ((q_{-i}(x_k) - x_k) / d_k)^2  >  tau,
// with q_{-i} the quantizer fitted without x_i. The parameters are then fitted to the group
// with its likely outliers replaced by the mean of the rest (the outliers themselves are still
// decided column by column by (w - q)^2 / d^2 > tau).
GroupParams leave_one_out_params(const float* x, const float* d, int64_t n, const QuantSpec& spec, double tau,
                                 std::vector<float>* buf, std::vector<float>* dbuf) {
  const double base = fitted_error(x, d, n, spec);
  std::vector<uint8_t> likely(size_t(n), 0);
  buf->resize(size_t(n));
  dbuf->resize(size_t(n));
  for (int64_t i = 0; i < n && n > 1; ++i) {
    int64_t m = 0;
    for (int64_t k = 0; k < n; ++k)
      if (k != i) (*buf)[size_t(m)] = x[k], (*dbuf)[size_t(m++)] = d[k];
    likely[size_t(i)] = base - fitted_error(buf->data(), dbuf->data(), m, spec) > tau;
  }
  double sum = 0.0;
  int64_t kept = 0;
  for (int64_t k = 0; k < n; ++k)
    if (!likely[size_t(k)]) sum += x[k], ++kept;
  const float mean = float(sum / double(std::max<int64_t>(kept, 1)));
  for (int64_t k = 0; k < n; ++k) (*buf)[size_t(k)] = likely[size_t(k)] ? mean : x[k];
  return rtn_group_params(buf->data(), n, spec);
}

}  // namespace

HessianAccumulator::HessianAccumulator(int64_t cols)
    : cols_(cols), partial_(size_t(cols * cols), 0.0f), sum_(size_t(cols * cols), 0.0) {}

namespace {

// P += Aᵀ X on and below the diagonal (A, X [n, cols]; P [cols, cols]), in column panels of a fixed
// width: half the flops of the full product, and the same bits for any thread count (each panel
// is one dense::gemm of a shape fixed by cols and n). `only` (if not empty) picks the panels.
void add_lower_gram(const float* a, const float* x, int64_t n, int64_t cols, float* p, const std::vector<uint8_t>& only) {
  constexpr int64_t kWidth = internal::kHessianPanel;
  const int64_t panels = internal::HessianAccess::panels(cols);
#pragma omp parallel for schedule(dynamic) if (panels > 1)
  for (int64_t i = 0; i < panels; ++i) {
    if (!only.empty() && !only[size_t(i)]) continue;
    const int64_t j0 = i * kWidth, w = std::min(kWidth, cols - j0);
    dense::gemm(true, false, cols - j0, w, n, 1.0f, a + j0, cols, x + j0, cols, 1.0f, p + j0 * cols + j0, cols);
  }
}

}  // namespace

void HessianAccumulator::Add(const float* x, int64_t n) {
  if (n <= 0) return;
  add_lower_gram(x, x, n, cols_, partial_.data(), panels_);  // P += XᵀX (lower triangle)
  rows_ += n;
  pending_ += n;
  if (pending_ >= kFlushRows) Flush();
}

void HessianAccumulator::AddWeighted(const float* x, int64_t n, const float* s) {
  if (n <= 0) return;
  std::vector<float> sx(static_cast<size_t>(n * cols_));
  dense::gemm(false, false, n, cols_, n, 1.0f, s, n, x, cols_, 0.0f, sx.data(), cols_);  // S X
  // P += (S X)ᵀ X = Xᵀ Sᵀ X, symmetric for a symmetric S: its lower triangle, as Add.
  add_lower_gram(sx.data(), x, n, cols_, partial_.data(), panels_);
  rows_ += n;
  pending_ += n;
  if (pending_ >= kFlushRows) Flush();
}

void HessianAccumulator::Flush() const {
  if (pending_ == 0) return;
  // Only the entries add_lower_gram writes: each kept panel's columns, from its first row down.
  constexpr int64_t kWidth = internal::kHessianPanel;
  const int64_t panels = internal::HessianAccess::panels(cols_);
#pragma omp parallel for schedule(dynamic)
  for (int64_t p = 0; p < panels; ++p) {
    if (!panels_.empty() && !panels_[size_t(p)]) continue;
    const int64_t j0 = p * kWidth, j1 = std::min(cols_, j0 + kWidth);
    for (int64_t i = j0; i < cols_; ++i)
      for (int64_t j = j0; j < j1; ++j) {
        sum_[size_t(i * cols_ + j)] += double(partial_[size_t(i * cols_ + j)]);
        partial_[size_t(i * cols_ + j)] = 0.0f;
      }
  }
  pending_ = 0;
}

std::vector<float> HessianAccumulator::Hessian() const {
  Flush();
  std::vector<float> h(size_t(cols_ * cols_), 0.0f);
  if (rows_ == 0) return h;
  const double s = 2.0 / double(rows_);
  // Only the lower triangle was accumulated (add_lower_gram): mirror it, in tiles of 64 rows so
  // that the transposed writes (64 consecutive floats per column) stay in cache.
  constexpr int64_t kWidth = internal::kHessianPanel, kTile = 64;
  const int64_t panels = internal::HessianAccess::panels(cols_);
  for (int64_t p = 0; p < panels; ++p) {
    if (!panels_.empty() && !panels_[size_t(p)]) continue;
    const int64_t j0 = p * kWidth, j1 = std::min(cols_, j0 + kWidth);
    for (int64_t i0 = j0; i0 < cols_; i0 += kTile) {
      const int64_t i1 = std::min(cols_, i0 + kTile);
      for (int64_t j = j0; j < j1; ++j)
        for (int64_t i = std::max(i0, j); i < i1; ++i) {
          const float v = float(s * sum_[size_t(i * cols_ + j)]);
          h[size_t(i * cols_ + j)] = h[size_t(j * cols_ + i)] = v;
        }
    }
  }
  return h;
}

namespace {

// The order GPTQ quantizes columns in: act-order takes the largest H_jj first (stable), a dead
// column's H_jj counting as 1 (what zero_dead_columns sets); else the identity.
std::vector<int64_t> quantization_order(const float* hessian, int64_t cols, const GptqOptions& options) {
  std::vector<int64_t> perm(static_cast<size_t>(cols));
  std::iota(perm.begin(), perm.end(), 0);
  if (!options.act_order) return perm;
  auto diag = [&](int64_t j) { return hessian[j * cols + j] == 0.0f ? 1.0f : hessian[j * cols + j]; };
  std::stable_sort(perm.begin(), perm.end(), [&](int64_t a, int64_t b) { return diag(a) > diag(b); });
  return perm;
}

// H in that order, dead columns' H_jj = 1: what the inverse factor is taken of.
MatF hessian_in_order(const float* hessian, int64_t cols, const std::vector<int64_t>& perm) {
  MatF H(cols, cols);
  for (int64_t j = 0; j < cols; ++j)
    for (int64_t i = 0; i < cols; ++i) H(i, j) = hessian[perm[size_t(i)] * cols + perm[size_t(j)]];
  for (int64_t j = 0; j < cols; ++j)
    if (H(j, j) == 0.0f) H(j, j) = 1.0f;
  return H;
}

Result<GptqResult> gptq_quantize_impl(const float* w, int64_t rows, int64_t cols, const float* hessian,
                                      const QuantSpec& spec, const GptqOptions& options,
                                      const internal::GptqFactor* factor);

}  // namespace

namespace internal {

GptqFactor gptq_factor(const float* hessian, int64_t cols, const GptqOptions& options) {
  const MatF H = hessian_in_order(hessian, cols, quantization_order(hessian, cols, options));
  GptqFactor f;
  GptqResult res;
  MatF u(cols, cols);
  if (damped_inverse_factor(H, options, &u, &res)) f.u = std::move(u);
  f.damp = res.damp;
  f.damp_retries = res.damp_retries;
  return f;
}

Result<GptqResult> gptq_quantize_with_factor(const float* w, int64_t rows, int64_t cols, const float* hessian,
                                             const QuantSpec& spec, const GptqOptions& options,
                                             const GptqFactor& factor) {
  return gptq_quantize_impl(w, rows, cols, hessian, spec, options, &factor);
}

}  // namespace internal

Result<GptqResult> gptq_quantize(const float* w, int64_t rows, int64_t cols, const float* hessian,
                                 const QuantSpec& spec, const GptqOptions& options) {
  return gptq_quantize_impl(w, rows, cols, hessian, spec, options, nullptr);
}

namespace {

Result<GptqResult> gptq_quantize_impl(const float* w, int64_t rows, int64_t cols, const float* hessian,
                                      const QuantSpec& spec, const GptqOptions& options,
                                      const internal::GptqFactor* factor) {
  LLMQ_RETURN_IF_ERROR(spec.Validate());
  if (spec.lookup) return Status::InvalidArgument("GPTQ cannot write lookup codes (BiLLM's layout: billm_quantize)");
  if (rows <= 0 || cols <= 0) return Status::InvalidArgument("cannot quantize an empty matrix");
  if (!(options.damp > 0.0) || options.block_size <= 0)
    return Status::InvalidArgument("GPTQ needs damp > 0 and block_size > 0");
  LLMQ_RETURN_IF_ERROR(internal::check_finite(w, rows, cols, hessian));

  const bool ggml = spec.is_ggml();
  const bool k_quant = ggml && internal::ggml_info(spec.ggml_type).k_quant;
  if (ggml) {
    const auto& info = internal::ggml_info(spec.ggml_type);
    if (cols % info.block_elems != 0)
      return Status::InvalidArgument(std::string(info.name) + " needs rows of a multiple of " +
                                     std::to_string(info.block_elems) + " columns (this tensor has " +
                                     std::to_string(cols) + ")");
    if (options.act_order && !options.static_groups)
      return Status::InvalidArgument(std::string(info.name) +
                                     " blocks have no group index: act-order needs static groups on a ggml grid");
    if (options.outlier_threshold > 0.0 && std::isfinite(options.outlier_threshold))
      return Status::InvalidArgument(std::string(info.name) + " blocks cannot hold SpQR's sparse outliers");
  }

  GptqResult res;
  const int64_t g = spec.group_cols(cols), ng = spec.num_groups(cols);
  const bool per_channel = ng == 1 && !ggml;  // a ggml grid always has its blocks
  const bool static_groups = options.static_groups || per_channel;

  MatF W = Eigen::Map<const RowMatF>(w, rows, cols);

  // Per-channel parameters come from the original weights, before dead columns are zeroed (reference order).
  std::vector<GroupParams> channel_params;
  if (per_channel) {
    channel_params.resize(size_t(rows));
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; ++r) channel_params[size_t(r)] = rtn_group_params(w + r * cols, cols, spec);
  }
  // Dead inputs (H_jj = 0): their weights zeroed (their H_jj = 1 is hessian_in_order's).
  res.dead_columns = internal::zero_dead_weight_columns(hessian, cols, &W);
  // Static groups: parameters of each group of original columns, from the (dead-zeroed) weights.
  std::vector<GroupParams> static_params;  // [ng][rows]
  // A ggml grid's parameters are stored as they are chosen (two levels for K-quants); the tensor
  // is allocated before any are chosen.
  QuantizedTensor grid_q;
  if (ggml) grid_q = QuantizedTensor::Allocate(rows, cols, spec);
  if (static_groups && ggml) {
    static_params.resize(size_t(ng * rows));
    RowMatF Wr = W;
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t k = 0; k < ng; ++k) {
        // Magnitude-weighted search (nullptr); weighting each column's error by H_jj (as llama.cpp's
        // importance matrix) measured no better under GPTQ's error feedback (stories5M, 3 seeds).
        const float* x = Wr.data() + r * cols + k * g;
        if (k_quant && (k * g) % 256 == 0) internal::ggml_choose_super(&grid_q, r, k * g / 256, x, nullptr);
        static_params[size_t(k * rows + r)] = internal::ggml_choose_group(&grid_q, r, k, x, nullptr);
      }
  } else if (static_groups && !per_channel) {
    static_params.resize(size_t(ng * rows));
    RowMatF Wr = W;
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t k = 0; k < ng; ++k) {
        const int64_t c0 = k * g, c1 = std::min(cols, c0 + g);
        static_params[size_t(k * rows + r)] = rtn_group_params(Wr.data() + r * cols + c0, c1 - c0, spec);
      }
  }
  // Act-order: quantize the columns with the largest H_jj (most input energy) first.
  const std::vector<int64_t> perm = quantization_order(hessian, cols, options);
  if (options.act_order) {
    MatF Wp(rows, cols);
    for (int64_t j = 0; j < cols; ++j) Wp.col(j) = W.col(perm[size_t(j)]);
    W.swap(Wp);
  }

  MatF U;
  bool ok;
  if (factor != nullptr) {  // computed once for every row piece (gptq_factor: the same function of H)
    ok = factor->u.size() > 0;
    if (ok) U = factor->u;
    res.damp = factor->damp;
    res.damp_retries = factor->damp_retries;
    res.fell_back_to_rtn = !ok;
  } else {
    U.resize(cols, cols);
    ok = internal::damped_inverse_factor(hessian_in_order(hessian, cols, perm), options, &U, &res);
  }
  if (!ok) {
    // Last resort: this layer only is round-to-nearest.
    LLMQ_ASSIGN_OR_RETURN(res.q, quantize_rtn(w, rows, cols, spec));
    return res;
  }

  res.q = ggml ? std::move(grid_q) : QuantizedTensor::Allocate(rows, cols, spec);
  QuantizedTensor& q = res.q;
  std::vector<uint8_t> codes(size_t(rows * cols));  // [rows, cols] in quantization (permuted) order
  std::vector<GroupParams> cur(static_cast<size_t>(rows));
  // Stores one group column's parameters; bilevel scales are quantized and written back.
  auto store_params = [&](int64_t k, std::vector<GroupParams>& p, int64_t offset) {
    for (int64_t r = 0; r < rows; ++r) {
      q.scales[size_t(r * ng + k)] = p[size_t(offset + r)].scale;
      if (spec.bilevel_zeros()) q.real_zeros[size_t(r * ng + k)] = p[size_t(offset + r)].real_zero;
      else if (!spec.symmetric) q.zeros[size_t(r * ng + k)] = uint8_t(p[size_t(offset + r)].zero);
    }
    if (spec.scale_bits > 0 || spec.bilevel_zeros()) {
      q.QuantizeBilevelColumn(k);
      for (int64_t r = 0; r < rows; ++r) {
        p[size_t(offset + r)].scale = q.scales[size_t(r * ng + k)];
        if (spec.bilevel_zeros()) p[size_t(offset + r)].real_zero = q.real_zeros[size_t(r * ng + k)];
      }
    }
  };
  if (per_channel) store_params(0, channel_params, 0);
  for (int64_t k = 0; k < ng && !static_params.empty() && !ggml; ++k) store_params(k, static_params, k * rows);
  if (options.act_order && !static_groups) q.g_idx.assign(size_t(cols), 0);

  // SpQR's outlier threshold, relative to the layer's mean sensitivity var(W[:, j]) / U_jj^2.
  double tau = INFINITY;
  if (options.outlier_threshold > 0.0 && std::isfinite(options.outlier_threshold) && rows > 1) {
    double sens = 0.0;
    for (int64_t j = 0; j < cols; ++j) {
      const double mean = W.col(j).cast<double>().mean();
      const double var = (W.col(j).cast<double>().array() - mean).square().sum() / double(rows - 1);
      sens += var / (double(U(j, j)) * double(U(j, j)));
    }
    tau = options.outlier_threshold * sens / double(cols);
  }
  std::vector<std::vector<std::pair<int32_t, uint16_t>>> row_outliers(static_cast<size_t>(rows));

  const int64_t B = options.block_size;
  double loss = 0.0;
  std::vector<float> group_buf;
  for (int64_t i1 = 0; i1 < cols; i1 += B) {
    const int64_t i2 = std::min(cols, i1 + B), count = i2 - i1;
    MatF W1 = W.middleCols(i1, count);
    MatF Err1(rows, count);
    for (int64_t i = 0; i < count; ++i) {
      const int64_t j = i1 + i;
      if (static_groups) {
        const int64_t k = per_channel ? 0 : perm[size_t(j)] / g;
        const GroupParams* src = per_channel ? channel_params.data() : static_params.data() + k * rows;
        std::copy(src, src + rows, cur.begin());
      } else if (j % g == 0) {
        // A new group: parameters from the current, error-compensated weights of its columns (on a
        // K-quant grid, a new super-block first fixes its (d, dmin) from its 256 current columns).
        const int64_t k = j / g, end = std::min(cols, k_quant && j % 256 == 0 ? j + 256 : j + g);
        const bool loo = options.outlier_leave_one_out && tau < INFINITY && !ggml;
        std::vector<float> diag(size_t(end - j)), loo_buf, loo_dbuf;
        for (int64_t c = j; c < end; ++c) diag[size_t(c - j)] = U(c, c);
#pragma omp parallel for schedule(static) firstprivate(group_buf, loo_buf, loo_dbuf)
        for (int64_t r = 0; r < rows; ++r) {
          group_buf.resize(size_t(end - j));
          for (int64_t c = j; c < end; ++c) group_buf[size_t(c - j)] = c < i2 ? W1(r, c - i1) : W(r, c);
          if (!ggml) {
            cur[size_t(r)] = loo ? leave_one_out_params(group_buf.data(), diag.data(), end - j, spec, tau, &loo_buf, &loo_dbuf)
                                 : rtn_group_params(group_buf.data(), end - j, spec);
            continue;
          }
          if (k_quant && j % 256 == 0) internal::ggml_choose_super(&q, r, j / 256, group_buf.data(), nullptr);
          cur[size_t(r)] = internal::ggml_choose_group(&q, r, k, group_buf.data(), nullptr);
        }
        if (!ggml) store_params(k, cur, 0);
      }
      if (!q.g_idx.empty()) q.g_idx[size_t(perm[size_t(j)])] = int32_t(j / g);
      const float d = U(j, j);
      double col_loss = 0.0;
      for (int64_t r = 0; r < rows; ++r) {
        const float x = W1(r, i);
        const GroupParams& p = cur[size_t(r)];
        uint32_t c = rtn_quantize_value(x, p, spec);
        float deq = dequantize_value(c, p);
        float e = (x - deq) / d;
        if (double(e) * double(e) > tau) {
          // An outlier: the dense code holds 0's code, the sparse part the rest, in fp16.
          c = rtn_quantize_value(0.0f, p, spec);
          const float deq0 = dequantize_value(c, p);
          const uint16_t v = float_to_fp16(x - deq0);
          row_outliers[size_t(r)].push_back({int32_t(perm[size_t(j)]), v});
          e = (x - (deq0 + fp16_to_float(v))) / d;
        }
        codes[size_t(r * cols + j)] = uint8_t(c);
        col_loss += double(e) * double(e) * 0.5;
        Err1(r, i) = e;
      }
      loss += col_loss;
      if (i + 1 < count)
        W1.rightCols(count - i - 1).noalias() -= Err1.col(i) * U.row(j).segment(j + 1, count - i - 1);
    }
    // W[:, i2:] -= Err1 U[i1:i2, i2:]. Column-major matrices read row-major are their transposes:
    // W[:, i2:]ᵀ -= U[i1:i2, i2:]ᵀ Err1ᵀ.
    // In chunks of kGptqRowChunk rows of W: a row's update is then the same arithmetic whatever
    // the number of rows (one product's blocking depends on its shape), so row pieces solved
    // apart (MPI ranks, methods/gptq.cc) give the whole's bits.
    for (int64_t r0 = 0; r0 < rows && i2 < cols; r0 += internal::kGptqRowChunk)
      dense::gemm(false, false, cols - i2, std::min(internal::kGptqRowChunk, rows - r0), count, -1.0f,
                  U.data() + i2 * cols + i1, cols, Err1.data() + r0, rows, 1.0f, W.data() + i2 * rows + r0, rows);
  }
  res.loss = loss;
  if (tau < INFINITY) {
    SparseOutliers& o = q.outliers;
    o.row_ptr.assign(size_t(rows + 1), 0);
    for (int64_t r = 0; r < rows; ++r) {
      auto& ro = row_outliers[size_t(r)];
      std::sort(ro.begin(), ro.end());
      for (const auto& [col, v] : ro) {
        o.col_idx.push_back(col);
        o.values.push_back(v);
      }
      o.row_ptr[size_t(r + 1)] = int32_t(o.col_idx.size());
    }
    res.outliers = int64_t(o.col_idx.size());
    if (o.col_idx.empty()) o.row_ptr.clear();
  }

  // Codes back in the original column order.
  std::vector<uint8_t> row_codes(static_cast<size_t>(cols));
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t j = 0; j < cols; ++j) row_codes[size_t(perm[size_t(j)])] = codes[size_t(r * cols + j)];
    pack_bits(row_codes.data(), cols, spec.bits, q.codes.data() + r * q.words_per_row());
  }
  // A group index that is just c / g carries no information.
  if (!q.g_idx.empty()) {
    bool trivial = true;
    for (int64_t c = 0; c < cols && trivial; ++c) trivial = q.g_idx[size_t(c)] == int32_t(c / g);
    if (trivial) q.g_idx.clear();
  }
  return res;
}

}  // namespace

double output_relative_error(const float* w, const float* w_hat, int64_t rows, int64_t cols, const float* hessian,
                             int64_t max_rows) {
  const int64_t n = std::min(rows, std::max<int64_t>(1, max_rows));
  RowMatF Wr(n, cols), Er(n, cols);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t r = i * rows / n;
    for (int64_t c = 0; c < cols; ++c) {
      Wr(i, c) = w[r * cols + c];
      Er(i, c) = w[r * cols + c] - w_hat[r * cols + c];
    }
  }
  const double num = internal::hessian_weighted_square(Er.data(), n, cols, hessian);
  const double den = internal::hessian_weighted_square(Wr.data(), n, cols, hessian);
  return den > 0 ? std::sqrt(std::max(0.0, num) / den) : std::sqrt(std::max(0.0, num));
}

}  // namespace llmq
