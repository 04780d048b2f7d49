// SpQR's storage: bilevel (quantized) scales in QuantizedTensor, RTN with them, their file round
// trip and bit accounting; the whole-checkpoint method with a bit budget; SpQR against GPTQ on a
// real model. The outlier rule itself is tested against OBQ in gptq_test.cc.
#include <gtest/gtest.h>
#include <llmq/llmq.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include "io/llmq_format.h"
#include "llmq/float16.h"
#include "test_util.h"

namespace llmq {
namespace {

using test::TempDir;

QuantSpec bilevel_spec(int bits, int group, int scale_bits, int scale_rows = 16) {
  QuantSpec s = test::quant_spec(bits, group);
  s.scale_bits = scale_bits;
  s.scale_group_rows = scale_rows;
  return s;
}

TEST(BilevelScales, QuantizeAndDequantizeAgreeWithinHalfAStep) {
  const int64_t rows = 37, cols = 64;  // chunks of 16, 16, 5 rows
  QuantizedTensor q = QuantizedTensor::Allocate(rows, cols, bilevel_spec(3, 16, 3));
  const auto r = test::random_normal(q.scales.size(), 5, 0.3f);
  for (size_t i = 0; i < q.scales.size(); ++i) q.scales[i] = 0.01f * std::exp(r[i]);
  const std::vector<float> original = q.scales;
  for (int64_t g = 0; g < q.num_groups(); ++g) q.QuantizeScaleColumn(g);
  ASSERT_TRUE(q.Validate().ok());
  const int64_t ng = q.num_groups();
  for (int64_t r0 = 0; r0 < rows; ++r0)
    for (int64_t g = 0; g < ng; ++g) {
      const size_t p = size_t(((r0 / 16) * ng + g) * 2);
      const float lo = fp16_to_float(q.scale_params[p]), step = fp16_to_float(q.scale_params[p + 1]);
      const size_t i = size_t(r0 * ng + g);
      EXPECT_EQ(q.scales[i], lo + step * float(q.scale_codes[i]));
      // Half a step of the grid, plus the fp16 rounding of min and step (up to 7 steps).
      EXPECT_LE(std::fabs(q.scales[i] - original[i]), 0.5f * step + 8.0f * 1e-3f * step + 1e-6f) << r0 << "," << g;
      EXPECT_GT(q.scales[i], 0.0f);
    }
  QuantizedTensor copy = q;
  copy.scales.assign(copy.scales.size(), 0.0f);
  copy.DequantizeScales();
  EXPECT_EQ(copy.scales, q.scales);
  // A chunk of equal scales is stored exactly (step 0).
  QuantizedTensor flat = QuantizedTensor::Allocate(16, 16, bilevel_spec(3, 16, 3));
  flat.scales.assign(16, 0.125f);
  flat.QuantizeScaleColumn(0);
  EXPECT_EQ(flat.scales, std::vector<float>(16, 0.125f));
}

TEST(BilevelScales, RtnCodesAreFoundWithTheStoredScales) {
  const int64_t rows = 20, cols = 48;
  const auto w = test::random_normal(size_t(rows * cols), 7, 0.05f);
  auto q = quantize_rtn(w.data(), rows, cols, bilevel_spec(3, 16, 3));
  auto plain = quantize_rtn(w.data(), rows, cols, bilevel_spec(3, 16, 0));
  ASSERT_TRUE(q.ok() && plain.ok());
  ASSERT_TRUE(q->Validate().ok());
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) {
      GroupParams p;
      p.scale = q->scales[size_t(r * q->num_groups() + c / 16)];
      p.zero = q->zero_of(r, int(c / 16));
      EXPECT_EQ(q->code(r, c), rtn_quantize_value(w[size_t(r * cols + c)], p, q->spec)) << r << "," << c;
    }
  // Cheaper than fp16 scales, at a small cost in error.
  EXPECT_LT(q->bits_per_weight(), plain->bits_per_weight());
  double e_bilevel = 0, e_plain = 0;
  const auto db = dequantize(*q), dp = dequantize(*plain);
  for (size_t i = 0; i < w.size(); ++i) {
    e_bilevel += (db[i] - w[i]) * (db[i] - w[i]);
    e_plain += (dp[i] - w[i]) * (dp[i] - w[i]);
  }
  EXPECT_LT(e_bilevel, e_plain * 1.2);
}

TEST(BilevelScales, FileRoundTripCountsEveryByteAndRejectsBadCodes) {
  const int64_t rows = 24, cols = 80;  // 24 x 5 scale codes x 3 bits = 360 bits: 12 words
  const auto w = test::random_normal(size_t(rows * cols), 9, 0.05f);
  auto q = quantize_rtn(w.data(), rows, cols, bilevel_spec(4, 16, 3, 8));
  ASSERT_TRUE(q.ok());
  TempDir dir;
  uint64_t bytes = 0;
  auto file = test::write_module(dir, *q, &bytes);
  ASSERT_NE(file, nullptr);
  EXPECT_EQ(bytes, q->storage_bytes());
  EXPECT_EQ(file->find("m.qscales"), nullptr);
  ASSERT_NE(file->find("m.qscale_codes"), nullptr);
  EXPECT_EQ(file->find("m.qscale_codes")->shape, (std::vector<int64_t>{12}));
  EXPECT_EQ(file->find("m.qscale_params")->shape, (std::vector<int64_t>{3, 5, 2}));
  const nlohmann::ordered_json info_json = internal::module_info_to_json(*q);
  auto info = internal::module_info_from_json(info_json, "test");
  ASSERT_TRUE(info.ok()) << info.status().ToString();
  EXPECT_EQ(info->spec.scale_bits, 3);
  EXPECT_EQ(info->spec.scale_group_rows, 8);
  auto back = test::read_module(*file, *q);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->scales, q->scales);
  EXPECT_EQ(back->scale_codes, q->scale_codes);
  EXPECT_EQ(dequantize(*back), dequantize(*q));

