// GPTQ against a direct OBQ implementation, its special cases and failure paths, the
// Hessian accumulator, and round trips of act-order results through the file format.
#include "llmq/gptq.h"

#include <gtest/gtest.h>

#include <Eigen/Dense>
#include <cmath>
#include <numeric>

#include "io/llmq_format.h"
#include "quant/block_store.h"
#include "quant/gptq_internal.h"
#include "llmq/float16.h"
#include "test_util.h"

namespace llmq {
namespace {

using MatD = Eigen::MatrixXd;

// H = 2/N X^T X for N random inputs whose columns are correlated (a mixing matrix), so
// that the OBQ updates are far from trivial.
std::vector<float> correlated_hessian(int64_t cols, int64_t n, uint32_t seed, std::vector<float>* x_out = nullptr) {
  auto z = test::random_normal(size_t(n * cols), seed);
  auto mix = test::random_normal(size_t(cols * cols), seed + 1, 0.5f);
  std::vector<float> x(size_t(n * cols), 0.0f);
  for (int64_t t = 0; t < n; ++t)
    for (int64_t j = 0; j < cols; ++j) {
      float s = z[size_t(t * cols + j)];
      for (int64_t k = 0; k < cols; ++k) s += z[size_t(t * cols + k)] * mix[size_t(k * cols + j)] * 0.3f;
      x[size_t(t * cols + j)] = s * (1.0f + float(j % 5));  // uneven input energy
    }
  HessianAccumulator acc(cols);
  acc.Add(x.data(), n);
  if (x_out) *x_out = x;
  return acc.Hessian();
}

// The OBQ update rule of the GPTQ paper (eq. 2-3), one row at a time, in fp64, with the
// explicit inverse and Gaussian elimination of quantized columns. Columns are taken in
// `order`; group parameters are found on the current (updated) weights when a group starts.
// With a finite `tau` (SpQR, natural order only): a weight whose (w - q)^2 / Hinv_qq exceeds tau
// becomes an fp16 outlier (code of 0, value fp16(w)) and is marked in *outliers.
std::vector<uint32_t> obq_reference(const std::vector<float>& w, int64_t rows, int64_t cols,
                                    const std::vector<float>& h, const QuantSpec& spec, double damp,
                                    const std::vector<int64_t>& order, double tau = INFINITY,
                                    std::vector<uint8_t>* outliers = nullptr) {
  if (outliers) outliers->assign(size_t(rows * cols), 0);
  MatD H(cols, cols);
  for (int64_t i = 0; i < cols; ++i)
    for (int64_t j = 0; j < cols; ++j) H(i, j) = h[size_t(i * cols + j)];
  const double mean = H.diagonal().mean();
  H.diagonal().array() += damp * mean;
  const MatD Hinv0 = H.inverse();
  const int64_t g = spec.group_cols(cols);
  std::vector<uint32_t> codes(size_t(rows * cols));
  for (int64_t r = 0; r < rows; ++r) {
    Eigen::VectorXd row(cols);
    for (int64_t c = 0; c < cols; ++c) row(c) = w[size_t(r * cols + c)];
    MatD Hinv = Hinv0;
    GroupParams p;
    for (int64_t pos = 0; pos < cols; ++pos) {
      const int64_t q = order[size_t(pos)];
      if (pos % g == 0) {
        std::vector<float> grp;
        for (int64_t k = pos; k < std::min(cols, pos + g); ++k) grp.push_back(float(row(order[size_t(k)])));
        p = rtn_group_params(grp.data(), int64_t(grp.size()), spec);
      }
      uint32_t code = rtn_quantize_value(float(row(q)), p, spec);
      double deq = double(p.scale) * (double(code) - p.zero);
      if ((row(q) - deq) * (row(q) - deq) / Hinv(q, q) > tau) {
        code = rtn_quantize_value(0.0f, p, spec);
        deq = fp16_to_float(float_to_fp16(float(row(q))));
        if (outliers) (*outliers)[size_t(r * cols + q)] = 1;
      }
      codes[size_t(r * cols + q)] = code;
      const double err = (row(q) - deq) / Hinv(q, q);
      row -= err * Hinv.col(q);
      row(q) = deq;
      Hinv -= Hinv.col(q) * Hinv.row(q) / Hinv(q, q);
    }
  }
  return codes;
}

std::vector<uint32_t> codes_of(const QuantizedTensor& q) {
  std::vector<uint32_t> c(size_t(q.rows * q.cols));
  for (int64_t r = 0; r < q.rows; ++r)
    for (int64_t k = 0; k < q.cols; ++k) c[size_t(r * q.cols + k)] = q.code(r, k);
  return c;
}

double mismatch_fraction(const std::vector<uint32_t>& a, const std::vector<uint32_t>& b) {
  int64_t diff = 0;
  for (size_t i = 0; i < a.size(); ++i) diff += a[i] != b[i];
  return double(diff) / double(a.size());
}

TEST(Gptq, EqualsDirectObqUpdatesPerChannel) {
  const int64_t rows = 12, cols = 40;
  auto w = test::random_normal(size_t(rows * cols), 7, 0.1f);
  auto h = correlated_hessian(cols, 256, 8);
  QuantSpec spec = test::quant_spec(3, 0, true, ScaleDType::kF32);
  GptqOptions opt;
  opt.block_size = 16;  // several lazy batches, one not full
  auto res = gptq_quantize(w.data(), rows, cols, h.data(), spec, opt);
  ASSERT_TRUE(res.ok()) << res.status().ToString();
  std::vector<int64_t> order(static_cast<size_t>(cols));
  std::iota(order.begin(), order.end(), 0);
  // Per-channel parameters come from the original row in both (group = whole row at position 0).
  const auto ref = obq_reference(w, rows, cols, h, spec, opt.damp, order);
  EXPECT_EQ(mismatch_fraction(codes_of(res->q), ref), 0.0);
  EXPECT_FALSE(res->fell_back_to_rtn);
  EXPECT_EQ(res->damp_retries, 0);
}

TEST(Gptq, EqualsDirectObqUpdatesGroupedAsymmetric) {
  const int64_t rows = 10, cols = 48;
  auto w = test::random_normal(size_t(rows * cols), 11, 0.1f);
  auto h = correlated_hessian(cols, 300, 12);
  QuantSpec spec = test::quant_spec(4, 8, false, ScaleDType::kF32);
  GptqOptions opt;
  opt.block_size = 16;  // groups start inside blocks: parameters must see the in-block updates
  auto res = gptq_quantize(w.data(), rows, cols, h.data(), spec, opt);
  ASSERT_TRUE(res.ok()) << res.status().ToString();
  std::vector<int64_t> order(static_cast<size_t>(cols));
  std::iota(order.begin(), order.end(), 0);
  EXPECT_EQ(mismatch_fraction(codes_of(res->q), obq_reference(w, rows, cols, h, spec, opt.damp, order)), 0.0);
}

TEST(Gptq, ActOrderEqualsObqInDecreasingDiagonalOrderAndKeepsGroupIndex) {
  const int64_t rows = 8, cols = 32;
  auto w = test::random_normal(size_t(rows * cols), 21, 0.1f);
  auto h = correlated_hessian(cols, 256, 22);
  QuantSpec spec = test::quant_spec(4, 8, true, ScaleDType::kF32);
  GptqOptions opt;
  opt.act_order = true;
  opt.block_size = 8;
  auto res = gptq_quantize(w.data(), rows, cols, h.data(), spec, opt);
  ASSERT_TRUE(res.ok()) << res.status().ToString();
  std::vector<int64_t> order(static_cast<size_t>(cols));
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int64_t a, int64_t b) { return h[size_t(a * cols + a)] > h[size_t(b * cols + b)]; });
  EXPECT_EQ(mismatch_fraction(codes_of(res->q), obq_reference(w, rows, cols, h, spec, opt.damp, order)), 0.0);
  // Column order[k] belongs to group k / 8, which is not c / 8: a g_idx is stored.
  ASSERT_EQ(res->q.g_idx.size(), size_t(cols));
  for (int64_t k = 0; k < cols; ++k) EXPECT_EQ(res->q.g_idx[size_t(order[size_t(k)])], int32_t(k / 8));
  ASSERT_TRUE(res->q.Validate().ok());
}

