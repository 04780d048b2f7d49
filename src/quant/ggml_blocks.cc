// ggml block formats <-> QuantizedTensor. Field orders and bit positions follow ggml-common.h and
// the dequantize_row_* functions of ggml-quants.c (../shared/docs/export-formats.md §2); every
// multi-byte field is little-endian, d/dmin/m are fp16.
#include "quant/ggml_blocks.h"

#include <cctype>
#include <cmath>
#include <cstring>
#include <string>

#include "llmq/float16.h"

namespace llmq {

namespace {
using internal::ggml_info;
}

const char* ggml_type_name(GgmlType t) {
  if (t == GgmlType::kNone) return "none";
  return ggml_info(t).name;
}

Result<GgmlType> parse_ggml_type(const std::string& name) {
  std::string lower;
  for (char c : name) lower += char(std::tolower(static_cast<unsigned char>(c)));
  std::string valid;
  for (const auto& i : internal::ggml_types()) {
    if (lower == i.name) return i.type;
    valid += (valid.empty() ? "" : ", ") + std::string(i.name);
  }
  return Status::InvalidArgument("unknown ggml type '" + name + "' (expected one of " + valid + ")");
}

QuantSpec QuantSpec::ForGgml(GgmlType t) {
  QuantSpec s;
  s.ggml_type = t;
  if (t == GgmlType::kNone) return s;
  const auto& i = ggml_info(t);
  s.bits = i.bits;
  s.group_size = i.group;
  s.symmetric = !i.has_mins;
  s.scale_dtype = ScaleDType::kF16;
  return s;
}

bool QuantSpec::has_mins() const { return is_ggml() && ggml_info(ggml_type).has_mins; }

void QuantizedTensor::ggml_k_scales(int64_t r) {
  const auto& info = ggml_info(spec.ggml_type);
  const int64_t ng = num_groups(), per_super = 256 / info.group;
  for (int64_t g = 0; g < ng; ++g) {
    const size_t i = size_t(r * ng + g), sb = size_t((r * (cols / 256) + g / per_super) * 2);
    const float d = fp16_to_float(super_scales[sb]), dmin = fp16_to_float(super_scales[sb + 1]);
    const uint8_t sc = scale_codes[i];
    switch (spec.ggml_type) {
      case GgmlType::kQ3_K: scales[i] = d * float(int(sc) - 32); break;
      case GgmlType::kQ6_K: scales[i] = d * float(int8_t(sc)); break;
      default: scales[i] = d * float(sc); break;
    }
    if (info.has_mins) mins[i] = dmin * float(min_codes[i]);
  }
}

namespace internal {
namespace {

void put16(uint8_t* p, uint16_t v) {
  p[0] = uint8_t(v);
  p[1] = uint8_t(v >> 8);
}
uint16_t get16(const uint8_t* p) { return uint16_t(p[0] | (p[1] << 8)); }

// Q4_K / Q5_K: 8 six-bit scales and 8 six-bit mins in 12 bytes (get_scale_min_k4).
void pack_k4_scales(const uint8_t* sc, const uint8_t* m, uint8_t* s) {
  for (int j = 0; j < 4; ++j) {
    s[j] = uint8_t((sc[j] & 63) | ((sc[j + 4] >> 4) << 6));
    s[j + 4] = uint8_t((m[j] & 63) | ((m[j + 4] >> 4) << 6));
    s[j + 8] = uint8_t((sc[j + 4] & 15) | ((m[j + 4] & 15) << 4));
  }
}
void unpack_k4_scales(const uint8_t* s, uint8_t* sc, uint8_t* m) {
  for (int j = 0; j < 8; ++j) {
    if (j < 4) {
      sc[j] = s[j] & 63;
      m[j] = s[j + 4] & 63;
    } else {
      sc[j] = uint8_t((s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4));
      m[j] = uint8_t((s[j + 4] >> 4) | ((s[j] >> 6) << 4));
    }
  }
}
// Q3_K: 16 six-bit scales in 12 bytes: low nibbles in bytes 0..7, high 2 bits in bytes 8..11.
void pack_q3k_scales(const uint8_t* sc, uint8_t* s) {
  std::memset(s, 0, 12);
  for (int j = 0; j < 16; ++j) {
    s[j % 8] |= uint8_t((sc[j] & 15) << (j < 8 ? 0 : 4));
    s[8 + j % 4] |= uint8_t(((sc[j] >> 4) & 3) << (2 * (j / 4)));
  }
}
void unpack_q3k_scales(const uint8_t* s, uint8_t* sc) {
  for (int j = 0; j < 16; ++j)
    sc[j] = uint8_t(((s[j % 8] >> (j < 8 ? 0 : 4)) & 15) | (((s[8 + j % 4] >> (2 * (j / 4))) & 3) << 4));
}

// 2-bit fields of Q2_K / Q3_K: element e of a 256 block sits in qs[32*(e/128) + e%32] at bit 2*((e%128)/32).
int q2_index(int e) { return 32 * (e / 128) + e % 32; }
int q2_shift(int e) { return 2 * ((e % 128) / 32); }
// 4-bit fields of Q4_K / Q5_K: qs[32*(e/64) + e%32], low nibble for e%64 < 32.
int q4k_index(int e) { return 32 * (e / 64) + e % 32; }
int q4k_shift(int e) { return (e % 64) < 32 ? 0 : 4; }

}  // namespace

const std::vector<GgmlTypeInfo>& ggml_types() {
  static const std::vector<GgmlTypeInfo> types = {
      {GgmlType::kQ4_0, "q4_0", 32, 18, 4, 32, false, false, 0, 0},
      {GgmlType::kQ4_1, "q4_1", 32, 20, 4, 32, true, false, 0, 0},
      {GgmlType::kQ5_0, "q5_0", 32, 22, 5, 32, false, false, 0, 0},
      {GgmlType::kQ5_1, "q5_1", 32, 24, 5, 32, true, false, 0, 0},
      {GgmlType::kQ8_0, "q8_0", 32, 34, 8, 32, false, false, 0, 0},
      {GgmlType::kQ2_K, "q2_k", 256, 84, 2, 16, true, true, 4, 4},
      {GgmlType::kQ3_K, "q3_k", 256, 110, 3, 16, false, true, 6, 0},
      {GgmlType::kQ4_K, "q4_k", 256, 144, 4, 32, true, true, 6, 6},
      {GgmlType::kQ5_K, "q5_k", 256, 176, 5, 32, true, true, 6, 6},
      {GgmlType::kQ6_K, "q6_k", 256, 210, 6, 16, false, true, 8, 0},
  };
  return types;
}

const GgmlTypeInfo& ggml_info(GgmlType t) {
  for (const auto& i : ggml_types())
    if (i.type == t) return i;
  return ggml_types()[0];  // unreachable for valid types; kNone never reaches here (QuantSpec::Validate)
}

int64_t ggml_row_bytes(GgmlType t, int64_t cols) {
  const auto& i = ggml_info(t);
  return cols / i.block_elems * i.block_bytes;
}

void encode_ggml_row(const QuantizedTensor& q, int64_t r, uint8_t* out) {
  const GgmlType t = q.spec.ggml_type;
  const auto& info = ggml_info(t);
  const int64_t ng = q.num_groups(), nb = q.cols / info.block_elems;
  std::vector<uint8_t> codes(size_t(q.cols));
  unpack_bits(q.codes.data() + r * q.words_per_row(), q.cols, q.spec.bits, codes.data());
  for (int64_t b = 0; b < nb; ++b) {
    uint8_t* o = out + b * info.block_bytes;
    std::memset(o, 0, size_t(info.block_bytes));
    const uint8_t* c = codes.data() + b * info.block_elems;
    if (!info.k_quant) {
      const size_t gi = size_t(r * ng + b);
      put16(o, float_to_fp16(q.scales[gi]));
      uint8_t* p = o + 2;
      if (info.has_mins) {
        put16(p, float_to_fp16(-q.mins[gi]));
        p += 2;
      }
      if (t == GgmlType::kQ8_0) {
        for (int j = 0; j < 32; ++j) p[j] = uint8_t(int8_t(int(c[j]) - 128));
        continue;
      }
      if (info.bits == 5) {
        uint32_t qh = 0;
        for (int j = 0; j < 32; ++j) qh |= uint32_t((c[j] >> 4) & 1) << j;
        for (int k = 0; k < 4; ++k) p[k] = uint8_t(qh >> (8 * k));
        p += 4;
      }
      for (int j = 0; j < 16; ++j) p[j] = uint8_t((c[j] & 15) | ((c[j + 16] & 15) << 4));
      continue;
    }
    const int per_super = 256 / info.group;
    const size_t g0 = size_t(r * ng + b * per_super);
    const uint8_t* sc = q.scale_codes.data() + g0;
    const uint8_t* mc = info.has_mins ? q.min_codes.data() + g0 : nullptr;
    const size_t sb = size_t((r * nb + b) * 2);
    const uint16_t d = q.super_scales[sb], dmin = q.super_scales[sb + 1];
    switch (t) {
      case GgmlType::kQ2_K: {  // scales[16] qs[64] d dmin
        for (int j = 0; j < 16; ++j) o[j] = uint8_t((sc[j] & 15) | ((mc[j] & 15) << 4));
        for (int e = 0; e < 256; ++e) o[16 + q2_index(e)] |= uint8_t((c[e] & 3) << q2_shift(e));
        put16(o + 80, d);
        put16(o + 82, dmin);
        break;
      }
      case GgmlType::kQ3_K: {  // hmask[32] qs[64] scales[12] d
        for (int e = 0; e < 256; ++e) {
          o[e % 32] |= uint8_t(((c[e] >> 2) & 1) << (e / 32));
          o[32 + q2_index(e)] |= uint8_t((c[e] & 3) << q2_shift(e));
        }
        pack_q3k_scales(sc, o + 96);
        put16(o + 108, d);
        break;
      }
      case GgmlType::kQ4_K:
      case GgmlType::kQ5_K: {  // d dmin scales[12] [qh[32]] qs[128]
        put16(o, d);
        put16(o + 2, dmin);
        pack_k4_scales(sc, mc, o + 4);
        uint8_t* qs = o + 16;
        if (t == GgmlType::kQ5_K) {
          for (int e = 0; e < 256; ++e) o[16 + e % 32] |= uint8_t(((c[e] >> 4) & 1) << (e / 32));
          qs = o + 48;
        }
        for (int e = 0; e < 256; ++e) qs[q4k_index(e)] |= uint8_t((c[e] & 15) << q4k_shift(e));
        break;
      }
      case GgmlType::kQ6_K: {  // ql[128] qh[64] scales[16] d
        for (int e = 0; e < 256; ++e) {
          const int n = e / 128, rr = e % 128, k = rr / 32, l = rr % 32;
          o[64 * n + l + 32 * (k & 1)] |= uint8_t((c[e] & 15) << (k < 2 ? 0 : 4));
          o[128 + 32 * n + l] |= uint8_t(((c[e] >> 4) & 3) << (2 * k));
        }
        for (int j = 0; j < 16; ++j) o[192 + j] = sc[j];
        put16(o + 208, d);
        break;
      }
      default: break;
    }
  }
}

void decode_ggml_row(const uint8_t* in, int64_t r, QuantizedTensor* q) {
  const GgmlType t = q->spec.ggml_type;
  const auto& info = ggml_info(t);
  const int64_t ng = q->num_groups(), nb = q->cols / info.block_elems;
  std::vector<uint8_t> codes(size_t(q->cols));
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* o = in + b * info.block_bytes;
    uint8_t* c = codes.data() + b * info.block_elems;
    if (!info.k_quant) {
      const size_t gi = size_t(r * ng + b);
      q->scales[gi] = fp16_to_float(get16(o));
      const uint8_t* p = o + 2;
      if (info.has_mins) {
        q->mins[gi] = -fp16_to_float(get16(p));
        p += 2;
      }
      if (t == GgmlType::kQ8_0) {
        for (int j = 0; j < 32; ++j) c[j] = uint8_t(int(int8_t(p[j])) + 128);
        continue;
      }
      uint32_t qh = 0;
      if (info.bits == 5) {
        qh = uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24;
        p += 4;
      }
      for (int j = 0; j < 16; ++j) {
        c[j] = uint8_t((p[j] & 15) | (info.bits == 5 ? ((qh >> j) & 1) << 4 : 0));
        c[j + 16] = uint8_t((p[j] >> 4) | (info.bits == 5 ? ((qh >> (j + 16)) & 1) << 4 : 0));
      }
      continue;
    }
    const int per_super = 256 / info.group;
    const size_t g0 = size_t(r * ng + b * per_super);
    uint8_t* sc = q->scale_codes.data() + g0;
    uint8_t* mc = info.has_mins ? q->min_codes.data() + g0 : nullptr;
    uint16_t* sp = q->super_scales.data() + (r * nb + b) * 2;
    switch (t) {
      case GgmlType::kQ2_K:
        for (int j = 0; j < 16; ++j) {
          sc[j] = o[j] & 15;
          mc[j] = o[j] >> 4;
        }
        for (int e = 0; e < 256; ++e) c[e] = (o[16 + q2_index(e)] >> q2_shift(e)) & 3;
        sp[0] = get16(o + 80);
        sp[1] = get16(o + 82);
        break;
      case GgmlType::kQ3_K:
        for (int e = 0; e < 256; ++e)
          c[e] = uint8_t(((o[32 + q2_index(e)] >> q2_shift(e)) & 3) | (((o[e % 32] >> (e / 32)) & 1) << 2));
        unpack_q3k_scales(o + 96, sc);
        sp[0] = get16(o + 108);
        sp[1] = 0;
        break;
      case GgmlType::kQ4_K:
      case GgmlType::kQ5_K: {
        sp[0] = get16(o);
        sp[1] = get16(o + 2);
        unpack_k4_scales(o + 4, sc, mc);
        const uint8_t* qs = t == GgmlType::kQ5_K ? o + 48 : o + 16;
        for (int e = 0; e < 256; ++e) {
          c[e] = (qs[q4k_index(e)] >> q4k_shift(e)) & 15;
          if (t == GgmlType::kQ5_K) c[e] = uint8_t(c[e] | (((o[16 + e % 32] >> (e / 32)) & 1) << 4));
        }
        break;
      }
      case GgmlType::kQ6_K:
        for (int e = 0; e < 256; ++e) {
          const int n = e / 128, rr = e % 128, k = rr / 32, l = rr % 32;
          const int lo = (o[64 * n + l + 32 * (k & 1)] >> (k < 2 ? 0 : 4)) & 15;
          const int hi = (o[128 + 32 * n + l] >> (2 * k)) & 3;
          c[e] = uint8_t(lo | (hi << 4));
        }
        for (int j = 0; j < 16; ++j) sc[j] = o[192 + j];
        sp[0] = get16(o + 208);
        sp[1] = 0;
        break;
      default: break;
    }
  }
  pack_bits(codes.data(), q->cols, q->spec.bits, q->codes.data() + r * q->words_per_row());
  if (info.k_quant) q->ggml_k_scales(r);
}

std::vector<uint8_t> encode_ggml(const QuantizedTensor& q) {
  const int64_t rb = ggml_row_bytes(q.spec.ggml_type, q.cols);
  std::vector<uint8_t> out(size_t(q.rows * rb));
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < q.rows; ++r) encode_ggml_row(q, r, out.data() + r * rb);
  return out;
}

