// BiLLM (llmq/billm.h) and the lookup codes it writes: which columns become salient, the binary
// bases the levels hold, error against 1-bit RTN and against the same method without the
// Hessian, determinism, bad input, the file round trip and bit accounting, and the whole-model
// method (billm, billm+oac) on a real model against 1-bit RTN and GPTQ.
#include <gtest/gtest.h>
#include <llmq/llmq.h>

#include <omp.h>

#include <cmath>
#include <nlohmann/json.hpp>

#include "llmq/float16.h"
#include "test_util.h"

namespace llmq {
namespace {

using test::TempDir;

std::vector<float> identity(int64_t n) {
  std::vector<float> h(size_t(n * n), 0.0f);
  for (int64_t i = 0; i < n; ++i) h[size_t(i * n + i)] = 1.0f;
  return h;
}

// H = 2/N XᵀX of N correlated inputs (each column a mix of a few shared factors, scales that
// differ by column), as calibration Hessians are.
std::vector<float> correlated_hessian(int64_t cols, int64_t n, uint32_t seed, std::vector<float>* x_out = nullptr) {
  const auto z = test::random_normal(size_t(n * 8), seed);
  const auto e = test::random_normal(size_t(n * cols), seed + 1);
  const auto a = test::random_normal(size_t(8 * cols), seed + 2);
  std::vector<float> x(size_t(n * cols));
  for (int64_t t = 0; t < n; ++t)
    for (int64_t c = 0; c < cols; ++c) {
      double v = 0.3 * e[size_t(t * cols + c)];
      for (int k = 0; k < 8; ++k) v += double(z[size_t(t * 8 + k)]) * a[size_t(k * cols + c)];
      x[size_t(t * cols + c)] = float(v * (1.0 + double(c % 7)));
    }
  std::vector<float> h(size_t(cols * cols), 0.0f);
  for (int64_t i = 0; i < cols; ++i)
    for (int64_t j = 0; j < cols; ++j) {
      double s = 0;
      for (int64_t t = 0; t < n; ++t) s += double(x[size_t(t * cols + i)]) * x[size_t(t * cols + j)];
      h[size_t(i * cols + j)] = float(2.0 * s / double(n));
    }
  if (x_out) *x_out = std::move(x);
  return h;
}

TEST(Billm, SalientColumnsAreTheHighSalienceOnes) {
  const int64_t rows = 48, cols = 256;
  auto w = test::random_normal(size_t(rows * cols), 3, 0.02f);
  const int64_t big[] = {3, 50, 77, 120, 130, 200};
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c : big) w[size_t(r * cols + c)] *= 20.0f;
  auto res = billm_quantize(w.data(), rows, cols, identity(cols).data(), billm_spec(128));
  ASSERT_TRUE(res.ok()) << res.status().ToString();
  const QuantizedTensor& q = res->q;
  ASSERT_TRUE(q.Validate().ok()) << q.Validate().ToString();
  for (int64_t c : big) EXPECT_EQ(q.column_classes[size_t(c)], 1) << "column " << c;
  for (int64_t blk = 0; blk < 2; ++blk) {
    int64_t salient = 0;
    for (int64_t c = blk * 128; c < (blk + 1) * 128; ++c) salient += q.column_classes[size_t(c)];
    EXPECT_GE(salient, 1);
    EXPECT_LE(salient, 49);  // 1 .. max_salient_columns - 1
  }
}

// The levels are binary bases: class 0 holds two (mu - alpha, mu + alpha) pairs, one per part of the
// split; class 1 mu + alpha1 s1 + alpha2 s2 (so l0 + l3 = l1 + l2); the dequantized weights are levels.
TEST(Billm, LevelsAreBinaryBases) {
  const int64_t rows = 20, cols = 192;
  auto w = test::random_normal(size_t(rows * cols), 5, 0.05f);
  auto res = billm_quantize(w.data(), rows, cols, correlated_hessian(cols, 256, 9).data(), billm_spec(128));
  ASSERT_TRUE(res.ok()) << res.status().ToString();
  const QuantizedTensor& q = res->q;
  EXPECT_EQ(q.spec.ToString(), "w2 g128 lookup");
  const auto d = dequantize(q);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t g = 0; g < q.num_groups(); ++g) {
      const float* l = q.levels.data() + (r * q.num_groups() + g) * 8;
      EXPECT_LE(l[0], l[1]);
      EXPECT_LE(l[2], l[3]);
      EXPECT_NEAR(l[4] + l[7], l[5] + l[6], 2e-3 * (std::fabs(l[4]) + std::fabs(l[7]) + 1e-3)) << r << " " << g;
    }
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) EXPECT_EQ(d[size_t(r * cols + c)], q.level(r, c / 128, c, q.code(r, c)));
}

