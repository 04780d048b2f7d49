// QuantizeOptions::ForMethod / Validate: every method's defaults and rules, in the library, so a
// program calling quantize_checkpoint gets what `llmq quantize` gets (the CLI only maps flags).
// The rules common to all methods are here; a method's own come from its row (quant/method.h).
#include <cctype>
#include <cmath>

#include "llmq/quantize.h"
#include "quant/ggml_plan.h"
#include "quant/method.h"

namespace llmq {
namespace {

// "a", "a and b", "a, b and c"
std::string join_names(const std::vector<std::string>& names) {
  std::string out;
  for (size_t i = 0; i < names.size(); ++i)
    out += (i == 0 ? "" : i + 1 == names.size() ? " and " : ", ") + names[i];
  return out;
}

Status only_for(MethodOption o, const std::string& what) {
  return Status::InvalidArgument(what + " applies to methods " + join_names(methods_taking(o)) + " only");
}

std::string to_lower(std::string s) {
  for (char& c : s) c = char(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

}  // namespace

std::vector<std::string> gguf_type_names() { return internal::gguf_type_names(); }

std::vector<std::string> quantize_methods() {
  std::vector<std::string> names;
  for (const internal::Method& m : internal::methods()) names.push_back(m.name);
  return names;
}

bool method_takes(const std::string& method, MethodOption o) {
  const internal::Method* m = internal::find_method(method);
  return m != nullptr && m->Takes(o);
}

std::vector<std::string> methods_taking(MethodOption o) {
  std::vector<std::string> names;
  for (const internal::Method& m : internal::methods())
    if (m.Takes(o)) names.push_back(m.name);
  return names;
}

Result<QuantizeOptions> QuantizeOptions::ForMethod(const std::string& method) {
  const internal::Method* m = internal::find_method(method);
  if (m == nullptr) {
    std::string list;
    for (const std::string& name : quantize_methods()) list += (list.empty() ? "" : ", ") + name;
    return Status::InvalidArgument("unknown method '" + method + "' (available: " + list + ")");
  }
  QuantizeOptions o;
  o.method = method;
  o.spec.bits = 4;
  o.spec.group_size = 128;
  o.spec.symmetric = true;
  if (m->defaults) m->defaults(&o);
  return o;
}

bool method_needs_calibration(const std::string& method) {
  const internal::Method* m = internal::find_method(method);
  return m != nullptr && m->needs_calibration();
}

Status QuantizeOptions::Validate() const {
  LLMQ_RETURN_IF_ERROR(ForMethod(method).status());  // unknown method
  const internal::Method& m = *internal::find_method(method);
  LLMQ_RETURN_IF_ERROR(spec.Validate());
  if (spec.lookup && !ForMethod(method)->spec.lookup)
    return Status::InvalidArgument("lookup codes come from billm and billm+oac only (--method " + method + " writes a uniform grid)");
  if (true_sequential && !m.Takes(MethodOption::kTrueSequential)) return only_for(MethodOption::kTrueSequential, "true_sequential");
  if (target_bits > 0 && !m.Takes(MethodOption::kOutliers) && !m.Takes(MethodOption::kBitBudget)) {
    std::vector<std::string> names = methods_taking(MethodOption::kBitBudget);
    for (const std::string& n : methods_taking(MethodOption::kOutliers)) names.push_back(n);
    return Status::InvalidArgument("target_bits applies to methods " + join_names(names) + " only");
  }
  const bool bit_budget = target_bits > 0 && m.Takes(MethodOption::kBitBudget);
  if (!bit_budget && (!bit_menu.empty() || bit_sensitivity != BitSensitivity::kDefault || bit_estimate != BitEstimate::kRtn))
    return Status::InvalidArgument("bit_menu and bit_sensitivity apply to a bit budget (target_bits with methods " +
                                   join_names(methods_taking(MethodOption::kBitBudget)) + ")");
  if (bit_budget) {
    if (bit_menu.size() > 256) return Status::InvalidArgument("bit_menu holds at most 256 specs");
    // With a GGUF type the budget chooses among ggml block types (the file stays loadable by
    // llama.cpp); otherwise among llmq's own uniform grids.
    const bool ggml_menu = !gguf_type.empty();
    for (size_t i = 0; i < bit_menu.size(); ++i) {
      Status st = bit_menu[i].Validate();
      if (!st.ok()) return st.WithContext("bit_menu[" + std::to_string(i) + "]");
      if (bit_menu[i].lookup || bit_menu[i].is_ggml() != ggml_menu)
        return Status::InvalidArgument("bit_menu[" + std::to_string(i) + "] (" + bit_menu[i].ToString() + "): " +
                                       (ggml_menu ? "with a GGUF type the menu holds ggml types (q2_k ... q8_0)"
                                                  : "the menu holds uniform llmq grids (ggml types go with a GGUF type)"));
    }
    if ((bit_sensitivity == BitSensitivity::kHessian || bit_sensitivity == BitSensitivity::kOutputAdaptive) &&
        calibration.data.empty())
      return Status::InvalidArgument(std::string("the ") + bit_sensitivity_name(bit_sensitivity) +
                                     " bit sensitivity needs calibration data (--calib)");
    if (bit_estimate == BitEstimate::kGptq &&
        !(bit_sensitivity == BitSensitivity::kHessian || bit_sensitivity == BitSensitivity::kOutputAdaptive ||
          (bit_sensitivity == BitSensitivity::kDefault && !calibration.data.empty())))
      return Status::InvalidArgument("the gptq bit estimate needs a Hessian: the hessian or oac bit sensitivity and calibration data");
  }
  if (!(target_bits >= 0.0)) return Status::InvalidArgument("target_bits must be a positive number (0: none)");
  if (m.needs_calibration() && calibration.data.empty())
    return Status::InvalidArgument("--method " + method + " needs calibration data (--calib <data>, e.g. a text file in the model's domain)");
  if (m.calibrated(*this) && (calibration.nsamples <= 0 || calibration.seq_len < 2))
    return Status::InvalidArgument("calibration needs nsamples > 0 and seq_len >= 2");
  if ((gptq.act_order || gptq.static_groups) && !m.Takes(MethodOption::kActOrder))
    return only_for(MethodOption::kActOrder, "act-order and static groups (act_order, static_groups)");
  if (m.Takes(MethodOption::kGptq) && (!(gptq.damp > 0.0) || gptq.block_size <= 0))
    return Status::InvalidArgument("gptq: damp must be positive and block_size a positive integer");
  if (!m.Takes(MethodOption::kOutliers) && gptq.outlier_threshold != 0.0)
    return only_for(MethodOption::kOutliers, "outlier_threshold");
  const ActivationOutlierOptions& ao = activation_outliers;
  if (!(std::isfinite(ao.threshold) && ao.threshold >= 0.0))
    return Status::InvalidArgument("the activation outlier threshold must be a finite number >= 0");
  if (!ao.columns.empty())
    return Status::InvalidArgument("activation_outliers.columns is a runtime option (PackOptions), not a quantize option");
  if (ao.integer && !(ao.threshold > 0.0))
    return Status::InvalidArgument("integer outliers need an activation outlier threshold (e.g. 6.0)");
  if (ao.enabled() && !m.int8_activations && !int8_activations)
    return Status::InvalidArgument("activation outliers (--outlier-threshold, --integer-outliers) decompose int8 "
                                   "activations: add --int8-activations or use a W8A8 method (llm.int8, smoothquant)");
  const BillmOptions billm_defaults;
  if (!m.Takes(MethodOption::kBillm) &&
      (billm.max_salient_columns != billm_defaults.max_salient_columns ||
       billm.split_candidates != billm_defaults.split_candidates ||
       billm.hessian_weighted_search != billm_defaults.hessian_weighted_search))
    return only_for(MethodOption::kBillm, "billm options");
  if (!(alpha >= 0.0 && alpha <= 1.0)) return Status::InvalidArgument("smoothquant alpha must be in [0, 1]");
  if (max_shard_bytes == 0) return Status::InvalidArgument("max_shard_bytes must be positive");
  if (!gguf_type.empty()) {
    bool known = false;
    for (const std::string& n : gguf_type_names()) known |= n == to_lower(gguf_type);
    if (!known)
      return Status::InvalidArgument("unknown GGUF type '" + gguf_type + "' (expected one of " +
                                     join_names(gguf_type_names()) + ")");
    if (!m.Takes(MethodOption::kGgmlGrid)) return only_for(MethodOption::kGgmlGrid, "a GGUF type");
    if (gptq.act_order && !gptq.static_groups)
      return Status::InvalidArgument("act-order with a GGUF type needs static groups: ggml blocks have no group index");
    if (int8_activations) return Status::InvalidArgument("int8 activations do not apply to a GGUF type");
  }
  for (const auto& [module, s] : module_specs) {
    Status st = s.Validate();
    if (!st.ok()) return st.WithContext("module_specs['" + module + "']");
  }
  if (m.validate) LLMQ_RETURN_IF_ERROR(m.validate(*this));
  return Status::Ok();
}

}  // namespace llmq
