// Every kernel path against the reference: the scalar kernels against a double-precision
// product with dequantize(), and every SIMD variant against the scalar kernels, over bit
// widths, group sizes, act-order group indices, outliers, awkward shapes and extreme scales.
#include <gtest/gtest.h>
#include <llmq/llmq.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <numeric>
#include <random>

#include "packed.h"
#include "test_util.h"

namespace llmq {
namespace {

struct Case {
  int bits, group;
  bool sym, act_order, outliers;
  int64_t rows, cols;
  bool bilevel = false;  // 3-bit bilevel scales and (asym) zeros: real-valued zero points (fp32 activations only)
  bool in_slot = false;  // outliers as positions read with a second per-group scale (AdpQ's storage)
  bool lookup = false;   // lookup codes (BiLLM): random codes, levels and column classes (fp32 activations only)
  bool fp32_scales = false;  // scales not rounded to fp16 (the int8 panels then keep them as fp32)
  GgmlType ggml = GgmlType::kNone;  // a ggml grid (QuantSpec::ForGgml; bits, group and sym unused)
};

// A tensor on ggml type t's grid (K-quants: cols a multiple of 256).
Case ggml_case(GgmlType t, int64_t rows, int64_t cols) {
  Case c{4, 32, false, false, false, rows, cols};
  c.ggml = t;
  return c;
}

QuantizedTensor make_tensor(const Case& c, uint32_t seed) {
  auto w = test::random_normal(size_t(c.rows * c.cols), seed, 0.05f);
  // Extreme but finite scales: one tiny row, one huge row, one all-zero row.
  if (c.rows > 2)
    for (int64_t k = 0; k < c.cols; ++k) {
      w[size_t(0 * c.cols + k)] *= 1e-4f;
      w[size_t(1 * c.cols + k)] *= 1e4f;
      w[size_t(2 * c.cols + k)] = 0.0f;
    }
  QuantSpec spec;
  spec.bits = c.bits;
  spec.group_size = c.group;
  spec.symmetric = c.sym;
  spec.lookup = c.lookup;
  if (c.bilevel) spec.scale_bits = spec.zero_bits = 3;
  if (c.fp32_scales) spec.scale_dtype = ScaleDType::kF32;
  if (c.ggml != GgmlType::kNone) spec = QuantSpec::ForGgml(c.ggml);
  std::mt19937 rng(seed);
  QuantizedTensor q;
  if (c.lookup) {  // every code, level and class drawn at random; row 2 all zero levels
    q = QuantizedTensor::Allocate(c.rows, c.cols, spec);
    std::normal_distribution<float> level(0.0f, 0.05f);
    for (size_t i = 0; i < q.levels.size(); ++i) q.levels[i] = round_to_fp16(level(rng));
    if (c.rows > 2)
      std::fill(q.levels.begin() + 2 * q.num_groups() * q.levels_per_group(),
                q.levels.begin() + 3 * q.num_groups() * q.levels_per_group(), 0.0f);
    for (auto& cls : q.column_classes) cls = uint8_t(rng() % 2);
    for (int64_t r = 0; r < c.rows; ++r)
      for (int64_t k = 0; k < c.cols; ++k) q.set_code(r, k, rng() % (1u << c.bits));
  } else {
    q = *quantize_rtn(w.data(), c.rows, c.cols, spec);
  }
  if (c.act_order && c.group > 0) {
    std::vector<int32_t> perm(static_cast<size_t>(c.cols));
    std::iota(perm.begin(), perm.end(), 0);
    std::shuffle(perm.begin(), perm.end(), rng);
    q.g_idx.assign(size_t(c.cols), 0);
    for (int64_t k = 0; k < c.cols; ++k) q.g_idx[size_t(perm[size_t(k)])] = int32_t(k / c.group);
  }
  if (c.outliers) {
    q.outliers.row_ptr.assign(size_t(c.rows + 1), 0);
    for (int64_t r = 0; r < c.rows; ++r) {
      for (int64_t k = r % 3; k < c.cols; k += 7 + r % 5) {
        q.outliers.col_idx.push_back(int32_t(k));
        q.outliers.values.push_back(float_to_fp16(0.3f * float((k % 5) - 2)));
      }
      q.outliers.row_ptr[size_t(r + 1)] = int32_t(q.outliers.col_idx.size());
    }
  }
  if (c.in_slot) {
    q.outliers.values.clear();
    q.outlier_scales.resize(q.scales.size());
    for (size_t i = 0; i < q.scales.size(); ++i) q.outlier_scales[i] = round_to_fp16(2.5f * q.scales[i]);
  }
  EXPECT_TRUE(q.Validate().ok()) << q.Validate().ToString();
  return q;
}

// What outlier i of row r adds to the dense part (its value, or its second scale's difference).
double outlier_addition(const QuantizedTensor& q, int64_t r, int32_t i) {
  if (!q.in_slot_outliers()) return fp16_to_float(q.outliers.values[size_t(i)]);
  const int32_t c = q.outliers.col_idx[size_t(i)];
  const size_t rg = size_t(r * q.num_groups() + q.group_of(c));
  return (double(q.outlier_scales[rg]) - q.scales[rg]) * (double(q.code(r, c)) - q.zero_value(r, q.group_of(c)));
}

// q without its sparse part.
QuantizedTensor dense_part(const QuantizedTensor& q) {
  QuantizedTensor d = q;
  d.outliers = SparseOutliers();
  d.outlier_scales.clear();
  return d;
}

// y = x deq(W)^T in double, and the magnitude each output's rounding error scales with:
// sum_c (|scale * code| + |scale * zero| + |outlier|) |x_c| (the kernels use the factored form
// scale * sum(code x) - scale * zero * sum(x), exact in real arithmetic).
struct Reference {
  std::vector<double> y, magnitude;
};

Reference reference_product(const QuantizedTensor& q, const std::vector<float>& x, int64_t n) {
  const auto d = dequantize(q);
  std::vector<double> dense_mag(size_t(q.rows * q.cols));
  for (int64_t r = 0; r < q.rows; ++r)
    for (int64_t c = 0; c < q.cols; ++c) {
      if (q.spec.lookup) {  // the levels are the weights: no factored form
        dense_mag[size_t(r * q.cols + c)] = 2.0 * std::fabs(d[size_t(r * q.cols + c)]);
        continue;
      }
      const int g = q.group_of(c);
      double s = q.scales[size_t(r * q.num_groups() + g)];
      if (q.in_slot_outliers()) s = std::max(s, double(q.outlier_scales[size_t(r * q.num_groups() + g)]));
      dense_mag[size_t(r * q.cols + c)] = std::fabs(s) * (double(q.code(r, c)) + std::fabs(q.zero_value(r, g))) +
                                          std::fabs(q.min_of(r, g)) + std::fabs(d[size_t(r * q.cols + c)]);
    }
  Reference ref;
  ref.y.assign(size_t(n * q.rows), 0.0);
  ref.magnitude.assign(ref.y.size(), 0.0);
  for (int64_t t = 0; t < n; ++t)
    for (int64_t r = 0; r < q.rows; ++r) {
      double s = 0, m = 0;
      for (int64_t c = 0; c < q.cols; ++c) {
        const double xv = x[size_t(t * q.cols + c)];
        s += double(d[size_t(r * q.cols + c)]) * xv;
        m += dense_mag[size_t(r * q.cols + c)] * std::fabs(xv);
      }
      ref.y[size_t(t * q.rows + r)] = s;
      ref.magnitude[size_t(t * q.rows + r)] = m;
    }
  return ref;
}

// max over outputs of |a - b| / magnitude.
double worst_error(const std::vector<float>& a, const std::vector<double>& b, const std::vector<double>& magnitude) {
  double worst = 0;
  for (size_t i = 0; i < a.size(); ++i)
    worst = std::max(worst, std::fabs(double(a[i]) - b[i]) / std::max(magnitude[i], 1e-30));
  return worst;
}

Result<PackedLinear> pack_int8(const QuantizedTensor& q) {
  PackOptions po;
  po.int8_activations = true;
  return PackedLinear::Pack(q, po);
}

std::vector<Case> cases() {
  std::vector<Case> out;
  for (int bits : {2, 3, 4, 8})
    for (int group : {0, 32, 128})
      for (bool sym : {true, false}) out.push_back({bits, group, sym, false, false, 33, 256});
  // Awkward shapes: per-channel with cols not a multiple of 32, a group size the SIMD
  // layout cannot take (16: reference path), odd rows, partial last group.
  out.push_back({4, 0, true, false, false, 7, 100});
  out.push_back({4, 16, false, false, false, 9, 80});
  out.push_back({4, 64, true, false, false, 1, 160});
  out.push_back({3, 32, false, false, false, 17, 96});
  out.push_back({8, 32, true, false, false, 5, 70});
  // Act-order group index and sparse outliers.
  out.push_back({4, 32, true, true, false, 19, 128});
  out.push_back({4, 64, false, true, true, 11, 192});
  out.push_back({3, 32, true, false, true, 6, 64});
  // Groups on 16-column boundaries (the SIMD kernels' half-block path): act-order groups of 16
  // with outliers, and groups of 48 (a block whose halves belong to two groups).
  out.push_back({4, 16, true, true, true, 12, 96});
  out.push_back({3, 48, false, false, false, 7, 144});
  // In-slot outliers (a second per-group scale at the outliers' positions).
  out.push_back({4, 32, false, false, true, 13, 96, false, true});
  out.push_back({3, 64, true, true, true, 10, 128, false, true});
  // Enough rows for several 16-row panels per thread: the int8 GEMV reads 4 panels side by side
  // (and a partial last panel).
  out.push_back({4, 32, true, false, false, 130, 128});
  out.push_back({8, 32, false, false, false, 147, 64});
  // fp32 scales (the int8 panels keep them as fp32; every other case has fp16 ones).
  out.push_back({4, 32, false, false, false, 21, 128, false, false, false, true});
  out.push_back({8, 0, true, true, false, 18, 96, false, false, false, true});
  // ggml grids with float mins (w = scale * code - min): K-quants' fp32 products of two-level
  // scales, 5-bit codes as bytes, q2_k's groups of 16, and a GEMV over 4 panels side by side.
  out.push_back(ggml_case(GgmlType::kQ4_K, 33, 256));
  out.push_back(ggml_case(GgmlType::kQ4_K, 130, 512));
  out.push_back(ggml_case(GgmlType::kQ5_K, 19, 256));
  out.push_back(ggml_case(GgmlType::kQ2_K, 9, 256));
  out.push_back(ggml_case(GgmlType::kQ4_1, 17, 96));
  out.push_back(ggml_case(GgmlType::kQ5_1, 5, 64));
  // q6_k: 6-bit codes as bytes in groups of 16 (AMX's 16-column steps).
  out.push_back(ggml_case(GgmlType::kQ6_K, 21, 256));
  // q3_k: signed (biased) 6-bit scale codes.
  out.push_back(ggml_case(GgmlType::kQ3_K, 25, 512));
  return out;
}

// cases() and what only the fp32-activation kernels take: real-valued (bilevel) zero points.
std::vector<Case> fp32_cases() {
  std::vector<Case> out = cases();
  out.push_back({3, 16, false, false, false, 37, 64, true});
  out.push_back({4, 32, false, false, true, 20, 96, true});
  out.push_back({4, 32, false, true, true, 17, 128, true, true});
  // Lookup codes: 64-column-aligned groups (SIMD), a partial last group and padding, per-row,
  // groups the SIMD kernels cannot take (32: scalar), outliers, act-order, 1-bit codes.
  out.push_back({2, 128, true, false, false, 33, 256, false, false, true});
  out.push_back({2, 64, true, false, false, 9, 200, false, false, true});
  out.push_back({2, 0, true, false, false, 5, 100, false, false, true});
  out.push_back({2, 32, true, false, false, 7, 96, false, false, true});
  out.push_back({2, 128, true, false, true, 11, 192, false, false, true});
  out.push_back({2, 64, true, true, false, 12, 192, false, false, true});
  out.push_back({1, 64, true, false, false, 6, 128, false, false, true});
  return out;
}

// Token counts that reach every branch of PackedLinear::Forward: gemv (1-3), gemv8 (4-64; AVX2
// and scalar take dequant+gemm there) and dequant+gemm (> 64).
const int64_t kTokenCounts[] = {1, 2, 3, 4, 9, 17, 64, 65, 100};

TEST(Kernels, ScalarReferenceEqualsDequantizedProduct) {
  uint32_t seed = 1;
  for (const Case& c : fp32_cases()) {
    const QuantizedTensor q = make_tensor(c, seed++);
    auto p = PackedLinear::Pack(q);
    ASSERT_TRUE(p.ok()) << p.status().ToString();
    for (int64_t n : kTokenCounts) {
      auto x = test::random_normal(size_t(n * c.cols), seed++);
      std::vector<float> y(size_t(n * c.rows));
      p->Forward(x.data(), n, y.data(), Isa::kScalar);
      const Reference ref = reference_product(q, x, n);
      EXPECT_LT(worst_error(y, ref.y, ref.magnitude), 1e-5)
          << q.spec.ToString() << " act_order " << c.act_order << " outliers " << c.outliers << " " << c.rows << "x"
          << c.cols << " n " << n;
    }
  }
}

class KernelIsa : public ::testing::TestWithParam<Isa> {};

TEST_P(KernelIsa, EqualsScalarReference) {
  const Isa isa = GetParam();
  if (!isa_supported(isa)) GTEST_SKIP() << isa_name(isa) << " is not supported by this CPU";
  uint32_t seed = 100;
  for (const Case& c : fp32_cases()) {
    const QuantizedTensor q = make_tensor(c, seed++);
    auto p = PackedLinear::Pack(q);
    ASSERT_TRUE(p.ok());
    for (int64_t n : kTokenCounts) {
      auto x = test::random_normal(size_t(n * c.cols), seed++);
      std::vector<float> ys(size_t(n * c.rows)), yv(ys.size());
      p->Forward(x.data(), n, ys.data(), Isa::kScalar);
      p->Forward(x.data(), n, yv.data(), isa);
      const Reference ref = reference_product(q, x, n);
      EXPECT_LT(worst_error(yv, std::vector<double>(ys.begin(), ys.end()), ref.magnitude), 1e-5)
          << isa_name(isa) << " " << q.spec.ToString() << " n " << n << " (" << p->kernel(n, isa) << ")";
    }
  }
}

// Each entry of the ISA's kernel table, called directly, against the scalar table's entry on the
// same packed weights (every case whose layout the SIMD tables take).
TEST_P(KernelIsa, EveryTableEntryEqualsTheScalarEntry) {
  const Isa isa = GetParam();
  if (!isa_supported(isa)) GTEST_SKIP() << isa_name(isa) << " is not supported by this CPU";
  const kernels::KernelTable& simd = isa == Isa::kAvx512 ? *kernels::avx512_kernels() : *kernels::avx2_kernels();
  const kernels::KernelTable& ref = kernels::scalar_kernels();
  uint32_t seed = 500;
  int tested = 0;
  for (const Case& c : fp32_cases()) {
    if (c.act_order) continue;  // packed order = source order below
    const QuantizedTensor q = make_tensor(c, seed++);
    auto p = PackedLinear::Pack(q);
    ASSERT_TRUE(p.ok());
    const kernels::PackedWeights& w = internal::PackedAccess::weights(*p);
    if (!w.simd_layout()) continue;
    ++tested;
    const int64_t n = 8, kp = w.kp, ng = w.ngroups, rows = w.rows;
    std::vector<float> x(size_t(n * kp), 0.0f), xsum(size_t(n * ng), 0.0f);
    auto xr = test::random_normal(size_t(n * w.cols), seed++);
    for (int64_t t = 0; t < n; ++t)
      for (int64_t j = 0; j < w.cols; ++j) x[size_t(t * kp + j)] = xr[size_t(t * w.cols + j)];
    for (int64_t t = 0; t < n; ++t)
      for (int64_t g = 0; g < ng; ++g)
        for (int64_t j = w.group_start[size_t(g)]; j < w.group_start[size_t(g + 1)]; ++j) xsum[size_t(t * ng + g)] += x[size_t(t * kp + j)];
    // Errors are relative to the magnitude the factored product's rounding scales with.
    const Reference mag = reference_product(q, xr, n);
    auto close = [&](float a, float b, int64_t t, int64_t r) {
      return std::fabs(double(a) - double(b)) <= 1e-5 * std::max(mag.magnitude[size_t(t * rows + r)], 1e-30);
    };
    // Rows split as the threads split them (multiples of 8) and one odd split.
    for (auto [r0, r1] : {std::pair<int64_t, int64_t>{0, rows}, {std::min<int64_t>(8, rows), rows}, {0, (rows + 1) / 2}}) {
      if (r1 <= r0) continue;
      std::vector<float> ya(size_t(rows), 0.0f), yb(size_t(rows), 0.0f);
      simd.gemv(w, x.data(), xsum.data(), r0, r1, ya.data());
      ref.gemv(w, x.data(), xsum.data(), r0, r1, yb.data());
      for (int64_t r = r0; r < r1; ++r)
        EXPECT_TRUE(close(ya[size_t(r)], yb[size_t(r)], 0, r))
            << simd.name << " gemv " << q.spec.ToString() << " row " << r << ": " << ya[size_t(r)] << " vs " << yb[size_t(r)];
      std::vector<float> da(size_t((r1 - r0) * kp)), db(da.size());
      simd.dequant(w, r0, r1, da.data());
      ref.dequant(w, r0, r1, db.data());
      EXPECT_EQ(da, db) << simd.name << " dequant " << q.spec.ToString() << " rows " << r0 << ".." << r1;
      if (simd.gemv_multi != nullptr) {
        std::vector<float> ma(size_t(n * rows), 0.0f);
        simd.gemv_multi(w, x.data(), xsum.data(), n, r0, r1, ma.data(), rows);
        for (int64_t t = 0; t < n; ++t) {
          std::vector<float> yt(size_t(rows), 0.0f);
          ref.gemv(w, x.data() + t * kp, xsum.data() + t * ng, r0, r1, yt.data());
          for (int64_t r = r0; r < r1; ++r)
            EXPECT_TRUE(close(ma[size_t(t * rows + r)], yt[size_t(r)], t, r))
                << simd.name << " gemv_multi " << q.spec.ToString() << " token " << t << " row " << r;
        }
      }
    }
  }
  EXPECT_GT(tested, 10);
}

// The sparse outliers' product, called directly: every variant gives the scalar entry's bits (the
// lanes are fixed and the products exact in double), for rows with 0 to 69 outliers (whole groups
// of 16 and tails), several tokens, and row ranges as the threads split them; the scalar entry
// equals the sum in double.
TEST_P(KernelIsa, SparseAddIsBitIdenticalToScalar) {
  const Isa isa = GetParam();
  if (!isa_supported(isa)) GTEST_SKIP() << isa_name(isa) << " is not supported by this CPU";
  const kernels::KernelTable& simd = isa == Isa::kAvx512 ? *kernels::avx512_kernels() : *kernels::avx2_kernels();
  const kernels::KernelTable& ref = kernels::scalar_kernels();
  const int64_t rows = 24, cols = 300;
  const auto wv = test::random_normal(size_t(rows * cols), 31, 0.05f);
  QuantizedTensor q = *quantize_rtn(wv.data(), rows, cols, test::quant_spec(4, 32));
  q.outliers.row_ptr.assign(size_t(rows + 1), 0);
  const auto vals = test::random_normal(size_t(rows * cols), 32);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t k = 0; k < 3 * r; ++k) {
      q.outliers.col_idx.push_back(int32_t((k * 7 + r * 13) % cols));
      q.outliers.values.push_back(float_to_fp16(vals[size_t(r * cols + k)]));
    }
    auto b = q.outliers.col_idx.begin() + q.outliers.row_ptr[size_t(r)];
    std::sort(b, q.outliers.col_idx.end());
    q.outliers.col_idx.erase(std::unique(b, q.outliers.col_idx.end()), q.outliers.col_idx.end());
    q.outliers.values.resize(q.outliers.col_idx.size());
    q.outliers.row_ptr[size_t(r + 1)] = int32_t(q.outliers.col_idx.size());
  }
  ASSERT_TRUE(q.Validate().ok()) << q.Validate().ToString();
  auto p = PackedLinear::Pack(q);
  ASSERT_TRUE(p.ok());
  const kernels::PackedWeights& w = internal::PackedAccess::weights(*p);
  for (int64_t n : {1, 3, 8}) {
    const auto x = test::random_normal(size_t(n * cols), 33 + uint32_t(n));
    const auto y0 = test::random_normal(size_t(n * rows), 40 + uint32_t(n));
    for (auto [r0, r1] : {std::pair<int64_t, int64_t>{0, rows}, {8, rows}, {3, 17}}) {
      std::vector<float> ya = y0, yb = y0;
      simd.sparse_add(w, x.data(), n, r0, r1, ya.data(), rows);
      ref.sparse_add(w, x.data(), n, r0, r1, yb.data(), rows);
      ASSERT_EQ(ya, yb) << simd.name << " n " << n << " rows " << r0 << ".." << r1;
      for (int64_t t = 0; t < n; ++t)
        for (int64_t r = 0; r < rows; ++r) {
          double sum = y0[size_t(t * rows + r)];
          if (r >= r0 && r < r1)
            for (int32_t i = w.out_row_ptr[size_t(r)]; i < w.out_row_ptr[size_t(r + 1)]; ++i)
              sum += double(w.out_val[size_t(i)]) * x[size_t(t * cols + w.out_col[size_t(i)])];
          EXPECT_NEAR(yb[size_t(t * rows + r)], sum, 1e-6 * (1.0 + std::fabs(sum))) << t << "," << r;
        }
    }
  }
}