// Relative weight error: far below 1-bit RTN (GPTQ's min-max grid at 1 bit) and below one binary
// basis per row and block (mu + alpha sign(w - mu), the XNOR-style baseline).
TEST(Billm, FarBelowOneBitRtnAndPlainBinarization) {
  const int64_t rows = 64, cols = 256;
  auto w = test::random_normal(size_t(rows * cols), 7, 0.02f);
  auto res = billm_quantize(w.data(), rows, cols, identity(cols).data(), billm_spec(128));
  ASSERT_TRUE(res.ok());
  QuantSpec w1 = test::quant_spec(1, 128, false);
  auto rtn = quantize_rtn(w.data(), rows, cols, w1);
  ASSERT_TRUE(rtn.ok()) << rtn.status().ToString();
  std::vector<float> sign(w.size());
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t b = 0; b < cols; b += 128) {
      double mu = 0, alpha = 0;
      for (int64_t c = b; c < b + 128; ++c) mu += w[size_t(r * cols + c)];
      mu /= 128;
      for (int64_t c = b; c < b + 128; ++c) alpha += std::fabs(w[size_t(r * cols + c)] - mu);
      alpha /= 128;
      for (int64_t c = b; c < b + 128; ++c)
        sign[size_t(r * cols + c)] = float(w[size_t(r * cols + c)] >= mu ? mu + alpha : mu - alpha);
    }
  const double eb = test::relative_rms_difference(dequantize(res->q), w);
  const double er = test::relative_rms_difference(dequantize(*rtn), w);
  const double es = test::relative_rms_difference(sign, w);
  EXPECT_LT(eb, 0.5 * er) << "billm " << eb << " rtn w1 " << er;
  EXPECT_LT(eb, 0.8 * es) << "billm " << eb << " one binary basis " << es;
}

// With the layer's Hessian (salience and compensation) the output error on its inputs is lower than
// with the identity (magnitude salience, no compensation).
TEST(Billm, HessianLowersTheOutputError) {
  const int64_t rows = 32, cols = 256;
  auto w = test::random_normal(size_t(rows * cols), 11, 0.05f);
  const auto h = correlated_hessian(cols, 512, 13);
  auto with_h = billm_quantize(w.data(), rows, cols, h.data(), billm_spec(128));
  auto blind = billm_quantize(w.data(), rows, cols, identity(cols).data(), billm_spec(128));
  ASSERT_TRUE(with_h.ok() && blind.ok());
  const double eh = output_relative_error(w.data(), dequantize(with_h->q).data(), rows, cols, h.data());
  const double eb = output_relative_error(w.data(), dequantize(blind->q).data(), rows, cols, h.data());
  EXPECT_LT(eh, 0.9 * eb) << "with H " << eh << " without " << eb;
  EXPECT_GT(with_h->loss, 0.0);
}