TEST(Gptq, EqualsDirectObqUpdatesOnAWideLayer) {
  // Wide enough for the blocked triangular inverse and several lazy batches.
  const int64_t rows = 3, cols = 203;
  auto w = test::random_normal(size_t(rows * cols), 17, 0.1f);
  auto h = correlated_hessian(cols, 1024, 18);
  QuantSpec spec = test::quant_spec(4, 0, true, ScaleDType::kF32);
  auto res = gptq_quantize(w.data(), rows, cols, h.data(), spec);
  ASSERT_TRUE(res.ok()) << res.status().ToString();
  std::vector<int64_t> order(static_cast<size_t>(cols));
  std::iota(order.begin(), order.end(), 0);
  // fp32 against fp64 over 200 dependent steps: allow a rare flip at a rounding boundary.
  EXPECT_LE(mismatch_fraction(codes_of(res->q), obq_reference(w, rows, cols, h, spec, 0.01, order)), 0.01);
}

TEST(Gptq, IdentityHessianEqualsRtn) {
  const int64_t rows = 16, cols = 64;
  auto w = test::random_normal(size_t(rows * cols), 31, 0.2f);
  std::vector<float> h(size_t(cols * cols), 0.0f);
  for (int64_t i = 0; i < cols; ++i) h[size_t(i * cols + i)] = 1.0f;
  for (int bits : {2, 3, 4, 8})
    for (int group : {0, 16, 64})
      for (bool sym : {true, false}) {
        QuantSpec spec = test::quant_spec(bits, group, sym);
        auto g = gptq_quantize(w.data(), rows, cols, h.data(), spec);
        auto r = quantize_rtn(w.data(), rows, cols, spec);
        ASSERT_TRUE(g.ok() && r.ok());
        EXPECT_EQ(g->q.codes, r->codes) << spec.ToString();
        EXPECT_EQ(g->q.scales, r->scales) << spec.ToString();
        EXPECT_EQ(g->q.zeros, r->zeros) << spec.ToString();
      }
}

