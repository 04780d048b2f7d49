// fp16 (IEEE binary16) and bf16 (bfloat16) conversions.
//
// fp32 -> fp16/bf16 rounds to nearest, ties to even (what torch's .half() and
// .bfloat16() do), keeps NaN a NaN (quiet), overflows to +-Inf and produces
// subnormals exactly. Conversions back to fp32 are exact.
#ifndef LLMQ_FLOAT16_H_
#define LLMQ_FLOAT16_H_

#include <cstdint>
#include <cstring>

namespace llmq {

inline uint32_t float_bits(float f) { uint32_t u; std::memcpy(&u, &f, 4); return u; }
inline float bits_float(uint32_t u) { float f; std::memcpy(&f, &u, 4); return f; }

inline float fp16_to_float(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1Fu;
  uint32_t mant = h & 0x3FFu;
  if (exp == 0x1F) return bits_float(sign | 0x7F800000u | (mant << 13));  // Inf / NaN
  if (exp == 0) {
    if (mant == 0) return bits_float(sign);  // +-0
    // Subnormal: value = mant * 2^-24, exact in fp32.
    float v = float(mant) * (1.0f / 16777216.0f);
    return sign ? -v : v;
  }
  return bits_float(sign | ((exp + 112u) << 23) | (mant << 13));
}

inline uint16_t float_to_fp16(float f) {
  const uint32_t x = float_bits(f);
  const uint16_t sign = uint16_t((x >> 16) & 0x8000u);
  const uint32_t ax = x & 0x7FFFFFFFu;
  if (ax >= 0x7F800000u) {  // Inf or NaN
    if (ax == 0x7F800000u) return sign | 0x7C00u;
    return sign | 0x7E00u | uint16_t((ax >> 13) & 0x1FFu);  // quiet NaN, keep payload top bits
  }
  if (ax >= 0x477FF000u) return sign | 0x7C00u;  // rounds to >= 65520 -> Inf
  if (ax < 0x38800000u) {                         // below the smallest normal fp16 (2^-14)
    if (ax < 0x33000000u) return sign;            // < 2^-25: rounds to zero (2^-25 itself ties to 0)
    // Subnormal: shift the full 24-bit significand so that the unit is 2^-24.
    const uint32_t e = ax >> 23;
    const uint32_t m = (ax & 0x7FFFFFu) | 0x800000u;
    const uint32_t shift = 126u - e;  // 14..24 for e in [102, 112]
    uint32_t q = m >> shift;
    const uint32_t rem = m & ((1u << shift) - 1u);
    const uint32_t half = 1u << (shift - 1u);
    if (rem > half || (rem == half && (q & 1u))) ++q;
    return sign | uint16_t(q);
  }
  // Normal: rebias exponent (127 -> 15) and round the 13 dropped bits to nearest even.
  uint32_t r = ax - 0x38000000u;  // exponent rebias
  const uint32_t lsb = (r >> 13) & 1u;
  r += 0xFFFu + lsb;
  return sign | uint16_t(r >> 13);
}

inline float bf16_to_float(uint16_t b) { return bits_float(uint32_t(b) << 16); }

inline uint16_t float_to_bf16(float f) {
  const uint32_t x = float_bits(f);
  if ((x & 0x7FFFFFFFu) > 0x7F800000u) return uint16_t((x >> 16) | 0x0040u);  // quiet NaN
  const uint32_t lsb = (x >> 16) & 1u;
  return uint16_t((x + 0x7FFFu + lsb) >> 16);
}

// Round-trips through the format: the value an fp32 number has once stored as fp16 / bf16.
inline float round_to_fp16(float f) { return fp16_to_float(float_to_fp16(f)); }
inline float round_to_bf16(float f) { return bf16_to_float(float_to_bf16(f)); }

}  // namespace llmq

#endif  // LLMQ_FLOAT16_H_
