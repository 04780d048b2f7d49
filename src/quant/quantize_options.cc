// QuantizeOptions::ForMethod / Validate: every method's defaults and rules, in the library, so a
// program calling quantize_checkpoint gets what `llmq quantize` gets (the CLI only maps flags).
#include <cmath>

#include "llmq/quantize.h"

namespace llmq {
namespace {

bool is_spqr(const std::string& m) { return m == "spqr" || m == "spqr+oac"; }
bool is_awq(const std::string& m) { return m == "awq" || m == "awq+gptq"; }
bool is_oac(const std::string& m) { return m == "oac" || m == "spqr+oac"; }
bool uses_gptq(const std::string& m) { return m == "gptq" || m == "awq+gptq" || is_spqr(m) || is_oac(m); }

}  // namespace

const std::vector<std::string>& quantize_methods() {
  static const std::vector<std::string> kMethods = {"rtn", "gptq", "awq", "awq+gptq", "smoothquant",
                                                    "adpq", "spqr", "oac", "spqr+oac"};
  return kMethods;
}

Result<QuantizeOptions> QuantizeOptions::ForMethod(const std::string& method) {
  QuantizeOptions o;
  bool known = false;
  for (const std::string& m : quantize_methods()) known |= m == method;
  if (!known) {
    std::string list;
    for (const std::string& m : quantize_methods()) list += (list.empty() ? "" : ", ") + m;
    return Status::InvalidArgument("unknown method '" + method + "' (available: " + list + ")");
  }
  o.method = method;
  o.spec.bits = 4;
  o.spec.group_size = 128;
  o.spec.symmetric = true;
  if (method == "smoothquant") {  // W8A8: int8 per-channel weights
    o.spec.bits = 8;
    o.spec.group_size = 0;
  }
  if (is_spqr(method)) {  // SpQR's reference: groups of 16, 3-bit bilevel scales, percdamp 1, tau 0.2
    o.spec.group_size = 16;
    o.spec.scale_bits = 3;
    o.spec.scale_group_rows = 16;
    o.gptq.damp = 1.0;
    o.gptq.outlier_threshold = 0.2;
  }
  if (is_awq(method)) o.calibration.seq_len = 512;  // AWQ's reference calibrates on 512-token blocks
  return o;
}

Status QuantizeOptions::Validate() const {
  const std::string& m = method;
  LLMQ_ASSIGN_OR_RETURN(QuantizeOptions defaults, ForMethod(m));  // unknown method
  (void)defaults;
  LLMQ_RETURN_IF_ERROR(spec.Validate());
  const bool smoothquant = m == "smoothquant", adpq = m == "adpq";
  const bool calibrated = m != "rtn" && !adpq;
  if (true_sequential && m != "gptq" && m != "spqr")  // not OAC: one backward per block
    return Status::InvalidArgument("true_sequential applies to methods gptq and spqr only");
  if (target_bits > 0 && !is_spqr(m)) return Status::InvalidArgument("target_bits applies to methods spqr and spqr+oac only");
  if (!(target_bits >= 0.0)) return Status::InvalidArgument("target_bits must be a positive number (0: none)");
  if (is_awq(m) && (awq.grid < 1 || awq.grid > 1000 || awq.clip_grid < 1 || awq.clip_tokens < 1 ||
                    !(awq.max_shrink >= 0.0 && awq.max_shrink < 1.0)))
    return Status::InvalidArgument("awq: grid must be in 1..1000, clip_grid and clip_tokens positive and max_shrink in [0, 1)");
  if (calibrated && calibration.data.empty())
    return Status::InvalidArgument("--method " + m + " needs calibration data (--calib <data>, e.g. a text file in the model's domain)");
  if (calibrated && (calibration.nsamples <= 0 || calibration.seq_len < 2))
    return Status::InvalidArgument("calibration needs nsamples > 0 and seq_len >= 2");
  if (uses_gptq(m) && (!(gptq.damp > 0.0) || gptq.block_size <= 0))
    return Status::InvalidArgument("gptq: damp must be positive and block_size a positive integer");
  if (!is_spqr(m) && gptq.outlier_threshold != 0.0)
    return Status::InvalidArgument("outlier_threshold applies to methods spqr and spqr+oac only");
  if (is_spqr(m) && target_bits <= 0.0 && !(gptq.outlier_threshold > 0.0))  // target_bits picks it per linear
    return Status::InvalidArgument("spqr: outlier_threshold must be positive (infinity: no outliers), or give target_bits");
  if (smoothquant && (spec.bits != 8 || spec.group_size != 0 || !spec.symmetric))
    return Status::InvalidArgument("smoothquant is W8A8: it needs --bits 8 --group-size 0 --sym (got " + spec.ToString() + ")");
  if (!(alpha >= 0.0 && alpha <= 1.0)) return Status::InvalidArgument("smoothquant alpha must be in [0, 1]");
  if (adpq && !(this->adpq.outlier_fraction >= 0.0 && this->adpq.outlier_fraction < 1.0 && this->adpq.lambda >= 0.0 &&
                this->adpq.gamma >= 0.0))
    return Status::InvalidArgument("adpq: outlier_fraction must be in [0, 1), lambda >= 0 and gamma >= 0");
  if (max_shard_bytes == 0) return Status::InvalidArgument("max_shard_bytes must be positive");
  return Status::Ok();
}

}  // namespace llmq