TEST(Billm, SameCodesWithAnyThreadCount) {
  const int64_t rows = 40, cols = 320;  // a partial last block of 64
  auto w = test::random_normal(size_t(rows * cols), 17, 0.03f);
  const auto h = correlated_hessian(cols, 256, 19);
  const int threads = omp_get_max_threads();
  omp_set_num_threads(1);
  auto one = billm_quantize(w.data(), rows, cols, h.data(), billm_spec(128));
  omp_set_num_threads(2);
  auto two = billm_quantize(w.data(), rows, cols, h.data(), billm_spec(128));
  omp_set_num_threads(threads);
  ASSERT_TRUE(one.ok() && two.ok());
  EXPECT_EQ(one->q.codes, two->q.codes);
  EXPECT_EQ(one->q.levels, two->q.levels);
  EXPECT_EQ(one->q.column_classes, two->q.column_classes);
}

TEST(Billm, RefusesBadInput) {
  const int64_t rows = 4, cols = 64;
  auto w = test::random_normal(size_t(rows * cols), 23);
  const auto h = identity(cols);
  EXPECT_EQ(billm_quantize(w.data(), rows, cols, h.data(), test::quant_spec(2, 128)).status().code(),
            StatusCode::kInvalidArgument);
  BillmOptions bad;
  bad.max_salient_columns = 0;
  EXPECT_FALSE(billm_quantize(w.data(), rows, cols, h.data(), billm_spec(), {}, bad).ok());
  w[5] = NAN;
  auto nan = billm_quantize(w.data(), rows, cols, h.data(), billm_spec());
  ASSERT_FALSE(nan.ok());
  EXPECT_NE(nan.status().message().find("row 0, column 5"), std::string::npos) << nan.status().ToString();
  // Lookup specs: 1 or 2 bits, no zero points; 1-bit uniform grids need them; RTN does not write lookup codes.
  QuantSpec s = billm_spec();
  s.bits = 3;
  EXPECT_FALSE(s.Validate().ok());
  s = billm_spec();
  s.symmetric = false;
  EXPECT_FALSE(s.Validate().ok());
  EXPECT_FALSE(test::quant_spec(1, 128, true).Validate().ok());
  EXPECT_TRUE(test::quant_spec(1, 128, false).Validate().ok());
  EXPECT_FALSE(quantize_rtn(w.data(), rows, cols, billm_spec()).ok());
}

// Lookup codes in the llmq format: what is read is what was written, storage_bytes counts the bytes
// written (2-bit codes, 8 fp16 levels per row and block, 1 bit per column), damage is Corruption.
TEST(LookupCodes, FileRoundTripAndStorage) {
  const int64_t rows = 24, cols = 200;
  auto w = test::random_normal(size_t(rows * cols), 29, 0.05f);
  auto res = billm_quantize(w.data(), rows, cols, correlated_hessian(cols, 256, 31).data(), billm_spec(64));
  ASSERT_TRUE(res.ok());
  const QuantizedTensor& q = res->q;
  TempDir dir;
  uint64_t bytes = 0;
  auto file = test::write_module(dir, q, &bytes);
  ASSERT_NE(file, nullptr);
  EXPECT_EQ(q.storage_bytes(), bytes);
  const int64_t ng = 4;  // 64, 64, 64, 8 columns
  EXPECT_EQ(bytes, uint64_t(rows * ((cols * 2 + 31) / 32) * 4 + rows * ng * 8 * 2 + (cols + 31) / 32 * 4));
  auto back = test::read_module(*file, q);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->codes, q.codes);
  EXPECT_EQ(back->levels, q.levels);
  EXPECT_EQ(back->column_classes, q.column_classes);
  EXPECT_EQ(dequantize(*back), dequantize(q));
  QuantizedTensor bad = q;
  bad.levels[3] = NAN;
  EXPECT_EQ(bad.Validate().code(), StatusCode::kCorruption);
  bad = q;
  bad.levels[3] = 0.1f;  // not an fp16 value
  EXPECT_EQ(bad.Validate().code(), StatusCode::kCorruption);
  bad = q;
  bad.column_classes[7] = 2;
  EXPECT_EQ(bad.Validate().code(), StatusCode::kCorruption);
  bad = q;
  bad.scales.assign(size_t(rows * ng), 1.0f);  // a lookup tensor has no scales
  EXPECT_EQ(bad.Validate().code(), StatusCode::kCorruption);
}

