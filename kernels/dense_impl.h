// The body of the dense entries (dense.h), included once per ISA by dense_<isa>.cc, which defines
// LLMQ_DENSE_NS (the namespace of that copy) and renames Eigen's namespace to one of its own before
// including this, so no inline Eigen function compiled for one ISA can stand in for another's.
#include <Eigen/Cholesky>
#include <Eigen/Core>
#include <algorithm>
#include <cstdint>

namespace llmq::dense::LLMQ_DENSE_NS {
namespace {

using RowMat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using ColMat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::ColMajor>;
using Map = Eigen::Map<RowMat, 0, Eigen::OuterStride<>>;
using ConstMap = Eigen::Map<const RowMat, 0, Eigen::OuterStride<>>;

// In-place inverse of a lower-triangular matrix by 2x2 blocks,
//   [A 0; B C]^-1 = [A^-1 0; -C^-1 B A^-1  C^-1],
// so the work is n^3/3 flops in triangular-times-dense products (a solve against the
// identity would be n^3).
void invert_lower_triangular(Eigen::Ref<ColMat> l) {
  const int64_t n = l.rows();
  if (n <= 64) {
    ColMat inv = ColMat::Identity(n, n);
    l.triangularView<Eigen::Lower>().solveInPlace(inv);
    l = inv.triangularView<Eigen::Lower>();
    return;
  }
  const int64_t h = n / 2;
  invert_lower_triangular(l.topLeftCorner(h, h));
  invert_lower_triangular(l.bottomRightCorner(n - h, n - h));
  ColMat b = -(l.bottomRightCorner(n - h, n - h).triangularView<Eigen::Lower>() * l.bottomLeftCorner(n - h, h));
  l.bottomLeftCorner(n - h, h).noalias() = b * l.topLeftCorner(h, h).triangularView<Eigen::Lower>();
  l.topRightCorner(h, n - h).setZero();
}

// C is cut into panels whose shapes depend only on (m, n, k), never on the thread count, and each
// panel is one single-threaded Eigen product (Eigen's own threading is off: EIGEN_DONT_PARALLELIZE,
// whose blocking depends on the thread count). So every result is the same bits with 1 thread, 2
// threads or N MPI ranks of 1 thread each (docs/DESIGN.md, "Determinism"). Each panel repacks the
// other operand, so panels are as wide as 8 per matrix allow (at least 256): on a 4096x4096x2048
// product 256-wide panels cost 15%, 512-wide ones 7% (BM_HessianAccumulate).
constexpr int64_t kMinPanel = 256, kMaxPanels = 8;

template <typename OpA, typename OpB>
void gemm_panels(Map& C, const OpA& A, const OpB& B, float alpha) {
  const int64_t m = C.rows(), n = C.cols(), k = A.cols();
  const bool by_cols = n >= 2 * kMinPanel, by_rows = !by_cols && m >= 2 * kMinPanel;
  const int64_t extent = by_cols ? n : by_rows ? m : 1;
  const int64_t width = std::max(kMinPanel, (extent + kMaxPanels * 64 - 1) / (kMaxPanels * 64) * 64);
  const int64_t panels = (extent + width - 1) / width;
  const bool parallel = panels > 1 && double(m) * double(n) * double(k) >= double(1 << 20);
#pragma omp parallel for schedule(dynamic) if (parallel)
  for (int64_t p = 0; p < panels; ++p) {
    const int64_t p0 = p * width, w = std::min(width, extent - p0);
    if (by_cols) C.middleCols(p0, w).noalias() += alpha * (A * B.middleCols(p0, w));
    else if (by_rows) C.middleRows(p0, w).noalias() += alpha * (A.middleRows(p0, w) * B);
    else C.noalias() += alpha * (A * B);
  }
}

}  // namespace

void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
          const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  Map C(c, m, n, Eigen::OuterStride<>(ldc));
  if (beta == 0.0f) C.setZero();
  else if (beta != 1.0f) C *= beta;
  if (m == 0 || n == 0 || k == 0) return;
  // A stored [m, k] or [k, m]; B stored [k, n] or [n, k].
  ConstMap A(a, trans_a ? k : m, trans_a ? m : k, Eigen::OuterStride<>(lda));
  ConstMap B(b, trans_b ? n : k, trans_b ? k : n, Eigen::OuterStride<>(ldb));
  if (!trans_a && !trans_b) gemm_panels(C, A, B, alpha);
  else if (!trans_a && trans_b) gemm_panels(C, A, B.transpose(), alpha);
  else if (trans_a && !trans_b) gemm_panels(C, A.transpose(), B, alpha);
  else gemm_panels(C, A.transpose(), B.transpose(), alpha);
}