// The SIMD variants against the scalar reference (the scalar kernels are checked against a
// double-precision product above).
INSTANTIATE_TEST_SUITE_P(All, KernelIsa, ::testing::Values(Isa::kAvx2, Isa::kAvx512),
                         [](const auto& info) { return std::string(isa_name(info.param)); });

// PackedLinear::kernel names what Forward runs; a layout without a SIMD path says so.
TEST(Kernels, ReportsTheKernelItRuns) {
  QuantSpec g128 = test::quant_spec(4, 128), g16 = test::quant_spec(4, 16), g8 = test::quant_spec(4, 8);
  auto w = test::random_normal(64 * 256, 3);
  auto aligned = PackedLinear::Pack(*quantize_rtn(w.data(), 64, 256, g128));
  auto halves = PackedLinear::Pack(*quantize_rtn(w.data(), 64, 256, g16));
  auto unaligned = PackedLinear::Pack(*quantize_rtn(w.data(), 64, 256, g8));
  ASSERT_TRUE(aligned.ok() && halves.ok() && unaligned.ok());
  EXPECT_EQ(aligned->kernel(1, Isa::kScalar), "scalar gemv");
  EXPECT_EQ(aligned->kernel(100, Isa::kScalar), "scalar dequant+gemm");
  EXPECT_EQ(unaligned->kernel(1, Isa::kScalar), "scalar gemv");
  EXPECT_EQ(unaligned->kernel_isa(Isa::kScalar), Isa::kScalar);
  if (isa_supported(Isa::kAvx512)) {
    EXPECT_EQ(aligned->kernel(1, Isa::kAvx512), "avx512 gemv");
    EXPECT_EQ(aligned->kernel(8, Isa::kAvx512), "avx512 gemv8");
    EXPECT_EQ(aligned->kernel(65, Isa::kAvx512), "avx512 dequant+gemm");
    EXPECT_EQ(aligned->kernel_isa(Isa::kAvx512), Isa::kAvx512);
    EXPECT_EQ(halves->kernel(1, Isa::kAvx512), "avx512 gemv (16-column groups)");
    EXPECT_EQ(halves->kernel(8, Isa::kAvx512), "avx512 gemv8 (16-column groups)");
    EXPECT_EQ(halves->kernel_isa(Isa::kAvx512), Isa::kAvx512);
    EXPECT_EQ(unaligned->kernel(1, Isa::kAvx512), "scalar gemv (groups not 16-column aligned)");
    EXPECT_EQ(unaligned->kernel_isa(Isa::kAvx512), Isa::kScalar);
  }
  if (isa_supported(Isa::kAvx2)) {
    EXPECT_EQ(aligned->kernel(2, Isa::kAvx2), "avx2 gemv");
    EXPECT_EQ(aligned->kernel(8, Isa::kAvx2), "avx2 dequant+gemm");
  }
  PackOptions int8;
  int8.int8_activations = true;
  auto w8 = PackedLinear::Pack(*quantize_rtn(w.data(), 64, 256, g128), int8);
  ASSERT_TRUE(w8.ok());
  EXPECT_EQ(w8->kernel(5, Isa::kScalar), "scalar int8");
  // Lookup codes: SIMD for groups on 64-column boundaries; never int8 activations.
  const QuantizedTensor lookup128 = make_tensor({2, 128, true, false, false, 16, 256, false, false, true}, 4);
  const QuantizedTensor lookup32 = make_tensor({2, 32, true, false, false, 16, 256, false, false, true}, 5);
  auto l128 = PackedLinear::Pack(lookup128), l32 = PackedLinear::Pack(lookup32);
  ASSERT_TRUE(l128.ok() && l32.ok());
  EXPECT_EQ(l128->kernel(1, Isa::kScalar), "scalar gemv (lookup)");
  if (isa_supported(Isa::kAvx512)) {
    EXPECT_EQ(l128->kernel(1, Isa::kAvx512), "avx512 gemv (lookup)");
    EXPECT_EQ(l128->kernel(8, Isa::kAvx512), "avx512 gemv8 (lookup)");
    EXPECT_EQ(l32->kernel(1, Isa::kAvx512), "scalar gemv (lookup groups not 64-column aligned)");
  }
  if (isa_supported(Isa::kAvx2)) {
    EXPECT_EQ(l128->kernel(1, Isa::kAvx2), "avx2 gemv (lookup)");
  }
  auto refused = PackedLinear::Pack(lookup128, int8);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("lookup codes"), std::string::npos) << refused.status().ToString();
}