  // A scale-code word that decodes past 2^scale_bits cannot come from 3-bit packing, but a
  // wrong scale_bits in the spec can: 3-bit codes read as 2-bit ones must fail, not guess.
  nlohmann::ordered_json wrong = info_json;
  wrong["scale_bits"] = 9;
  EXPECT_FALSE(internal::module_info_from_json(wrong, "test").ok());
  // A non-finite (min, step) pair is corruption.
  QuantizedTensor bad = *q;
  bad.scale_params[1] = 0x7c00;  // +inf
  EXPECT_EQ(bad.Validate().code(), StatusCode::kCorruption);
}

// SpQR's zero points: real-valued (-min / scale, not rounded) and quantized per group column to
// 3 bits in chunks of rows, like the scales; codes found with the stored statistics.
TEST(BilevelZeros, RtnStoresCodedRealZerosAndCountsTheirBytes) {
  const int64_t rows = 40, cols = 80;  // chunks of 16, 16, 8 rows; 5 groups
  auto w = test::random_normal(size_t(rows * cols), 13, 0.05f);
  for (int64_t c = 0; c < cols; ++c) w[size_t(3 * cols + c)] = 0.02f + 0.001f * float(c % 7);  // a row with min > 0
  QuantSpec spec = bilevel_spec(3, 16, 3);
  spec.symmetric = false;
  spec.zero_bits = 3;
  auto q = quantize_rtn(w.data(), rows, cols, spec);
  QuantSpec integer_zeros = spec;
  integer_zeros.zero_bits = 0;
  auto qi = quantize_rtn(w.data(), rows, cols, integer_zeros);
  ASSERT_TRUE(q.ok() && qi.ok());
  ASSERT_TRUE(q->Validate().ok()) << q->Validate().ToString();
  EXPECT_TRUE(q->zeros.empty());
  const int64_t ng = q->num_groups();
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t g = 0; g < ng; ++g) {
      const size_t p = size_t(((r / 16) * ng + g) * 2);
      EXPECT_EQ(q->zero_value(r, g),
                fp16_to_float(q->zero_params[p]) + fp16_to_float(q->zero_params[p + 1]) * float(q->zero_codes[size_t(r * ng + g)]));
    }
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) {
      GroupParams p;
      p.scale = q->scales[size_t(r * ng + c / 16)];
      p.real_zero = q->zero_value(r, c / 16);
      EXPECT_EQ(q->code(r, c), rtn_quantize_value(w[size_t(r * cols + c)], p, q->spec)) << r << "," << c;
    }
  // 3-bit codes (200 x 3 bits: 19 words) + 3 x 5 fp16 pairs instead of a byte per zero (200 bytes).
  EXPECT_EQ(q->storage_bytes() + 200, qi->storage_bytes() + 19 * 4 + 3 * 5 * 2 * 2);
  EXPECT_LT(relative_error(w.data(), *q), 1.25 * relative_error(w.data(), *qi));
  // The file holds exactly what storage_bytes counts and reads back to the same tensor.
  TempDir dir;
  uint64_t bytes = 0;
  auto file = test::write_module(dir, *q, &bytes);
  ASSERT_NE(file, nullptr);
  EXPECT_EQ(bytes, q->storage_bytes());
  EXPECT_EQ(file->find("m.qzeros"), nullptr);
  ASSERT_NE(file->find("m.qzero_codes"), nullptr);
  EXPECT_EQ(file->find("m.qzero_params")->shape, (std::vector<int64_t>{3, 5, 2}));
  const nlohmann::ordered_json info_json = internal::module_info_to_json(*q);
  EXPECT_EQ(info_json["zero_bits"], 3);
  auto back = test::read_module(*file, *q);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->real_zeros, q->real_zeros);
  EXPECT_EQ(dequantize(*back), dequantize(*q));
  // Corruption: a pair that is not finite, a zero point that is not what its code gives is caught
  // by the reader recomputing it; a spec saying 9 bits is refused.
  QuantizedTensor bad = *q;
  bad.zero_params[0] = 0x7e00;  // NaN
  EXPECT_EQ(bad.Validate().code(), StatusCode::kCorruption);
  nlohmann::ordered_json wrong = info_json;
  wrong["zero_bits"] = 9;
  EXPECT_FALSE(internal::module_info_from_json(wrong, "test").ok());
  // Symmetric codes have no zeros: zero_bits does not apply and nothing is stored for it.
  QuantSpec sym = spec;
  sym.symmetric = true;
  auto qs = quantize_rtn(w.data(), rows, cols, sym);
  ASSERT_TRUE(qs.ok());
  EXPECT_TRUE(qs->zero_codes.empty() && qs->real_zeros.empty());
  // int8 activations need integer zero points: a clear refusal, not a wrong product.
  PackOptions po;
  po.int8_activations = true;
  auto refused = PackedLinear::Pack(*q, po);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("bilevel"), std::string::npos);
}

