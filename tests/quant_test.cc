// Bit packing, the RTN quantizer against hand-computed values, QuantizedTensor validation.
#include <gtest/gtest.h>
#include <llmq/llmq.h>

#include <cmath>
#include <random>

#include "test_util.h"

namespace llmq {
namespace {

TEST(PackBits, RoundTripEveryWidthAndOddSizes) {
  std::mt19937 rng(7);
  for (int bits : {2, 3, 4, 8}) {
    for (int64_t n : {1, 2, 3, 7, 10, 11, 31, 32, 33, 63, 64, 65, 127, 1000}) {
      std::vector<uint8_t> v(static_cast<size_t>(n)), back(static_cast<size_t>(n));
      for (auto& x : v) x = uint8_t(rng() & ((1u << bits) - 1));
      std::vector<uint32_t> words(size_t((n * bits + 31) / 32) + 1, 0xDEADBEEF);
      pack_bits(v.data(), n, bits, words.data());
      EXPECT_EQ(words.back(), 0xDEADBEEF) << "wrote past the end, bits=" << bits << " n=" << n;
      unpack_bits(words.data(), n, bits, back.data());
      ASSERT_EQ(v, back) << "bits=" << bits << " n=" << n;
    }
  }
}

TEST(PackBits, LayoutIsLsbFirst) {
  const uint8_t v4[8] = {1, 2, 3, 4, 5, 6, 7, 8};
  uint32_t w = 0;
  pack_bits(v4, 8, 4, &w);
  EXPECT_EQ(w, 0x87654321u);
  // 3-bit: value 10 straddles words 0 and 1 (bits 30..32).
  std::vector<uint8_t> v3(11, 0);
  v3[10] = 0b101;
  uint32_t w3[2];
  pack_bits(v3.data(), 11, 3, w3);
  EXPECT_EQ(w3[0], 0x40000000u);  // low two bits (01) at bits 30-31
  EXPECT_EQ(w3[1], 0x1u);         // high bit at bit 0
}

TEST(QuantizedTensor, SetAndGetCodes) {
  QuantSpec spec;
  spec.bits = 3;
  spec.group_size = 4;
  QuantizedTensor q = QuantizedTensor::Allocate(3, 13, spec);
  for (int64_t r = 0; r < 3; ++r)
    for (int64_t c = 0; c < 13; ++c) q.set_code(r, c, uint32_t((r * 13 + c) % 8));
  for (int64_t r = 0; r < 3; ++r)
    for (int64_t c = 0; c < 13; ++c) ASSERT_EQ(q.code(r, c), uint32_t((r * 13 + c) % 8));
  EXPECT_TRUE(q.Validate().ok());
}

TEST(Rtn, RoundHalfEven) {
  EXPECT_EQ(round_half_even(0.5f), 0.0f);
  EXPECT_EQ(round_half_even(1.5f), 2.0f);
  EXPECT_EQ(round_half_even(2.5f), 2.0f);
  EXPECT_EQ(round_half_even(-0.5f), -0.0f);
  EXPECT_EQ(round_half_even(-1.5f), -2.0f);
}

TEST(Rtn, Symmetric4BitHandComputed) {
  // absmax 7.5 -> scale = 2*7.5/15 = 1 exactly, zero 8, grid -8..7.
  QuantSpec s;
  s.bits = 4;
  s.group_size = 0;
  s.scale_dtype = ScaleDType::kF32;
  const float w[6] = {7.5f, -7.5f, 0.5f, 1.5f, -0.4f, 3.6f};
  auto q = quantize_rtn(w, 1, 6, s);
  ASSERT_TRUE(q.ok()) << q.status().ToString();
  EXPECT_EQ(q->scales[0], 1.0f);
  // round-half-even(w) + 8 clamped to [0, 15]: 8+8=16 -> 15, -8+8 = 0, 0+8, 2+8, 0+8, 4+8.
  const uint32_t expect[6] = {15, 0, 8, 10, 8, 12};
  for (int c = 0; c < 6; ++c) EXPECT_EQ(q->code(0, c), expect[c]) << "column " << c;
  EXPECT_EQ(dequantize(*q), (std::vector<float>{7, -8, 0, 2, 0, 4}));
}

TEST(Rtn, Symmetric8BitIsAbsmaxOver127) {
  QuantSpec s;
  s.bits = 8;
  s.group_size = 0;
  s.scale_dtype = ScaleDType::kF32;
  const float w[4] = {-2.54f, 1.0f, 2.54f, 0.004f};
  auto q = quantize_rtn(w, 1, 4, s);
  ASSERT_TRUE(q.ok());
  EXPECT_FLOAT_EQ(q->scales[0], 2.54f / 127.0f);
  EXPECT_EQ(int(q->code(0, 0)) - 128, -127);
  EXPECT_EQ(int(q->code(0, 2)) - 128, 127);
  EXPECT_EQ(int(q->code(0, 1)) - 128, 50);  // 1.0 / 0.02 = 50
  EXPECT_EQ(int(q->code(0, 3)) - 128, 0);   // 0.2 rounds to 0
}

TEST(Rtn, AsymmetricHandComputed) {
  // min 0.5, max 2.0, 2 bits: scale = 1.5/3 = 0.5, zero = clamp(round(-1), 0, 3) = 0.
  QuantSpec s;
  s.bits = 2;
  s.group_size = 0;
  s.symmetric = false;
  s.scale_dtype = ScaleDType::kF32;
  const float w[4] = {0.5f, 1.0f, 1.25f, 2.0f};
  auto q = quantize_rtn(w, 1, 4, s);
  ASSERT_TRUE(q.ok());
  EXPECT_FLOAT_EQ(q->scales[0], 0.5f);
  EXPECT_EQ(q->zeros[0], 0);
  // round(w/0.5) = 1, 2, 2 (2.5 ties to even), 4 -> clamp 3
  EXPECT_EQ(q->code(0, 0), 1u);
  EXPECT_EQ(q->code(0, 1), 2u);
  EXPECT_EQ(q->code(0, 2), 2u);
  EXPECT_EQ(q->code(0, 3), 3u);
  // Range containing zero: min -1, max 2, 8 bit: scale 3/255, zero round(255/3) = 85.
  s.bits = 8;
  const float w2[3] = {-1.0f, 0.0f, 2.0f};
  auto q2 = quantize_rtn(w2, 1, 3, s);
  ASSERT_TRUE(q2.ok());
  EXPECT_EQ(q2->zeros[0], 85);
  EXPECT_EQ(q2->code(0, 1), 85u);  // zero is exactly representable
  EXPECT_EQ(dequantize(*q2)[1], 0.0f);
}

TEST(Rtn, GroupsAndPartialLastGroup) {
  // 10 columns, group 4 -> groups [0,4) [4,8) [8,10).
  QuantSpec s;
  s.bits = 4;
  s.group_size = 4;
  s.scale_dtype = ScaleDType::kF32;
  std::vector<float> w = {1, 1, 1, 1, 10, 10, 10, 10, 0.5f, -0.5f};
  auto q = quantize_rtn(w.data(), 1, 10, s);
  ASSERT_TRUE(q.ok());
  ASSERT_EQ(q->num_groups(), 3);
  EXPECT_FLOAT_EQ(q->scales[0], 2.0f / 15.0f);
  EXPECT_FLOAT_EQ(q->scales[1], 20.0f / 15.0f);
  EXPECT_FLOAT_EQ(q->scales[2], 1.0f / 15.0f);
}

TEST(Rtn, ZeroGroupDequantizesToZero) {
  for (bool sym : {true, false}) {
    QuantSpec s;
    s.bits = 3;
    s.group_size = 8;
    s.symmetric = sym;
    std::vector<float> w(16, 0.0f);
    w[9] = 0.25f;
    auto q = quantize_rtn(w.data(), 1, 16, s);
    ASSERT_TRUE(q.ok());
    const auto d = dequantize(*q);
    for (int c = 0; c < 8; ++c) EXPECT_EQ(d[size_t(c)], 0.0f);
  }
}

TEST(Rtn, Fp16ScalesAreRounded) {
  QuantSpec s;
  s.group_size = 0;
  const float w[2] = {0.1f, -0.07f};
  auto q = quantize_rtn(w, 1, 2, s);
  ASSERT_TRUE(q.ok());
  EXPECT_EQ(q->scales[0], round_to_fp16(q->scales[0]));
}

TEST(Rtn, ErrorShrinksWithBits) {
  const auto w = test::random_normal(64 * 256, 3);
  double prev = 1e9;
  for (int bits : {2, 3, 4, 8}) {
    QuantSpec s;
    s.bits = bits;
    s.group_size = 64;
    auto q = quantize_rtn(w.data(), 64, 256, s);
    ASSERT_TRUE(q.ok());
    const double e = relative_error(w.data(), *q);
    EXPECT_LT(e, prev) << bits;
    prev = e;
  }
  // Gaussian weights, 8-bit g64: relative error well below 1%.
  EXPECT_LT(prev, 0.01);
}

TEST(Rtn, MseSearchNeverWorseInItsNorm) {
  const auto w = test::random_normal(16 * 128, 5);
  for (bool sym : {true, false}) {
    QuantSpec a;
    a.bits = 3;
    a.group_size = 32;
    a.symmetric = sym;
    QuantSpec b = a;
    b.mse_search = true;
    auto qa = quantize_rtn(w.data(), 16, 128, a);
    auto qb = quantize_rtn(w.data(), 16, 128, b);
    ASSERT_TRUE(qa.ok() && qb.ok());
    const auto da = dequantize(*qa), db = dequantize(*qb);
    // Per group, the search minimizes sum |e|^2.4 and includes p = 1, so it can only improve.
    for (int64_t g = 0; g < 16 * 4; ++g) {
      double ea = 0, eb = 0;
      for (int64_t k = 0; k < 32; ++k) {
        const size_t i = size_t(g * 32 + k);
        ea += std::pow(std::fabs(da[i] - w[i]), 2.4);
        eb += std::pow(std::fabs(db[i] - w[i]), 2.4);
      }
      ASSERT_LE(eb, ea * (1 + 1e-5)) << "group " << g;
    }
    EXPECT_LT(relative_error(w.data(), *qb), relative_error(w.data(), *qa));
  }
}

TEST(Rtn, RejectsBadSpecAndNonFinite) {
  QuantSpec s;
  s.bits = 5;
  const float w[2] = {1, 2};
  EXPECT_EQ(quantize_rtn(w, 1, 2, s).status().code(), StatusCode::kInvalidArgument);
  s.bits = 4;
  const float bad[4] = {1, 2, NAN, 3};
  auto r = quantize_rtn(bad, 2, 2, s);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("row 1, column 0"), std::string::npos) << r.status().message();
}

TEST(QuantizedTensor, ValidateCatchesInconsistencies) {
  QuantSpec s;
  s.bits = 4;
  s.group_size = 4;
  s.symmetric = false;
  const auto w = test::random_normal(4 * 10, 9);
  auto q = quantize_rtn(w.data(), 4, 10, s);
  ASSERT_TRUE(q.ok());
  ASSERT_TRUE(q->Validate().ok());
  {
    auto b = *q;
    b.scales.pop_back();
    EXPECT_EQ(b.Validate().code(), StatusCode::kCorruption);
  }
  {
    auto b = *q;
    b.zeros[0] = 16;
    EXPECT_EQ(b.Validate().code(), StatusCode::kCorruption);
  }
  {
    auto b = *q;
    b.g_idx.assign(10, 0);
    b.g_idx[3] = 3;  // only 3 groups
    EXPECT_EQ(b.Validate().code(), StatusCode::kCorruption);
  }
  {
    auto b = *q;
    b.codes[1] |= 0x80000000u;  // padding bits of row 0 (10*4 = 40 bits, 2 words)
    EXPECT_EQ(b.Validate().code(), StatusCode::kCorruption);
  }
  {
    auto b = *q;
    b.outliers.row_ptr = {0, 1, 1, 1, 2};
    b.outliers.col_idx = {3, 10};  // 10 is out of range
    b.outliers.values = {float_to_fp16(1.0f), float_to_fp16(2.0f)};
    EXPECT_EQ(b.Validate().code(), StatusCode::kCorruption);
    b.outliers.col_idx[1] = 9;
    EXPECT_TRUE(b.Validate().ok());
  }
}

TEST(QuantizedTensor, DequantizeWithGroupIndexAndOutliers) {
  QuantSpec s;
  s.bits = 4;
  s.group_size = 2;
  s.scale_dtype = ScaleDType::kF32;
  QuantizedTensor q = QuantizedTensor::Allocate(1, 4, s);
  q.scales = {1.0f, 10.0f};
  q.g_idx = {1, 0, 0, 1};  // act-order style membership
  for (int c = 0; c < 4; ++c) q.set_code(0, c, 9);  // 9 - 8 = 1
  q.outliers.row_ptr = {0, 1};
  q.outliers.col_idx = {2};
  q.outliers.values = {float_to_fp16(0.5f)};
  ASSERT_TRUE(q.Validate().ok());
  const auto d = dequantize(q);
  EXPECT_EQ(d, (std::vector<float>{10.0f, 1.0f, 1.5f, 10.0f}));
  // 4 codes in one word, 2 fp32 scales, 4 g_idx, outliers: a U8 count per row + 1 U8 col + 1 fp16 value.
  EXPECT_EQ(q.storage_bytes(), size_t(4 + 8 + 16 + 1 + 1 + 2));
}

}  // namespace
}  // namespace llmq