// LLMQ_EXPECT_ISAS (e.g. "avx2,avx512", set by .ci/run for its machine) names the SIMD paths this
// machine must run: one silently missing (not compiled in, or not detected) would leave it untested.
// Without LLMQ_ISA the best of them is the active one.
TEST(Kernels, ThisMachineHasTheSimdPathsThatCiExpects) {
  const char* env = std::getenv("LLMQ_EXPECT_ISAS");
  if (env == nullptr || *env == '\0') GTEST_SKIP() << "LLMQ_EXPECT_ISAS is not set (e.g. avx2,avx512)";
  const std::string expected = env;
  Isa best = Isa::kScalar;
  for (Isa isa : {Isa::kAvx2, Isa::kAvx512}) {
    if (expected.find(isa_name(isa)) == std::string::npos) continue;
    EXPECT_TRUE(isa_supported(isa)) << isa_name(isa);
    best = isa;
  }
  const char* forced = std::getenv("LLMQ_ISA");
  if (forced == nullptr || *forced == '\0') {
    EXPECT_EQ(active_isa(), best) << isa_name(active_isa());
  }
}

// measure_memory_bandwidth takes the array size it is given (the default, beyond the LLC, is
// exercised by `llmq bench kernels` in cli_test) and reports finite positive rates.
TEST(Kernels, MemoryBandwidthIsMeasuredOnTheGivenArrays) {
  const MemoryBandwidth bw = measure_memory_bandwidth(1, int64_t(1) << 20);
  EXPECT_EQ(bw.array_bytes, int64_t(1) << 20);
  EXPECT_TRUE(std::isfinite(bw.triad_gbps) && bw.triad_gbps > 0.0) << bw.triad_gbps;
  EXPECT_TRUE(std::isfinite(bw.read_gbps) && bw.read_gbps > 0.0) << bw.read_gbps;
}

