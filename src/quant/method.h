// The method table: every quantization method quantize_checkpoint knows is one row (a `Method`),
// built by that method's own file under src/quant/methods/ and listed once in
// methods/table.cc. A row carries the method's defaults, its rules, the JSON it adds to
// quantization_config and to the report, and the step that quantizes: per linear (zero-shot
// methods) or per decoder block (calibrated methods, streamed by the driver). The driver
// (quantize_checkpoint.cc) only orchestrates: it never tests a method's name.
//
// Adding a method = one file under methods/ that returns its row + one line in table.cc
// (tests register extra rows with register_method).
#ifndef LLMQ_QUANT_METHOD_H_
#define LLMQ_QUANT_METHOD_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "llmq/checkpoint.h"
#include "llmq/gptq.h"
#include "llmq/quant.h"
#include "llmq/quantize.h"
#include "quant/calibration.h"

namespace llmq::internal {

// One linear a block step quantized: the tensor and its report line.
struct QuantizedLinear {
  LinearInfo linear;
  QuantizedTensor q;
  LayerReport report;
};

// What a calibrated method's block step hands back for one decoder block. The driver writes it
// to the block store and, when the method propagates quantized blocks, loads the dequantized
// weights and the rewritten tensors into the calibration model before the next block.
struct BlockResult {
  std::vector<QuantizedLinear> linears;
  // Non-linear tensors the method rewrote (norms and biases with folded scales): name, fp32 value.
  std::vector<std::pair<std::string, std::vector<float>>> rewritten;
  double hessian_seconds = 0.0;  // collecting the Hessians (OAC: the backward passes)
  double solve_seconds = 0.0;    // the per-linear solves
};

// What a block step works with. Units of progress are window passes within this block
// (0 .. units_per_block); the driver maps them onto the whole run.
struct BlockContext {
  const Checkpoint& ckpt;
  BlockwiseCalibrator& calib;
  int layer;
  const std::vector<LinearInfo>& linears;  // this block's, in checkpoint order
  const QuantizeOptions& options;
  std::function<void(int64_t units, const std::string& item)> progress;
  std::function<bool()> cancelled;  // true once the user asked to stop; return Status::Cancelled then
};

using LinearStep =
    std::function<Result<QuantizedTensor>(const float* w, int64_t rows, int64_t cols, const QuantizeOptions& options)>;
using BlockStep = std::function<Result<BlockResult>(BlockContext& ctx)>;
using ConfigJson = std::function<void(const QuantizeOptions&, nlohmann::ordered_json*)>;
using ReportJson = std::function<void(const QuantizeReport&, nlohmann::ordered_json*)>;
using LayerJson = std::function<void(const LayerReport&, nlohmann::ordered_json*)>;

struct Method {
  std::string name;
  std::vector<MethodOption> takes;                  // option groups beyond the common ones
  std::function<void(QuantizeOptions*)> defaults;   // on top of w4 g128 sym (optional)
  std::function<Status(const QuantizeOptions&)> validate;  // rules of this method's own (optional)
  ConfigJson config_json;  // keys added to quantization_config and the resume manifest (optional)
  ReportJson report_json;  // keys added to the report (optional)
  LayerJson layer_json;    // keys added to each of the report's layers (optional)
  bool int8_activations = false;  // the output always runs with int8 activations (W8A8)
  // Zero-shot methods quantize one linear at a time, calibrated ones a decoder block at a time on
  // calibration data. A row with both steps is zero-shot unless calibration data is given
  // (llm.int8: outlier columns found per call, or fixed from the calibration activations).
  LinearStep quantize_linear;
  BlockStep quantize_block;
  // Calibrated: whether the next block sees this one quantized (GPTQ's error propagation) or in
  // float (SmoothQuant, AWQ with RTN, OAC with --oac-once).
  std::function<bool(const QuantizeOptions&)> propagates_quantized;

