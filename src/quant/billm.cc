// BiLLM (Huang et al., ICML 2024, arXiv 2402.04291), read with its reference code
// (Aaronhuang-778/BiLLM: bigptq.py, binary.py, utils/autosearch.py). Per block of columns:
//   salience        s_c = Σ_r w_rc² / U_cc²                         (eq. 5 summed over rows; U = chol(H⁻¹)ᵀ)
//   salient columns w ≈ μ1 + α1·sign(w - μ1) + μ2 + α2·sign(r - μ2),  r = w - (μ1 + α1·sign(w - μ1))   (eq. 6-7)
//   the others      w ≈ μ_g + α_g·sign(w - μ_g), g = [|w| >= p]      (eq. 8-9)
// with μ the mean and α the mean absolute deviation of a row's weights of that part in the block
// (binary.py's high_order_residual); the number of salient columns and the break point p are
// searched (autosearch.py), and the block's error goes to the later columns once, as in GPTQ.
// Choices the paper and the code leave open, and ours, are listed in docs/DESIGN.md (BiLLM).
#include "llmq/billm.h"

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <numeric>

#include "dense.h"
#include "llmq/float16.h"
#include "quant/gptq_internal.h"

namespace llmq {
namespace {

using internal::MatF;
using internal::RowMatF;

// One binary basis of a set of values: x ≈ mu + alpha · sign(x - mu), sign(0) = +1.
struct Basis {
  float mu = 0.0f, alpha = 0.0f;
  float apply(float x) const { return x - mu >= 0.0f ? mu + alpha : mu - alpha; }
};

Basis fit_basis(const float* x, int64_t m) {
  Basis b;
  if (m == 0) return b;
  double s = 0.0;
  for (int64_t i = 0; i < m; ++i) s += x[i];
  b.mu = float(s / double(m));
  double a = 0.0;
  for (int64_t i = 0; i < m; ++i) a += std::fabs(double(x[i]) - double(b.mu));
  b.alpha = float(a / double(m));
  return b;
}

// Σ wt_i (x_i - q_i)² for x binarized with `order` residual bases (1 or 2); the bases go to *b.
double binarized_error(const float* x, const float* wt, int64_t m, int order, std::vector<float>* residual, Basis* b) {
  residual->assign(x, x + m);
  for (int o = 0; o < order; ++o) {
    b[o] = fit_basis(residual->data(), m);
    for (int64_t i = 0; i < m; ++i) (*residual)[size_t(i)] -= b[o].apply((*residual)[size_t(i)]);
  }
  double e = 0.0;
  for (int64_t i = 0; i < m; ++i) e += double(wt[i]) * double((*residual)[size_t(i)]) * double((*residual)[size_t(i)]);
  return e;
}

// Per-thread scratch for one row of a block.
struct RowScratch {
  std::vector<float> a, wa, b, wb, residual;
};

}  // namespace

QuantSpec billm_spec(int block) {
  QuantSpec s;
  s.bits = 2;
  s.group_size = block;
  s.symmetric = true;
  s.lookup = true;
  return s;
}

Result<GptqResult> billm_quantize(const float* w, int64_t rows, int64_t cols, const float* hessian,
                                  const QuantSpec& spec, const GptqOptions& gptq, const BillmOptions& options) {
  LLMQ_RETURN_IF_ERROR(spec.Validate());
  if (!spec.lookup || spec.bits != 2)
    return Status::InvalidArgument("BiLLM writes 2-bit lookup codes (billm_spec), got " + spec.ToString());
  if (rows <= 0 || cols <= 0) return Status::InvalidArgument("cannot quantize an empty matrix");
  if (!(gptq.damp > 0.0)) return Status::InvalidArgument("BiLLM needs damp > 0");
  if (options.max_salient_columns < 1 || options.split_candidates < 1)
    return Status::InvalidArgument("BiLLM needs max_salient_columns >= 1 and split_candidates >= 1");
  LLMQ_RETURN_IF_ERROR(internal::check_finite(w, rows, cols, hessian));

  GptqResult res;
  MatF W = Eigen::Map<const RowMatF>(w, rows, cols);
  MatF H = Eigen::Map<const RowMatF>(hessian, cols, cols);
  res.dead_columns = internal::zero_dead_columns(&W, &H);
  MatF U;
  // Every Cholesky failed: salience by magnitude (U = I) and no compensation, reported as a fallback.
  if (!internal::damped_inverse_factor(H, gptq, &U, &res)) U = MatF::Identity(cols, cols);
  H.resize(0, 0);

  res.q = QuantizedTensor::Allocate(rows, cols, spec);
  QuantizedTensor& q = res.q;
  const int64_t B = spec.group_cols(cols), L = int64_t(1) << spec.bits, lpg = q.levels_per_group();
  std::vector<uint8_t> codes(static_cast<size_t>(rows * cols));
  double loss = 0.0;
  for (int64_t st = 0, g = 0; st < cols; st += B, ++g) {
    const int64_t n = std::min(B, cols - st);
    // Columns by decreasing salience, Σ_r w² / U_cc².
    std::vector<double> score(static_cast<size_t>(n), 0.0);
    for (int64_t c = 0; c < n; ++c)
      score[size_t(c)] = W.col(st + c).cast<double>().squaredNorm() / (double(U(st + c, st + c)) * U(st + c, st + c));
    // The searches' weight of a column's squared error: 1 (the reference's plain MSE) or 1 / U_cc²
    // (GPTQ's loss, with hessian_weighted_search).
    std::vector<float> wt(static_cast<size_t>(n), 1.0f);
    if (options.hessian_weighted_search)
      for (int64_t c = 0; c < n; ++c) wt[size_t(c)] = 1.0f / (U(st + c, st + c) * U(st + c, st + c));
    std::vector<int64_t> by_salience(static_cast<size_t>(n));
    std::iota(by_salience.begin(), by_salience.end(), 0);
    std::stable_sort(by_salience.begin(), by_salience.end(), [&](int64_t a, int64_t b) { return score[size_t(a)] > score[size_t(b)]; });

    auto salient_mask = [&](int64_t k) {
      std::vector<uint8_t> m(static_cast<size_t>(n), 0);
      for (int64_t i = 0; i < k; ++i) m[size_t(by_salience[size_t(i)])] = 1;
      return m;
    };

    // 1. How many salient columns: 1 .. min(max - 1, n - 1), least error (ties: fewer).
    const int64_t kmax = std::min<int64_t>(options.max_salient_columns - 1, n - 1);
    int64_t best_k = 0;
    if (kmax >= 1) {
      std::vector<double> err(size_t(kmax + 1), INFINITY);
#pragma omp parallel
      {
        RowScratch s;
#pragma omp for schedule(dynamic)
        for (int64_t k = 1; k <= kmax; ++k) {
          const std::vector<uint8_t> m = salient_mask(k);
          // Salient columns as one set, the rest as another (both residual pairs).
          double e = 0.0;
          Basis b[2];
          for (int64_t r = 0; r < rows; ++r) {
            s.a.clear(), s.wa.clear(), s.b.clear(), s.wb.clear();
            for (int64_t c = 0; c < n; ++c) {
              (m[size_t(c)] ? s.a : s.b).push_back(W(r, st + c));
              (m[size_t(c)] ? s.wa : s.wb).push_back(wt[size_t(c)]);
            }
            e += binarized_error(s.a.data(), s.wa.data(), int64_t(s.a.size()), 2, &s.residual, b);
            e += binarized_error(s.b.data(), s.wb.data(), int64_t(s.b.size()), 2, &s.residual, b);
          }
          err[size_t(k)] = e;
        }
      }
      best_k = 1;
      for (int64_t k = 2; k <= kmax; ++k)
        if (err[size_t(k)] < err[size_t(best_k)]) best_k = k;
    }
    const std::vector<uint8_t> salient = salient_mask(best_k);

    // 2. The break point of the rest: quantiles of |w| over its weights in the block.
    std::vector<float> mags;
    mags.reserve(size_t(rows * (n - best_k)));
    for (int64_t c = 0; c < n; ++c)
      if (!salient[size_t(c)])
        for (int64_t r = 0; r < rows; ++r) mags.push_back(std::fabs(W(r, st + c)));
    std::sort(mags.begin(), mags.end());
    const int S = options.split_candidates;
    std::vector<float> cand(size_t(S), 0.0f);
    for (int i = 0; i < S && !mags.empty(); ++i) {
      const double t = S == 1 ? 0.5 : 0.1 + 0.8 * double(i) / double(S - 1);
      const double pos = t * double(mags.size() - 1);  // linear interpolation (numpy's default)
      const size_t lo = size_t(pos);
      const double frac = pos - double(lo);
      cand[size_t(i)] = float(mags[lo] + (lo + 1 < mags.size() ? frac * (mags[lo + 1] - mags[lo]) : 0.0));
    }
    std::vector<double> split_err(size_t(S), INFINITY);
#pragma omp parallel
    {
      RowScratch s;
      Basis b[2];
#pragma omp for schedule(dynamic)
      for (int i = 0; i < S; ++i) {
        double e = 0.0;
        for (int64_t r = 0; r < rows; ++r) {
          s.a.clear(), s.wa.clear(), s.b.clear(), s.wb.clear();
          for (int64_t c = 0; c < n; ++c) {
            if (salient[size_t(c)]) continue;
            const float x = W(r, st + c);
            const bool sparse = std::fabs(x) >= cand[size_t(i)];
            (sparse ? s.b : s.a).push_back(x);
            (sparse ? s.wb : s.wa).push_back(wt[size_t(c)]);
          }
          e += binarized_error(s.a.data(), s.wa.data(), int64_t(s.a.size()), 1, &s.residual, b);
          e += binarized_error(s.b.data(), s.wb.data(), int64_t(s.b.size()), 1, &s.residual, b);
        }
        split_err[size_t(i)] = e;
      }
    }
    int best_split = 0;
    for (int i = 1; i < S; ++i)
      if (split_err[size_t(i)] < split_err[size_t(best_split)]) best_split = i;
    const float p = cand[size_t(best_split)];

    // 3. Codes and levels of every row; the block's error, compensated on the later columns.
    for (int64_t c = 0; c < n; ++c) q.column_classes[size_t(st + c)] = salient[size_t(c)];
    MatF Err(rows, n);
    std::vector<double> row_loss(size_t(rows), 0.0);  // summed in order below (thread-count independent)
#pragma omp parallel
    {
      RowScratch s;
      std::vector<float> x(static_cast<size_t>(n));
#pragma omp for schedule(static)
      for (int64_t r = 0; r < rows; ++r) {
        for (int64_t c = 0; c < n; ++c) x[size_t(c)] = W(r, st + c);
        // Salient: two residual bases over the salient columns.
        s.a.clear();
        for (int64_t c = 0; c < n; ++c)
          if (salient[size_t(c)]) s.a.push_back(x[size_t(c)]);
        const Basis b1 = fit_basis(s.a.data(), int64_t(s.a.size()));
        for (float& v : s.a) v -= b1.apply(v);
        const Basis b2 = fit_basis(s.a.data(), int64_t(s.a.size()));
        // The rest: concentrated (|w| < p) and sparse parts.
        s.a.clear(), s.b.clear();
        for (int64_t c = 0; c < n; ++c)
          if (!salient[size_t(c)]) (std::fabs(x[size_t(c)]) >= p ? s.b : s.a).push_back(x[size_t(c)]);
        const Basis part[2] = {fit_basis(s.a.data(), int64_t(s.a.size())), fit_basis(s.b.data(), int64_t(s.b.size()))};
        // Levels: class 0 code = sign | split << 1, class 1 code = sign1 | sign2 << 1.
        float* lv = q.levels.data() + (r * q.num_groups() + g) * lpg;
        for (int64_t code = 0; code < L; ++code) {
          const float s0 = code & 1 ? 1.0f : -1.0f, s1 = code & 2 ? 1.0f : -1.0f;
          const Basis& pb = part[code >> 1];
          lv[code] = round_to_fp16(pb.mu + s0 * pb.alpha);
          lv[L + code] = round_to_fp16(b1.mu + b2.mu + s0 * b1.alpha + s1 * b2.alpha);
        }
        for (int64_t c = 0; c < n; ++c) {
          const float v = x[size_t(c)];
          uint32_t code;
          if (salient[size_t(c)]) {
            const float r1 = v - b1.apply(v);
            code = (v - b1.mu >= 0.0f ? 1u : 0u) | (r1 - b2.mu >= 0.0f ? 2u : 0u);
          } else {
            const uint32_t sparse = std::fabs(v) >= p ? 1u : 0u;
            code = (v - part[sparse].mu >= 0.0f ? 1u : 0u) | (sparse << 1);
          }
          codes[size_t(r * cols + st + c)] = uint8_t(code);
          const float e = (v - lv[salient[size_t(c)] * L + code]) / U(st + c, st + c);
          Err(r, c) = e;
          row_loss[size_t(r)] += 0.5 * double(e) * double(e);
        }
      }
    }
    for (double v : row_loss) loss += v;
    // W[:, later] -= Err U[block, later] (as gptq.cc: column-major matrices read as transposes).
    if (st + n < cols)
      dense::gemm(false, false, cols - st - n, rows, n, -1.0f, U.data() + (st + n) * cols + st, cols, Err.data(), rows,
                  1.0f, W.data() + (st + n) * rows, rows);
  }
  res.loss = loss;
  for (int64_t r = 0; r < rows; ++r) pack_bits(codes.data() + r * cols, cols, spec.bits, q.codes.data() + r * q.words_per_row());
  return res;
}

}  // namespace llmq
