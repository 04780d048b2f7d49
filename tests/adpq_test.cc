// AdpQ: the outlier split (target share per scope, fixed lambda), share 0 equal to RTN, the
// reconstruction of outliers, file round trip with exact bit accounting, the kernels on the
// sparse part, and AdpQ against RTN on a real model.
#include <gtest/gtest.h>
#include <llmq/llmq.h>

#include <cmath>
#include <filesystem>

#include "test_util.h"

namespace llmq {
namespace {

using test::TempDir;

// Gaussian weights with a few heavy-tailed entries, as in trained LLM layers.
std::vector<float> heavy_tailed(int64_t rows, int64_t cols, uint32_t seed) {
  std::vector<float> w = test::random_normal(size_t(rows * cols), seed, 0.02f);
  const std::vector<float> u = test::random_normal(size_t(rows * cols), seed + 1);
  for (size_t i = 0; i < w.size(); ++i)
    if (std::fabs(u[i]) > 2.5f) w[i] *= 8.0f;  // ~1.2% of the weights
  return w;
}

std::vector<uint8_t> outlier_mask(const QuantizedTensor& q) {
  std::vector<uint8_t> m(size_t(q.rows * q.cols), 0);
  if (q.outliers.empty()) return m;
  for (int64_t r = 0; r < q.rows; ++r)
    for (int32_t k = q.outliers.row_ptr[size_t(r)]; k < q.outliers.row_ptr[size_t(r + 1)]; ++k)
      m[size_t(r * q.cols + q.outliers.col_idx[size_t(k)])] = 1;
  return m;
}

TEST(Adpq, ShareZeroIsRtn) {
  const auto w = heavy_tailed(9, 100, 1);
  for (bool sym : {true, false}) {
    AdpqOptions o;
    o.outlier_fraction = 0.0;
    auto a = quantize_adpq(w.data(), 9, 100, test::quant_spec(3, 32, sym), o);
    auto r = quantize_rtn(w.data(), 9, 100, test::quant_spec(3, 32, sym));
    ASSERT_TRUE(a.ok() && r.ok());
    EXPECT_TRUE(a->outliers.empty());
    EXPECT_EQ(a->codes, r->codes);
    EXPECT_EQ(a->scales, r->scales);
    EXPECT_EQ(a->zeros, r->zeros);
  }
}

TEST(Adpq, TargetShareTakesTheLargestMagnitudesPerScope) {
  const int64_t rows = 13, cols = 70;
  const auto w = heavy_tailed(rows, cols, 3);
  const QuantSpec spec = test::quant_spec(4, 32);
  AdpqOptions o;
  o.outlier_fraction = 0.05;
  // Tensor scope: exactly ceil(5% of n), and every outlier is at least as large as every other weight.
  auto t = quantize_adpq(w.data(), rows, cols, spec, o);
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(int64_t(t->outliers.nnz()), int64_t(std::ceil(0.05 * rows * cols)));
  auto m = outlier_mask(*t);
  float smallest_out = INFINITY, largest_in = 0;
  for (size_t i = 0; i < w.size(); ++i) {
    if (m[i]) smallest_out = std::min(smallest_out, std::fabs(w[i]));
    else largest_in = std::max(largest_in, std::fabs(w[i]));
  }
  EXPECT_GE(smallest_out, largest_in);
  // Row and group scopes: the share holds in each row / each group (groups 32, 32, 6 wide).
  o.scope = AdpqScope::kRow;
  auto r = quantize_adpq(w.data(), rows, cols, spec, o);
  ASSERT_TRUE(r.ok());
  for (int64_t i = 0; i < rows; ++i)
    EXPECT_EQ(r->outliers.row_ptr[size_t(i + 1)] - r->outliers.row_ptr[size_t(i)], int(std::ceil(0.05 * cols)));
  o.scope = AdpqScope::kGroup;
  auto g = quantize_adpq(w.data(), rows, cols, spec, o);
  ASSERT_TRUE(g.ok());
  m = outlier_mask(*g);
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t c0 = 0; c0 < cols; c0 += 32) {
      const int64_t width = std::min<int64_t>(32, cols - c0);
      int n = 0;
      for (int64_t c = c0; c < c0 + width; ++c) n += m[size_t(i * cols + c)];
      EXPECT_EQ(n, int(std::ceil(0.05 * double(width))));
    }
}

TEST(Adpq, FixedLambdaIsTheSoftThresholdRule) {
  const auto w = heavy_tailed(5, 64, 5);
  AdpqOptions o;
  o.lambda = 0.002;  // gamma 1: outlier iff |w|^2 > lambda, i.e. |w| > 0.0447
  auto q = quantize_adpq(w.data(), 5, 64, test::quant_spec(4, 32), o);
  ASSERT_TRUE(q.ok());
  const auto m = outlier_mask(*q);
  for (size_t i = 0; i < w.size(); ++i) {
    const double beta = std::max(0.0, std::fabs(double(w[i])) - o.lambda / std::fabs(double(w[i])));
    EXPECT_EQ(m[i] != 0, beta > 0) << i;
  }
  o.gamma = 0.0;  // plain soft threshold: |w| > lambda
  q = quantize_adpq(w.data(), 5, 64, test::quant_spec(4, 32), o);
  const auto m0 = outlier_mask(*q);
  for (size_t i = 0; i < w.size(); ++i) EXPECT_EQ(m0[i] != 0, std::fabs(w[i]) > o.lambda) << i;
  o.outlier_fraction = 1.5;
  EXPECT_FALSE(quantize_adpq(w.data(), 5, 64, test::quant_spec(4, 32), o).ok());
}

TEST(Adpq, OutliersReconstructAndTheRestQuantizesOnANarrowerRange) {
  const int64_t rows = 16, cols = 256;
  const auto w = heavy_tailed(rows, cols, 7);
  const QuantSpec spec = test::quant_spec(3, 128, false);
  AdpqOptions fp16;
  fp16.storage = AdpqStorage::kFp16;
  auto a = quantize_adpq(w.data(), rows, cols, spec, fp16);
  auto r = quantize_rtn(w.data(), rows, cols, spec);
  ASSERT_TRUE(a.ok() && r.ok());
  ASSERT_TRUE(a->Validate().ok());
  const auto d = dequantize(*a);
  const auto m = outlier_mask(*a);
  for (size_t i = 0; i < w.size(); ++i)
    if (m[i]) {
      EXPECT_NEAR(d[i], w[i], 1e-3 * std::fabs(w[i])) << i;  // fp16 of the residual
    }
  EXPECT_LT(relative_error(w.data(), *a), 0.5 * relative_error(w.data(), *r));
  // The kernels add the sparse part exactly as dequantize does.
  auto packed = PackedLinear::Pack(*a);
  ASSERT_TRUE(packed.ok());
  const auto x = test::random_normal(size_t(3 * cols), 8);
  std::vector<float> y(size_t(3 * rows));
  packed->Forward(x.data(), 3, y.data());
  for (int64_t t = 0; t < 3; ++t)
    for (int64_t o = 0; o < rows; ++o) {
      double ref = 0;
      for (int64_t c = 0; c < cols; ++c) ref += double(x[size_t(t * cols + c)]) * d[size_t(o * cols + c)];
      EXPECT_NEAR(y[size_t(t * rows + o)], ref, 1e-4 * (1 + std::fabs(ref)));
    }
}

// The paper's storage: the outliers keep their code slots, read with the group's second scale s1;
// the bits are RTN's plus the second scales and the positions, nothing else.
TEST(Adpq, InSlotOutliersUseTheSecondScaleOfTheirGroup) {
  const int64_t rows = 16, cols = 300;  // 300 > 256 columns: 2-byte positions
  const auto w = heavy_tailed(rows, cols, 11);
  for (bool sym : {true, false}) {
    const QuantSpec spec = test::quant_spec(3, 128, sym);
    auto a = quantize_adpq(w.data(), rows, cols, spec);  // in-slot is the default
    auto f = quantize_adpq(w.data(), rows, cols, spec, [] { AdpqOptions o; o.storage = AdpqStorage::kFp16; return o; }());
    auto r = quantize_rtn(w.data(), rows, cols, spec);
    ASSERT_TRUE(a.ok() && f.ok() && r.ok());
    ASSERT_TRUE(a->Validate().ok()) << a->Validate().ToString();
    EXPECT_TRUE(a->in_slot_outliers());
    EXPECT_TRUE(a->outliers.values.empty());
    EXPECT_EQ(a->outliers.col_idx, f->outliers.col_idx);  // the same split
    const int64_t ng = a->num_groups();
    const auto d = dequantize(*a);
    const auto m = outlier_mask(*a);
    for (int64_t i = 0; i < rows; ++i)
      for (int64_t c = 0; c < cols; ++c) {
        const size_t k = size_t(i * cols + c), rg = size_t(i * ng + c / 128);
        const float z = a->zero_value(i, c / 128);
        if (!m[k]) continue;
        const float s1 = a->outlier_scales[rg];
        EXPECT_EQ(d[k], s1 * (float(a->code(i, c)) - z));
        EXPECT_LE(std::fabs(d[k] - w[k]), 0.5f * s1 * 1.002f) << i << "," << c;  // within half a step of s1
        EXPECT_GT(s1, a->scales[rg]);  // outliers are the larger weights
      }
    EXPECT_LT(relative_error(w.data(), *a), relative_error(w.data(), *r));
    const size_t positions = size_t(rows) * size_t(a->outliers.row_count_bytes()) + a->outliers.nnz() * 2;
    EXPECT_EQ(a->storage_bytes(), r->storage_bytes() + size_t(rows * ng) * 2 + positions);
    EXPECT_LT(a->storage_bytes(), f->storage_bytes());
    // The kernels read the slots with s1 (fp32 and int8 activations).
    const auto x = test::random_normal(size_t(2 * cols), 12);
    for (bool int8 : {false, true}) {
      PackOptions po;
      po.int8_activations = int8;
      auto p = PackedLinear::Pack(*a, po);
      ASSERT_TRUE(p.ok()) << p.status().ToString();
      std::vector<float> y(size_t(2 * rows));
      p->Forward(x.data(), 2, y.data());
      for (int64_t t = 0; t < 2; ++t)
        for (int64_t o = 0; o < rows; ++o) {
          double ref = 0, mag = 0;
          for (int64_t c = 0; c < cols; ++c) {
            ref += double(x[size_t(t * cols + c)]) * d[size_t(o * cols + c)];
            mag += std::fabs(double(x[size_t(t * cols + c)]) * d[size_t(o * cols + c)]);
          }
          EXPECT_NEAR(y[size_t(t * rows + o)], ref, (int8 ? 2e-2 : 1e-5) * mag) << "int8 " << int8;
        }
    }
  }
}

// Through the whole-checkpoint entry point: the written tensors read back to the same quantized
// tensor, outliers are stored compactly, and the reported bits are the bytes on disk.
TEST(QuantizeAdpq, RoundTripsAndCountsTheBitsItWrites) {
  TempDir dir;
  test::SyntheticModel sm;
  sm.dtype = DType::kF32;
  test::write_synthetic_model(dir.file("in"), sm);
  QuantizeOptions o;
  o.method = "adpq";
  o.spec = test::quant_spec(3, 32);
  auto rep = quantize_checkpoint(dir.file("in"), dir.file("out"), o);
  ASSERT_TRUE(rep.ok()) << rep.status().ToString();
  auto in = Checkpoint::Open(dir.file("in"));
  auto out = Checkpoint::Open(dir.file("out"));
  ASSERT_TRUE(in.ok() && out.ok());
  double bits = 0, weights = 0;
  for (const LinearInfo& l : (*in)->linears()) {
    auto w = (*in)->linear_weight(l);
    auto expect = quantize_adpq(w->data(), l.rows, l.cols, o.spec, o.adpq);
    auto got = (*out)->get_quantized(l.module);
    ASSERT_TRUE(expect.ok() && got.ok()) << l.module;
    EXPECT_EQ(got->codes, expect->codes);
    EXPECT_EQ(got->scales, expect->scales);
    EXPECT_EQ(got->outliers.row_ptr, expect->outliers.row_ptr);
    EXPECT_EQ(got->outliers.col_idx, expect->outliers.col_idx);
    EXPECT_EQ(got->outliers.values, expect->outliers.values);
    EXPECT_EQ(got->outlier_scales, expect->outlier_scales);
    EXPECT_EQ(int64_t(got->outliers.nnz()), int64_t(std::ceil(0.05 * double(l.rows * l.cols))));
    const uint64_t on_disk = test::module_bytes_on_disk(**out, l.module);
    EXPECT_EQ(on_disk, got->storage_bytes()) << l.module;
    // Compact CSR: columns in one byte up to 256 inputs, per-row counts instead of 32-bit row pointers.
    EXPECT_EQ((*out)->find(l.module + ".outlier_col_idx")->dtype, l.cols <= 256 ? DType::kU8 : DType::kU16);
    ASSERT_NE((*out)->find(l.module + ".outlier_row_counts"), nullptr);
    EXPECT_EQ((*out)->find(l.module + ".outlier_row_ptr"), nullptr);
    bits += 8.0 * double(on_disk);
    weights += double(l.rows * l.cols);
  }
  EXPECT_NEAR(rep->bits_per_weight, bits / weights, 1e-9);
  EXPECT_GT(rep->bits_per_weight, 3.0 + 0.05 * 8);  // codes + an outlier position's 8+ bits at a 5% share
  auto m = Model::Load(dir.file("out"));
  ASSERT_TRUE(m.ok()) << m.status().ToString();
}

// On a real model at 3 bits the outliers (in their slots) must buy a better perplexity than plain RTN.
TEST(QuantizeAdpq, BeatsRtnOnARealModel) {
  LLMQ_NEED_SHARED("models/stories5M-hf");
  const std::string model = test::shared_path("models/stories5M-hf");
  const std::vector<int32_t> ids = test::tinystories_eval_ids(model, 60000);
  TempDir dir;
  QuantizeOptions o;
  o.method = "adpq";
  o.spec = test::quant_spec(3, 128);
  ASSERT_TRUE(quantize_checkpoint(model, dir.file("adpq"), o).ok());
  QuantizeOptions r;
  r.spec = o.spec;
  ASSERT_TRUE(quantize_checkpoint(model, dir.file("rtn"), r).ok());
  const double fp = test::perplexity_of(model, ids, 256, 20), pa = test::perplexity_of(dir.file("adpq"), ids, 256, 20),
               pr = test::perplexity_of(dir.file("rtn"), ids, 256, 20);
  EXPECT_LT(pa, pr) << "fp32 " << fp << " adpq " << pa << " rtn " << pr;
  EXPECT_GT(pa, fp * 0.99);
}

}  // namespace
}  // namespace llmq