// Outlier positions as stored: per-row counts in one byte (two when a row has more than 255), 32-bit
// row pointers only beyond 65535 per row; columns in 1, 2 or 4 bytes by the width. Every layout
// reads back to the same CSR, and the bytes written are what storage_bytes counts.
TEST(CompactOutliers, LayoutFollowsTheCountsAndTheWidth) {
  struct Shape {
    int64_t rows, cols, busy_row_outliers;
    DType counts, columns;
  };
  for (const Shape& sh : {Shape{5, 70, 3, DType::kU8, DType::kU8}, Shape{3, 300, 280, DType::kU16, DType::kU16},
                          Shape{2, 70000, 66000, DType::kI32, DType::kI32}}) {
    const auto w = test::random_normal(size_t(sh.rows * sh.cols), 17, 0.05f);
    auto q = quantize_rtn(w.data(), sh.rows, sh.cols, test::quant_spec(4, 0));
    ASSERT_TRUE(q.ok());
    SparseOutliers& o = q->outliers;
    o.row_ptr.assign(size_t(sh.rows + 1), 0);
    for (int64_t r = 0; r < sh.rows; ++r) {
      const int64_t n = r == 1 ? sh.busy_row_outliers : r % 2;  // one busy row, the others 0 or 1
      for (int64_t k = 0; k < n; ++k) {
        o.col_idx.push_back(int32_t(k * (sh.cols / std::max<int64_t>(n, 1))));
        o.values.push_back(float_to_fp16(0.01f * float(k % 9)));
      }
      o.row_ptr[size_t(r + 1)] = int32_t(o.col_idx.size());
    }
    ASSERT_TRUE(q->Validate().ok()) << q->Validate().ToString();
    TempDir dir;
    uint64_t bytes = 0;
    auto file = test::write_module(dir, *q, &bytes);
    ASSERT_NE(file, nullptr);
    EXPECT_EQ(bytes, q->storage_bytes()) << sh.cols;
    const TensorInfo* counts = file->find(sh.counts == DType::kI32 ? "m.outlier_row_ptr" : "m.outlier_row_counts");
    ASSERT_NE(counts, nullptr) << sh.cols;
    EXPECT_EQ(counts->dtype, sh.counts);
    EXPECT_EQ(file->find("m.outlier_col_idx")->dtype, sh.columns);
    auto back = test::read_module(*file, *q);
    ASSERT_TRUE(back.ok()) << back.status().ToString();
    EXPECT_EQ(back->outliers.row_ptr, o.row_ptr);
    EXPECT_EQ(back->outliers.col_idx, o.col_idx);
    EXPECT_EQ(back->outliers.values, o.values);
    if (sh.counts != DType::kU8) continue;
    // Damaged counts (more outliers than columns stored) and a non-finite second scale are refused.
    auto tensors = internal::quantized_tensors("m", *q);
    for (TensorToWrite& t : tensors)
      if (t.name == "m.outlier_row_counts") t.bytes[0] = 200;
    ASSERT_TRUE(write_safetensors(dir.file("bad.safetensors"), tensors).ok());
    auto bad = SafetensorsFile::Open(dir.file("bad.safetensors"));
    ASSERT_TRUE(bad.ok());
    auto refused = test::read_module(**bad, *q);
    ASSERT_FALSE(refused.ok());
    EXPECT_EQ(refused.status().code(), StatusCode::kCorruption) << refused.status().ToString();
    QuantizedTensor slot = *q;
    slot.outliers.values.clear();
    slot.outlier_scales.assign(slot.scales.size(), 0.5f);
    ASSERT_TRUE(slot.Validate().ok()) << slot.Validate().ToString();
    slot.outlier_scales[0] = NAN;
    EXPECT_EQ(slot.Validate().code(), StatusCode::kCorruption);
    slot.outlier_scales[0] = 0.1f;  // not an fp16 value: could not have come from the file
    EXPECT_EQ(slot.Validate().code(), StatusCode::kCorruption);
  }
}