TEST(Kernels, PackedLayoutIsAsDocumented) {
  // 4-bit: byte i of a 32-column block = column i (low nibble) | column i + 16 (high nibble).
  std::vector<float> w(64);
  for (int k = 0; k < 64; ++k) w[size_t(k)] = float(k % 16) - 8.0f;
  QuantSpec spec;
  spec.group_size = 32;
  auto q = quantize_rtn(w.data(), 1, 64, spec);
  auto p = PackedLinear::Pack(*q);
  ASSERT_TRUE(p.ok());
  const auto& pw = internal::PackedAccess::weights(*p);
  EXPECT_EQ(pw.kp, 64);
  EXPECT_EQ(pw.row_bytes, 32);
  EXPECT_TRUE(pw.block_aligned);
  for (int i = 0; i < 16; ++i) {
    EXPECT_EQ(pw.codes[size_t(i)] & 15, int(q->code(0, i)));
    EXPECT_EQ(pw.codes[size_t(i)] >> 4, int(q->code(0, i + 16)));
  }
  for (int64_t j = 0; j < 64; ++j) EXPECT_EQ(pw.code(0, j), int(q->code(0, j)));
}

TEST(Kernels, LookupLayoutIsAsDocumented) {
  // 2-bit lookup codes: byte i of a 64-column block = columns i, i + 16, i + 32, i + 48 in bits
  // 0-1, 2-3, 4-5, 6-7; 8 fp16 levels per row and group (class 0's, then class 1's).
  const QuantizedTensor q = make_tensor({2, 64, true, false, false, 3, 130, false, false, true}, 11);
  auto p = PackedLinear::Pack(q);
  ASSERT_TRUE(p.ok());
  const auto& pw = internal::PackedAccess::weights(*p);
  EXPECT_EQ(pw.kp, 192);
  EXPECT_EQ(pw.row_bytes, 48);
  EXPECT_TRUE(pw.lookup && pw.block_aligned);
  for (int i = 0; i < 16; ++i)
    for (int k = 0; k < 4; ++k) EXPECT_EQ((pw.codes[size_t(i)] >> (2 * k)) & 3, int(q.code(0, i + 16 * k)));
  for (int64_t r = 0; r < 3; ++r)
    for (int64_t j = 0; j < 130; ++j) {
      EXPECT_EQ(pw.code(r, j), int(q.code(r, j)));
      EXPECT_EQ(pw.class_offset[size_t(j)], 4 * q.column_classes[size_t(j)]);
      EXPECT_EQ(fp16_to_float(pw.lut[size_t((r * pw.ngroups + j / 64) * 8 + pw.class_offset[size_t(j)] + pw.code(r, j))]),
                q.level(r, j / 64, j, q.code(r, j)));
    }
}

TEST(Kernels, ActOrderColumnsAreReorderedOnceAtPackTime) {
  Case c{4, 32, true, true, false, 4, 96};
  const QuantizedTensor q = make_tensor(c, 7);
  auto p = PackedLinear::Pack(q);
  ASSERT_TRUE(p.ok());
  const auto& pw = internal::PackedAccess::weights(*p);
  ASSERT_EQ(pw.perm.size(), size_t(96));
  EXPECT_EQ(pw.ngroups, 3);
  EXPECT_TRUE(pw.block_aligned);  // contiguous groups of 32 after reordering: SIMD applies
  for (int64_t j = 0; j < 96; ++j) EXPECT_EQ(q.g_idx[size_t(pw.perm[size_t(j)])], int32_t(j / 32));
}

TEST(Kernels, IsaFromEnvironmentRejectsUnknownValues) {
  setenv("LLMQ_ISA", "sse9", 1);
  auto r = isa_from_environment();
  EXPECT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("scalar, avx2 or avx512"), std::string::npos);
  setenv("LLMQ_ISA", "scalar", 1);
  EXPECT_EQ(*isa_from_environment(), Isa::kScalar);
  unsetenv("LLMQ_ISA");
}


