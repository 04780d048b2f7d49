// GGUF export (issue 18): ggml block layouts byte by byte, the GGUF container, llama.cpp's
// per-tensor type rules, the lossless repack, and a real llama.cpp (tests/llamacpp) as the judge:
// its dequantization of every block type, its quantizer's type choices and its perplexity.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "io/gguf.h"
#include "llmq/hf_export.h"
#include "quant/ggml_blocks.h"
#include "quant/ggml_grid.h"
#include "quant/ggml_plan.h"
#include "test_util.h"

namespace llmq {
namespace {

namespace fs = std::filesystem;
using internal::ggml_info;
using internal::ggml_types;

uint16_t h(float v) { return float_to_fp16(v); }
uint16_t get16(const uint8_t* p) { return uint16_t(p[0] | (p[1] << 8)); }

// A one-row tensor of `type` with the given codes and per-group parameters set through the same
// fields a method fills.
QuantizedTensor one_row(GgmlType type, int64_t cols, const std::vector<uint8_t>& codes) {
  QuantizedTensor q = QuantizedTensor::Allocate(1, cols, QuantSpec::ForGgml(type));
  pack_bits(codes.data(), cols, q.spec.bits, q.codes.data());
  return q;
}

TEST(GgmlBlocks, Q4_0ByteLayout) {
  std::vector<uint8_t> c(32);
  for (int j = 0; j < 32; ++j) c[size_t(j)] = uint8_t(j % 16);
  QuantizedTensor q = one_row(GgmlType::kQ4_0, 32, c);
  q.scales[0] = 0.5f;
  const std::vector<uint8_t> b = internal::encode_ggml(q);
  ASSERT_EQ(b.size(), 18u);
  EXPECT_EQ(get16(b.data()), 0x3800);  // fp16 0.5
  for (int j = 0; j < 16; ++j) EXPECT_EQ(b[size_t(2 + j)], uint8_t(j | (j << 4))) << j;  // element j low, j+16 high
  float y[32];
  internal::dequantize_ggml_row(GgmlType::kQ4_0, b.data(), 32, y);
  for (int j = 0; j < 32; ++j) EXPECT_EQ(y[j], float((j % 16) - 8) * 0.5f);
}

TEST(GgmlBlocks, Q5AndQ8ByteLayout) {
  std::vector<uint8_t> c(32);
  for (int j = 0; j < 32; ++j) c[size_t(j)] = uint8_t(j);
  QuantizedTensor q = one_row(GgmlType::kQ5_1, 32, c);
  q.scales[0] = 0.25f;
  q.mins[0] = 1.0f;  // w = 0.25 q - 1: ggml stores m = -1
  std::vector<uint8_t> b = internal::encode_ggml(q);
  ASSERT_EQ(b.size(), 24u);
  EXPECT_EQ(get16(b.data()), h(0.25f));
  EXPECT_EQ(get16(b.data() + 2), h(-1.0f));
  uint32_t qh;
  std::memcpy(&qh, b.data() + 4, 4);
  EXPECT_EQ(qh, 0xFFFF0000u);  // the 5th bit of elements 16..31
  for (int j = 0; j < 16; ++j) EXPECT_EQ(b[size_t(8 + j)], uint8_t(j | (j << 4)));
  float y[32];
  internal::dequantize_ggml_row(GgmlType::kQ5_1, b.data(), 32, y);
  for (int j = 0; j < 32; ++j) EXPECT_EQ(y[j], float(j) * 0.25f - 1.0f);

  for (int j = 0; j < 32; ++j) c[size_t(j)] = uint8_t(j * 8);  // int8 -128, -120, ..., 120
  QuantizedTensor q8 = one_row(GgmlType::kQ8_0, 32, c);
  q8.scales[0] = 2.0f;
  b = internal::encode_ggml(q8);
  ASSERT_EQ(b.size(), 34u);
  for (int j = 0; j < 32; ++j) EXPECT_EQ(int8_t(b[size_t(2 + j)]), j * 8 - 128);
}

TEST(GgmlBlocks, KQuantScalePacking) {
  // Q4_K: scales/mins with their top bits set land in bytes 0..11 as get_scale_min_k4 reads them.
  const uint8_t sc[8] = {1, 2, 3, 4, 40, 50, 60, 63}, mn[8] = {5, 6, 7, 8, 33, 44, 55, 62};
  QuantizedTensor q = one_row(GgmlType::kQ4_K, 256, std::vector<uint8_t>(256, 3));
  for (int g = 0; g < 8; ++g) {
    q.scale_codes[size_t(g)] = sc[g];
    q.min_codes[size_t(g)] = mn[g];
  }
  q.super_scales = {h(0.125f), h(0.0625f)};
  q.ggml_k_scales(0);
  const std::vector<uint8_t> b = internal::encode_ggml(q);
  ASSERT_EQ(b.size(), 144u);
  EXPECT_EQ(get16(b.data()), h(0.125f));
  EXPECT_EQ(get16(b.data() + 2), h(0.0625f));
  const uint8_t* s = b.data() + 4;
  for (int j = 0; j < 4; ++j) {
    EXPECT_EQ(s[j], uint8_t((sc[j] & 63) | ((sc[j + 4] >> 4) << 6)));
    EXPECT_EQ(s[j + 4], uint8_t((mn[j] & 63) | ((mn[j + 4] >> 4) << 6)));
    EXPECT_EQ(s[j + 8], uint8_t((sc[j + 4] & 15) | ((mn[j + 4] & 15) << 4)));
  }
  for (int i = 0; i < 128; ++i) EXPECT_EQ(b[size_t(16 + i)], 0x33);
  float y[256];
  internal::dequantize_ggml_row(GgmlType::kQ4_K, b.data(), 256, y);
  for (int e = 0; e < 256; ++e) EXPECT_EQ(y[e], 0.125f * float(sc[e / 32]) * 3.0f - 0.0625f * float(mn[e / 32])) << e;

  // Q3_K: 16 six-bit scales biased by 32; low nibbles in bytes 0..7, top 2 bits in bytes 8..11.
  QuantizedTensor q3 = one_row(GgmlType::kQ3_K, 256, std::vector<uint8_t>(256, 5));  // value 5 - 4 = 1
  for (int j = 0; j < 16; ++j) q3.scale_codes[size_t(j)] = uint8_t(j * 4 + 2);
  q3.super_scales = {h(1.0f), 0};
  q3.ggml_k_scales(0);
  const std::vector<uint8_t> b3 = internal::encode_ggml(q3);
  ASSERT_EQ(b3.size(), 110u);
  for (int i = 0; i < 32; ++i) EXPECT_EQ(b3[size_t(i)], 0xFF) << "hmask: every element has its high bit";
  for (int i = 0; i < 64; ++i) EXPECT_EQ(b3[size_t(32 + i)], 0x55) << "low 2 bits = 1 everywhere";
  for (int j = 0; j < 16; ++j) {
    const int v = j * 4 + 2;
    EXPECT_EQ((b3[size_t(96 + j % 8)] >> (j < 8 ? 0 : 4)) & 15, v & 15);
    EXPECT_EQ((b3[size_t(104 + j % 4)] >> (2 * (j / 4))) & 3, v >> 4);
  }
  EXPECT_EQ(get16(b3.data() + 108), h(1.0f));
}

TEST(GgmlBlocks, Q2KAndQ6KByteLayout) {
  std::vector<uint8_t> c(256);
  for (int e = 0; e < 256; ++e) c[size_t(e)] = uint8_t(e % 4);
  QuantizedTensor q = one_row(GgmlType::kQ2_K, 256, c);
  for (int j = 0; j < 16; ++j) {
    q.scale_codes[size_t(j)] = uint8_t(j);
    q.min_codes[size_t(j)] = uint8_t(15 - j);
  }
  q.super_scales = {h(0.5f), h(0.25f)};
  q.ggml_k_scales(0);
  std::vector<uint8_t> b = internal::encode_ggml(q);
  ASSERT_EQ(b.size(), 84u);
  for (int j = 0; j < 16; ++j) EXPECT_EQ(b[size_t(j)], uint8_t(j | ((15 - j) << 4)));
  for (int i = 0; i < 64; ++i) EXPECT_EQ(b[size_t(16 + i)], uint8_t((i % 32 % 4) * 0x55)) << i;
  EXPECT_EQ(get16(b.data() + 80), h(0.5f));
  EXPECT_EQ(get16(b.data() + 82), h(0.25f));

  for (int e = 0; e < 256; ++e) c[size_t(e)] = uint8_t(e % 64);
  QuantizedTensor q6 = one_row(GgmlType::kQ6_K, 256, c);
  for (int j = 0; j < 16; ++j) q6.scale_codes[size_t(j)] = uint8_t(int8_t(j - 8));
  q6.super_scales = {h(0.5f), 0};
  q6.ggml_k_scales(0);
  b = internal::encode_ggml(q6);
  ASSERT_EQ(b.size(), 210u);
  for (int j = 0; j < 16; ++j) EXPECT_EQ(int8_t(b[size_t(192 + j)]), j - 8);
  float y[256];
  internal::dequantize_ggml_row(GgmlType::kQ6_K, b.data(), 256, y);
  for (int e = 0; e < 256; ++e) EXPECT_EQ(y[e], 0.5f * float(e / 16 - 8) * float(e % 64 - 32)) << e;
}

// Every type: RTN on random rows; decode(encode(q)) == q field by field, and the byte-level
// reference dequantization equals llmq's dequantize() bit for bit.
TEST(GgmlBlocks, EveryTypeRoundTripsExactly) {
  for (const auto& info : ggml_types()) {
    SCOPED_TRACE(info.name);
    const int64_t rows = 3, cols = 512;
    const std::vector<float> w = test::random_normal(size_t(rows * cols), 7, 0.05f);
    auto q = quantize_rtn(w.data(), rows, cols, QuantSpec::ForGgml(info.type));
    ASSERT_TRUE(q.ok()) << q.status().ToString();
    ASSERT_TRUE(q->Validate().ok()) << q->Validate().ToString();
    EXPECT_EQ(q->storage_bytes(), size_t(rows * cols / info.block_elems * info.block_bytes));
    const std::vector<uint8_t> bytes = internal::encode_ggml(*q);
    auto back = internal::decode_ggml(info.type, rows, cols, bytes.data(), bytes.size());
    ASSERT_TRUE(back.ok()) << back.status().ToString();
    EXPECT_EQ(back->codes, q->codes);
    EXPECT_EQ(0, std::memcmp(back->scales.data(), q->scales.data(), q->scales.size() * 4));
    EXPECT_EQ(back->mins.size(), q->mins.size());
    if (!q->mins.empty()) {
      EXPECT_EQ(0, std::memcmp(back->mins.data(), q->mins.data(), q->mins.size() * 4));
    }
    EXPECT_EQ(back->scale_codes, q->scale_codes);
    EXPECT_EQ(back->min_codes, q->min_codes);
    EXPECT_EQ(back->super_scales, q->super_scales);
    const std::vector<float> deq = dequantize(*q);
    std::vector<float> ref(deq.size());
    for (int64_t r = 0; r < rows; ++r)
      internal::dequantize_ggml_row(info.type, bytes.data() + r * internal::ggml_row_bytes(info.type, cols), cols,
                                    ref.data() + r * cols);
    EXPECT_EQ(0, std::memcmp(deq.data(), ref.data(), deq.size() * 4));
    // The kernels run it too (bytes for 5/6-bit codes, mins folded into the zero term).
    auto packed = PackedLinear::Pack(*q);
    ASSERT_TRUE(packed.ok()) << packed.status().ToString();
    const std::vector<float> x = test::random_normal(size_t(cols), 3);
    std::vector<float> y(static_cast<size_t>(rows));
    packed->Forward(x.data(), 1, y.data());
    for (int64_t r = 0; r < rows; ++r) {
      double want = 0;
      for (int64_t c = 0; c < cols; ++c) want += double(deq[size_t(r * cols + c)]) * x[size_t(c)];
      EXPECT_NEAR(y[size_t(r)], want, 1e-3) << "row " << r;
    }
  }
}

TEST(GgmlBlocks, DecodeRefusesWrongSizesAndNonFiniteScales) {
  std::vector<uint8_t> b(18, 0);
  EXPECT_FALSE(internal::decode_ggml(GgmlType::kQ4_0, 1, 32, b.data(), 17).ok());
  EXPECT_FALSE(internal::decode_ggml(GgmlType::kQ4_0, 1, 48, b.data(), b.size()).ok());
  b[0] = 0x00;
  b[1] = 0x7C;  // fp16 +inf
  auto r = internal::decode_ggml(GgmlType::kQ4_0, 1, 32, b.data(), b.size());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kCorruption);
}

// GPTQ on a grid gives codes and scales the blocks store exactly, and beats RTN on its objective.
TEST(GgmlGrid, GptqOnEveryGridIsRepresentableAndBetterThanRtn) {
  const int64_t rows = 16, cols = 256, n = 512;
  const std::vector<float> w = test::random_normal(size_t(rows * cols), 11, 0.05f);
  const std::vector<float> x = test::random_normal(size_t(n * cols), 12);
  HessianAccumulator acc(cols);
  acc.Add(x.data(), n);
  const std::vector<float> H = acc.Hessian();
  for (const auto& info : ggml_types()) {
    SCOPED_TRACE(info.name);
    const QuantSpec spec = QuantSpec::ForGgml(info.type);
    auto g = gptq_quantize(w.data(), rows, cols, H.data(), spec);
    ASSERT_TRUE(g.ok()) << g.status().ToString();
    ASSERT_TRUE(g->q.Validate().ok()) << g->q.Validate().ToString();
    const std::vector<uint8_t> bytes = internal::encode_ggml(g->q);
    auto back = internal::decode_ggml(info.type, rows, cols, bytes.data(), bytes.size());
    ASSERT_TRUE(back.ok());
    EXPECT_EQ(dequantize(*back), dequantize(g->q));
    auto rtn = quantize_rtn(w.data(), rows, cols, spec);
    ASSERT_TRUE(rtn.ok());
    const std::vector<float> dg = dequantize(g->q), dr = dequantize(*rtn);
    EXPECT_LT(output_relative_error(w.data(), dg.data(), rows, cols, H.data()),
              output_relative_error(w.data(), dr.data(), rows, cols, H.data()));
  }
  GptqOptions act;
  act.act_order = true;
  EXPECT_EQ(gptq_quantize(w.data(), rows, cols, H.data(), QuantSpec::ForGgml(GgmlType::kQ4_K), act).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_FALSE(gptq_quantize(w.data(), rows, 200, H.data(), QuantSpec::ForGgml(GgmlType::kQ4_0)).ok());
}

TEST(GgufFile, WriteThenParse) {
  internal::GgufWriter w;
  w.SetString("general.architecture", "llama");
  w.SetU32("llama.block_count", 3);
  w.SetF32("llama.rope.freq_base", 10000.0f);
  w.SetBool("tokenizer.ggml.add_bos_token", true);
  w.SetStrings("tokenizer.ggml.tokens", {"<unk>", "a", ""});
  w.SetF32s("tokenizer.ggml.scores", {0.0f, -1.5f, 2.0f});
  ASSERT_TRUE(w.AddTensor("a", {5}, internal::kGgmlF32, std::vector<uint8_t>(20, 1)).ok());
  ASSERT_TRUE(w.AddTensor("b", {32, 2}, int(GgmlType::kQ4_0), std::vector<uint8_t>(36, 2)).ok());
  EXPECT_FALSE(w.AddTensor("b", {5}, internal::kGgmlF32, std::vector<uint8_t>(20)).ok());  // duplicate
  EXPECT_FALSE(w.AddTensor("c", {33}, int(GgmlType::kQ4_0), std::vector<uint8_t>(18)).ok());  // ragged row
  EXPECT_FALSE(w.AddTensor(std::string(64, 'x'), {5}, internal::kGgmlF32, std::vector<uint8_t>(20)).ok());
  test::TempDir dir;
  const std::string path = dir.file("t.gguf");
  ASSERT_TRUE(w.Write(path).ok());
  EXPECT_EQ(fs::file_size(path), w.FileBytes());
  auto f = internal::read_gguf(path);
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  EXPECT_EQ(f->version, 3u);
  EXPECT_EQ(f->keys.size(), 6u);
  EXPECT_EQ(std::get<std::string>(f->kv["general.architecture"].scalar), "llama");
  EXPECT_EQ(std::get<uint64_t>(f->kv["llama.block_count"].scalar), 3u);
  EXPECT_EQ(f->kv["tokenizer.ggml.tokens"].strings, (std::vector<std::string>{"<unk>", "a", ""}));
  EXPECT_EQ(f->kv["tokenizer.ggml.scores"].numbers[1], -1.5);
  ASSERT_EQ(f->tensors.size(), 2u);
  EXPECT_EQ(f->data_offset % 32, 0u);
  EXPECT_EQ(f->tensors[1].offset, 32u);  // 20 bytes padded to 32
  EXPECT_EQ(f->tensors[1].bytes, 36u);
  auto t = internal::read_gguf_tensor(path, *f, f->tensors[1]);
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(*t, std::vector<uint8_t>(36, 2));

  // Damaged copies: each a clear error, never a crash.
  const std::string bytes = test::read_bytes(path);
  auto parse = [&](std::string b) { return internal::parse_gguf(reinterpret_cast<const uint8_t*>(b.data()), b.size(), "x"); };
  EXPECT_TRUE(parse(bytes.substr(0, size_t(f->data_offset + 32 + 36))).ok());    // the padding after it is optional
  EXPECT_FALSE(parse(bytes.substr(0, size_t(f->data_offset + 32 + 35))).ok());  // last tensor's data cut
  EXPECT_FALSE(parse(bytes.substr(0, 100)).ok());                 // header cut
  std::string bad = bytes;
  bad[0] = 'X';
  EXPECT_NE(parse(bad).status().message().find("not a GGUF file"), std::string::npos);
  bad = bytes;
  bad[4] = 2;
  EXPECT_EQ(parse(bad).status().code(), StatusCode::kNotSupported);
  bad = bytes;
  bad[16] = char(0xFF);  // n_kv enormous
  EXPECT_FALSE(parse(bad).ok());
}

// llama.cpp's type rules for its file types, on the two shapes of the shared models.
TEST(GgufPlan, LlamaCppMixtureRules) {
  test::TempDir dir;
  test::SyntheticModel m;
  m.hidden = 256;
  m.intermediate = 768;
  m.layers = 6;
  m.heads = 8;
  m.kv_heads = 4;
  m.vocab = 512;
  test::write_synthetic_model(dir.path(), m);
  auto ck = Checkpoint::Open(dir.path());
  ASSERT_TRUE(ck.ok());
  auto plan = internal::plan_ggml_types("Q4_K_M", **ck);
  ASSERT_TRUE(plan.ok()) << plan.status().ToString();
  EXPECT_EQ(plan->file_type, 15);
  const auto& t = plan->types;
  EXPECT_EQ(t.at("lm_head.weight"), GgmlType::kQ6_K);
  EXPECT_EQ(t.at("model.embed_tokens.weight"), GgmlType::kQ4_K);
  for (int l = 0; l < 6; ++l) {  // use_more_bits(i, 6): layers 2 and 5
    const bool more = l == 2 || l == 5;
    const std::string p = "model.layers." + std::to_string(l) + ".";
    EXPECT_EQ(t.at(p + "self_attn.v_proj.weight"), more ? GgmlType::kQ6_K : GgmlType::kQ4_K) << l;
    EXPECT_EQ(t.at(p + "mlp.down_proj.weight"), more ? GgmlType::kQ6_K : GgmlType::kQ4_K) << l;
    EXPECT_EQ(t.at(p + "self_attn.q_proj.weight"), GgmlType::kQ4_K);
  }
  EXPECT_TRUE(plan->fallbacks.empty());
  auto q2 = internal::plan_ggml_types("q2_k", **ck);
  ASSERT_TRUE(q2.ok());
  EXPECT_EQ(q2->types.at("model.layers.0.mlp.down_proj.weight"), GgmlType::kQ3_K);
  EXPECT_EQ(q2->types.at("model.layers.0.self_attn.o_proj.weight"), GgmlType::kQ3_K);
  EXPECT_EQ(q2->types.at("model.layers.0.self_attn.v_proj.weight"), GgmlType::kQ3_K);  // n_gqa 2 < 4
  EXPECT_EQ(q2->types.at("model.layers.0.mlp.up_proj.weight"), GgmlType::kQ2_K);
  EXPECT_FALSE(internal::plan_ggml_types("q4_k_x", **ck).ok());

  // stories260K's shapes: 64 and 172 columns take no 256-blocks; 172 not even 32-blocks.
  auto small = Checkpoint::Open(test::stories260k());
  ASSERT_TRUE(small.ok());
  auto p = internal::plan_ggml_types("q4_k_m", **small);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->types.at("model.layers.0.self_attn.q_proj.weight"), GgmlType::kQ5_0);
  EXPECT_EQ(p->fallbacks.at("model.layers.0.self_attn.q_proj.weight"), "q4_k -> q5_0");
  EXPECT_EQ(p->types.count("model.layers.0.mlp.down_proj.weight"), 0u);  // 172 columns: f16
  EXPECT_EQ(p->fallbacks.at("model.layers.1.mlp.down_proj.weight"), "q4_k -> f16");
  EXPECT_EQ(p->types.at("model.embed_tokens.weight"), GgmlType::kQ8_0);  // tied: the output's rule
}

// Quantize with a GGUF type, export, read back: blocks copied byte for byte (q/k rows permuted as
// whole rows), values equal to llmq's dequantized ones bit for bit.
TEST(GgufExport, LosslessRepackOfAGgufFolder) {
  test::TempDir dir;
  for (const char* type : {"q4_0", "q8_0", "q4_k_m"}) {
    SCOPED_TRACE(type);
    QuantizeOptions o = *QuantizeOptions::ForMethod("rtn");
    o.gguf_type = type;
    const std::string out = dir.file(std::string("q-") + type);
    auto r = quantize_checkpoint(test::stories260k(), out, o);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(r->gguf_type, type);
    const std::string gguf = dir.file(std::string(type) + ".gguf");
    auto e = export_gguf(out, gguf);
    ASSERT_TRUE(e.ok()) << e.status().ToString();
    EXPECT_EQ(e->bytes, fs::file_size(gguf));
    auto ck = Checkpoint::Open(out);
    ASSERT_TRUE(ck.ok());
    const ModelConfig& c = (*ck)->config();
    for (const LinearInfo& l : (*ck)->linears()) {
      const std::string name = "blk." + std::to_string(l.layer) + "." +
                                (l.role == LinearRole::kQ   ? "attn_q"
                                 : l.role == LinearRole::kK ? "attn_k"
                                 : l.role == LinearRole::kV ? "attn_v"
                                 : l.role == LinearRole::kO ? "attn_output"
                                 : l.role == LinearRole::kGate ? "ffn_gate"
                                 : l.role == LinearRole::kUp   ? "ffn_up"
                                                               : "ffn_down") +
                                ".weight";
      auto got = read_gguf_tensor_f32(gguf, name);
      ASSERT_TRUE(got.ok()) << got.status().ToString();
      auto want = (*ck)->linear_weight(l);  // dequantized, or the float weight for an f16 fallback
      ASSERT_TRUE(want.ok());
      const int64_t heads = l.role == LinearRole::kQ ? c.num_heads : l.role == LinearRole::kK ? c.num_kv_heads : 0;
      const int64_t hd = heads ? l.rows / heads : 0;
      for (int64_t r = 0; r < l.rows; ++r) {
        int64_t src = r;
        if (heads) src = (r / hd) * hd + (r % 2) * (hd / 2) + (r % hd) / 2;  // GGUF row -> HF row
        for (int64_t k = 0; k < l.cols; ++k) {
          const float a = (*got)[size_t(r * l.cols + k)], b = (*want)[size_t(src * l.cols + k)];
          if ((*ck)->is_quantized_module(l.module)) ASSERT_EQ(a, b) << name << " row " << r;
          else ASSERT_EQ(a, fp16_to_float(float_to_fp16(b))) << name << " (f16 fallback) row " << r;
        }
      }
      if ((*ck)->is_quantized_module(l.module) && !heads) {  // the bytes themselves
        auto f = internal::read_gguf(gguf);
        ASSERT_TRUE(f.ok());
        for (const auto& t : f->tensors)
          if (t.name == name) {
            auto bytes = internal::read_gguf_tensor(gguf, *f, t);
            auto stored = (*ck)->get(l.module + ".ggml_blocks");
            ASSERT_TRUE(bytes.ok() && stored.ok());
            ASSERT_EQ(bytes->size(), stored->nbytes());
            EXPECT_EQ(0, std::memcmp(bytes->data(), stored->data, bytes->size())) << name;
          }
      }
    }
    auto s = inspect_gguf(gguf);
    ASSERT_TRUE(s.ok());
    EXPECT_EQ(s->architecture, "llama");
  }
}

TEST(GgufExport, RefusesWhatItCannotWrite) {
  test::TempDir dir;
  // llmq's own layout outside q4_0/q8_0's (groups of 128): never silently re-quantized.
  QuantizeOptions o = *QuantizeOptions::ForMethod("rtn");
  o.spec.group_size = 128;
  ASSERT_TRUE(quantize_checkpoint(test::stories260k(), dir.file("own"), o).ok());
  auto r = export_gguf(dir.file("own"), dir.file("own.gguf"));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("--gguf-type"), std::string::npos) << r.status().message();
  EXPECT_FALSE(fs::exists(dir.file("own.gguf")));
  // An unknown --type, and an architecture llama.cpp has no name for here.
  GgufExportOptions bad;
  bad.type = "q4_k_x";
  EXPECT_EQ(export_gguf(test::stories260k(), dir.file("x.gguf"), bad).status().code(), StatusCode::kInvalidArgument);
  test::SyntheticModel opt;
  opt.architecture = "OPTForCausalLM";
  test::write_synthetic_model(dir.file("opt"), opt);
  EXPECT_EQ(export_gguf(dir.file("opt"), dir.file("opt.gguf")).status().code(), StatusCode::kNotSupported);
  EXPECT_FALSE(fs::exists(dir.file("opt.gguf")));
  // Output paths: a missing folder, an existing non-GGUF file (left untouched), a folder.
  EXPECT_FALSE(export_gguf(test::stories260k(), dir.file("missing/x.gguf")).ok());
  test::write_bytes(dir.file("notes.txt"), "keep me");
  GgufExportOptions ow;
  ow.overwrite = true;
  EXPECT_FALSE(export_gguf(test::stories260k(), dir.file("notes.txt"), ow).ok());
  EXPECT_EQ(test::read_bytes(dir.file("notes.txt")), "keep me");
  EXPECT_FALSE(export_gguf(test::stories260k(), dir.path()).ok());
  // An existing GGUF file only with overwrite.
  ASSERT_TRUE(export_gguf(test::stories260k(), dir.file("f.gguf")).ok());
  EXPECT_FALSE(export_gguf(test::stories260k(), dir.file("f.gguf")).ok());
  EXPECT_TRUE(export_gguf(test::stories260k(), dir.file("f.gguf"), ow).ok());
  // Methods and options a ggml grid cannot take.
  QuantizeOptions spqr = *QuantizeOptions::ForMethod("spqr");
  spqr.gguf_type = "q4_0";
  spqr.calibration.data = test::embedded_calibration_text();
  EXPECT_EQ(spqr.Validate().code(), StatusCode::kInvalidArgument);
  QuantizeOptions unknown = *QuantizeOptions::ForMethod("rtn");
  unknown.gguf_type = "q9_0";
  EXPECT_EQ(unknown.Validate().code(), StatusCode::kInvalidArgument);
}

