// Row "rtn": round to nearest per group (the range rules in llmq/quant.h), zero-shot, one linear
// at a time. With int8_activations the output runs W8A8/W4A8 without smoothing.
#include "quant/method.h"

namespace llmq::internal {

Method rtn_method() {
  Method m;
  m.name = "rtn";
  m.takes = {MethodOption::kGgmlGrid, MethodOption::kBitBudget};
  m.quantize_linear = [](const float* w, int64_t rows, int64_t cols, const QuantizeOptions& o) {
    return quantize_rtn(w, rows, cols, o.spec);
  };
  return m;
}

}  // namespace llmq::internal
