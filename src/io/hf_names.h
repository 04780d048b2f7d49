// Hugging Face tensor names per architecture, spelled in one place (src/io/checkpoint.cc, beside
// decoder_linears, which names the linears). `base` is Checkpoint::base_prefix() ("model." or
// "model.decoder."); names are without the ".weight"/".bias" suffix unless they say otherwise.
#ifndef LLMQ_IO_HF_NAMES_H_
#define LLMQ_IO_HF_NAMES_H_

#include <cstdint>
#include <string>

#include "llmq/checkpoint.h"

namespace llmq::internal {

// "model.layers.3."
std::string block_prefix(const std::string& base, int64_t layer);

enum class BlockNorm { kAttention, kMlp };
// The norm in front of block `layer`'s attention or MLP (Llama: input_layernorm /
// post_attention_layernorm; OPT: self_attn_layer_norm / final_layer_norm).
std::string block_norm(const ModelConfig& c, const std::string& base, int64_t layer, BlockNorm which);
// The norm after the last block (Llama: "model.norm"; OPT: "model.decoder.final_layer_norm").
std::string final_norm(const ModelConfig& c, const std::string& base);
std::string embed_tokens(const std::string& base);
std::string embed_positions(const std::string& base);  // OPT's learned positions
std::string project_in(const std::string& base);       // OPT with word_embed_proj_dim != hidden
std::string project_out(const std::string& base);
inline constexpr const char* kLmHeadWeight = "lm_head.weight";

}  // namespace llmq::internal

#endif  // LLMQ_IO_HF_NAMES_H_
