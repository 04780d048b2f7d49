// The method table (src/quant/method.h): a method registered from here, with no change to the
// driver, the CLI's option code or the writer, runs end to end — zero-shot and calibrated
// (block by block, with the block store, resume and propagation) — and the table's rules refuse
// malformed rows.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "llmq/checkpoint.h"
#include "llmq/quantize.h"
#include "quant/method.h"
#include "test_util.h"

namespace llmq {
namespace {

using internal::BlockContext;
using internal::BlockResult;
using internal::Method;

// A zero-shot row: RTN at 3 bits by default, refusing per-channel groups, with a key of its own
// in quantization_config.
Method three_bit_rtn_row() {
  Method m;
  m.name = "test-rtn3";
  m.defaults = [](QuantizeOptions* o) { o->spec.bits = 3; };
  m.validate = [](const QuantizeOptions& o) {
    return o.spec.group_size == 0 ? Status::InvalidArgument("test-rtn3 needs groups") : Status::Ok();
  };
  m.config_json = [](const QuantizeOptions&, nlohmann::ordered_json* qc) { (*qc)["test_key"] = 7; };
  m.quantize_linear = [](const float* w, int64_t rows, int64_t cols, const QuantizeOptions& o) {
    return quantize_rtn(w, rows, cols, o.spec);
  };
  return m;
}

// A calibrated row: per block it looks at the calibration inputs (their ranges) and then
// quantizes with RTN, so its output must equal plain RTN's while going through every calibrated
// stage of the driver. It counts the blocks it quantized itself (resume skips the finished ones).
int g_blocks_quantized = 0;
Method blockwise_rtn_row() {
  Method m;
  m.name = "test-block-rtn";
  m.quantize_block = [](BlockContext& ctx) -> Result<BlockResult> {
    LLMQ_ASSIGN_OR_RETURN(auto ranges, ctx.calib.CollectInputAbsMax(ctx.layer, ctx.linears));
    if (ranges.size() != ctx.linears.size()) return Status::Internal("one range per linear expected");
    BlockResult out;
    for (const LinearInfo& l : ctx.linears) {
      LLMQ_ASSIGN_OR_RETURN(std::vector<float> w, ctx.ckpt.linear_weight(l));
      LLMQ_ASSIGN_OR_RETURN(QuantizedTensor q, quantize_rtn(w.data(), l.rows, l.cols, ctx.options.spec));
      LayerReport r = internal::make_layer_report(l, w.data(), q);
      out.linears.push_back({l, std::move(q), r});
    }
    ++g_blocks_quantized;
    return out;
  };
  m.propagates_quantized = [](const QuantizeOptions&) { return true; };
  return m;
}

void register_once() {
  static bool done = [] {
    EXPECT_TRUE(internal::register_method(three_bit_rtn_row()).ok());
    EXPECT_TRUE(internal::register_method(blockwise_rtn_row()).ok());
    return true;
  }();
  (void)done;
}

// One step each, except llm.int8: zero-shot without calibration data, calibrated with it.
TEST(MethodTable, EveryBuiltInMethodHasItsSteps) {
  QuantizeOptions with_data, without;
  with_data.calibration.data = "calibration.txt";
  for (const Method& m : internal::methods()) {
    if (m.name == "llm.int8") {
      EXPECT_TRUE(m.quantize_linear && m.quantize_block);
      EXPECT_FALSE(m.needs_calibration());
      EXPECT_TRUE(m.calibrated(with_data));
      EXPECT_FALSE(m.calibrated(without));
    } else if (m.name.rfind("test-", 0) != 0) {
      EXPECT_NE(bool(m.quantize_linear), bool(m.quantize_block)) << m.name;
      EXPECT_EQ(m.needs_calibration(), m.takes_calibration()) << m.name;
    }
    if (m.takes_calibration()) {
      EXPECT_TRUE(bool(m.propagates_quantized)) << m.name;
    }
  }
  EXPECT_TRUE(method_needs_calibration("gptq"));
  EXPECT_FALSE(method_needs_calibration("llm.int8"));
  EXPECT_FALSE(method_needs_calibration("rtn"));
  EXPECT_EQ(internal::find_method("no-such-method"), nullptr);
}

TEST(MethodTable, MalformedRowsAreRefused) {
  register_once();
  Method dup = three_bit_rtn_row();
  EXPECT_NE(internal::register_method(dup).message().find("exists already"), std::string::npos);
  Method none;
  none.name = "test-none";
  EXPECT_NE(internal::register_method(none).message().find("give quantize_linear, quantize_block or both"),
            std::string::npos);
}

TEST(MethodTable, RegisteredZeroShotMethodRunsEndToEnd) {
  register_once();
  const auto names = quantize_methods();
  EXPECT_NE(std::find(names.begin(), names.end(), "test-rtn3"), names.end());
  auto o = QuantizeOptions::ForMethod("test-rtn3");
  ASSERT_TRUE(o.ok()) << o.status().ToString();
  EXPECT_EQ(o->spec.bits, 3);  // the row's default
  QuantizeOptions per_channel = *o;
  per_channel.spec.group_size = 0;
  EXPECT_NE(per_channel.Validate().message().find("needs groups"), std::string::npos);
  QuantizeOptions seq = *o;
  seq.true_sequential = true;  // a rule of the table: only rows that take it
  EXPECT_NE(seq.Validate().message().find("applies to methods gptq, spqr, billm and billm+oac only"), std::string::npos)
      << seq.Validate().ToString();

  test::TempDir dir;
  auto rep = quantize_checkpoint(test::stories260k(), dir.file("out"), *o);
  ASSERT_TRUE(rep.ok()) << rep.status().ToString();
  auto out = Checkpoint::Open(dir.file("out"));
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  ASSERT_FALSE(rep->layers.empty());
  for (const LayerReport& l : rep->layers) {
    auto q = (*out)->get_quantized(l.module);
    ASSERT_TRUE(q.ok()) << q.status().ToString();
    EXPECT_EQ(q->spec.bits, 3) << l.module;
  }
  auto config = nlohmann::json::parse(test::read_bytes(dir.file("out/config.json")));
  EXPECT_EQ(config["quantization_config"]["method"], "test-rtn3");
  EXPECT_EQ(config["quantization_config"]["test_key"], 7);
}

TEST(MethodTable, RegisteredCalibratedMethodStreamsBlocksAndResumes) {
  register_once();
  auto o = QuantizeOptions::ForMethod("test-block-rtn");
  ASSERT_TRUE(o.ok());
  EXPECT_TRUE(method_takes("test-block-rtn", MethodOption::kCalibration));
  EXPECT_NE(o->Validate().message().find("calibration"), std::string::npos);  // calibrated: needs data
  o->calibration.data = test::embedded_calibration_text();
  o->calibration.nsamples = 4;
  o->calibration.seq_len = 32;
  test::TempDir dir;
  // Stopped after the first block: the finished block stays in the store ...
  int polls = 0;
  QuantizeOptions stopped = *o;
  stopped.resume = true;
  stopped.cancel = [&] { return g_blocks_quantized > 0 && ++polls > 0; };
  g_blocks_quantized = 0;
  auto first = quantize_checkpoint(test::stories260k(), dir.file("out"), stopped);
  ASSERT_FALSE(first.ok());
  EXPECT_EQ(first.status().code(), StatusCode::kCancelled) << first.status().ToString();
  EXPECT_EQ(g_blocks_quantized, 1);
  // ... and the resumed run quantizes only the others.
  QuantizeOptions resumed = *o;
  resumed.resume = true;
  g_blocks_quantized = 0;
  auto rep = quantize_checkpoint(test::stories260k(), dir.file("out"), resumed);
  ASSERT_TRUE(rep.ok()) << rep.status().ToString();
  const int64_t layers = (*Checkpoint::Open(test::stories260k()))->config().num_layers;
  EXPECT_EQ(rep->calibration.resumed_blocks, 1);
  EXPECT_EQ(g_blocks_quantized, layers - 1);
  EXPECT_TRUE(rep->calibrated);

  // Its weights are exactly plain RTN's (same spec): the driver adds nothing of its own.
  QuantizeOptions rtn = *QuantizeOptions::ForMethod("rtn");
  ASSERT_TRUE(quantize_checkpoint(test::stories260k(), dir.file("rtn"), rtn).ok());
  auto a = Checkpoint::Open(dir.file("out"));
  auto b = Checkpoint::Open(dir.file("rtn"));
  ASSERT_TRUE(a.ok() && b.ok());
  for (const LinearInfo& l : (*a)->linears()) {
    auto qa = (*a)->get_quantized(l.module);
    auto qb = (*b)->get_quantized(l.module);
    ASSERT_TRUE(qa.ok() && qb.ok()) << l.module;
    EXPECT_EQ(qa->codes, qb->codes) << l.module;
    EXPECT_EQ(qa->scales, qb->scales) << l.module;
  }
}

}  // namespace
}  // namespace llmq