// With P the reversal permutation and P H P = L Lᵀ, H⁻¹ = (P L⁻ᵀ P)(P L⁻¹ P), and P L⁻¹ P is upper
// triangular with a positive diagonal, so it is the (unique) Cholesky factor of H⁻¹ (what
// torch.linalg.cholesky(H⁻¹, upper=True) gives) without forming H⁻¹.
bool upper_cholesky_of_inverse(const float* h_in, int64_t n, float* u_out) {
  ColMat h = Eigen::Map<const ColMat>(h_in, n, n);
  h.reverseInPlace();
  Eigen::LLT<Eigen::Ref<ColMat>> llt(h);
  if (llt.info() != Eigen::Success) return false;
  invert_lower_triangular(h);  // LLT<Ref> factored h in place: its lower triangle is L
  h.triangularView<Eigen::StrictlyUpper>().setZero();
  h.reverseInPlace();
  Eigen::Map<ColMat>(u_out, n, n) = h;
  return h.allFinite() && (h.diagonal().array() > 0.0f).all();
}

// The softmax rows of causal attention (dense.h). Eigen peels unaligned leading elements off a
// vectorized loop and computes them with the scalar exp, whose results differ in the last bit from
// the packet exp; on a Map into a malloc'ed row that would make the output depend on where the heap
// put it (seen with -march=native: quantized files differed between runs). The row is therefore
// worked on in an Eigen-owned, fully aligned copy.
void causal_softmax(float* scores, int64_t n, int64_t total, int64_t start, int64_t window) {
  Eigen::ArrayXf row(total);
  for (int64_t t = 0; t < n; ++t) {
    const int64_t pos = start + t;
    const int64_t lo = std::max<int64_t>(0, pos - window + 1);
    float* s = scores + t * total;
    auto a = row.head(pos - lo + 1);  // starts at the aligned start of `row`
    a = Eigen::Map<const Eigen::ArrayXf>(s + lo, pos - lo + 1);
    a = (a - a.maxCoeff()).exp();
    a *= float(1.0 / a.cast<double>().sum());
    std::copy(a.data(), a.data() + a.size(), s + lo);
    std::fill(s, s + lo, 0.0f);
    std::fill(s + pos + 1, s + total, 0.0f);
  }
}

// out = silu(g) * u in aligned chunks, for the reason above, each padded to a multiple of 16
// values so that every value goes through the packet exp (Eigen's scalar tail would differ in the
// last bit): the result of a value does not depend on how a caller splits the array.
void silu_mul(const float* g, const float* u, int64_t count, float* out) {
  constexpr int64_t kChunk = 1024;
  Eigen::ArrayXf a(kChunk), b(kChunk);
  for (int64_t i = 0; i < count; i += kChunk) {
    const int64_t c = std::min(kChunk, count - i), padded = (c + 15) / 16 * 16;
    std::copy(g + i, g + i + c, a.data());
    std::copy(u + i, u + i + c, b.data());
    std::fill(a.data() + c, a.data() + padded, 0.0f);
    std::fill(b.data() + c, b.data() + padded, 0.0f);
    auto h = a.head(padded);
    h = h / (1.0f + (-h).exp()) * b.head(padded);
    std::copy(a.data(), a.data() + c, out + i);
  }
}

// STREAM's loops, vectorized for this ISA (plain loops the compiler widens to its vectors).
void triad(float* a, const float* b, const float* c, float s, int64_t n) {
  for (int64_t i = 0; i < n; ++i) a[i] = b[i] + s * c[i];
}

// 64 independent partial sums: enough vector chains that the loop waits on memory, not on adds.
float read_sum(const float* b, const float* c, int64_t n) {
  float part[64] = {};
  int64_t i = 0;
  for (; i + 64 <= n; i += 64)
    for (int k = 0; k < 64; ++k) part[k] += b[i + k] + c[i + k];
  float s = 0.0f;
  for (; i < n; ++i) s += b[i] + c[i];
  for (float v : part) s += v;
  return s;
}

}  // namespace llmq::dense::LLMQ_DENSE_NS
