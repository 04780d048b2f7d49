// fp16 / bf16 conversions against known bit patterns.
#include <gtest/gtest.h>
#include <llmq/float16.h>

#include <cmath>
#include <limits>

namespace llmq {
namespace {

TEST(Fp16, KnownValues) {
  EXPECT_EQ(float_to_fp16(0.0f), 0x0000);
  EXPECT_EQ(float_to_fp16(-0.0f), 0x8000);
  EXPECT_EQ(float_to_fp16(1.0f), 0x3C00);
  EXPECT_EQ(float_to_fp16(-2.0f), 0xC000);
  EXPECT_EQ(float_to_fp16(65504.0f), 0x7BFF);           // largest finite
  EXPECT_EQ(float_to_fp16(0.333333343f), 0x3555);
  EXPECT_EQ(float_to_fp16(6.103515625e-05f), 0x0400);   // smallest normal 2^-14
  EXPECT_EQ(float_to_fp16(5.9604645e-08f), 0x0001);     // smallest subnormal 2^-24
  EXPECT_EQ(float_to_fp16(6.097555160522461e-05f), 0x03FF);  // largest subnormal
}

TEST(Fp16, RoundToNearestEven) {
  // 1 + 2^-11 is exactly half-way between 1 and 1 + 2^-10: ties to even (1.0).
  EXPECT_EQ(float_to_fp16(1.0f + std::ldexp(1.0f, -11)), 0x3C00);
  // 1 + 3*2^-11 is half-way between 1+2^-10 (odd) and 1+2^-9 (even): rounds up.
  EXPECT_EQ(float_to_fp16(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3C02);
  // Just above half-way rounds up.
  EXPECT_EQ(float_to_fp16(std::nextafter(1.0f + std::ldexp(1.0f, -11), 2.0f)), 0x3C01);
  // Subnormal ties: 2^-25 ties to 0, 3*2^-25 ties to 2*2^-24 (even).
  EXPECT_EQ(float_to_fp16(std::ldexp(1.0f, -25)), 0x0000);
  EXPECT_EQ(float_to_fp16(3 * std::ldexp(1.0f, -25)), 0x0002);
  EXPECT_EQ(float_to_fp16(std::nextafter(std::ldexp(1.0f, -25), 1.0f)), 0x0001);
}

TEST(Fp16, OverflowInfNaN) {
  EXPECT_EQ(float_to_fp16(65519.0f), 0x7BFF);  // below the rounding boundary
  EXPECT_EQ(float_to_fp16(65520.0f), 0x7C00);  // ties to even -> Inf
  EXPECT_EQ(float_to_fp16(1e10f), 0x7C00);
  EXPECT_EQ(float_to_fp16(-1e10f), 0xFC00);
  EXPECT_EQ(float_to_fp16(std::numeric_limits<float>::infinity()), 0x7C00);
  const uint16_t nan = float_to_fp16(std::numeric_limits<float>::quiet_NaN());
  EXPECT_EQ(nan & 0x7C00, 0x7C00);
  EXPECT_NE(nan & 0x03FF, 0);
  EXPECT_TRUE(std::isnan(fp16_to_float(0x7E00)));
  EXPECT_TRUE(std::isinf(fp16_to_float(0xFC00)));
}

TEST(Fp16, AllHalfValuesRoundTrip) {
  for (uint32_t h = 0; h < 0x10000; ++h) {
    const float f = fp16_to_float(uint16_t(h));
    if (std::isnan(f)) continue;
    ASSERT_EQ(float_to_fp16(f), h) << "half bits " << h;
  }
}

TEST(Fp16, MatchesNearestRepresentable) {
  // For random floats in range, the result is the nearest half (checked against neighbours).
  uint32_t s = 12345;
  for (int i = 0; i < 200000; ++i) {
    s = s * 1664525u + 1013904223u;
    const float f = std::ldexp(float(s >> 8) / float(1 << 24) * 2 - 1, int(s % 40) - 24);
    const uint16_t h = float_to_fp16(f);
    const float r = fp16_to_float(h);
    const float up = fp16_to_float(uint16_t(h + 1)), dn = fp16_to_float(uint16_t(h - 1));
    if ((h & 0x7FFF) != 0 && (h & 0x7FFF) != 0x7BFF && (h & 0x7FFF) != 0x7C00) {
      ASSERT_LE(std::fabs(r - f), std::fabs(up - f)) << f;
      ASSERT_LE(std::fabs(r - f), std::fabs(dn - f)) << f;
    }
  }
}

TEST(Bf16, KnownValuesAndRounding) {
  EXPECT_EQ(float_to_bf16(1.0f), 0x3F80);
  EXPECT_EQ(float_to_bf16(-2.5f), 0xC020);
  EXPECT_EQ(float_to_bf16(bits_float(0x3F808000u)), 0x3F80);  // tie -> even (down)
  EXPECT_EQ(float_to_bf16(bits_float(0x3F818000u)), 0x3F82);  // tie -> even (up)
  EXPECT_EQ(float_to_bf16(bits_float(0x3F808001u)), 0x3F81);
  EXPECT_EQ(float_to_bf16(bits_float(0x7F7FFFFFu)), 0x7F80);  // FLT_MAX rounds to Inf
  EXPECT_TRUE(std::isnan(bf16_to_float(float_to_bf16(std::numeric_limits<float>::quiet_NaN()))));
  EXPECT_TRUE(std::isnan(bf16_to_float(float_to_bf16(bits_float(0x7F800001u)))));  // sNaN stays NaN
  EXPECT_EQ(bf16_to_float(0x3F80), 1.0f);
  EXPECT_EQ(round_to_bf16(bits_float(0x3F818000u)), bf16_to_float(0x3F82));
  EXPECT_EQ(float_to_bf16(bits_float(0x00010000u)), 0x0001);  // subnormal kept
}

}  // namespace
}  // namespace llmq