TEST(Gptq, LowersOutputErrorBelowRtn) {
  const int64_t rows = 64, cols = 128;
  auto w = test::random_normal(size_t(rows * cols), 41, 0.05f);
  auto h = correlated_hessian(cols, 512, 42);
  for (int bits : {3, 4}) {
    QuantSpec spec = test::quant_spec(bits, 32);
    auto g = gptq_quantize(w.data(), rows, cols, h.data(), spec);
    auto r = quantize_rtn(w.data(), rows, cols, spec);
    ASSERT_TRUE(g.ok() && r.ok());
    const double eg = output_relative_error(w.data(), dequantize(g->q).data(), rows, cols, h.data());
    const double er = output_relative_error(w.data(), dequantize(*r).data(), rows, cols, h.data());
    EXPECT_LT(eg, 0.8 * er) << "bits " << bits << ": gptq " << eg << " rtn " << er;
  }
}

TEST(Gptq, DeadColumnsAreZeroedAndReported) {
  const int64_t rows = 6, cols = 16;
  auto w = test::random_normal(size_t(rows * cols), 51, 0.1f);
  std::vector<float> x;
  auto h = correlated_hessian(cols, 64, 52, &x);
  for (int64_t j : {3, 9}) {  // inputs 3 and 9 never fire
    for (int64_t i = 0; i < cols; ++i) h[size_t(j * cols + i)] = h[size_t(i * cols + j)] = 0.0f;
  }
  QuantSpec spec = test::quant_spec(4, 0);
  auto res = gptq_quantize(w.data(), rows, cols, h.data(), spec);
  ASSERT_TRUE(res.ok());
  EXPECT_EQ(res->dead_columns, 2);
  auto d = dequantize(res->q);
  for (int64_t r = 0; r < rows; ++r) {
    EXPECT_EQ(d[size_t(r * cols + 3)], 0.0f);
    EXPECT_EQ(d[size_t(r * cols + 9)], 0.0f);
  }
}