// SpQR's leave-one-out pass: a group whose row holds one weight far from the rest gets its
// parameters fitted without it (a small scale for the others); the far weight becomes an outlier.
// Without the pass (simplified outliers) the far weight stretches the group's range.
TEST(LeaveOneOut, FitsTheGroupWithoutItsLikelyOutliers) {
  const int64_t rows = 8, cols = 64;
  auto w = test::random_normal(size_t(rows * cols), 21, 0.02f);
  for (int64_t r = 0; r < rows; ++r) w[size_t(r * cols + 5 + r)] = 0.8f;  // one far weight in group 0 of each row
  std::vector<float> h(size_t(cols * cols), 0.0f);
  for (int64_t i = 0; i < cols; ++i) h[size_t(i * cols + i)] = 1.0f;  // identity Hessian: U_jj equal
  QuantSpec spec = test::quant_spec(3, 16, false);
  GptqOptions o;
  o.outlier_threshold = 0.2;
  o.outlier_leave_one_out = true;
  auto loo = gptq_quantize(w.data(), rows, cols, h.data(), spec, o);
  o.outlier_leave_one_out = false;
  auto simple = gptq_quantize(w.data(), rows, cols, h.data(), spec, o);
  ASSERT_TRUE(loo.ok() && simple.ok());
  const int64_t ng = cols / 16;
  for (int64_t r = 0; r < rows; ++r) {
    EXPECT_LT(loo->q.scales[size_t(r * ng)], 0.25f * simple->q.scales[size_t(r * ng)]) << r;
    bool far_is_outlier = false;
    for (int32_t k = loo->q.outliers.row_ptr[size_t(r)]; k < loo->q.outliers.row_ptr[size_t(r + 1)]; ++k)
      far_is_outlier |= loo->q.outliers.col_idx[size_t(k)] == 5 + r;
    EXPECT_TRUE(far_is_outlier) << r;
  }
  EXPECT_LT(loo->loss, simple->loss);
}

std::string write_calibration(const TempDir& dir, int vocab, uint32_t seed) {
  const std::string path = dir.file("calib.json");
  std::ofstream(path) << nlohmann::json(test::random_windows(4, 16, vocab, seed)).dump();
  return path;
}

