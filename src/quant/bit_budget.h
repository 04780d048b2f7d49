// Bit budgets (issue 21): each linear gets a spec from a menu so that the written bits per weight
// of all linears stay within a target and the summed estimated loss is least. Internal; the
// options are QuantizeOptions::target_bits, bit_menu and bit_sensitivity (llmq/quantize.h).
#ifndef LLMQ_QUANT_BIT_BUDGET_H_
#define LLMQ_QUANT_BIT_BUDGET_H_

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "llmq/checkpoint.h"
#include "llmq/quantize.h"

namespace llmq::internal {

// One spec of the menu for one linear: its written bytes and estimated loss.
struct BitOption {
  QuantSpec spec;
  uint64_t bytes = 0;
  double loss = 0.0;
};

// What a linear loses at `spec`: W quantized by RTN (or, with `gptq`, by GPTQ with that Hessian
// and options), then ||ΔW||² without a Hessian, else tr(ΔW H ΔWᵀ) (on at most 512 evenly spaced
// rows, scaled to all rows).
Result<BitOption> estimate_bit_option(const float* w, int64_t rows, int64_t cols, const QuantSpec& spec,
                                      const float* hessian, const GptqOptions* gptq = nullptr);

// The multiple-choice knapsack: one option per linear, Σ bytes <= budget_bytes, least Σ loss.
// Exact on the losses with each option's bytes rounded up to units of budget / 16384 (so the
// budget holds exactly). InvalidArgument when even the smallest options exceed the budget.
Result<std::vector<int>> choose_bit_options(const std::vector<std::vector<BitOption>>& per_linear,
                                            uint64_t budget_bytes);

struct BitPlan {
  std::map<std::string, QuantSpec> specs;         // module -> chosen spec
  std::map<std::string, double> estimated_loss;   // module -> its estimate at that spec
  double bits_per_weight = 0.0, loss = 0.0, seconds = 0.0;
  BitSensitivity sensitivity = BitSensitivity::kWeight;
  std::vector<QuantSpec> menu;
};

// Estimates every linear at every spec of the menu (the float model: a calibration pass with the
// blocks propagated in float for the Hessian sensitivities) and chooses. `progress` gets
// (linears done, total, module).
Result<BitPlan> plan_bit_budget(const std::string& input_folder, const Checkpoint& ckpt,
                                const std::vector<LinearInfo>& linears, const QuantizeOptions& options,
                                const std::function<void(int64_t, int64_t, const std::string&)>& progress);

}  // namespace llmq::internal

#endif  // LLMQ_QUANT_BIT_BUDGET_H_