// ---- llama.cpp itself (tests/llamacpp/llamacpp_client.cc) ----

std::string missing_client() { return test::missing_llamacpp_client(); }

// Runs the client; its JSON output.
nlohmann::json client(const std::string& args) {
  const std::string out = test::run_llamacpp_client(args);
  auto j = nlohmann::json::parse(out, nullptr, false);
  EXPECT_FALSE(j.is_discarded()) << args << ": " << out;
  return j;
}

void write_ids(const std::string& path, const std::vector<int32_t>& ids) {
  test::write_bytes(path, std::string(reinterpret_cast<const char*>(ids.data()), ids.size() * 4));
}

std::vector<int32_t> read_ids(const std::string& path) {
  const std::string b = test::read_bytes(path);
  std::vector<int32_t> ids(b.size() / 4);
  if (!ids.empty()) std::memcpy(ids.data(), b.data(), ids.size() * 4);
  return ids;
}

// ggml's own to_float of every block type equals llmq's dequantization.
TEST(LlamaCpp, GgmlDequantizesEveryBlockTypeAsLlmq) {
  LLMQ_SKIP_IF_MISSING(missing_client());
  test::TempDir dir;
  internal::GgufWriter w;
  std::map<std::string, std::vector<float>> want;
  for (const auto& info : ggml_types()) {
    const std::vector<float> x = test::random_normal(4 * 512, 21, 0.05f);
    auto q = quantize_rtn(x.data(), 4, 512, QuantSpec::ForGgml(info.type));
    ASSERT_TRUE(q.ok());
    want[info.name] = dequantize(*q);
    ASSERT_TRUE(w.AddTensor(info.name, {512, 4}, int(info.type), internal::encode_ggml(*q)).ok());
  }
  w.SetString("general.architecture", "llama");
  ASSERT_TRUE(w.Write(dir.file("blocks.gguf")).ok());
  for (const auto& [name, values] : want) {
    SCOPED_TRACE(name);
    client("dequant " + dir.file("blocks.gguf") + " " + name + " " + dir.file(name + ".f32"));
    const std::string got = test::read_bytes(dir.file(name + ".f32"));
    ASSERT_EQ(got.size(), values.size() * 4);
    const float* g = reinterpret_cast<const float*>(got.data());
    for (size_t i = 0; i < values.size(); ++i)  // ggml may contract d*q - m into one FMA: 1 ulp apart at most
      ASSERT_NEAR(g[i], values[i], 1e-6f * std::max(1.0f, std::fabs(values[i]))) << i;
  }
}