  bool takes_calibration() const { return bool(quantize_block); }
  bool needs_calibration() const { return quantize_block && !quantize_linear; }
  // Whether a run with these options goes block by block on calibration data.
  bool calibrated(const QuantizeOptions& o) const {
    return quantize_block && (!quantize_linear || !o.calibration.data.empty());
  }
  bool Takes(MethodOption o) const;
};

// The rows, in the order the help texts list them (table.cc, then registered ones).
const std::deque<Method>& methods();
// The row of `name`, or nullptr.
const Method* find_method(const std::string& name);
// Adds a row (tests; a later wave's experiments). InvalidArgument for a duplicate name or a row
// with no step.
Status register_method(Method method);

// The rows (methods/*.cc).
Method rtn_method();
Method gptq_method();
Method awq_method();
Method awq_gptq_method();
Method smoothquant_method();
Method adpq_method();
Method spqr_method();
Method oac_method();
Method spqr_oac_method();
Method llm_int8_method();
Method billm_method();
Method billm_oac_method();

// ---- pieces the method files share ----

// The keys of several parts in order (rows that combine other rows' keys with their own).
ConfigJson config_keys(std::vector<ConfigJson> parts);
ReportJson report_keys(std::vector<ReportJson> parts);

// The report line of a quantized linear: relative error against `reference` (the weights the
// method meant to represent), bits per weight, outliers, and with a Hessian the output error.
LayerReport make_layer_report(const LinearInfo& l, const float* reference, const QuantizedTensor& q,
                              const float* hessian = nullptr);
// GPTQ's own numbers (loss, damping, fallbacks) in a report line.
void add_gptq_stats(const GptqResult& g, LayerReport* r);
// "self_attn.q_proj" for "model.layers.3.self_attn.q_proj": progress items.
std::string short_module_name(const std::string& module);

// The GPTQ engine over one block (gptq, spqr, oac, spqr+oac): per stage (q/k/v, o, gate/up,
// down with true_sequential; else one) the Hessians of the stage's inputs from `hessians`, then
// each linear solved by `solve`. Between stages the block is left quantized when the method
// propagates quantized blocks, so later stages see the earlier ones' error.
using HessianSource = std::function<Result<HessianMatrices>(
    BlockContext& ctx, const std::vector<LinearInfo>& in_stage, const BlockwiseCalibrator::WindowProgress& progress)>;
// Solves one linear; `outlier_threshold` receives the threshold used when the solver picks one.
using LinearSolver = std::function<Result<GptqResult>(const float* w, const LinearInfo& l, const float* hessian,
                                                      const QuantizeOptions& options, double* outlier_threshold)>;
// rows_separable: `solve` is GPTQ's solver (gptq_solver), which quantizes every row on its own
// given H (not SpQR's, whose outlier threshold and bilevel statistics span rows): under MPI a linear
// may then be solved in row pieces on several ranks that share one inverse factor
// (gptq_quantize_with_factor; the same bits as one solve).
Result<BlockResult> gptq_engine_block(BlockContext& ctx, const HessianSource& hessians, const LinearSolver& solve,
                                      bool propagates_quantized, bool rows_separable = false);
// The pieces of the GPTQ-engine rows, for the rows that combine them.
HessianSource input_hessians();      // GPTQ: H = 2 X Xᵀ of the layer inputs
HessianSource output_adaptive_hessians();  // OAC
LinearSolver gptq_solver();
LinearSolver spqr_solver();
void gptq_config_json(const QuantizeOptions& o, nlohmann::ordered_json* qc);
void gptq_report_json(const QuantizeReport& r, nlohmann::ordered_json* j);
void spqr_defaults(QuantizeOptions* o);
Status spqr_validate(const QuantizeOptions& o);
void spqr_config_json(const QuantizeOptions& o, nlohmann::ordered_json* qc);
void spqr_report_json(const QuantizeReport& r, nlohmann::ordered_json* j);
void spqr_layer_json(const LayerReport& l, nlohmann::ordered_json* e);
void oac_config_json(const QuantizeOptions& o, nlohmann::ordered_json* qc);
void oac_report_json(const QuantizeReport& r, nlohmann::ordered_json* j);
bool oac_propagates_quantized(const QuantizeOptions& o);
// Weights kept as outliers over all linears of the report (SpQR, AdpQ).
double outlier_fraction(const QuantizeReport& r);

}  // namespace llmq::internal

#endif  // LLMQ_QUANT_METHOD_H_