// The whole model: billm on the embedded model, against 1-bit RTN and GPTQ at 1 and 2 bits with the
// same calibration; the kernels give what the dequantized weights give; billm+oac runs.
TEST(QuantizeBillm, FarBelowOneBitBaselinesOnARealModel) {
  const std::string model = test::stories260k();
  const std::vector<int32_t> ids = test::tinystories_eval_ids(model, 40000);
  TempDir dir;
  auto o = QuantizeOptions::ForMethod("billm");
  ASSERT_TRUE(o.ok());
  EXPECT_TRUE(o->spec.lookup);
  EXPECT_EQ(o->spec.bits, 2);
  EXPECT_EQ(o->spec.group_size, 128);
  o->calibration.data = test::embedded_calibration_text();
  o->calibration.nsamples = 16;
  o->calibration.seq_len = 128;
  auto rb = quantize_checkpoint(model, dir.file("billm"), *o);
  ASSERT_TRUE(rb.ok()) << rb.status().ToString();
  const nlohmann::json j = nlohmann::json::parse(rb->ToJson());
  const double paper_bits = j["billm"]["paper_bits_per_weight"].get<double>();
  EXPECT_GT(paper_bits, 1.0);
  EXPECT_LT(paper_bits, 1.5);
  EXPECT_GT(j["billm"]["salient_fraction"].get<double>(), 0.0);
  EXPECT_GT(rb->bits_per_weight, 3.0);  // as stored: 2-bit codes + 8 fp16 levels per row of each 64-wide block
  for (const LayerReport& l : rb->layers) EXPECT_GT(l.salient_fraction, 0.0) << l.module;

  QuantizeOptions r1 = *QuantizeOptions::ForMethod("rtn");
  r1.spec = test::quant_spec(1, 128, false);
  ASSERT_TRUE(quantize_checkpoint(model, dir.file("rtn1"), r1).ok());
  QuantizeOptions g2 = *QuantizeOptions::ForMethod("gptq");
  g2.spec = test::quant_spec(2, 64, false);
  g2.calibration = o->calibration;
  ASSERT_TRUE(quantize_checkpoint(model, dir.file("gptq2"), g2).ok());
  const double pb = test::perplexity_of(dir.file("billm"), ids, 256, 10);
  const double pr = test::perplexity_of(dir.file("rtn1"), ids, 256, 10);
  const double pg = test::perplexity_of(dir.file("gptq2"), ids, 256, 10);
  EXPECT_LT(pb * 50, pr) << "billm " << pb << " rtn w1 " << pr;
  EXPECT_LT(pb, pg) << "billm " << pb << " gptq w2 g64 " << pg;

  // The lookup kernels give the logits of the dequantized weights.
  test::expect_kernels_match_dequantized(dir.file("billm"), std::vector<int32_t>(ids.begin(), ids.begin() + 32));

  auto oac = QuantizeOptions::ForMethod("billm+oac");
  ASSERT_TRUE(oac.ok());
  oac->calibration = o->calibration;
  oac->calibration.nsamples = 8;
  auto ro = quantize_checkpoint(model, dir.file("oac"), *oac);
  ASSERT_TRUE(ro.ok()) << ro.status().ToString();
  EXPECT_TRUE(std::isfinite(test::perplexity_of(dir.file("oac"), ids, 256, 10)));
  // Options of other methods are refused with the method named.
  QuantizeOptions wrong = *o;
  wrong.spec = test::quant_spec(4, 128);
  EXPECT_NE(wrong.Validate().message().find("lookup codes"), std::string::npos) << wrong.Validate().ToString();
  wrong = *o;
  wrong.gptq.act_order = true;
  EXPECT_NE(wrong.Validate().message().find("act_order"), std::string::npos) << wrong.Validate().ToString();
  QuantizeOptions rtn_lookup = r1;
  rtn_lookup.spec = billm_spec();
  EXPECT_NE(rtn_lookup.Validate().message().find("billm"), std::string::npos) << rtn_lookup.Validate().ToString();
}

}  // namespace
}  // namespace llmq