struct SharedModel {
  const char* folder;
  int seq_len;
};

// llama.cpp's own quantizer, given llmq's f32 export, picks for every tensor the type llmq's plan
// picks (the mixtures and the fallbacks), and its files have llmq's sizes.
TEST(LlamaCpp, RealModelQuantizerPicksTheTypesOfLlmqsPlan) {
  LLMQ_SKIP_IF_MISSING(missing_client());
  LLMQ_NEED_SHARED("models/stories5M-hf/config.json");
  test::TempDir dir;
  for (const std::string& model : {test::shared_path("models/stories5M-hf"), test::stories260k()}) {
    const std::string f32 = dir.file("f32.gguf");
    GgufExportOptions ow;
    ow.overwrite = true;
    ASSERT_TRUE(export_gguf(model, f32, ow).ok());
    for (const auto& [type, ftype] : std::vector<std::pair<std::string, int>>{
             {"q4_0", 2}, {"q8_0", 7}, {"q2_k", 10}, {"q3_k_m", 12}, {"q4_k_s", 14}, {"q4_k_m", 15}, {"q5_k_m", 17}, {"q6_k", 18}}) {
      SCOPED_TRACE(model + " " + type);
      const std::string theirs = dir.file("lc-" + type + ".gguf"), ours = dir.file("llmq-" + type + ".gguf");
      client("quantize " + f32 + " " + theirs + " " + std::to_string(ftype));
      GgufExportOptions o = ow;
      o.type = type;
      auto e = export_gguf(model, ours, o);
      ASSERT_TRUE(e.ok()) << e.status().ToString();
      auto a = inspect_gguf(theirs), b = inspect_gguf(ours);
      ASSERT_TRUE(a.ok() && b.ok());
      ASSERT_EQ(a->tensors.size(), b->tensors.size());
      std::map<std::string, std::string> types;
      for (const auto& t : a->tensors) types[t.name] = t.type;
      for (const auto& t : b->tensors) EXPECT_EQ(types[t.name], t.type) << t.name;
      EXPECT_EQ(a->file_bytes, b->file_bytes);
    }
  }
}