// The whole-checkpoint method with a bit budget: every linear stays within it, outliers included,
// and what is reported is what is on disk; the report says which threshold each linear got.
TEST(QuantizeSpqr, MeetsTheBitBudgetAndCountsTheBytesItWrites) {
  TempDir dir;
  test::SyntheticModel sm;
  sm.dtype = DType::kF32;
  test::write_synthetic_model(dir.file("in"), sm);
  QuantizeOptions o;
  o.method = "spqr";
  o.spec = bilevel_spec(3, 16, 3);
  o.gptq.damp = 1.0;
  o.calibration.data = write_calibration(dir, sm.vocab, 5);
  o.calibration.nsamples = 4;
  o.calibration.seq_len = 16;
  // Dense part: 3 + 3/16 (scale codes) + 2 x 16 / (16 x 16) (pairs) = 3.3125 bits; any outlier adds
  // a one-byte count per row (0.125 bits on a 64 x 64 layer) and 24 bits per outlier (fp16 value and
  // a one-byte column).
  o.target_bits = 4.0;
  auto rep = quantize_checkpoint(dir.file("in"), dir.file("out"), o);
  ASSERT_TRUE(rep.ok()) << rep.status().ToString();
  auto out = Checkpoint::Open(dir.file("out"));
  ASSERT_TRUE(out.ok());
  double bits = 0, weights = 0;
  int64_t outliers = 0;
  for (const LayerReport& l : rep->layers) {
    EXPECT_LE(l.bits_per_weight, 4.0) << l.module;
    EXPECT_GT(l.outlier_threshold, 0.0) << l.module;
    auto q = (*out)->get_quantized(l.module);
    ASSERT_TRUE(q.ok()) << q.status().ToString();
    EXPECT_EQ(int64_t(q->outliers.nnz()), l.outliers);
    EXPECT_EQ(q->spec.scale_bits, 3);
    const uint64_t on_disk = test::module_bytes_on_disk(**out, l.module);
    EXPECT_EQ(on_disk, q->storage_bytes()) << l.module;
    EXPECT_NEAR(8.0 * double(on_disk) / double(l.rows * l.cols), l.bits_per_weight, 1e-9);
    bits += 8.0 * double(on_disk);
    weights += double(l.rows * l.cols);
    outliers += l.outliers;
  }
  EXPECT_GT(outliers, 0);
  EXPECT_NEAR(rep->bits_per_weight, bits / weights, 1e-9);
  auto j = nlohmann::json::parse(test::read_bytes(dir.file("out/llmq_report.json")));
  EXPECT_EQ(j["spqr"]["target_bits"], 4.0);
  EXPECT_EQ(j["spqr"]["scale_bits"], 3);
  EXPECT_NEAR(j["outlier_fraction"].get<double>(), double(outliers) / weights, 1e-12);
  auto m = Model::Load(dir.file("out"));
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  // A budget below the dense part: no outliers, threshold 0 (none), and the report says so.
  QuantizeOptions tight = o;
  tight.target_bits = 3.3;  // below the dense part: no outliers, not even row pointers
  auto rt = quantize_checkpoint(dir.file("in"), dir.file("tight"), tight);
  ASSERT_TRUE(rt.ok()) << rt.status().ToString();
  for (const LayerReport& l : rt->layers) {
    EXPECT_EQ(l.outliers, 0);
    EXPECT_EQ(l.outlier_threshold, 0.0);
  }
  // Bad combinations are refused before anything is written.
  QuantizeOptions g = o;
  g.method = "smoothquant";  // neither an outlier budget nor a bit budget
  auto refused = quantize_checkpoint(dir.file("in"), dir.file("out2"), g);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("target_bits"), std::string::npos);
}

