// The method table (method.h): the one list of rows, the lookup and the pieces every row's
// block step shares.
#include "quant/method.h"

#include <algorithm>
#include <deque>
#include <mutex>

namespace llmq::internal {
namespace {

std::deque<Method>& table() {
  // The one place a method is listed; the order is the order of the help texts. A deque: rows
  // registered later never move the ones find_method handed out.
  static std::deque<Method> rows = {rtn_method(),         gptq_method(), awq_method(),
                                     awq_gptq_method(),    smoothquant_method(), adpq_method(),
                                     spqr_method(),        oac_method(),  spqr_oac_method(),
                                     llm_int8_method(),    billm_method(), billm_oac_method()};
  return rows;
}

std::mutex& table_mutex() {
  static std::mutex m;
  return m;
}

}  // namespace

bool Method::Takes(MethodOption o) const {
  if (o == MethodOption::kCalibration) return takes_calibration();
  return std::find(takes.begin(), takes.end(), o) != takes.end();
}

const std::deque<Method>& methods() { return table(); }

const Method* find_method(const std::string& name) {
  for (const Method& m : table())
    if (m.name == name) return &m;
  return nullptr;
}

Status register_method(Method method) {
  std::lock_guard<std::mutex> lock(table_mutex());
  if (method.name.empty()) return Status::InvalidArgument("a method needs a name");
  if (find_method(method.name) != nullptr) return Status::InvalidArgument("method '" + method.name + "' exists already");
  if (!method.quantize_linear && !method.quantize_block)
    return Status::InvalidArgument("method '" + method.name + "': give quantize_linear, quantize_block or both");
  if (method.takes_calibration() && !method.propagates_quantized)
    method.propagates_quantized = [](const QuantizeOptions&) { return false; };
  table().push_back(std::move(method));
  return Status::Ok();
}

ConfigJson config_keys(std::vector<ConfigJson> parts) {
  return [parts = std::move(parts)](const QuantizeOptions& o, nlohmann::ordered_json* j) {
    for (const ConfigJson& p : parts) p(o, j);
  };
}

ReportJson report_keys(std::vector<ReportJson> parts) {
  return [parts = std::move(parts)](const QuantizeReport& r, nlohmann::ordered_json* j) {
    for (const ReportJson& p : parts) p(r, j);
  };
}

LayerReport make_layer_report(const LinearInfo& l, const float* reference, const QuantizedTensor& q,
                              const float* hessian) {
  LayerReport r;
  r.module = l.module;
  r.rows = l.rows;
  r.cols = l.cols;
  r.relative_error = relative_error(reference, q);
  r.bits_per_weight = q.bits_per_weight();
  r.outliers = int64_t(q.outliers.nnz());
  if (hessian != nullptr) {
    const std::vector<float> deq = dequantize(q);
    r.output_relative_error = output_relative_error(reference, deq.data(), l.rows, l.cols, hessian);
  }
  return r;
}

void add_gptq_stats(const GptqResult& g, LayerReport* r) {
  r->gptq_loss = g.loss;
  r->damp = g.damp;
  r->damp_retries = g.damp_retries;
  r->fell_back_to_rtn = g.fell_back_to_rtn;
  r->dead_columns = g.dead_columns;
  r->outliers = g.outliers;
  if (g.q.spec.lookup && !g.q.column_classes.empty()) {  // BiLLM: the salient columns are class 1
    int64_t salient = 0;
    for (uint8_t c : g.q.column_classes) salient += c;
    r->salient_fraction = double(salient) / double(g.q.column_classes.size());
  }
}

std::string short_module_name(const std::string& module) {
  const size_t last = module.rfind('.');
  if (last == std::string::npos || last == 0) return module;
  const size_t prev = module.rfind('.', last - 1);
  return prev == std::string::npos ? module : module.substr(prev + 1);
}

double outlier_fraction(const QuantizeReport& r) {
  int64_t outliers = 0, weights = 0;
  for (const LayerReport& l : r.layers) {
    outliers += l.outliers;
    weights += l.rows * l.cols;
  }
  return weights > 0 ? double(outliers) / double(weights) : 0.0;
}

}  // namespace llmq::internal