TEST(Gptq, IndefiniteHessianRecoversByRaisingTheDamping) {
  const int64_t rows = 4, cols = 8;
  auto w = test::random_normal(size_t(rows * cols), 61, 0.1f);
  // Pairs [[1, 3], [3, 1]] have eigenvalues 4 and -2: Cholesky fails until damp * mean(diag) > 2.
  std::vector<float> h(size_t(cols * cols), 0.0f);
  for (int64_t i = 0; i < cols; i += 2) {
    h[size_t(i * cols + i)] = h[size_t((i + 1) * cols + i + 1)] = 1.0f;
    h[size_t(i * cols + i + 1)] = h[size_t((i + 1) * cols + i)] = 3.0f;
  }
  auto res = gptq_quantize(w.data(), rows, cols, h.data(), QuantSpec{});
  ASSERT_TRUE(res.ok()) << res.status().ToString();
  EXPECT_FALSE(res->fell_back_to_rtn);
  EXPECT_EQ(res->damp_retries, 3);  // 0.01 -> 0.1 -> 1 -> 10
  EXPECT_DOUBLE_EQ(res->damp, 10.0);
}

TEST(Gptq, HopelessHessianFallsBackToRtnAndSaysSo) {
  const int64_t rows = 4, cols = 8;
  auto w = test::random_normal(size_t(rows * cols), 71, 0.1f);
  std::vector<float> h(size_t(cols * cols), 0.0f);
  for (int64_t i = 0; i < cols; ++i) h[size_t(i * cols + i)] = -1.0f;  // negative definite
  auto res = gptq_quantize(w.data(), rows, cols, h.data(), QuantSpec{});
  ASSERT_TRUE(res.ok()) << res.status().ToString();
  EXPECT_TRUE(res->fell_back_to_rtn);
  auto r = quantize_rtn(w.data(), rows, cols, QuantSpec{});
  EXPECT_EQ(res->q.codes, r->codes);
}

TEST(Gptq, RejectsBadInput) {
  std::vector<float> w = {1, 2, 3, 4}, h = {1, 0, 0, 1};
  EXPECT_FALSE(gptq_quantize(w.data(), 2, 2, h.data(), QuantSpec{5, 0}).ok());
  GptqOptions bad;
  bad.damp = 0;
  EXPECT_FALSE(gptq_quantize(w.data(), 2, 2, h.data(), QuantSpec{}, bad).ok());
  h[1] = NAN;
  auto r = gptq_quantize(w.data(), 2, 2, h.data(), QuantSpec{});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("Hessian"), std::string::npos);
}

TEST(Gptq, StaticGroupsWithActOrderNeedNoGroupIndex) {
  const int64_t rows = 8, cols = 64;
  auto w = test::random_normal(size_t(rows * cols), 81, 0.1f);
  auto h = correlated_hessian(cols, 256, 82);
  QuantSpec spec = test::quant_spec(4, 16);
  GptqOptions opt;
  opt.act_order = true;
  opt.static_groups = true;
  auto res = gptq_quantize(w.data(), rows, cols, h.data(), spec, opt);
  ASSERT_TRUE(res.ok());
  EXPECT_TRUE(res->q.g_idx.empty());
  // The scales are those of RTN on the original groups.
  auto r = quantize_rtn(w.data(), rows, cols, spec);
  EXPECT_EQ(res->q.scales, r->scales);
}

TEST(Gptq, ActOrderResultRoundTripsThroughTheFileFormat) {
  const int64_t rows = 16, cols = 96;
  auto w = test::random_normal(size_t(rows * cols), 91, 0.1f);
  auto h = correlated_hessian(cols, 256, 92);
  QuantSpec spec = test::quant_spec(3, 32, false);
  GptqOptions opt;
  opt.act_order = true;
  auto res = gptq_quantize(w.data(), rows, cols, h.data(), spec, opt);
  ASSERT_TRUE(res.ok());
  ASSERT_FALSE(res->q.g_idx.empty());
  test::TempDir dir;
  const std::string path = dir.file("t.safetensors");
  ASSERT_TRUE(write_safetensors(path, internal::quantized_tensors("m", res->q)).ok());
  auto file = SafetensorsFile::Open(path);
  ASSERT_TRUE(file.ok());
  auto info = internal::module_info_from_json(internal::module_info_to_json(res->q), "test");
  ASSERT_TRUE(info.ok());
  auto back = internal::read_quantized(**file, "m", *info);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->g_idx, res->q.g_idx);
  EXPECT_EQ(dequantize(*back), dequantize(res->q));
}

