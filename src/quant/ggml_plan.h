// Which ggml type each tensor of a model gets for a GGUF type name, as llama.cpp's quantizer
// (src/llama-quant.cpp, llama_tensor_get_type; docs/GGUF.md) decides it: a llama.cpp file type
// ("q4_k_m", "q3_k_m", "q2_k", "q4_0", ...) gives attn_v / ffn_down / attn_output more bits in
// the layers its rules name, the output head q6_k, and falls back (q4_k -> q5_0 -> f16, ...)
// for rows that are not a whole number of blocks. Plain "q3_k", "q4_k", "q5_k" give every tensor
// that type (llama-quantize --pure).
#ifndef LLMQ_QUANT_GGML_PLAN_H_
#define LLMQ_QUANT_GGML_PLAN_H_

#include <map>
#include <string>
#include <vector>

#include "llmq/checkpoint.h"
#include "llmq/qtensor.h"

namespace llmq::internal {

struct GgmlPlan {
  std::string name;    // the GGUF type name as given, lower case ("q4_k_m")
  int file_type = 0;   // llama.cpp's LlamaFileType, for general.file_type
  GgmlType base = GgmlType::kNone;  // the type most tensors get
  // Hugging Face weight name -> type, for every tensor llama.cpp quantizes: decoder linears, the
  // token embeddings and the output head. Absent: the tensor stays float (f16 in GGUF).
  std::map<std::string, GgmlType> types;
  // Tensors whose rows did not fit the first choice: "q4_k -> q5_0", "q4_0 -> f16".
  std::map<std::string, std::string> fallbacks;
};

// The names --gguf-type takes, for messages.
std::vector<std::string> gguf_type_names();
// InvalidArgument for an unknown name; NotSupported for a model llama.cpp has no architecture for.
Result<GgmlPlan> plan_ggml_types(const std::string& gguf_type, const Checkpoint& ckpt);

}  // namespace llmq::internal

#endif  // LLMQ_QUANT_GGML_PLAN_H_
