// The quantized-tensor description (llmq/qtensor.h) and the RTN quantizer (llmq/rtn.h), for
// code that wants both; the kernels include only qtensor.h.
#ifndef LLMQ_QUANT_H_
#define LLMQ_QUANT_H_

#include "llmq/qtensor.h"
#include "llmq/rtn.h"

#endif  // LLMQ_QUANT_H_