// Under MPI a wide linear is solved in row pieces on several ranks (methods/gptq.cc): GPTQ
// quantizes every row on its own given H, so the joined pieces are the whole's bits, for plain,
// asymmetric act-order and K-quant grids; specs whose rows share statistics are refused.
TEST(Gptq, RowPiecesJoinToTheWholeSolve) {
  // Wide enough that each lazy batch's update is cut into panels (cols - 128 >= 512), rows in a
  // full chunk and a partial one (one product over all rows would differ in the last bits).
  const int64_t rows = internal::kGptqRowChunk + 136, cols = 768;
  auto w = test::random_normal(size_t(rows * cols), 95, 0.1f);
  auto h = correlated_hessian(cols, 256, 96);
  std::vector<std::pair<QuantSpec, bool>> specs = {{test::quant_spec(4, 128, true), false},
                                                   {test::quant_spec(3, 32, false), true},
                                                   {QuantSpec::ForGgml(GgmlType::kQ4_K), false},
                                                   {QuantSpec::ForGgml(GgmlType::kQ6_K), false}};
  for (const auto& [spec, act_order] : specs) {
    GptqOptions opt;
    opt.act_order = act_order;
    auto whole = gptq_quantize(w.data(), rows, cols, h.data(), spec, opt);
    ASSERT_TRUE(whole.ok()) << whole.status().ToString();
    std::vector<QuantizedTensor> pieces;
    const int64_t c = internal::kGptqRowChunk;
    for (auto [b, e] : {std::pair<int64_t, int64_t>{0, c}, {c, rows}}) {
      auto p = gptq_quantize(w.data() + b * cols, e - b, cols, h.data(), spec, opt);
      ASSERT_TRUE(p.ok());
      pieces.push_back(std::move(p->q));
    }
    auto joined = internal::join_row_pieces(std::move(pieces));
    ASSERT_TRUE(joined.ok()) << joined.status().ToString();
    EXPECT_EQ(internal::quantized_bytes("m", *joined), internal::quantized_bytes("m", whole->q)) << spec.ToString();
  }
  QuantSpec bilevel = test::quant_spec(3, 16, false);
  bilevel.scale_bits = 3;
  auto b = gptq_quantize(w.data(), 32, cols, h.data(), bilevel);
  ASSERT_TRUE(b.ok());
  std::vector<QuantizedTensor> two{b->q, b->q};
  EXPECT_FALSE(internal::join_row_pieces(std::move(two)).ok());
}

