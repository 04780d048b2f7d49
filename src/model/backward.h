// Internal: the backward pass of the model's next-token cross-entropy, for OAC's output-adaptive
// Hessians (algorithms.md §6). It delivers, per linear, its input x_t and output gradient
// δ_t = ∂L/∂y_t for every token of a window; no weight gradient is formed.
#ifndef LLMQ_SRC_MODEL_BACKWARD_H_
#define LLMQ_SRC_MODEL_BACKWARD_H_

#include <cstdint>
#include <functional>
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
// Memory: the input of each block from `first` on ([n, hidden] each), then one block's
// intermediates at a time (recomputed from its input): q/k/v, the attention probabilities
// (heads x n x n), the MLP activations; plus [n, vocab] logits.
Result<WindowGradient> backward_window(const Model& model, int first, int last_hooked, const float* x,
                                       const int32_t* tokens, int64_t n, const LinearGradientHook& hook);

}  // namespace llmq::internal

#endif  // LLMQ_SRC_MODEL_BACKWARD_H_
