// Rows "billm" and "billm+oac": BiLLM (Huang et al., ICML 2024, arXiv 2402.04291), eq. (5)-(9):
// per block of 128 columns the most salient columns (w² / [H⁻¹]_cc² summed over rows) binarized
// twice (residual pair), the rest split at a searched |w| break point into two parts binarized
// once each, the block's error compensated on the later columns (the solver: src/quant/billm.cc).
// "billm+oac" swaps in the output-adaptive Hessian of OAC (Edalati et al., arXiv 2405.17470) for
// both the salience and the compensation, as the OAC paper does with BiLLM (algorithms.md §6.4).
#include "quant/method.h"

namespace llmq::internal {
namespace {

void billm_defaults(QuantizeOptions* o) { o->spec = billm_spec(128); }

Status billm_validate(const QuantizeOptions& o) {
  if (!o.spec.lookup || o.spec.bits != 2)
    return Status::InvalidArgument(o.method + " writes 2-bit lookup codes (one sign and one split or residual bit per "
                                   "weight); --bits, --asym and --scale-bits do not apply (got " + o.spec.ToString() + ")");
  if (o.billm.max_salient_columns < 1 || o.billm.split_candidates < 1)
    return Status::InvalidArgument(o.method + ": max_salient_columns and split_candidates must be >= 1");
  return Status::Ok();
}

LinearSolver billm_solver() {
  return [](const float* w, const LinearInfo& l, const float* h, const QuantizeOptions& o, double*) {
    return billm_quantize(w, l.rows, l.cols, h, o.SpecFor(l.module), o.gptq, o.billm);
  };
}

void billm_config_json(const QuantizeOptions& o, nlohmann::ordered_json* qc) {
  (*qc)["billm"] = {{"max_salient_columns", o.billm.max_salient_columns},
                    {"split_candidates", o.billm.split_candidates},
                    {"hessian_weighted_search", o.billm.hessian_weighted_search}};
  (*qc)["damp"] = o.gptq.damp;
  (*qc)["true_sequential"] = o.true_sequential;
}

// Bits per weight as the paper counts them (section 3.4): 1 per weight, 1 more per salient weight,
// and the salient-column bitmap (1 per column per block row); as stored, every weight has 2 bits
// (sign + split bit or second sign) and each row of each block 8 fp16 levels.
void billm_report_json(const QuantizeReport& r, nlohmann::ordered_json* j) {
  double salient = 0.0, weights = 0.0;
  for (const LayerReport& l : r.layers) {
    salient += std::max(0.0, l.salient_fraction) * double(l.rows * l.cols);
    weights += double(l.rows * l.cols);
  }
  const double frac = weights > 0 ? salient / weights : 0.0;
  const int block = r.spec.group_size;
  (*j)["billm"] = {{"max_salient_columns", r.billm.max_salient_columns},
                   {"split_candidates", r.billm.split_candidates},
                   {"hessian_weighted_search", r.billm.hessian_weighted_search},
                   {"block", block},
                   {"salient_fraction", frac},
                   {"paper_bits_per_weight", 1.0 + frac + (block > 0 ? 1.0 / block : 0.0)},
                   {"damp", r.gptq.damp}};
}

void billm_layer_json(const LayerReport& l, nlohmann::ordered_json* e) { (*e)["salient_fraction"] = l.salient_fraction; }

Method billm_row(const std::string& name, HessianSource (*hessians)(), bool oac) {
  Method m;
  m.name = name;
  m.takes = {MethodOption::kGptq, MethodOption::kTrueSequential, MethodOption::kBillm};
  if (oac) m.takes.push_back(MethodOption::kOac);
  m.defaults = billm_defaults;
  m.validate = billm_validate;
  m.config_json = oac ? config_keys({oac_config_json, billm_config_json}) : ConfigJson(billm_config_json);
  m.report_json = oac ? report_keys({oac_report_json, billm_report_json}) : ReportJson(billm_report_json);
  m.layer_json = billm_layer_json;
  m.quantize_block = [hessians, oac](BlockContext& ctx) {
    return gptq_engine_block(ctx, hessians(), billm_solver(), oac ? oac_propagates_quantized(ctx.options) : true);
  };
  m.propagates_quantized = oac ? oac_propagates_quantized : [](const QuantizeOptions&) { return true; };
  return m;
}

}  // namespace

Method billm_method() { return billm_row("billm", input_hessians, false); }
Method billm_oac_method() { return billm_row("billm+oac", output_adaptive_hessians, true); }

}  // namespace llmq::internal