// Row pieces solved on several ranks share one inverse factor (gptq_factor, computed once and
// broadcast): pieces solved with it are the whole's bits, with act-order, a dead input column, a
// Hessian that needs more damping, and one where every damping fails (RTN for every piece).
TEST(Gptq, PiecesWithASharedFactorJoinToTheWholeSolve) {
  const int64_t rows = internal::kGptqRowChunk + 136, cols = 768;
  auto w = test::random_normal(size_t(rows * cols), 97, 0.1f);
  auto h = correlated_hessian(cols, 256, 98);
  for (int64_t j = 0; j < cols; ++j) h[size_t(5 * cols + j)] = h[size_t(j * cols + 5)] = 0.0f;  // dead input 5
  for (bool act_order : {false, true}) {
    GptqOptions opt;
    opt.act_order = act_order;
    const QuantSpec spec = test::quant_spec(4, 128, act_order);
    auto whole = gptq_quantize(w.data(), rows, cols, h.data(), spec, opt);
    ASSERT_TRUE(whole.ok()) << whole.status().ToString();
    EXPECT_EQ(whole->dead_columns, 1);
    const internal::GptqFactor f = internal::gptq_factor(h.data(), cols, opt);
    std::vector<QuantizedTensor> pieces;
    const int64_t c = internal::kGptqRowChunk;
    for (auto [b, e] : {std::pair<int64_t, int64_t>{0, c}, {c, rows}}) {
      auto p = internal::gptq_quantize_with_factor(w.data() + b * cols, e - b, cols, h.data(), spec, opt, f);
      ASSERT_TRUE(p.ok()) << p.status().ToString();
      EXPECT_EQ(p->damp, whole->damp);
      pieces.push_back(std::move(p->q));
    }
    auto joined = internal::join_row_pieces(std::move(pieces));
    ASSERT_TRUE(joined.ok()) << joined.status().ToString();
    EXPECT_EQ(internal::quantized_bytes("m", *joined), internal::quantized_bytes("m", whole->q)) << act_order;
  }
  // Damping raised (pairs [[1, 3], [3, 1]]) and hopeless (negative definite) Hessians.
  const int64_t small = 8;
  auto ws = test::random_normal(size_t(4 * small), 99, 0.1f);
  std::vector<float> raised(size_t(small * small), 0.0f), hopeless(size_t(small * small), 0.0f);
  for (int64_t i = 0; i < small; i += 2) {
    raised[size_t(i * small + i)] = raised[size_t((i + 1) * small + i + 1)] = 1.0f;
    raised[size_t(i * small + i + 1)] = raised[size_t((i + 1) * small + i)] = 3.0f;
  }
  for (int64_t i = 0; i < small; ++i) hopeless[size_t(i * small + i)] = -1.0f;
  for (const auto* hh : {&raised, &hopeless}) {
    auto whole = gptq_quantize(ws.data(), 4, small, hh->data(), QuantSpec{});
    const internal::GptqFactor f = internal::gptq_factor(hh->data(), small, GptqOptions{});
    auto shared = internal::gptq_quantize_with_factor(ws.data(), 4, small, hh->data(), QuantSpec{}, GptqOptions{}, f);
    ASSERT_TRUE(whole.ok() && shared.ok());
    EXPECT_EQ(shared->q.codes, whole->q.codes);
    EXPECT_EQ(shared->damp_retries, whole->damp_retries);
    EXPECT_EQ(shared->fell_back_to_rtn, whole->fell_back_to_rtn);
  }
}

// SpQR (algorithms.md §5): outliers are the weights whose Hessian-weighted error exceeds
// tau = threshold * mean_j var(W[:, j]) / U_jj^2, with U the upper Cholesky factor of the damped H^-1.
TEST(Gptq, SpqrOutliersEqualObqWithTheHessianWeightedRule) {
  const int64_t rows = 12, cols = 48;
  auto w = test::random_normal(size_t(rows * cols), 31, 0.1f);
  for (size_t i = 0; i < w.size(); i += 37) w[i] *= 6.0f;  // a few heavy weights
  auto h = correlated_hessian(cols, 256, 32);
  QuantSpec spec = test::quant_spec(3, 8, true, ScaleDType::kF32);
  GptqOptions opt;
  opt.block_size = 16;
  opt.outlier_threshold = 0.3;
  auto res = gptq_quantize(w.data(), rows, cols, h.data(), spec, opt);
  ASSERT_TRUE(res.ok()) << res.status().ToString();
  ASSERT_TRUE(res->q.Validate().ok());

  MatD H(cols, cols);
  for (int64_t i = 0; i < cols; ++i)
    for (int64_t j = 0; j < cols; ++j) H(i, j) = h[size_t(i * cols + j)];
  H.diagonal().array() += opt.damp * H.diagonal().mean();
  const MatD L = Eigen::LLT<MatD>(H.inverse()).matrixL();  // H^-1 = L L^T = U^T U with U = L^T
  double sens = 0;
  for (int64_t j = 0; j < cols; ++j) {
    Eigen::VectorXd col(rows);
    for (int64_t r = 0; r < rows; ++r) col(r) = w[size_t(r * cols + j)];
    const double var = (col.array() - col.mean()).square().sum() / double(rows - 1);
    sens += var / (L(j, j) * L(j, j));
  }
  std::vector<int64_t> order(static_cast<size_t>(cols));
  std::iota(order.begin(), order.end(), 0);
  std::vector<uint8_t> ref_outliers;
  const auto ref = obq_reference(w, rows, cols, h, spec, opt.damp, order, opt.outlier_threshold * sens / double(cols),
                                 &ref_outliers);
  std::vector<uint8_t> got_outliers(size_t(rows * cols), 0);
  const SparseOutliers& o = res->q.outliers;
  for (int64_t r = 0; r < rows; ++r)
    for (int32_t k = o.row_ptr[size_t(r)]; k < o.row_ptr[size_t(r + 1)]; ++k)
      got_outliers[size_t(r * cols + o.col_idx[size_t(k)])] = 1;
  const int64_t n_ref = std::accumulate(ref_outliers.begin(), ref_outliers.end(), int64_t(0));
  EXPECT_GT(n_ref, 3);
  EXPECT_LT(n_ref, rows * cols / 10);
  EXPECT_EQ(res->outliers, n_ref);
  EXPECT_EQ(got_outliers, ref_outliers);
  EXPECT_EQ(mismatch_fraction(codes_of(res->q), ref), 0.0);
  // An outlier is reconstructed to fp16 precision: dense part 0 plus the sparse value.
  const auto d = dequantize(res->q);
  for (size_t i = 0; i < got_outliers.size(); ++i)
    if (got_outliers[i]) {
      EXPECT_NE(d[i], 0.0f);
    }
}

