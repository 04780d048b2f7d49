// Row "adpq": AdpQ (Ghaffari et al., arXiv 2405.13358), zero-shot: outliers chosen by adaptive-LASSO
// soft-thresholding, beta_j = sign(w_j) (|w_j| - lambda / |w_j|^gamma)_+, kept in their code slots
// with a second per-group scale (or in fp16); RTN for the rest (the quantizer itself: src/quant/adpq.cc).
#include "llmq/adpq.h"
#include "quant/method.h"

namespace llmq::internal {
namespace {

nlohmann::ordered_json adpq_options_json(const AdpqOptions& a) {
  const char* scope = a.scope == AdpqScope::kTensor ? "tensor" : a.scope == AdpqScope::kRow ? "row" : "group";
  nlohmann::ordered_json j = {{"gamma", a.gamma}, {"scope", scope},
                              {"storage", a.storage == AdpqStorage::kInSlot ? "slot" : "fp16"}};
  if (a.lambda > 0) j["lambda"] = a.lambda;
  else j["target_outlier_fraction"] = a.outlier_fraction;
  return j;
}

}  // namespace

Method adpq_method() {
  Method m;
  m.name = "adpq";
  m.takes = {MethodOption::kAdpq, MethodOption::kBitBudget};
  m.validate = [](const QuantizeOptions& o) {
    const AdpqOptions& a = o.adpq;
    if (!(a.outlier_fraction >= 0.0 && a.outlier_fraction < 1.0 && a.lambda >= 0.0 && a.gamma >= 0.0))
      return Status::InvalidArgument("adpq: outlier_fraction must be in [0, 1), lambda >= 0 and gamma >= 0");
    return Status::Ok();
  };
  m.config_json = [](const QuantizeOptions& o, nlohmann::ordered_json* qc) { (*qc)["adpq"] = adpq_options_json(o.adpq); };
  m.report_json = [](const QuantizeReport& r, nlohmann::ordered_json* j) {
    (*j)["adpq"] = adpq_options_json(r.adpq);
    (*j)["outlier_fraction"] = outlier_fraction(r);
  };
  m.layer_json = [](const LayerReport& l, nlohmann::ordered_json* e) { (*e)["outliers"] = l.outliers; };
  m.quantize_linear = [](const float* w, int64_t rows, int64_t cols, const QuantizeOptions& o) {
    return quantize_adpq(w, rows, cols, o.spec, o.adpq);
  };
  return m;
}

}  // namespace llmq::internal
