// Umbrella header: everything an inference engine or tool needs from llmq.
#ifndef LLMQ_LLMQ_H_
#define LLMQ_LLMQ_H_

#include "llmq/adpq.h"
#include "llmq/billm.h"
#include "llmq/checkpoint.h"
#include "llmq/distributed.h"
#include "llmq/float16.h"
#include "llmq/gguf.h"
#include "llmq/gptq.h"
#include "llmq/hf_export.h"
#include "llmq/kernels.h"
#include "llmq/model.h"
#include "llmq/progress.h"
#include "llmq/qtensor.h"
#include "llmq/quant.h"
#include "llmq/quantize.h"
#include "llmq/rtn.h"
#include "llmq/safetensors.h"
#include "llmq/status.h"
#include "llmq/tensor.h"
#include "llmq/tokenizer.h"
#include "llmq/version.h"

#endif  // LLMQ_LLMQ_H_