// Int8 activations: the reference quantizes x per token (absmax / 127, half to even) and
// computes sum_g scale_g * (sum (code - zero) * xq) * sx in double.
TEST(KernelsInt8, ScalarEqualsDirectIntegerProduct) {
  uint32_t seed = 500;
  for (const Case& c : cases()) {
    const QuantizedTensor q = make_tensor(c, seed++);
    auto p = pack_int8(q);
    ASSERT_TRUE(p.ok()) << p.status().ToString();
    ASSERT_TRUE(p->int8_activations());
    for (int64_t n : {1, 3, 9}) {
      auto x = test::random_normal(size_t(n * c.cols), seed++);
      std::vector<float> y(size_t(n * c.rows));
      p->Forward(x.data(), n, y.data(), Isa::kScalar);
      // The quantized activations, exactly as the kernels make them.
      std::vector<double> xd(x.size());
      for (int64_t t = 0; t < n; ++t) {
        float amax = 0;
        for (int64_t k = 0; k < c.cols; ++k) amax = std::max(amax, std::fabs(x[size_t(t * c.cols + k)]));
        const float s = amax / 127.0f;
        for (int64_t k = 0; k < c.cols; ++k)
          xd[size_t(t * c.cols + k)] = double(std::clamp(std::nearbyint(x[size_t(t * c.cols + k)] / s), -127.0f, 127.0f)) * s;
      }
      std::vector<float> xdq(xd.begin(), xd.end());
      // Sparse outliers multiply the float activations (they are the large weights; keeping
      // their inputs exact costs nothing).
      Reference ref = reference_product(dense_part(q), xdq, n);
      if (!q.outliers.empty())
        for (int64_t t = 0; t < n; ++t)
          for (int64_t r = 0; r < c.rows; ++r)
            for (int32_t i = q.outliers.row_ptr[size_t(r)]; i < q.outliers.row_ptr[size_t(r + 1)]; ++i) {
              const double v = outlier_addition(q, r, i) * x[size_t(t * c.cols + q.outliers.col_idx[size_t(i)])];
              ref.y[size_t(t * c.rows + r)] += v;
              ref.magnitude[size_t(t * c.rows + r)] += std::fabs(v);
            }
      EXPECT_LT(worst_error(y, ref.y, ref.magnitude), 1e-5) << q.spec.ToString() << " n " << n;
    }
  }
}

// Every int8 variant (AMX, AVX-512 VNNI, AVX-VNNI, AVX2 emulation) gives the same bits as the reference.
void expect_int8_bit_identical(Isa isa, const std::vector<int64_t>& token_counts = {}) {
  std::vector<int64_t> ns = token_counts;
  if (ns.empty())
    for (int64_t n = 1; n <= 17; ++n) ns.push_back(n);
  uint32_t seed = 700;
  for (const Case& c : cases()) {
    const QuantizedTensor q = make_tensor(c, seed++);
    auto p = pack_int8(q);
    ASSERT_TRUE(p.ok());
    for (int64_t n : ns) {
      auto x = test::random_normal(size_t(n * c.cols), seed++);
      std::vector<float> ys(size_t(n * c.rows)), yv(ys.size());
      p->Forward(x.data(), n, ys.data(), Isa::kScalar);
      p->Forward(x.data(), n, yv.data(), isa);
      ASSERT_EQ(ys, yv) << isa_name(isa) << " " << q.spec.ToString() << " " << c.rows << "x" << c.cols << " n " << n;
    }
  }
}

TEST(KernelsInt8, Avx512VnniIsBitIdenticalToScalar) {
  if (!isa_supported(Isa::kAvx512)) GTEST_SKIP() << "no AVX-512 on this CPU";
  expect_int8_bit_identical(Isa::kAvx512);
}

bool cpu_lists(const std::string& flag) {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("flags", 0) == 0) return (line + " ").find(" " + flag + " ") != std::string::npos;
  return false;
}

// From 16 tokens the AVX-512 path runs AMX tiles where the CPU has them: whole tiles, a partial last
// tile, several tiles; 64-column steps (groups of 128, per-channel), 32-column and 16-column ones. LLMQ_AMX=off
// keeps it on VNNI, which must then give the same bits too.
TEST(KernelsInt8, AmxIsBitIdenticalToScalar) {
  if (!isa_supported(Isa::kAvx512)) GTEST_SKIP() << "no AVX-512 on this CPU";
  // A CPU that lists AMX-INT8 must have it granted (the kernel would otherwise be silently skipped).
  if (cpu_lists("amx_int8")) {
    EXPECT_NE(cpu_features_string().find("amx-int8"), std::string::npos) << cpu_features_string();
  } else {
    GTEST_SKIP() << "no AMX-INT8 on this CPU";
  }
  const std::vector<int64_t> ns = {16, 17, 31, 32, 40, 64};
  expect_int8_bit_identical(Isa::kAvx512, ns);
  QuantSpec g32;
  g32.group_size = 32;
  auto w = test::random_normal(64 * 256, 5);
  auto p = pack_int8(*quantize_rtn(w.data(), 64, 256, g32));
  EXPECT_EQ(p->kernel(16, Isa::kAvx512), "amx int8");
  EXPECT_EQ(p->kernel(15, Isa::kAvx512), "avx512-vnni int8");
  // Groups of 16 (q6_k) run 16-column tile steps.
  auto q6 = pack_int8(make_tensor(ggml_case(GgmlType::kQ6_K, 32, 256), 6));
  EXPECT_EQ(q6->kernel(16, Isa::kAvx512), "amx int8");
  setenv("LLMQ_AMX", "off", 1);
  EXPECT_EQ(p->kernel(16, Isa::kAvx512), "avx512-vnni int8");
  expect_int8_bit_identical(Isa::kAvx512, ns);
  unsetenv("LLMQ_AMX");
}

TEST(KernelsInt8, Avx2IsBitIdenticalToScalarWithAndWithoutVnni) {
  if (!isa_supported(Isa::kAvx2)) GTEST_SKIP() << "no AVX2 on this CPU";
  expect_int8_bit_identical(Isa::kAvx2);  // AVX-VNNI where the CPU has it
  setenv("LLMQ_AVX2_INT8", "emulated", 1);
  expect_int8_bit_identical(Isa::kAvx2);  // vpmaddubsw emulation
  unsetenv("LLMQ_AVX2_INT8");
}