// The evaluation: the same ids (llmq's tokenizer) and windows through llama.cpp and through llmq.
TEST(LlamaCpp, RealModelPerplexityOfExportsEqualsLlmqs) {
  LLMQ_SKIP_IF_MISSING(missing_client());
  LLMQ_NEED_SHARED("models/stories5M-hf/config.json");
  const std::string model = test::shared_path("models/stories5M-hf");
  const std::vector<int32_t> ids = test::tinystories_eval_ids(model, 60000);
  const int64_t seq = 256, chunks = 20;
  test::TempDir dir;
  write_ids(dir.file("ids.bin"), ids);
  auto llama_ppl = [&](const std::string& gguf) {
    const nlohmann::json j = client("ppl " + gguf + " " + dir.file("ids.bin") + " " + std::to_string(seq) + " " +
                                    std::to_string(chunks));
    return j.value("perplexity", 0.0);
  };
  ASSERT_TRUE(export_gguf(model, dir.file("f32.gguf")).ok());
  const double fp = test::perplexity_of(model, ids, seq, chunks);
  EXPECT_NEAR(llama_ppl(dir.file("f32.gguf")) / fp, 1.0, 0.001) << "f32";
  for (const char* type : {"q4_0", "q4_1", "q5_0", "q5_1", "q8_0", "q2_k", "q3_k", "q4_k", "q5_k", "q6_k", "q3_k_m",
                           "q4_k_m"}) {
    SCOPED_TRACE(type);
    QuantizeOptions o = *QuantizeOptions::ForMethod("rtn");
    o.gguf_type = type;
    const std::string folder = dir.file(std::string("q-") + type), gguf = dir.file(std::string(type) + ".gguf");
    ASSERT_TRUE(quantize_checkpoint(model, folder, o).ok());
    ASSERT_TRUE(export_gguf(folder, gguf).ok());
    const double ours = test::perplexity_of(folder, ids, seq, chunks), theirs = llama_ppl(gguf);
    EXPECT_NEAR(theirs / ours, 1.0, 0.005) << "llama.cpp " << theirs << " llmq " << ours;
    EXPECT_GT(ours, fp * 0.99);
  }
}