TEST(Gptq, SpqrThresholdTradesOutliersForLoss) {
  const int64_t rows = 32, cols = 64;
  auto w = test::random_normal(size_t(rows * cols), 41, 0.1f);
  auto h = correlated_hessian(cols, 256, 42);
  QuantSpec spec = test::quant_spec(3, 16);
  GptqOptions opt;
  auto none = gptq_quantize(w.data(), rows, cols, h.data(), spec, opt);
  opt.outlier_threshold = INFINITY;
  auto inf = gptq_quantize(w.data(), rows, cols, h.data(), spec, opt);
  ASSERT_TRUE(none.ok() && inf.ok());
  EXPECT_EQ(inf->outliers, 0);
  EXPECT_TRUE(inf->q.outliers.empty());
  EXPECT_EQ(inf->q.codes, none->q.codes);
  int64_t prev_outliers = 0;
  double prev_loss = none->loss;
  for (double thr : {0.15, 0.08, 0.04}) {
    opt.outlier_threshold = thr;
    auto r = gptq_quantize(w.data(), rows, cols, h.data(), spec, opt);
    ASSERT_TRUE(r.ok());
    EXPECT_GT(r->outliers, prev_outliers) << thr;
    EXPECT_LT(r->loss, prev_loss) << thr;
    EXPECT_GT(r->q.bits_per_weight(), none->q.bits_per_weight());
    prev_outliers = r->outliers;
    prev_loss = r->loss;
  }
}

// Bilevel scales inside GPTQ: what is stored is what the codes were found with.
TEST(Gptq, BilevelScalesAreTheScalesTheCodesUse) {
  const int64_t rows = 40, cols = 64;  // 40 rows: chunks of 16, 16 and 8
  auto w = test::random_normal(size_t(rows * cols), 51, 0.1f);
  auto h = correlated_hessian(cols, 256, 52);
  QuantSpec spec = test::quant_spec(3, 16);
  auto plain = gptq_quantize(w.data(), rows, cols, h.data(), spec, {});
  spec.scale_bits = 3;
  auto bilevel = gptq_quantize(w.data(), rows, cols, h.data(), spec, {});
  ASSERT_TRUE(plain.ok() && bilevel.ok());
  const QuantizedTensor& q = bilevel->q;
  ASSERT_TRUE(q.Validate().ok());
  EXPECT_EQ(q.num_scale_chunks(), 3);
  QuantizedTensor copy = q;
  copy.DequantizeScales();
  EXPECT_EQ(copy.scales, q.scales);
  // 3-bit scales cost little: the GPTQ loss stays within a few percent of fp16 scales'.
  EXPECT_LT(bilevel->loss, plain->loss * 1.15);
  EXPECT_LT(q.storage_bytes(), plain->q.storage_bytes());
}