// The int8 panels keep scales and zero points as small as they stay exact: what a GEMV streams
// per weight of w4 g32 is 4.5 bits symmetric (fp16 scales, no zeros), 4.75 with byte zeros; the
// K-quants keep their super-blocks (fp16 d, dmin per 256 columns, an integer code per group):
// q4_k 4.625 bits (6 with an fp32 scale and min per group), q3_k 4.5625, q2_k 5.125 (2-bit codes
// as nibbles); 5- and 6-bit codes take 6 bits (a nibble and a crumb): q6_k 6.5625, as in its
// ggml blocks (10 with byte codes and fp32 scales), q5_k 6.625. Every scale and min is the
// tensor's, bit for bit.
TEST(KernelsInt8, PanelParametersAreStoredAsSmallAsTheyStayExact) {
  using Zeros = kernels::PackedWeights::PanelZeros;
  using Scales = kernels::PackedWeights::PanelScales;
  struct Expect {
    Case c;
    Scales scales;
    Zeros zeros;
    double bits;  // streamed per weight
  };
  const Expect expects[] = {{{4, 32, true, false, false, 64, 256}, Scales::kF16, Zeros::kConstant, 4.5},
                            {{4, 32, false, false, false, 64, 256}, Scales::kF16, Zeros::kBytes, 4.75},
                            {{4, 32, true, false, false, 64, 256, false, false, false, true}, Scales::kF32, Zeros::kConstant, 5.0},
                            {{8, 128, false, false, false, 64, 256}, Scales::kF16, Zeros::kBytes, 8.1875},
                            {ggml_case(GgmlType::kQ4_K, 64, 512), Scales::kSuperBlock, Zeros::kConstant, 4.625},
                            {ggml_case(GgmlType::kQ3_K, 64, 512), Scales::kSuperBlock, Zeros::kConstant, 4.5625},
                            {ggml_case(GgmlType::kQ2_K, 64, 512), Scales::kSuperBlock, Zeros::kConstant, 5.125},
                            {ggml_case(GgmlType::kQ6_K, 64, 512), Scales::kSuperBlock, Zeros::kConstant, 6.5625},
                            {ggml_case(GgmlType::kQ5_K, 64, 512), Scales::kSuperBlock, Zeros::kConstant, 6.625},
                            {ggml_case(GgmlType::kQ4_0, 64, 512), Scales::kF16, Zeros::kConstant, 4.5}};
  uint32_t seed = 40;
  for (const Expect& e : expects) {
    const QuantizedTensor q = make_tensor(e.c, seed++);
    auto p = pack_int8(q);
    ASSERT_TRUE(p.ok()) << p.status().ToString();
    const kernels::PackedWeights& w = internal::PackedAccess::weights(*p);
    EXPECT_EQ(w.panel_scale_kind, e.scales) << q.spec.ToString();
    EXPECT_EQ(w.panel_zero_kind, e.zeros) << q.spec.ToString();
    EXPECT_DOUBLE_EQ(double(w.bytes()) * 8.0 / double(q.rows * q.cols), e.bits) << q.spec.ToString();
    auto same_bits = [](float a, float b) { return std::memcmp(&a, &b, sizeof a) == 0; };
    for (int64_t r = 0; r < q.rows; ++r)
      for (int64_t g = 0; g < q.num_groups(); ++g) {
        ASSERT_TRUE(same_bits(w.panel_scale(r, g), q.scales[size_t(r * q.num_groups() + g)])) << r << " " << g;
        ASSERT_TRUE(same_bits(w.panel_min(r, g), q.min_of(r, g))) << r << " " << g;
        ASSERT_EQ(w.panel_zero(r, g), q.zero_of(r, g));
      }
  }
}

// ForwardShared gives each linear the bits of its own Forward: linears with one layout (sharing a
// quantized input), with act-order columns or sparse outliers (their own), float activations (one
// Forward after another), at 1-2 tokens (one parallel region) and more, on every ISA.
TEST(KernelsInt8, ForwardSharedEqualsOneForwardEach) {
  const int64_t cols = 256;
  std::vector<QuantizedTensor> tensors;
  tensors.push_back(make_tensor(ggml_case(GgmlType::kQ4_K, 48, cols), 71));
  tensors.push_back(make_tensor(ggml_case(GgmlType::kQ4_K, 16, cols), 72));
  tensors.push_back(make_tensor(ggml_case(GgmlType::kQ6_K, 33, cols), 73));
  tensors.push_back(make_tensor({4, 32, false, true, false, 40, cols}, 74));  // act-order: its own input
  tensors.push_back(make_tensor({4, 32, true, false, true, 24, cols}, 75));   // sparse outliers
  for (bool int8 : {true, false}) {
    std::vector<PackedLinear> packed;
    for (const QuantizedTensor& q : tensors) {
      PackOptions po;
      po.int8_activations = int8;
      auto p = PackedLinear::Pack(q, po);
      ASSERT_TRUE(p.ok()) << p.status().ToString();
      packed.push_back(std::move(*p));
    }
    std::vector<const PackedLinear*> ptrs;
    for (const PackedLinear& p : packed) ptrs.push_back(&p);
    for (Isa isa : {Isa::kScalar, Isa::kAvx2, Isa::kAvx512}) {
      if (!isa_supported(isa)) continue;
      for (int64_t n : {1, 2, 5}) {
        const auto x = test::random_normal(size_t(n * cols), uint32_t(80 + n));
        std::vector<std::vector<float>> shared(packed.size()), alone(packed.size());
        std::vector<float*> ys;
        for (size_t i = 0; i < packed.size(); ++i) {
          shared[i].assign(size_t(n * packed[i].rows()), -1.0f);
          alone[i].assign(shared[i].size(), -2.0f);
          ys.push_back(shared[i].data());
          packed[i].Forward(x.data(), n, alone[i].data(), isa);
        }
        PackedLinear::ForwardShared(ptrs.data(), ys.data(), int(ptrs.size()), x.data(), n, isa);
        for (size_t i = 0; i < packed.size(); ++i)
          ASSERT_EQ(0, std::memcmp(shared[i].data(), alone[i].data(), shared[i].size() * sizeof(float)))
              << "linear " << i << " n " << n << " " << isa_name(isa) << (int8 ? " int8" : " fp32");
      }
    }
  }
}

// ||y_int8 - y_fp32|| / ||y_fp32|| of q packed with `po` against q with float activations, on x.
double relative_to_float_activations(const QuantizedTensor& q, const PackOptions& po, const std::vector<float>& x,
                                     int64_t n) {
  auto pf = PackedLinear::Pack(q);
  auto pi = PackedLinear::Pack(q, po);
  std::vector<float> yf(size_t(n * q.rows)), yi(yf.size());
  pf->Forward(x.data(), n, yf.data());
  pi->Forward(x.data(), n, yi.data());
  return test::relative_rms_difference(yi, yf);
}

TEST(KernelsInt8, CloseToFloatActivations) {
  Case c{8, 0, true, false, false, 64, 512};
  const QuantizedTensor q = make_tensor(c, 900);
  const int64_t n = 16;
  PackOptions int8;
  int8.int8_activations = true;
  // per-token int8 of Gaussian inputs: about 1%
  EXPECT_LT(relative_to_float_activations(q, int8, test::random_normal(size_t(n * c.cols), 901), n), 0.02);
}

// ggml's types with float mins (q4_k, q5_k, q4_1, ...) take int8 activations too: each group adds
// -min * (sum of its int8 activations) after the scaled dot product. The mins are kept per panel
// row, as exact fp32; the product stays close to the float-activation one; the outlier
// decomposition (which has no min term) is refused with a clear message.
TEST(KernelsInt8, FloatMinsHaveTheirOwnTerm) {
  for (GgmlType t : {GgmlType::kQ4_K, GgmlType::kQ5_K, GgmlType::kQ4_1}) {
    const QuantizedTensor q = make_tensor(ggml_case(t, 40, 512), 950 + int(t));
    ASSERT_FALSE(q.mins.empty());
    auto p = pack_int8(q);
    ASSERT_TRUE(p.ok()) << p.status().ToString();
    const kernels::PackedWeights& w = internal::PackedAccess::weights(*p);
    ASSERT_TRUE(w.panel_has_mins);
    for (int64_t r = 0; r < q.rows; ++r)
      for (int64_t g = 0; g < q.num_groups(); ++g) {
        ASSERT_EQ(w.panel_min(r, g), q.min_of(r, g));
        ASSERT_EQ(w.panel_zero(r, g), 0);
      }
    PackOptions int8;
    int8.int8_activations = true;
    EXPECT_LT(relative_to_float_activations(q, int8, test::random_normal(size_t(16 * q.cols), 951), 16), 0.02)
        << ggml_type_name(t);
    PackOptions decomposed = int8;
    decomposed.outliers.threshold = 6.0;
    auto refused = PackedLinear::Pack(q, decomposed);
    ASSERT_FALSE(refused.ok());
    EXPECT_NE(refused.status().message().find("float mins"), std::string::npos) << refused.status().ToString();
  }
}

// ---- LLM.int8 outlier decomposition and integer outliers (kernels/activation_outliers.cc) ----

// Activations with a few large columns (an outlier channel: every token), one large value in a
// single token, and the rest N(0, 1).
std::vector<float> activations_with_outliers(int64_t n, int64_t cols, uint32_t seed, float big) {
  auto x = test::random_normal(size_t(n * cols), seed);
  for (int64_t t = 0; t < n; ++t) {
    x[size_t(t * cols + 1)] *= big;
    if (cols > 40) x[size_t(t * cols + 37)] = big * (t % 2 ? 1.0f : -0.7f);
  }
  if (cols > 20) x[size_t((n - 1) * cols + 20)] = -2.5f * big;  // one token only
  return x;
}

