// Row "llm.int8": LLM.int8() (Dettmers, Lewis, Belkada, Zettlemoyer, "LLM.int8(): 8-bit Matrix
// Multiplication for Transformers at Scale", NeurIPS 2022). Vector-wise quantization, eq. (3):
// int8 weights with one absmax scale per output row (RTN w8 per-channel) and int8 activations
// with one scale per token; mixed-precision decomposition, eq. (4): the input dimensions O with
// outliers (|x| > 6.0) are multiplied in 16-bit, the rest in int8:
//   XW ≈ Σ_{h∈O} X^h_f16 W^h_f16  +  S · Σ_{h∉O} X^h_i8 W^h_i8.
// The decomposition runs at inference (kernels/activation_outliers.cc); this row writes the
// weights and the quantization_config that asks for it:
//  - zero-shot (no calibration data): O is found per call from the activations (the paper's
//    dynamic rule); W^h is then the int8 weight dequantized (as bitsandbytes does).
//  - with calibration data: O is fixed per linear from the calibration activations (max |x_h|
//    over every window > threshold), so no search runs per call, and W^h is the paper's 16-bit
//    weight: the columns of O are kept exact (fp16 sparse outliers) and left out of the int8
//    rows (their codes represent 0, so they do not stretch a row's scale).
// With activation_outliers.integer the outlier part runs as int8 tiles (integer outliers,
// Ghaffari et al. 2023) instead of fp32.
#include <chrono>
#include <cmath>

#include "llmq/float16.h"
#include "quant/method.h"

namespace llmq::internal {
namespace {

using Clock = std::chrono::steady_clock;

// Per-channel int8 of w with the columns `cols` (sorted) taken out: their codes represent 0 and
// their exact values (fp16) go to the sparse part; the tensor names them as activation outliers.
Result<QuantizedTensor> quantize_with_outlier_columns(std::vector<float> w, int64_t rows, int64_t cols_n,
                                                      const std::vector<int32_t>& cols, const QuantSpec& spec) {
  std::vector<float> kept(static_cast<size_t>(rows * int64_t(cols.size())));
  for (int64_t r = 0; r < rows; ++r)
    for (size_t i = 0; i < cols.size(); ++i) {
      kept[size_t(r) * cols.size() + i] = w[size_t(r * cols_n + cols[i])];
      w[size_t(r * cols_n + cols[i])] = 0.0f;
    }
  LLMQ_ASSIGN_OR_RETURN(QuantizedTensor q, quantize_rtn(w.data(), rows, cols_n, spec));
  if (cols.empty()) return q;
  q.outliers.row_ptr.assign(size_t(rows + 1), 0);
  for (int64_t r = 0; r < rows; ++r) {
    for (size_t i = 0; i < cols.size(); ++i) {
      q.outliers.col_idx.push_back(cols[i]);
      q.outliers.values.push_back(float_to_fp16(kept[size_t(r) * cols.size() + i]));
    }
    q.outliers.row_ptr[size_t(r + 1)] = int32_t(q.outliers.col_idx.size());
  }
  q.activation_outlier_columns = cols;
  LLMQ_RETURN_IF_ERROR(q.Validate());
  return q;
}

// One block with calibration: the activation ranges of every linear's input on the float model,
// the outlier columns of each, the weights quantized around them.
Result<BlockResult> llm_int8_block(BlockContext& ctx) {
  const Checkpoint& ckpt = ctx.ckpt;
  const auto t0 = Clock::now();
  LLMQ_ASSIGN_OR_RETURN(auto amax, ctx.calib.CollectInputAbsMax(ctx.layer, ctx.linears, [&](int64_t i, int64_t) {
    ctx.progress(i, "collecting activation ranges");
  }));
  BlockResult out;
  const double threshold = ctx.options.activation_outliers.threshold;
  for (const LinearInfo& l : ctx.linears) {
    LLMQ_ASSIGN_OR_RETURN(std::vector<float> w, ckpt.linear_weight(l));
    const std::vector<float>& a = *amax[l.module];
    std::vector<int32_t> cols;
    for (int64_t j = 0; j < l.cols; ++j)
      if (double(a[size_t(j)]) > threshold) cols.push_back(int32_t(j));
    auto q = quantize_with_outlier_columns(w, l.rows, l.cols, cols, ctx.options.SpecFor(l.module));
    if (!q.ok()) return q.status().WithContext(ckpt.folder() + ": " + l.module);
    LayerReport lr = make_layer_report(l, w.data(), *q);
    lr.activation_outlier_columns = int64_t(cols.size());
    lr.seconds = std::chrono::duration<double>(Clock::now() - t0).count() / double(ctx.linears.size());
    out.linears.push_back({l, std::move(*q), lr});
  }
  return out;
}

}  // namespace

Method llm_int8_method() {
  Method m;
  m.name = "llm.int8";
  m.defaults = [](QuantizeOptions* o) {
    o->spec.bits = 8;
    o->spec.group_size = 0;
    o->spec.symmetric = true;
    o->activation_outliers.threshold = kLlmInt8Threshold;
  };
  m.validate = [](const QuantizeOptions& o) {
    if (o.spec.bits != 8 || o.spec.group_size != 0 || !o.spec.symmetric)
      return Status::InvalidArgument("llm.int8 is vector-wise int8: it needs --bits 8 --group-size 0 --sym (got " +
                                     o.spec.ToString() + ")");
    if (!(o.activation_outliers.threshold > 0.0))
      return Status::InvalidArgument("llm.int8 needs an outlier threshold > 0 (the paper's 6.0; without one it is "
                                     "plain W8A8: --method rtn --bits 8 --group-size 0 --int8-activations)");
    return Status::Ok();
  };
  m.config_json = [](const QuantizeOptions& o, nlohmann::ordered_json* qc) {
    (*qc)["outlier_columns"] = o.calibration.data.empty() ? "per call" : "calibrated";
  };
  m.layer_json = [](const LayerReport& l, nlohmann::ordered_json* e) {
    if (l.activation_outlier_columns > 0 || l.outliers > 0) {
      (*e)["activation_outlier_columns"] = l.activation_outlier_columns;
      (*e)["activation_outlier_share"] = l.cols > 0 ? double(l.activation_outlier_columns) / double(l.cols) : 0.0;
    }
  };
  m.int8_activations = true;
  m.quantize_linear = [](const float* w, int64_t rows, int64_t cols, const QuantizeOptions& o) {
    return quantize_rtn(w, rows, cols, o.spec);
  };
  m.quantize_block = llm_int8_block;
  m.propagates_quantized = [](const QuantizeOptions&) { return false; };  // outliers of the float model
  return m;
}

}  // namespace llmq::internal