TEST(HessianAccumulator, EqualsTwoOverNXtXInDoublePrecision) {
  const int64_t cols = 24;
  auto x = test::random_normal(size_t(5000 * cols), 101);
  HessianAccumulator acc(cols);
  acc.Add(x.data(), 1000);
  acc.Add(x.data() + 1000 * cols, 4000);  // crosses the fp64 flush point
  EXPECT_EQ(acc.rows_seen(), 5000);
  auto h = acc.Hessian();
  for (int64_t i = 0; i < cols; ++i)
    for (int64_t j = 0; j < cols; ++j) {
      double s = 0;
      for (int64_t t = 0; t < 5000; ++t) s += double(x[size_t(t * cols + i)]) * x[size_t(t * cols + j)];
      EXPECT_NEAR(h[size_t(i * cols + j)], 2.0 * s / 5000.0, 1e-4) << i << "," << j;
      EXPECT_EQ(h[size_t(i * cols + j)], h[size_t(j * cols + i)]);
    }
}

// AddWeighted(x, S) adds xᵀ S x (counting n rows), mixed freely with Add.
TEST(HessianAccumulator, AddWeightedIsXtSX) {
  const int64_t cols = 10, n = 7;
  const auto x = test::random_normal(size_t(n * cols), 103);
  const auto d = test::random_normal(size_t(n * 5), 104);  // S = D Dᵀ, positive semi-definite
  std::vector<float> s(size_t(n * n), 0.0f);
  for (int64_t a = 0; a < n; ++a)
    for (int64_t b = 0; b < n; ++b)
      for (int64_t k = 0; k < 5; ++k) s[size_t(a * n + b)] += d[size_t(a * 5 + k)] * d[size_t(b * 5 + k)];
  HessianAccumulator acc(cols);
  acc.Add(x.data(), n);
  acc.AddWeighted(x.data(), n, s.data());
  EXPECT_EQ(acc.rows_seen(), 2 * n);
  const auto h = acc.Hessian();
  for (int64_t i = 0; i < cols; ++i)
    for (int64_t j = 0; j < cols; ++j) {
      double e = 0;
      for (int64_t a = 0; a < n; ++a) {
        e += double(x[size_t(a * cols + i)]) * x[size_t(a * cols + j)];
        for (int64_t b = 0; b < n; ++b)
          e += double(x[size_t(a * cols + i)]) * s[size_t(a * n + b)] * x[size_t(b * cols + j)];
      }
      EXPECT_NEAR(h[size_t(i * cols + j)], 2.0 * e / double(2 * n), 1e-4 * (1 + std::fabs(e))) << i << "," << j;
    }
}

TEST(OutputRelativeError, MatchesTheErrorOnTheInputs) {
  const int64_t rows = 20, cols = 32, n = 400;
  std::vector<float> x;
  auto h = correlated_hessian(cols, n, 111, &x);
  auto w = test::random_normal(size_t(rows * cols), 112, 0.1f);
  auto r = quantize_rtn(w.data(), rows, cols, QuantSpec{3, 8});
  auto d = dequantize(*r);
  double num = 0, den = 0;
  for (int64_t t = 0; t < n; ++t)
    for (int64_t o = 0; o < rows; ++o) {
      double y = 0, yq = 0;
      for (int64_t c = 0; c < cols; ++c) {
        y += double(w[size_t(o * cols + c)]) * x[size_t(t * cols + c)];
        yq += double(d[size_t(o * cols + c)]) * x[size_t(t * cols + c)];
      }
      num += (y - yq) * (y - yq);
      den += y * y;
    }
  EXPECT_NEAR(output_relative_error(w.data(), d.data(), rows, cols, h.data()), std::sqrt(num / den), 1e-4);
}

}  // namespace
}  // namespace llmq
