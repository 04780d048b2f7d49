// Internal: the backward pass of the model's next-token cross-entropy, for OAC's output-adaptive
// Hessians (algorithms.md §6). It delivers, per linear, its input x_t and output gradient
// δ_t = ∂L/∂y_t for every token of a window; no weight gradient is formed.
#ifndef LLMQ_SRC_MODEL_BACKWARD_H_
#define LLMQ_SRC_MODEL_BACKWARD_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "llmq/model.h"

namespace llmq::internal {

// One linear's tokens of one window: x [n, cols] (its input), delta [n, rows] (∂L/∂y).
using LinearGradientHook =
    std::function<void(const LinearInfo& linear, const float* x, const float* delta, int64_t n)>;

struct WindowGradient {
  double loss = 0.0;       // mean next-token cross-entropy of the window (n - 1 predictions)
  std::vector<float> dx;   // ∂L/∂x, [n, hidden]: the gradient at the input of block `first`
};

// L = mean over t < n-1 of -log softmax(logits_t)[tokens[t + 1]]: the window's own next tokens as
// labels (the empirical Fisher's). x [n, hidden] is the input of block `first` at positions
// 0..n-1 (Model::Embed, then blocks 0..first-1, quantized or not); blocks first..L-1 and the head
// run in float and must be loaded with float linears. Backward reaches every linear of blocks
// first..last_hooked and calls `hook` for each (null: no calls, loss and dx only).
//
// Memory: the input of each block from `first` on ([n, hidden] each); the intermediates of the
// last blocks (q/k/v, the attention probabilities heads x n x n, the MLP activations) up to
// `tape_budget_bytes`, kept from the forward (those blocks cost one forward and one backward,
// the others a second forward); one more block's intermediates for the blocks below them,
// recomputed from their inputs; plus [n, vocab] logits.
//
// `workspace` (optional) keeps those buffers between calls: pass the same one for every window
// of a run, so that they are not allocated and page-faulted again each time. `tape_budget_bytes`
// bounds the kept intermediates (0: recompute every block's).
class BackwardWorkspace {
 public:
  BackwardWorkspace();
  ~BackwardWorkspace();
  struct Buffers;
  std::unique_ptr<Buffers> buffers;
};
inline constexpr int64_t kDefaultTapeBudgetBytes = int64_t(2) << 30;
// `on_output_gradient` (optional) receives ∂L/∂out [n, hidden] of every block l in first..L-1,
// top down, before that block is differentiated.
using BlockGradientHook = std::function<void(int layer, const float* dout)>;
Result<WindowGradient> backward_window(const Model& model, int first, int last_hooked, const float* x,
                                       const int32_t* tokens, int64_t n, const LinearGradientHook& hook,
                                       BackwardWorkspace* workspace = nullptr,
                                       int64_t tape_budget_bytes = kDefaultTapeBudgetBytes,
                                       const BlockGradientHook& on_output_gradient = nullptr);

// One block differentiated from a given gradient at its output: block `layer` runs forward from x
// [n, hidden] (keeping its intermediates), then back from dout = ∂L/∂out, calling `hook` for its
// linears. With the dout backward_window gave on_output_gradient for this block, and the input
// that backward_window's forward reached it with, `hook` sees what backward_window's would: so
// one backward_window per window feeds every later block (OAC linear in depth, algorithms.md §6).
Status backward_block(const Model& model, int layer, const float* x, const float* dout, int64_t n,
                      const LinearGradientHook& hook, BackwardWorkspace* workspace = nullptr);

}  // namespace llmq::internal

#endif  // LLMQ_SRC_MODEL_BACKWARD_H_