// A GPTQ checkpoint (here: llmq's GPTQ w4 g32 sym and RTN w8 g32, written in the GPTQ layout)
// holds exactly q4_0 / q8_0 blocks: export gguf writes them without re-rounding, and llama.cpp
// computes what llmq computes from the GPTQ folder.
TEST(LlamaCpp, RealModelGptqCheckpointsExportAsQ4_0AndQ8_0) {
  LLMQ_SKIP_IF_MISSING(missing_client());
  LLMQ_NEED_SHARED("models/stories5M-hf/config.json");
  const std::string model = test::shared_path("models/stories5M-hf");
  const std::vector<int32_t> ids = test::tinystories_eval_ids(model, 40000);
  const int64_t seq = 256, chunks = 12;
  test::TempDir dir;
  write_ids(dir.file("ids.bin"), ids);
  for (const auto& [method, bits] : std::vector<std::pair<std::string, int>>{{"gptq", 4}, {"rtn", 8}}) {
    SCOPED_TRACE(method + " w" + std::to_string(bits));
    QuantizeOptions o = *QuantizeOptions::ForMethod(method);
    o.spec = test::quant_spec(bits, 32, true);
    if (method == "gptq") {
      o.calibration.data = test::embedded_calibration_text();
      o.calibration.nsamples = 16;
      o.calibration.seq_len = 128;
    }
    const std::string llmq_dir = dir.file(method + "-llmq"), gptq_dir = dir.file(method + "-gptq");
    const std::string gguf = dir.file(method + ".gguf");
    ASSERT_TRUE(quantize_checkpoint(model, llmq_dir, o).ok());
    HfExportOptions h;
    h.format = "gptq";
    ASSERT_TRUE(export_hf(llmq_dir, gptq_dir, h).ok());
    auto e = export_gguf(gptq_dir, gguf);
    ASSERT_TRUE(e.ok()) << e.status().ToString();
    const std::string want = bits == 4 ? "q4_0" : "q8_0";
    EXPECT_EQ(e->type, want);
    EXPECT_EQ(e->tensor_types.at("blk.0.ffn_down.weight"), want);
    // The blocks dequantize (ggml's formulas) to llmq's weights, bit for bit.
    auto ck = Checkpoint::Open(gptq_dir);
    ASSERT_TRUE(ck.ok());
    auto q = (*ck)->get_quantized("model.layers.1.mlp.down_proj");
    ASSERT_TRUE(q.ok());
    const std::vector<float> w = dequantize(*q);
    auto g = read_gguf_tensor_f32(gguf, "blk.1.ffn_down.weight");
    ASSERT_TRUE(g.ok()) << g.status().ToString();
    ASSERT_EQ(g->size(), w.size());
    EXPECT_EQ(std::memcmp(g->data(), w.data(), w.size() * sizeof(float)), 0);
    const double ours = test::perplexity_of(gptq_dir, ids, seq, chunks);
    const double theirs = client("ppl " + gguf + " " + dir.file("ids.bin") + " " + std::to_string(seq) + " " +
                                 std::to_string(chunks)).value("perplexity", 0.0);
    EXPECT_NEAR(theirs / ours, 1.0, 0.005) << "llama.cpp " << theirs << " llmq " << ours;
  }
  // Zero points (asym GPTQ) have no exact block type: refused, not re-rounded.
  QuantizeOptions o = *QuantizeOptions::ForMethod("rtn");
  o.spec = test::quant_spec(4, 32, false);
  ASSERT_TRUE(quantize_checkpoint(model, dir.file("asym"), o).ok());
  auto r = export_gguf(dir.file("asym"), dir.file("asym.gguf"));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("exactly"), std::string::npos) << r.status().ToString();
}

