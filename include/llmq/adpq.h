// AdpQ: zero-shot quantization with outliers separated by adaptive-LASSO soft-thresholding.
//
// Ghaffari, Younesian, Partovi Nia, Chen, Asgharian, "AdpQ: A Zero-shot Calibration Free
// Adaptive Post Training Quantization Method for LLMs" (arXiv 2405.13358). No calibration data
// and no forward pass: the adaptive-LASSO estimate of each weight with pilot w,
//   beta = sign(w) (|w| - lambda / |w|^gamma)_+ ,
// is non-zero exactly for the salient weights (|w|^(1+gamma) > lambda). The rest is quantized
// with RTN on its own range; the salient weights keep their code slots and are read with a second
// scale of their group (the paper's storage, as its replication does it), or are kept apart as
// fp16 values. lambda is chosen to hit a target outlier share, or given. Details and what is a
// reconstruction: ../shared/docs/algorithms.md §7.
#ifndef LLMQ_ADPQ_H_
#define LLMQ_ADPQ_H_

#include "llmq/export.h"

#include <cstdint>

#include "llmq/quant.h"
#include "llmq/status.h"

namespace llmq {

enum class AdpqScope : uint8_t { kTensor, kRow, kGroup };

// How the outliers are stored:
//  kInSlot: in their dense code slots, same bits, read with a second per-group scale s1 from the
//           outliers' own range (QuantizedTensor::outlier_scales), positions in the compact CSR;
//  kFp16:   as fp16 values added to the dense part (the dense slot holds 0's code).
enum class AdpqStorage : uint8_t { kInSlot, kFp16 };

struct LLMQ_EXPORT AdpqOptions {
  // Share of the weights kept as outliers, per scope (the top ceil(share * n) by |w|, which is
  // the adaptive-LASSO split for the lambda that yields that share). Used when lambda <= 0.
  double outlier_fraction = 0.05;
  double lambda = 0.0;   // > 0: fixed threshold, outlier iff |w|^(1 + gamma) > lambda
  double gamma = 1.0;    // adaptive-LASSO weight exponent
  AdpqScope scope = AdpqScope::kTensor;  // where the share (or lambda) applies: tensor, row or group
  AdpqStorage storage = AdpqStorage::kInSlot;
};

// Quantizes w [rows, cols]: everything but the outliers RTN with `spec` over the group with the
// outliers removed; the outliers in their slots with the group's second scale, or as fp16 CSR
// values (stored as w - dense part, so the sum reconstructs them to fp16 precision).
// InvalidArgument for a bad spec/option or a non-finite weight.
LLMQ_EXPORT Result<QuantizedTensor> quantize_adpq(const float* w, int64_t rows, int64_t cols, const QuantSpec& spec,
                                      const AdpqOptions& options = {});

}  // namespace llmq

#endif  // LLMQ_ADPQ_H_
