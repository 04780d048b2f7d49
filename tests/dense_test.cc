// The dense layer (kernels/dense.h) against plain fp64 loops, through every ISA copy: GEMM with
// every transpose combination, alpha/beta, strided operands and edge shapes; GPTQ's factor U of
// H⁻¹ (UᵀU H = I, U upper triangular) and its refusal of a matrix that is not positive definite.
#include "dense.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "test_util.h"

namespace llmq {
namespace {

class DenseIsa : public ::testing::TestWithParam<Isa> {};

TEST_P(DenseIsa, GemmEqualsTheReference) {
  if (!isa_supported(GetParam())) GTEST_SKIP() << isa_name(GetParam()) << " is not supported here";
  struct Shape {
    int64_t m, n, k;
  };
  for (Shape s : {Shape{1, 1, 1}, Shape{1, 37, 5}, Shape{17, 1, 33}, Shape{33, 65, 129}, Shape{64, 48, 1}, Shape{5, 7, 0}})
    for (int ta = 0; ta < 2; ++ta)
      for (int tb = 0; tb < 2; ++tb)
        for (float beta : {0.0f, 1.0f, -0.5f}) {
          const int64_t ar = ta ? s.k : s.m, ac = ta ? s.m : s.k, br = tb ? s.n : s.k, bc = tb ? s.k : s.n;
          const int64_t lda = ac + 3, ldb = bc + 1, ldc = s.n + 2;  // strided: padding after each row
          const auto a = test::random_normal(size_t(std::max<int64_t>(1, ar * lda)), 1);
          const auto b = test::random_normal(size_t(std::max<int64_t>(1, br * ldb)), 2);
          auto c = test::random_normal(size_t(s.m * ldc), 3);
          if (beta == 0.0f) c[0] = std::numeric_limits<float>::quiet_NaN();  // beta 0 ignores what C held
          std::vector<double> want(c.size());
          for (int64_t i = 0; i < s.m; ++i)
            for (int64_t j = 0; j < ldc; ++j) {
              if (j >= s.n) {
                want[size_t(i * ldc + j)] = c[size_t(i * ldc + j)];  // padding is left alone
                continue;
              }
              double acc = 0;
              for (int64_t p = 0; p < s.k; ++p)
                acc += double(ta ? a[size_t(p * lda + i)] : a[size_t(i * lda + p)]) *
                       double(tb ? b[size_t(j * ldb + p)] : b[size_t(p * ldb + j)]);
              want[size_t(i * ldc + j)] = 1.5 * acc + (beta == 0.0f ? 0.0 : double(beta) * c[size_t(i * ldc + j)]);
            }
          dense::gemm(GetParam(), ta, tb, s.m, s.n, s.k, 1.5f, a.data(), lda, b.data(), ldb, beta, c.data(), ldc);
          for (size_t i = 0; i < c.size(); ++i)
            ASSERT_NEAR(c[i], want[i], 1e-4 * (1.0 + std::fabs(want[i]) + double(s.k)))
                << isa_name(GetParam()) << " m " << s.m << " n " << s.n << " k " << s.k << " ta " << ta << " tb " << tb
                << " beta " << beta << " at " << i;
        }
}

INSTANTIATE_TEST_SUITE_P(All, DenseIsa, ::testing::Values(Isa::kScalar, Isa::kAvx2, Isa::kAvx512),
                         [](const auto& info) { return std::string(isa_name(info.param)); });

// The dispatched factorization (the active ISA's copy): U upper triangular, positive diagonal,
// Uᵀ U H = I; a singular H is refused.
TEST(Dense, UpperCholeskyOfInverse) {
  for (int64_t n : {1, 5, 64, 65, 150}) {
    const auto x = test::random_normal(size_t(3 * n * n), 4);
    std::vector<float> h(size_t(n * n));  // H = XᵀX / rows + I (column-major; symmetric)
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < n; ++j) {
        double acc = i == j ? 1.0 : 0.0;
        for (int64_t r = 0; r < 3 * n; ++r) acc += double(x[size_t(r * n + i)]) * x[size_t(r * n + j)] / double(3 * n);
        h[size_t(j * n + i)] = float(acc);
      }
    std::vector<float> u(size_t(n * n));
    ASSERT_TRUE(dense::upper_cholesky_of_inverse(h.data(), n, u.data())) << n;
    for (int64_t i = 0; i < n; ++i) {
      EXPECT_GT(u[size_t(i * n + i)], 0.0f);
      for (int64_t j = 0; j < i; ++j) EXPECT_EQ(u[size_t(j * n + i)], 0.0f) << "U(" << i << "," << j << ")";
    }
    for (int64_t i = 0; i < n; ++i)  // (Uᵀ U H)(i, j)
      for (int64_t j = 0; j < n; ++j) {
        double acc = 0;
        for (int64_t p = 0; p < n; ++p) {
          double utu = 0;
          for (int64_t q = 0; q < n; ++q) utu += double(u[size_t(i * n + q)]) * u[size_t(p * n + q)];
          acc += utu * h[size_t(j * n + p)];
        }
        ASSERT_NEAR(acc, i == j ? 1.0 : 0.0, 2e-3) << "n " << n << " (" << i << "," << j << ")";
      }
  }
  std::vector<float> singular = {1, 1, 1, 1}, u(4);
  EXPECT_FALSE(dense::upper_cholesky_of_inverse(singular.data(), 2, u.data()));
  EXPECT_STREQ(dense::isa(), active_isa() == Isa::kAvx512 ? "avx512" : active_isa() == Isa::kAvx2 ? "avx2" : "baseline");
}

}  // namespace
}  // namespace llmq
