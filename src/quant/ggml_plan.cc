// llama.cpp's per-tensor type rules for its file types (llama-quant.cpp @ the v0.5.0 release used
// by the tests: llama_tensor_get_type_impl and tensor_type_fallback), for the dense Llama-family
// models llmq handles: no experts, no Falcon, no importance matrix, no IQ types.
#include "quant/ggml_plan.h"

#include <cctype>

#include "io/hf_names.h"
#include "quant/ggml_blocks.h"

namespace llmq::internal {
namespace {

enum class Ftype {
  kQ4_0 = 2, kQ4_1 = 3, kQ8_0 = 7, kQ5_0 = 8, kQ5_1 = 9, kQ2_K = 10, kQ3_K_S = 11, kQ3_K_M = 12, kQ3_K_L = 13,
  kQ4_K_S = 14, kQ4_K_M = 15, kQ5_K_S = 16, kQ5_K_M = 17, kQ6_K = 18,
};

struct Named {
  const char* name;
  Ftype ftype;
  GgmlType base;
  bool pure;
};

const std::vector<Named>& named_types() {
  static const std::vector<Named> t = {
      {"q4_0", Ftype::kQ4_0, GgmlType::kQ4_0, false},   {"q4_1", Ftype::kQ4_1, GgmlType::kQ4_1, false},
      {"q5_0", Ftype::kQ5_0, GgmlType::kQ5_0, false},   {"q5_1", Ftype::kQ5_1, GgmlType::kQ5_1, false},
      {"q8_0", Ftype::kQ8_0, GgmlType::kQ8_0, false},   {"q2_k", Ftype::kQ2_K, GgmlType::kQ2_K, false},
      {"q3_k_s", Ftype::kQ3_K_S, GgmlType::kQ3_K, false}, {"q3_k_m", Ftype::kQ3_K_M, GgmlType::kQ3_K, false},
      {"q3_k_l", Ftype::kQ3_K_L, GgmlType::kQ3_K, false}, {"q4_k_s", Ftype::kQ4_K_S, GgmlType::kQ4_K, false},
      {"q4_k_m", Ftype::kQ4_K_M, GgmlType::kQ4_K, false}, {"q5_k_s", Ftype::kQ5_K_S, GgmlType::kQ5_K, false},
      {"q5_k_m", Ftype::kQ5_K_M, GgmlType::kQ5_K, false}, {"q6_k", Ftype::kQ6_K, GgmlType::kQ6_K, false},
      // No llama.cpp file type of these names: every tensor this type (llama-quantize --pure).
      {"q3_k", Ftype::kQ3_K_S, GgmlType::kQ3_K, true},  {"q4_k", Ftype::kQ4_K_S, GgmlType::kQ4_K, true},
      {"q5_k", Ftype::kQ5_K_S, GgmlType::kQ5_K, true},
  };
  return t;
}

enum class Category { kTokenEmbd, kOutput, kQ, kK, kV, kO, kGate, kUp, kDown };

// llama.cpp: layers that get more bits in the *_M mixtures.
bool use_more_bits(int64_t i, int64_t n) { return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2; }

int64_t block_elems(GgmlType t) { return ggml_info(t).block_elems; }

// llama_tensor_get_type_impl for the file types above.
GgmlType mixture_type(Ftype f, GgmlType base, Category c, int64_t i, int64_t n, int64_t n_gqa, int64_t ne0, bool tied) {
  GgmlType t = base;
  if (c == Category::kOutput || (tied && c == Category::kTokenEmbd)) {
    if (ne0 % block_elems(base) != 0) return GgmlType::kQ8_0;
    return base != GgmlType::kQ8_0 ? GgmlType::kQ6_K : GgmlType::kQ8_0;
  }
  switch (c) {
    case Category::kV:
      if (f == Ftype::kQ2_K) t = n_gqa >= 4 ? GgmlType::kQ4_K : GgmlType::kQ3_K;
      else if (f == Ftype::kQ3_K_M) t = i < 2 ? GgmlType::kQ5_K : GgmlType::kQ4_K;
      else if (f == Ftype::kQ3_K_L) t = GgmlType::kQ5_K;
      else if ((f == Ftype::kQ4_K_M || f == Ftype::kQ5_K_M) && use_more_bits(i, n)) t = GgmlType::kQ6_K;
      else if (f == Ftype::kQ4_K_S && i < 4) t = GgmlType::kQ5_K;
      break;
    case Category::kDown:
      if (f == Ftype::kQ2_K) t = GgmlType::kQ3_K;
      else if (f == Ftype::kQ3_K_M) t = i < n / 16 ? GgmlType::kQ5_K : GgmlType::kQ4_K;
      else if (f == Ftype::kQ3_K_L) t = GgmlType::kQ5_K;
      else if (f == Ftype::kQ4_K_M && use_more_bits(i, n)) t = GgmlType::kQ6_K;
      else if (f == Ftype::kQ5_K_M && use_more_bits(i, n)) t = GgmlType::kQ6_K;
      else if (f == Ftype::kQ4_K_S && i < n / 8) t = GgmlType::kQ5_K;
      break;
    case Category::kO:
      if (f == Ftype::kQ2_K) t = GgmlType::kQ3_K;
      else if (f == Ftype::kQ3_K_M) t = GgmlType::kQ4_K;
      else if (f == Ftype::kQ3_K_L) t = GgmlType::kQ5_K;
      break;
    default: break;
  }
  return t;
}

// tensor_type_fallback: kNone means f16.
GgmlType fallback(GgmlType t, int64_t ne0) {
  if (ne0 % block_elems(t) == 0) return t;
  GgmlType r = t;
  switch (t) {
    case GgmlType::kQ2_K:
    case GgmlType::kQ3_K: r = GgmlType::kQ4_0; break;
    case GgmlType::kQ4_K: r = GgmlType::kQ5_0; break;
    case GgmlType::kQ5_K: r = GgmlType::kQ5_1; break;
    case GgmlType::kQ6_K: r = GgmlType::kQ8_0; break;
    default: break;
  }
  return ne0 % block_elems(r) == 0 ? r : GgmlType::kNone;
}

Category category_of(LinearRole r) {
  switch (r) {
    case LinearRole::kQ: return Category::kQ;
    case LinearRole::kK: return Category::kK;
    case LinearRole::kV: return Category::kV;
    case LinearRole::kO: return Category::kO;
    case LinearRole::kGate: return Category::kGate;
    case LinearRole::kUp: return Category::kUp;
    default: return Category::kDown;
  }
}

}  // namespace

std::vector<std::string> gguf_type_names() {
  std::vector<std::string> out;
  for (const Named& n : named_types()) out.push_back(n.name);
  return out;
}

Result<GgmlPlan> plan_ggml_types(const std::string& gguf_type, const Checkpoint& ckpt) {
  std::string lower;
  for (char c : gguf_type) lower += char(std::tolower(static_cast<unsigned char>(c)));
  const Named* named = nullptr;
  for (const Named& n : named_types())
    if (lower == n.name) named = &n;
  if (named == nullptr) {
    std::string list;
    for (const std::string& n : gguf_type_names()) list += (list.empty() ? "" : ", ") + n;
    return Status::InvalidArgument("unknown GGUF type '" + gguf_type + "' (expected one of " + list + ")");
  }
  const ModelConfig& cfg = ckpt.config();
  if (cfg.family != ModelFamily::kLlama)
    return Status::NotSupported(ckpt.folder() + ": " + cfg.architecture +
                                " has no llama.cpp architecture llmq can write (GGUF export covers Llama, Mistral and Qwen2)");
  GgmlPlan plan;
  plan.name = lower;
  plan.file_type = int(named->ftype);
  plan.base = named->base;
  const int64_t n = cfg.num_layers, n_gqa = cfg.num_kv_heads > 0 ? cfg.num_heads / cfg.num_kv_heads : 1;
  const bool tied = ckpt.find(kLmHeadWeight) == nullptr;
  auto add = [&](const std::string& name, Category c, int64_t layer, int64_t ne0) {
    const GgmlType first =
        named->pure ? named->base : mixture_type(named->ftype, named->base, c, layer, n, n_gqa, ne0, tied);
    const GgmlType chosen = fallback(first, ne0);
    if (chosen != first)
      plan.fallbacks[name] = std::string(ggml_type_name(first)) + " -> " +
                             (chosen == GgmlType::kNone ? "f16" : ggml_type_name(chosen));
    if (chosen != GgmlType::kNone) plan.types[name] = chosen;
  };
  add(embed_tokens(ckpt.base_prefix()) + ".weight", Category::kTokenEmbd, 0, cfg.hidden_size);
  for (const LinearInfo& l : ckpt.linears()) add(l.module + ".weight", category_of(l.role), l.layer, l.cols);
  if (!tied) add(kLmHeadWeight, Category::kOutput, 0, cfg.hidden_size);
  return plan;
}

}  // namespace llmq::internal