Result<QuantizedTensor> decode_ggml(GgmlType t, int64_t rows, int64_t cols, const uint8_t* data, size_t bytes) {
  const auto& info = ggml_info(t);
  if (rows <= 0 || cols <= 0 || cols % info.block_elems != 0)
    return Status::InvalidArgument(std::string(info.name) + " needs rows > 0 and a column count that is a multiple of " +
                                   std::to_string(info.block_elems) + " (got [" + std::to_string(rows) + ", " +
                                   std::to_string(cols) + "])");
  const int64_t rb = ggml_row_bytes(t, cols);
  if (int64_t(bytes) != rows * rb)
    return Status::InvalidArgument(std::string(info.name) + " [" + std::to_string(rows) + ", " + std::to_string(cols) +
                                   "] needs " + std::to_string(rows * rb) + " bytes, got " + std::to_string(bytes));
  QuantizedTensor q = QuantizedTensor::Allocate(rows, cols, QuantSpec::ForGgml(t));
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r) decode_ggml_row(data + r * rb, r, &q);
  for (size_t i = 0; i < q.scales.size(); ++i)
    if (!std::isfinite(q.scales[i]) || (!q.mins.empty() && !std::isfinite(q.mins[i])))
      return Status::Corruption(std::string(info.name) + " block scale or min in row " +
                                std::to_string(int64_t(i) / q.num_groups()) + " is not finite");
  return q;
}