PackOptions decomposed(double threshold, bool integer, std::vector<int32_t> columns = {}) {
  PackOptions po;
  po.int8_activations = true;
  po.outliers.threshold = threshold;
  po.outliers.integer = integer;
  po.outliers.columns = std::move(columns);
  return po;
}

// The decomposition written out in double from its definition (llmq/kernels.h): the outlier
// columns are those with any |x| > T; the per-token step comes from the other columns (and, for
// integer outliers, from absmax_outliers / 16319); float outliers multiply x itself, integer ones
// round(x / s), both with the dequantized weights.
// fixed_block: the outlier columns are fixed ones, whose sparse weight outliers move into the
// outlier block and, for integer outliers, multiply the rounded values instead of x.
Reference decomposed_reference(const QuantizedTensor& q, const std::vector<float>& x, int64_t n, double threshold,
                               bool integer, bool fixed_block = false) {
  std::vector<bool> out(size_t(q.cols), false);
  for (int64_t c = 0; c < q.cols; ++c)
    for (int64_t t = 0; t < n; ++t) out[size_t(c)] = out[size_t(c)] || std::fabs(x[size_t(t * q.cols + c)]) > threshold;
  std::vector<float> xd(x.size());
  std::vector<double> keep(x.size(), 0.0);  // float outliers: the exact values
  for (int64_t t = 0; t < n; ++t) {
    float amax = 0, amax_out = 0;
    for (int64_t c = 0; c < q.cols; ++c) {
      const float a = std::fabs(x[size_t(t * q.cols + c)]);
      (out[size_t(c)] ? amax_out : amax) = std::max(out[size_t(c)] ? amax_out : amax, a);
    }
    float s = amax > 0 ? amax / 127.0f : 1.0f;
    if (integer && amax_out > 0) s = amax > 0 ? std::max(s, amax_out / 16319.0f) : amax_out / 16319.0f;
    for (int64_t c = 0; c < q.cols; ++c) {
      const size_t i = size_t(t * q.cols + c);
      if (out[size_t(c)] && !integer) {
        xd[i] = 0.0f;
        keep[i] = x[i];
      } else {
        const float lim = out[size_t(c)] ? 16319.0f : 127.0f;
        xd[i] = float(double(std::clamp(std::nearbyint(x[i] / s), -lim, lim)) * double(s));
      }
    }
  }
  // Sparse weight outliers always multiply the float activations (as without the decomposition).
  const QuantizedTensor dense = dense_part(q);
  Reference ref = reference_product(dense, xd, n);
  const auto d = dequantize(dense);
  auto add = [&](int64_t t, int64_t r, double v) {
    ref.y[size_t(t * q.rows + r)] += v;
    ref.magnitude[size_t(t * q.rows + r)] += std::fabs(v);
  };
  for (int64_t t = 0; t < n; ++t)
    for (int64_t r = 0; r < q.rows; ++r) {
      for (int64_t c = 0; c < q.cols; ++c) add(t, r, keep[size_t(t * q.cols + c)] * d[size_t(r * q.cols + c)]);
      if (!q.outliers.empty())
        for (int32_t i = q.outliers.row_ptr[size_t(r)]; i < q.outliers.row_ptr[size_t(r + 1)]; ++i)
          {
            const int32_t c = q.outliers.col_idx[size_t(i)];
            const bool rounded = fixed_block && integer && out[size_t(c)];
            add(t, r, outlier_addition(q, r, i) * (rounded ? xd : x)[size_t(t * q.cols + c)]);
          }
    }
  return ref;
}

TEST(KernelsInt8Outliers, FloatAndIntegerOutliersEqualTheirDefinition) {
  uint32_t seed = 1500;
  for (const Case& c : cases()) {
    if (c.ggml != GgmlType::kNone) continue;  // float mins: refused (FloatMinsHaveTheirOwnTerm)
    const QuantizedTensor q = make_tensor(c, seed++);
    for (bool integer : {false, true}) {
      auto p = PackedLinear::Pack(q, decomposed(6.0, integer));
      ASSERT_TRUE(p.ok()) << p.status().ToString();
      for (int64_t n : {1, 3, 9}) {
        const auto x = activations_with_outliers(n, c.cols, seed++, 60.0f);
        std::vector<float> y(size_t(n * c.rows));
        p->Forward(x.data(), n, y.data(), Isa::kScalar);
        const Reference ref = decomposed_reference(q, x, n, 6.0, integer);
        EXPECT_LT(worst_error(y, ref.y, ref.magnitude), 1e-5)
            << q.spec.ToString() << (integer ? " integer" : " float") << " n " << n;
      }
    }
  }
}

// The tiles: 128 hi + lo is round(x / s) exactly, both fit int8, and the integer sum of the
// tiled products equals the int64 product of the 15-bit values.
TEST(KernelsInt8Outliers, IntegerTilesAreExact) {
  Case c{8, 0, true, false, false, 16, 96};
  const QuantizedTensor q = make_tensor(c, 1600);
  auto p = PackedLinear::Pack(q, decomposed(4.0, true));
  ASSERT_TRUE(p.ok());
  const auto& w = internal::PackedAccess::weights(*p);
  const int64_t n = 5;
  for (float big : {8.0f, 60.0f, 127.0f * 40.0f, 1e6f}) {  // the last is beyond 128x: s grows instead
    auto x = activations_with_outliers(n, c.cols, 1601, big);
    std::vector<float> xp(size_t(n * w.kp), 0.0f);
    for (int64_t t = 0; t < n; ++t) std::copy(x.begin() + t * c.cols, x.begin() + (t + 1) * c.cols, xp.begin() + t * w.kp);
    const auto ocols = kernels::find_outlier_columns(w, xp.data(), n);
    ASSERT_EQ(ocols.size(), 3u);
    std::vector<int8_t> xq(size_t(n * w.kp));
    std::vector<int32_t> xqsum(size_t(n * w.ngroups));
    std::vector<float> sx(static_cast<size_t>(n));
    kernels::OutlierActivations xo;
    kernels::quantize_activations(w, xp.data(), n, ocols, xq.data(), xqsum.data(), sx.data(), &xo);
    for (int64_t t = 0; t < n; ++t)
      for (size_t i = 0; i < ocols.size(); ++i) {
        const int64_t j = ocols[i];
        EXPECT_EQ(xq[size_t(t * w.kp + j)], 0);  // the outlier columns leave the int8 row
        const int32_t lo = xo.lo[size_t(t) * ocols.size() + i], h = xo.hi[size_t(t) * ocols.size() + i];
        const double v = std::nearbyint(double(xp[size_t(t * w.kp + j)]) / sx[size_t(t)]);
        EXPECT_EQ(128 * h + lo, int64_t(std::clamp(v, -16319.0, 16319.0))) << big;
        EXPECT_LE(std::abs(lo), 64);
        EXPECT_LE(std::abs(h), 127);
      }
    // Tiled integer product against the int64 product of the full values, per row and token.
    for (int64_t t = 0; t < n; ++t)
      for (int64_t r = 0; r < c.rows; ++r) {
        int64_t full = 0, tiled_lo = 0, tiled_hi = 0;
        for (int64_t j = 0; j < c.cols; ++j) {
          const int64_t code = w.panel_code(r, j) - 128;
          auto it = std::find(ocols.begin(), ocols.end(), int32_t(j));
          const size_t oi = size_t(t) * ocols.size() + size_t(it - ocols.begin());
          const int64_t lo = it == ocols.end() ? xq[size_t(t * w.kp + j)] : xo.lo[oi];
          const int64_t h = it == ocols.end() ? 0 : xo.hi[oi];
          full += (128 * h + lo) * code;
          tiled_lo += lo * code;
          tiled_hi += h * code;
          ASSERT_LE(std::abs(lo * code), 127 * 128);  // each tile product is an int8 x int8 product
        }
        EXPECT_EQ(full, tiled_lo + 128 * tiled_hi);
      }
  }
}

