// Calibration data and the block-by-block driver (internal).
//
// The driver keeps the activations of every calibration window entering the current
// decoder block, runs them through that block to collect the Hessians of its linears
// (H = 2/N sum x x^T, algorithms.md §2.4), and then runs them through the block again,
// after it was quantized, to produce the next block's inputs: later blocks see the
// quantization error of earlier ones. Only the current block's weights are materialized.
//
// Under MPI (core/cluster.h) every rank keeps every window's activations but runs only its own
// share of them through a block (Advance, InputHessians, OutputAdaptiveHessians); the outputs
// are then broadcast by their owners, and the inputs a Hessian needs are sent to the one rank
// that sums them, in window order, so each Hessian is the same bits as in one process. The other
// Collect* calls run every window on every rank (the same result everywhere, no speedup).
#ifndef LLMQ_QUANT_CALIBRATION_H_
#define LLMQ_QUANT_CALIBRATION_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "llmq/gptq.h"
#include "llmq/model.h"
#include "llmq/quantize.h"
#include "llmq/tokenizer.h"
#include "model/backward.h"

namespace llmq::internal {

struct CalibrationSet {
  int64_t seq_len = 0;
  std::vector<std::vector<int32_t>> windows;  // nsamples x seq_len token ids
  int64_t source_tokens = 0;                  // tokens the windows were drawn from
};

// Reads options.data (see CalibrationOptions::data) and draws options.nsamples windows of
// seq_len tokens (capped at max_context) at start positions from a fixed-seed generator.
// `tokenizer` is needed for text input only. Errors name the file and what is wrong.
Result<CalibrationSet> load_calibration_set(const CalibrationOptions& options, const Tokenizer* tokenizer,
                                            int64_t max_context, int64_t vocab_size);

// Pre-tokenized calibration data (.json / .bin ids), which needs no tokenizer.
bool is_token_id_file(const std::string& path);

// Which linears share one input (and so one Hessian): q/k/v, gate/up (fc1 alone), o, down (fc2).
int input_slot(LinearRole role);

// OAC's accumulation for one sequence of one linear (x [n, cols], delta [n, rows], δ multiplied by
// delta_scale): per sequence G = δᵀx is added as `rows` rows (H += GᵀG), per token the inputs
// scaled by ‖δ_t‖ (H += Σ ‖δ_t‖² x_t x_tᵀ).
void add_output_adaptive(HessianAccumulator* h, const float* x, const float* delta, int64_t n, int64_t rows,
                         float delta_scale, bool per_token);

// Finished Hessians (HessianAccumulator::Hessian()) keyed by module name; modules sharing an
// input share the matrix.
using HessianMatrices = std::map<std::string, std::shared_ptr<const std::vector<float>>>;

class BlockwiseCalibrator {
 public:
  // The model is opened in streaming mode; the windows are embedded at once.
  static Result<std::unique_ptr<BlockwiseCalibrator>> Create(const std::string& folder, CalibrationSet set,
                                                             bool fp16_activations);
  Model& model() { return *model_; }
  int64_t num_windows() const { return int64_t(set_.windows.size()); }
  int64_t seq_len() const { return set_.seq_len; }
  uint64_t activation_bytes() const;