void dequantize_ggml_row(GgmlType t, const uint8_t* in, int64_t cols, float* out) {
  const auto& info = ggml_info(t);
  for (int64_t b = 0; b < cols / info.block_elems; ++b) {
    const uint8_t* x = in + b * info.block_bytes;
    float* y = out + b * info.block_elems;
    switch (t) {
      case GgmlType::kQ4_0: {
        const float d = fp16_to_float(get16(x));
        for (int j = 0; j < 16; ++j) {
          y[j] = float((x[2 + j] & 0xF) - 8) * d;
          y[j + 16] = float((x[2 + j] >> 4) - 8) * d;
        }
        break;
      }
      case GgmlType::kQ4_1: {
        const float d = fp16_to_float(get16(x)), m = fp16_to_float(get16(x + 2));
        for (int j = 0; j < 16; ++j) {
          y[j] = float(x[4 + j] & 0xF) * d + m;
          y[j + 16] = float(x[4 + j] >> 4) * d + m;
        }
        break;
      }
      case GgmlType::kQ5_0:
      case GgmlType::kQ5_1: {
        const bool one = t == GgmlType::kQ5_1;
        const float d = fp16_to_float(get16(x)), m = one ? fp16_to_float(get16(x + 2)) : 0.0f;
        const uint8_t* p = x + (one ? 4 : 2);
        uint32_t qh;
        std::memcpy(&qh, p, 4);  // little-endian host (x86-64)
        for (int j = 0; j < 16; ++j) {
          const int x0 = (p[4 + j] & 0xF) | int(((qh >> j) << 4) & 0x10);
          const int x1 = (p[4 + j] >> 4) | int((qh >> (j + 12)) & 0x10);
          if (one) {
            y[j] = float(x0) * d + m;
            y[j + 16] = float(x1) * d + m;
          } else {
            y[j] = float(x0 - 16) * d;
            y[j + 16] = float(x1 - 16) * d;
          }
        }
        break;
      }
      case GgmlType::kQ8_0: {
        const float d = fp16_to_float(get16(x));
        for (int j = 0; j < 32; ++j) y[j] = float(int8_t(x[2 + j])) * d;
        break;
      }
      case GgmlType::kQ2_K: {
        const float d = fp16_to_float(get16(x + 80)), dmin = fp16_to_float(get16(x + 82));
        for (int e = 0; e < 256; ++e) {
          const uint8_t sc = x[e / 16];
          const float dl = d * float(sc & 0xF), ml = dmin * float(sc >> 4);
          y[e] = dl * float((x[16 + q2_index(e)] >> q2_shift(e)) & 3) - ml;
        }
        break;
      }
      case GgmlType::kQ3_K: {
        const float d = fp16_to_float(get16(x + 108));
        uint8_t sc[16];
        unpack_q3k_scales(x + 96, sc);
        for (int e = 0; e < 256; ++e) {
          const float dl = d * float(int(sc[e / 16]) - 32);
          const int low = (x[32 + q2_index(e)] >> q2_shift(e)) & 3;
          const int h = (x[e % 32] >> (e / 32)) & 1;
          y[e] = dl * float(low - (h ? 0 : 4));
        }
        break;
      }
      case GgmlType::kQ4_K:
      case GgmlType::kQ5_K: {
        const float d = fp16_to_float(get16(x)), dmin = fp16_to_float(get16(x + 2));
        uint8_t sc[8], m[8];
        unpack_k4_scales(x + 4, sc, m);
        const bool five = t == GgmlType::kQ5_K;
        const uint8_t* qs = x + (five ? 48 : 16);
        for (int e = 0; e < 256; ++e) {
          int v = (qs[q4k_index(e)] >> q4k_shift(e)) & 0xF;
          if (five) v += ((x[16 + e % 32] >> (e / 32)) & 1) * 16;
          y[e] = d * float(sc[e / 32]) * float(v) - dmin * float(m[e / 32]);
        }
        break;
      }
      case GgmlType::kQ6_K: {
        const float d = fp16_to_float(get16(x + 208));
        for (int e = 0; e < 256; ++e) {
          const int n = e / 128, rr = e % 128, k = rr / 32, l = rr % 32;
          const int lo = (x[64 * n + l + 32 * (k & 1)] >> (k < 2 ? 0 : 4)) & 0xF;
          const int hi = (x[128 + 32 * n + l] >> (2 * k)) & 3;
          y[e] = d * float(int8_t(x[192 + e / 16])) * float((lo | (hi << 4)) - 32);
        }
        break;
      }
      default: break;
    }
  }
}