TEST(KernelsInt8Outliers, EveryIsaIsBitIdenticalToScalar) {
  uint32_t seed = 1700;
  for (const Case& c : cases())
    for (bool integer : {false, true}) {
      if (c.ggml != GgmlType::kNone) continue;  // float mins: refused (FloatMinsHaveTheirOwnTerm)
      const QuantizedTensor q = make_tensor(c, seed++);
      auto p = PackedLinear::Pack(q, decomposed(6.0, integer));
      ASSERT_TRUE(p.ok());
      for (int64_t n : {1, 2, 5, 17, 40}) {
        const auto x = activations_with_outliers(n, c.cols, seed++, 30.0f);
        std::vector<float> ys(size_t(n * c.rows));
        p->Forward(x.data(), n, ys.data(), Isa::kScalar);
        for (Isa isa : {Isa::kAvx2, Isa::kAvx512}) {
          if (!isa_supported(isa)) continue;
          for (bool emulated : {false, true}) {
            if (emulated && isa != Isa::kAvx2) continue;
            if (emulated) setenv("LLMQ_AVX2_INT8", "emulated", 1);
            std::vector<float> yv(ys.size());
            p->Forward(x.data(), n, yv.data(), isa);
            unsetenv("LLMQ_AVX2_INT8");
            ASSERT_EQ(ys, yv) << isa_name(isa) << (emulated ? " emulated " : " ") << q.spec.ToString()
                              << (integer ? " integer" : " float") << " n " << n;
          }
        }
      }
    }
}

// Fixed columns multiply their own copy of the weights (fp32, or 15-bit integers on a per-row step
// of their own, as two int8 tiles): float outliers give the bits of the same columns found per
// call; integer outliers stay within the rounding of those 15-bit weights. Sparse weight outliers
// in fixed columns move to the fixed block, the others stay in the sparse product.
TEST(KernelsInt8Outliers, FixedColumnsCarryTheirOwnWeights) {
  for (bool act_order : {false, true}) {
    for (bool sparse : {false, true}) {
      Case c{4, 32, false, act_order, sparse, 40, 128};
      const QuantizedTensor q = make_tensor(c, 1800);
      const int64_t n = 7;
      const auto x = activations_with_outliers(n, c.cols, 1801, 50.0f);
      auto dynamic = PackedLinear::Pack(q, decomposed(6.0, false));
      auto fixed = PackedLinear::Pack(q, decomposed(0.0, false, {37, 20, 1, 37}));  // unsorted, repeated
      auto fixed_int = PackedLinear::Pack(q, decomposed(0.0, true, {1, 20, 37}));
      ASSERT_TRUE(dynamic.ok() && fixed.ok() && fixed_int.ok());
      std::vector<float> yd(size_t(n * c.rows)), yf(yd.size()), yi(yd.size());
      dynamic->Forward(x.data(), n, yd.data());
      fixed->Forward(x.data(), n, yf.data());
      fixed_int->Forward(x.data(), n, yi.data());
      if (!sparse) {
        EXPECT_EQ(yd, yf);
      }
      const Reference ref = decomposed_reference(q, x, n, 6.0, false);
      EXPECT_LT(worst_error(yf, ref.y, ref.magnitude), 1e-5) << "sparse " << sparse;
      const Reference ref_int = decomposed_reference(q, x, n, 6.0, true, true);
      EXPECT_LT(worst_error(yi, ref_int.y, ref_int.magnitude), 1e-4) << "sparse " << sparse;  // 15-bit weights
      EXPECT_EQ(fixed->activation_outlier_stats().calls, 1);
      EXPECT_EQ(fixed->activation_outlier_stats().outlier_columns, 3);
      EXPECT_NEAR(dynamic->activation_outlier_stats().share(), 3.0 / 128.0, 1e-12);
    }
  }
}

// A quantized tensor that names its activation outlier columns (llm.int8 with calibration) runs
// them outside the int8 row whenever it runs with int8 activations.
TEST(KernelsInt8Outliers, TensorsNameTheirOwnFixedColumns) {
  Case c{8, 0, true, false, false, 24, 96};
  QuantizedTensor q = make_tensor(c, 1850);
  q.activation_outlier_columns = {1, 37};
  ASSERT_TRUE(q.Validate().ok());
  PackOptions int8;
  int8.int8_activations = true;
  auto p = PackedLinear::Pack(q, int8);
  ASSERT_TRUE(p.ok());
  EXPECT_TRUE(p->activation_outliers().enabled());
  const int64_t n = 3;
  const auto x = activations_with_outliers(n, c.cols, 1851, 40.0f);
  std::vector<float> y(size_t(n * c.rows));
  p->Forward(x.data(), n, y.data());
  EXPECT_EQ(p->activation_outlier_stats().outlier_columns, 2);
  q.activation_outlier_columns = {37, 1};
  EXPECT_NE(q.Validate().ToString().find("strictly increasing"), std::string::npos);
  q.activation_outlier_columns = {96};
  EXPECT_NE(q.Validate().ToString().find("outside"), std::string::npos);
}

// What the decomposition is for: one large channel ruins plain per-token int8, the decomposed
// products stay as close to the float-activation product as int8 is without the outliers.
TEST(KernelsInt8Outliers, RecoverTheAccuracyAnOutlierChannelTakesAway) {
  Case c{8, 0, true, false, false, 64, 512};
  const QuantizedTensor q = make_tensor(c, 1900);
  const int64_t n = 16;
  auto x = test::random_normal(size_t(n * c.cols), 1901);
  for (int64_t t = 0; t < n; ++t) x[size_t(t * c.cols + 100)] *= 100.0f;
  auto rel = [&](const PackOptions& po) { return relative_to_float_activations(q, po, x, n); };
  PackOptions plain;
  plain.int8_activations = true;
  const double e_plain = rel(plain), e_float = rel(decomposed(6.0, false)), e_int = rel(decomposed(6.0, true));
  EXPECT_GT(e_plain, 0.05);
  EXPECT_LT(e_float, 0.02);
  EXPECT_LT(e_int, 0.02);
  EXPECT_NEAR(e_int, e_float, 0.2 * e_float);  // the 15-bit outliers lose about nothing to fp32
}

TEST(KernelsInt8Outliers, BadOptionsAreRefused) {
  auto w = test::random_normal(16 * 64, 3);
  const QuantizedTensor q = *quantize_rtn(w.data(), 16, 64, test::quant_spec(8, 0));
  PackOptions no_int8;
  no_int8.outliers.threshold = 6.0;
  EXPECT_NE(PackedLinear::Pack(q, no_int8).status().ToString().find("needs int8 activations"), std::string::npos);
  EXPECT_NE(PackedLinear::Pack(q, decomposed(-1.0, false)).status().ToString().find(">= 0"), std::string::npos);
  EXPECT_NE(PackedLinear::Pack(q, decomposed(std::nan(""), false)).status().ToString().find("finite"), std::string::npos);
  EXPECT_NE(PackedLinear::Pack(q, decomposed(0.0, false, {64})).status().ToString().find("column 64"), std::string::npos);
  auto ok = PackedLinear::Pack(q, decomposed(6.0, true));
  ASSERT_TRUE(ok.ok());
  EXPECT_NE(ok->kernel(3, Isa::kScalar).find("int8-tiled outliers"), std::string::npos);
}


TEST(Kernels, ThreadCountIsSettableAndDoesNotChangeResults) {
  const int dflt = num_threads();
  Case c{4, 32, false, true, false, 37, 96};
  const QuantizedTensor q = make_tensor(c, 1234);
  auto p = PackedLinear::Pack(q);
  ASSERT_TRUE(p.ok());
  auto x = test::random_normal(size_t(3 * c.cols), 1235);
  std::vector<float> y1(size_t(3 * c.rows)), y2(y1.size());
  set_num_threads(1);
  EXPECT_EQ(num_threads(), 1);
  p->Forward(x.data(), 3, y1.data());
  set_num_threads(0);
  EXPECT_EQ(num_threads(), dflt);
  p->Forward(x.data(), 3, y2.data());
  EXPECT_EQ(y1, y2);  // rows are split across threads, never reduced across them
}

}  // namespace
}  // namespace llmq