// llama.cpp's tokenization of the evaluation text equals llmq's ids — once runs of spaces, which
// this SentencePiece model's normalizer collapses and llama.cpp does not, are collapsed.
TEST(LlamaCpp, TokenizationEqualsLlmqs) {
  LLMQ_SKIP_IF_MISSING(missing_client());
  test::TempDir dir;
  ASSERT_TRUE(export_gguf(test::stories260k(), dir.file("m.gguf")).ok());
  std::string text = test::read_bytes(test::embedded_path("tinystories-valid-200k.txt"));
  std::string collapsed;
  for (char c : text)
    if (!(c == ' ' && !collapsed.empty() && collapsed.back() == ' ')) collapsed += c;
  while (!collapsed.empty() && (collapsed.back() == ' ' || collapsed.front() == ' '))
    collapsed = collapsed.back() == ' ' ? collapsed.substr(0, collapsed.size() - 1) : collapsed.substr(1);
  test::write_bytes(dir.file("text.txt"), collapsed);
  client("tokenize " + dir.file("m.gguf") + " " + dir.file("text.txt") + " " + dir.file("ids.bin"));
  auto tok = Tokenizer::Open(test::stories260k());
  ASSERT_TRUE(tok.ok());
  auto want = (*tok)->EncodeWithSpecialTokens(collapsed);
  ASSERT_TRUE(want.ok());
  const std::vector<int32_t> got = read_ids(dir.file("ids.bin"));
  ASSERT_EQ(got.size(), want->size());
  EXPECT_EQ(got, *want);
}

}  // namespace
}  // namespace llmq