GgmlType exact_ggml_type(const QuantSpec& s, int64_t cols) {
  if (s.is_ggml() || s.lookup || !s.symmetric || s.scale_bits > 0 || s.group_cols(cols) != 32 || cols % 32 != 0)
    return GgmlType::kNone;
  return s.bits == 4 ? GgmlType::kQ4_0 : s.bits == 8 ? GgmlType::kQ8_0 : GgmlType::kNone;
}

Result<QuantizedTensor> as_exact_ggml(const QuantizedTensor& q) {
  if (q.spec.is_ggml()) return q;
  const QuantSpec& s = q.spec;
  auto no = [&](const std::string& why) {
    return Status::InvalidArgument("quantized as " + s.ToString() + ", which no GGUF block type holds exactly: " + why +
                                   " (q4_0 and q8_0 hold symmetric 4- and 8-bit codes with an fp16 scale per 32 columns)");
  };
  const GgmlType type = exact_ggml_type(s, q.cols);
  if (type == GgmlType::kNone) return no("zero points, bilevel scales, other bits or groups other than 32 columns");
  if (!q.g_idx.empty()) return no("it has an act-order group index");
  if (!q.outliers.empty()) return no("it has outliers");
  QuantizedTensor g = q;
  g.spec = QuantSpec::ForGgml(type);
  Status st = g.ValidateGgml();  // every scale an fp16 value
  if (!st.ok()) return no(st.message());
  return g;
}

}  // namespace internal
}  // namespace llmq