// The library owns each method's defaults: a program asking for "spqr" with nothing else set gets
// SpQR (groups of 16, 3-bit bilevel scales, damping 1, Hessian-weighted outliers), not GPTQ g128.
TEST(QuantizeOptions, SpqrDefaultsComeFromTheLibrary) {
  auto o = QuantizeOptions::ForMethod("spqr");
  ASSERT_TRUE(o.ok()) << o.status().ToString();
  EXPECT_EQ(o->spec.group_size, 16);
  EXPECT_EQ(o->spec.scale_bits, 3);
  EXPECT_FALSE(o->spec.symmetric);
  EXPECT_EQ(o->spec.zero_bits, 3);
  EXPECT_TRUE(o->spec.bilevel_zeros());
  EXPECT_EQ(o->gptq.damp, 1.0);
  EXPECT_EQ(o->gptq.outlier_threshold, 0.2);
  EXPECT_TRUE(o->gptq.outlier_leave_one_out);
  // Without calibration data Validate says what is missing.
  Status missing = o->Validate();
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.message().find("calibration"), std::string::npos) << missing.ToString();
  TempDir dir;
  o->calibration.data = test::embedded_calibration_text();  // real weights (the embedded model) have outliers
  o->calibration.nsamples = 16;
  o->calibration.seq_len = 128;
  auto rep = quantize_checkpoint(test::stories260k(), dir.file("out"), *o);
  ASSERT_TRUE(rep.ok()) << rep.status().ToString();
  auto out = Checkpoint::Open(dir.file("out"));
  ASSERT_TRUE(out.ok());
  int64_t outliers = 0;
  for (const LayerReport& l : rep->layers) {
    auto q = (*out)->get_quantized(l.module);
    ASSERT_TRUE(q.ok());
    EXPECT_EQ(q->spec.group_size, 16) << l.module;
    EXPECT_EQ(q->spec.scale_bits, 3) << l.module;
    EXPECT_EQ(q->spec.zero_bits, 3) << l.module;
    EXPECT_EQ(q->zero_codes.size(), q->scales.size()) << l.module;
    outliers += int64_t(q->outliers.nnz());
  }
  EXPECT_GT(outliers, 0);
  // Unknown methods and options that belong to another method are refused with a clear message.
  EXPECT_NE(QuantizeOptions::ForMethod("spqr2").status().message().find("available: rtn"), std::string::npos);
  QuantizeOptions g = *QuantizeOptions::ForMethod("gptq");
  g.calibration.data = o->calibration.data;
  g.gptq.outlier_threshold = 0.2;
  EXPECT_NE(g.Validate().message().find("outlier_threshold"), std::string::npos);
  QuantizeOptions sq = *QuantizeOptions::ForMethod("smoothquant");
  sq.calibration.data = o->calibration.data;
  EXPECT_TRUE(sq.Validate().ok()) << sq.Validate().ToString();
  sq.spec.bits = 4;
  EXPECT_NE(sq.Validate().message().find("W8A8"), std::string::npos);
}

// The method's claim at ~3.5 bits: SpQR (groups of 16, 3-bit scales, outliers) beats GPTQ w3 g128
// at ~3.1 bits on a real model with the same calibration, and stays close to fp32.
TEST(QuantizeSpqr, BeatsGptqW3OnARealModel) {
  LLMQ_NEED_SHARED("models/stories5M-hf");
  LLMQ_NEED_SHARED("data/tinystories/TinyStories-train-sample.txt");
  const std::string model = test::shared_path("models/stories5M-hf");
  const std::string calib = test::shared_path("data/tinystories/TinyStories-train-sample.txt");
  const std::vector<int32_t> ids = test::tinystories_eval_ids(model, 60000);
  TempDir dir;
  QuantizeOptions o;
  o.method = "spqr";
  o.spec = bilevel_spec(3, 16, 3);
  o.gptq.damp = 1.0;
  o.gptq.outlier_threshold = 0.2;
  o.calibration.data = calib;
  o.calibration.nsamples = 32;
  o.calibration.seq_len = 256;
  auto rs = quantize_checkpoint(model, dir.file("spqr"), o);
  ASSERT_TRUE(rs.ok()) << rs.status().ToString();
  QuantizeOptions g = o;
  g.method = "gptq";
  g.spec = bilevel_spec(3, 128, 0);
  g.gptq = GptqOptions{};
  auto rg = quantize_checkpoint(model, dir.file("gptq"), g);
  ASSERT_TRUE(rg.ok());
  EXPECT_LT(rs->bits_per_weight, 3.8);
  const double fp = test::perplexity_of(model, ids, 256, 20), ps = test::perplexity_of(dir.file("spqr"), ids, 256, 20),
               pg = test::perplexity_of(dir.file("gptq"), ids, 256, 20);
  EXPECT_LT(ps, pg) << "fp32 " << fp << " spqr " << ps << " (" << rs->bits_per_weight << " bits) gptq " << pg;
  EXPECT_GT(ps, fp * 0.99);
  // The kernels (dense low-bit part + sparse fp16 add) give what the dequantized weights give.
  auto reference = test::load_dequantized(dir.file("spqr"));
  ASSERT_TRUE(reference.ok()) << reference.status().ToString();
  PerplexityOptions po;
  po.seq_len = 256;
  po.max_chunks = 20;
  auto pref = evaluate_perplexity(**reference, ids, po);
  ASSERT_TRUE(pref.ok());
  EXPECT_NEAR(ps, pref->perplexity, pref->perplexity * 1e-4);
}

}  // namespace
}  // namespace llmq