  using WindowProgress = std::function<void(int64_t done, int64_t total)>;
  // Runs every window through block `layer` (loading it if needed) and returns one Hessian per
  // input slot of `linears`, keyed by module name (linears sharing an input share the object).
  Result<std::map<std::string, std::shared_ptr<HessianAccumulator>>> CollectHessians(
      int layer, const std::vector<LinearInfo>& linears, const WindowProgress& progress = nullptr);
  // Runs every window through block `layer` and returns max |x_j| per input channel for each
  // distinct input of `linears`, keyed by module name (shared like the Hessians).
  Result<std::map<std::string, std::shared_ptr<std::vector<float>>>> CollectInputAbsMax(
      int layer, const std::vector<LinearInfo>& linears, const WindowProgress& progress = nullptr);
  // Runs every window through block `layer` and returns the inputs of each distinct input of
  // `linears`, all windows stacked: [num_windows * seq_len, cols] row-major, keyed by module
  // name (shared like the Hessians). Memory: tokens x cols floats per distinct input.
  Result<std::map<std::string, std::shared_ptr<std::vector<float>>>> CollectInputs(
      int layer, const std::vector<LinearInfo>& linears, const WindowProgress& progress = nullptr);
  // OAC (algorithms.md §6.2): one output-adaptive Hessian per linear of `linears` (all of block
  // `layer`). Each window's stored input runs through blocks layer..L-1 and the head in float and
  // back (internal::backward_window, the window's next tokens as labels); per sequence
  // (per_token false) H = Σ_n G_nᵀG_n with G_n = Σ_t δ_t x_tᵀ, per token H = Σ ‖δ_t‖² x_t x_tᵀ.
  // Loads (and keeps) blocks layer..L-1 in float: the model's weights from `layer` on are resident.
  Result<std::map<std::string, std::shared_ptr<HessianAccumulator>>> CollectOutputAdaptiveHessians(
      int layer, const std::vector<LinearInfo>& linears, bool per_token, const WindowProgress& progress = nullptr);
  // CollectHessians(...) finished, with the windows spread over the ranks: each distinct input's
  // Hessian is summed on one rank (in window order) and broadcast to all.
  Result<HessianMatrices> InputHessians(int layer, const std::vector<LinearInfo>& linears,
                                        const WindowProgress& progress = nullptr);
  // CollectOutputAdaptiveHessians(...) finished, spread over the ranks likewise (per linear).
  Result<HessianMatrices> OutputAdaptiveHessians(int layer, const std::vector<LinearInfo>& linears, bool per_token,
                                                 const WindowProgress& progress = nullptr);
  // OAC with the float model's gradients (--oac-once): the first OAC call keeps, per own window,
  // ∂L/∂out of every later block from its backward pass, when that fits in `budget_bytes`; later
  // calls differentiate only their block from the kept gradient (backward_block). Valid only while
  // the blocks after the first stay float and the stored activations are the float model's.
  void KeepOutputGradients(int64_t budget_bytes) { gradient_budget_ = budget_bytes; }
  bool kept_output_gradients() const { return kept_from_ >= 0; }
  // Runs every window through block `layer`; its outputs become the stored activations. Under
  // MPI each rank runs its own windows and the outputs are broadcast.
  Status Advance(int layer, const WindowProgress& progress = nullptr);
  // The stored activations of window i, [seq_len, hidden] (for tests).
  std::vector<float> Activations(int64_t i) const;

 private:
  BlockwiseCalibrator() = default;
  void Load(int64_t i, float* x) const;
  void Store(int64_t i, const float* x);
  Status RunAll(int layer, const LinearInputHook& hook, bool keep_outputs, const WindowProgress& progress);
  // Windows [begin, end) only; progress is scaled to the whole of [0, num_windows()).
  Status RunWindows(int layer, int64_t begin, int64_t end, const LinearInputHook& hook, bool keep_outputs,
                    const WindowProgress& progress);
  // Window i's stored activations from its owner rank to every rank.
  void BroadcastWindow(int64_t i, int owner);
  // OAC: which of the three ways block `layer`'s windows [begin, end) are differentiated (see
  // KeepOutputGradients), then window i's backward for block `layer`'s linears.
  enum class GradientSource { kFromLoss, kFromLossKeeping, kKept };
  GradientSource PlanGradients(int layer, int64_t windows);
  Status WindowBackward(int layer, int64_t i, const float* x, GradientSource source,
                        const LinearGradientHook& hook, BackwardWorkspace* workspace);

  std::unique_ptr<Model> model_;
  CalibrationSet set_;
  bool fp16_ = false;
  int64_t hidden_ = 0;
  std::vector<std::vector<float>> act32_;
  std::vector<std::vector<uint16_t>> act16_;
  int64_t gradient_budget_ = 0;
  int kept_from_ = -1;  // the block whose backward pass kept the later blocks' ∂L/∂out
  std::map<int64_t, std::map<int, std::vector<float>>> kept_;  // window -> block -> ∂L/∂out
};

// The windows of `options` for the model in input_folder (tokenized with its tokenizer unless the
// data are token ids) and a calibrator over them; fills *report (data, windows, tokens).
Result<std::unique_ptr<BlockwiseCalibrator>> open_calibrator(const std::string& input_folder, const Checkpoint& ckpt,
                                                             const CalibrationOptions& options,
                                                             CalibrationReport* report);

}  // namespace llmq::internal

#endif  // LLMQ_QUANT_CALIBRATION_H_
