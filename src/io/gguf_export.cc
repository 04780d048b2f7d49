// export_gguf: a model folder as a GGUF v3 file that llama.cpp loads (names, shapes, metadata and
// the q/k row permutation: ../shared/docs/export-formats.md §1; llama.cpp's converter
// conversion/llama.py does the same for a float model). A folder quantized with a GGUF type is
// copied block for block: the bytes llmq's kernels ran are the bytes llama.cpp runs.
#include "llmq/gguf.h"

#include <cmath>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>

#include "io/file_util.h"
#include "io/gguf.h"
#include "io/hf_names.h"
#include "io/llmq_format.h"
#include "llmq/checkpoint.h"
#include "llmq/float16.h"
#include "llmq/quantize.h"
#include "llmq/rtn.h"
#include "quant/ggml_blocks.h"
#include "quant/ggml_plan.h"
#include "text/hf_tokenizer.h"
#include "text/spm_vocab.h"

namespace llmq {
namespace fs = std::filesystem;
namespace {

using internal::GgufWriter;
using internal::kGgmlF16;
using internal::kGgmlF32;

// HF Llama rotates pairs (i, i + hd/2); llama.cpp's llama arch pairs (2i, 2i+1): GGUF row
// h*hd + 2i + s holds HF row h*hd + s*hd/2 + i (conversion/llama.py LlamaModel.permute).
std::vector<uint8_t> permute_rows(const std::vector<uint8_t>& data, int64_t rows, int64_t heads) {
  const int64_t row_bytes = int64_t(data.size()) / rows, hd = rows / heads;
  std::vector<uint8_t> out(data.size());
  for (int64_t h = 0; h < heads; ++h)
    for (int64_t i = 0; i < hd / 2; ++i)
      for (int64_t s = 0; s < 2; ++s) {
        const int64_t dst = h * hd + 2 * i + s, src = h * hd + s * (hd / 2) + i;
        std::memcpy(out.data() + dst * row_bytes, data.data() + src * row_bytes, size_t(row_bytes));
      }
  return out;
}

std::vector<uint8_t> f32_bytes(const std::vector<float>& v) {
  std::vector<uint8_t> b(v.size() * 4);
  if (!b.empty()) std::memcpy(b.data(), v.data(), b.size());
  return b;
}

std::vector<uint8_t> f16_bytes(const std::vector<float>& v) {
  std::vector<uint8_t> b(v.size() * 2);
  for (size_t i = 0; i < v.size(); ++i) {
    const uint16_t h = float_to_fp16(v[i]);
    std::memcpy(b.data() + 2 * i, &h, 2);
  }
  return b;
}

const char* gguf_linear_name(LinearRole r) {
  switch (r) {
    case LinearRole::kQ: return "attn_q";
    case LinearRole::kK: return "attn_k";
    case LinearRole::kV: return "attn_v";
    case LinearRole::kO: return "attn_output";
    case LinearRole::kGate: return "ffn_gate";
    case LinearRole::kUp: return "ffn_up";
    default: return "ffn_down";
  }
}

class Exporter {
 public:
  Exporter(std::shared_ptr<const Checkpoint> ckpt, const GgufExportOptions& o) : ckpt_(std::move(ckpt)), opt_(o) {}

  Status Plan() {
    const QuantizationInfo* qi = ckpt_->quantization();
    const std::string& folder = ckpt_->folder();
    if (qi != nullptr) {
      type_ = qi->gguf_type;
      file_type_ = qi->gguf_file_type;
      if (type_.empty()) {
        // Quantized outside the grids (llmq's own layout, or a GPTQ/AWQ/compressed-tensors folder):
        // exported only when every module's codes and scales are exactly one block type's.
        const GgmlType exact = ExactGridOfEveryModule(*qi);
        if (exact == GgmlType::kNone) {
          std::string spec;
          if (!qi->modules.empty()) spec = " (" + qi->modules.begin()->second.spec.ToString() + ")";
          return Status::InvalidArgument(folder + ": quantized in " +
                                         (qi->format == "llmq" ? std::string("llmq's own layout") : qi->format + " format") +
                                         " by " + qi->method + spec +
                                         ", which GGUF blocks cannot hold exactly (only symmetric w4/w8 with groups of "
                                         "32 are q4_0/q8_0); export re-rounds nothing, so quantize the float model "
                                         "with --gguf-type <type> (e.g. llmq quantize --method " +
                                         (method_takes(qi->method, MethodOption::kGgmlGrid) ? qi->method : std::string("gptq")) +
                                         " --gguf-type q4_k_m ...) and export that folder");
        }
        type_ = ggml_type_name(exact);
        file_type_ = exact == GgmlType::kQ4_0 ? 2 : 7;  // LLAMA_FTYPE_MOSTLY_Q4_0 / Q8_0
      }
      if (!opt_.type.empty() && opt_.type != type_)
        return Status::InvalidArgument(folder + ": holds " + type_ + " blocks; --type " + opt_.type +
                                       " would re-quantize them (export the folder without --type)");
      copy_blocks_ = true;
      return Status::Ok();
    }
    type_ = opt_.type.empty() ? "f32" : opt_.type;
    if (type_ == "f32" || type_ == "f16") {
      file_type_ = type_ == "f32" ? 0 : 1;
      return Status::Ok();
    }
    auto plan = internal::plan_ggml_types(type_, *ckpt_);
    if (!plan.ok()) {
      if (plan.status().code() == StatusCode::kInvalidArgument)
        return Status::InvalidArgument("--type " + type_ + ": expected f32, f16 or a GGUF type (" +
                                       [] {
                                         std::string l;
                                         for (const auto& n : internal::gguf_type_names()) l += (l.empty() ? "" : " ") + n;
                                         return l;
                                       }() +
                                       ")");
      return plan.status();
    }
    plan_ = std::move(*plan);
    type_ = plan_->name;
    file_type_ = plan_->file_type;
    return Status::Ok();
  }

  // The block type that holds every quantized module of a folder made outside the grids exactly,
  // judged from the specs (each tensor is checked again when it is written), or kNone.
  static GgmlType ExactGridOfEveryModule(const QuantizationInfo& qi) {
    GgmlType all = GgmlType::kNone;
    for (const auto& [module, m] : qi.modules) {
      const GgmlType t = m.has_outliers ? GgmlType::kNone : internal::exact_ggml_type(m.spec, m.cols);
      if (t == GgmlType::kNone || (all != GgmlType::kNone && all != t)) return GgmlType::kNone;
      all = t;
    }
    return all;
  }

  // A 2-D weight: its blocks copied, or the float weight as f32/f16/RTN on the plan's type.
  Status Matrix(const std::string& module, const std::string& gguf, int64_t rows, int64_t cols, int64_t heads) {
    const std::string weight = module + ".weight";
    std::vector<uint8_t> data;
    int type = kGgmlF32;
    if (ckpt_->is_quantized_module(module)) {
      LLMQ_ASSIGN_OR_RETURN(QuantizedTensor q, ckpt_->get_quantized(module));  // validated
      if (q.rows != rows || q.cols != cols)
        return Status::Corruption(ckpt_->folder() + ": module '" + module + "' has the wrong shape");
      if (q.spec.is_ggml()) {  // the stored blocks themselves, byte for byte
        LLMQ_ASSIGN_OR_RETURN(TensorView v, ckpt_->get(module + "." + internal::kGgmlBlocks));
        const auto* bytes = static_cast<const uint8_t*>(v.data);
        data.assign(bytes, bytes + v.nbytes());
      } else {  // codes and fp16 scales that are exactly q4_0 / q8_0 blocks
        auto g = internal::as_exact_ggml(q);
        if (!g.ok())
          return Status::InvalidArgument(ckpt_->folder() + ": module '" + module + "' is " + g.status().message() +
                                         "; quantize the float model with --gguf-type instead");
        q = std::move(*g);
        data = internal::encode_ggml(q);
      }
      type = int(q.spec.ggml_type);
    } else {
      LLMQ_ASSIGN_OR_RETURN(std::vector<float> w, ckpt_->get_float(weight));
      if (int64_t(w.size()) != rows * cols)
        return Status::Corruption(ckpt_->folder() + ": '" + weight + "' has the wrong shape");
      std::optional<GgmlType> grid;
      if (plan_) {
        if (auto it = plan_->types.find(weight); it != plan_->types.end()) grid = it->second;
        if (auto it = plan_->fallbacks.find(weight); it != plan_->fallbacks.end()) report_.fallbacks[gguf] = it->second;
      }
      if (grid) {
        LLMQ_ASSIGN_OR_RETURN(QuantizedTensor q, quantize_rtn(w.data(), rows, cols, QuantSpec::ForGgml(*grid)));
        data = internal::encode_ggml(q);
        type = int(*grid);
      } else if (type_ == "f32") {
        data = f32_bytes(w);
      } else {  // f16, or a quantized file's tensors that fell back to f16 (as llama.cpp's)
        data = f16_bytes(w);
        type = kGgmlF16;
      }
    }
    // A --gguf-type folder's float tensors are its fallbacks (written f16, as llama.cpp's).
    if (copy_blocks_ && !ckpt_->is_quantized_module(module)) report_.fallbacks[gguf] = "-> f16";
    if (heads > 0) data = permute_rows(data, rows, heads);
    return Add(gguf, {cols, rows}, type, std::move(data));
  }

  Status Vector(const std::string& name, const std::string& gguf, int64_t n) {
    LLMQ_ASSIGN_OR_RETURN(std::vector<float> v, ckpt_->get_float(name));
    if (int64_t(v.size()) != n) return Status::Corruption(ckpt_->folder() + ": '" + name + "' has the wrong shape");
    return Add(gguf, {n}, kGgmlF32, f32_bytes(v));
  }

  Status Add(const std::string& gguf, std::vector<int64_t> ne, int type, std::vector<uint8_t> data) {
    report_.tensor_types[gguf] = internal::ggml_type_id_name(type);
    return w_.AddTensor(gguf, std::move(ne), type, std::move(data));
  }

  Status Metadata() {
    const ModelConfig& c = ckpt_->config();
    const std::string& a = arch_;
    w_.SetString("general.architecture", a);
    w_.SetString("general.name", opt_.name.empty() ? fs::path(ckpt_->folder()).filename().string() : opt_.name);
    w_.SetU32("general.file_type", uint32_t(file_type_));
    if (file_type_ > 1) w_.SetU32("general.quantization_version", 2);
    w_.SetU32(a + ".context_length", uint32_t(c.max_position_embeddings));
    w_.SetU32(a + ".embedding_length", uint32_t(c.hidden_size));
    w_.SetU32(a + ".block_count", uint32_t(c.num_layers));
    w_.SetU32(a + ".feed_forward_length", uint32_t(c.intermediate_size));
    w_.SetU32(a + ".attention.head_count", uint32_t(c.num_heads));
    w_.SetU32(a + ".attention.head_count_kv", uint32_t(c.num_kv_heads));
    w_.SetU32(a + ".rope.dimension_count", uint32_t(c.head_dim));
    w_.SetF32(a + ".rope.freq_base", float(c.rope_theta));
    w_.SetF32(a + ".attention.layer_norm_rms_epsilon", float(c.norm_eps));
    w_.SetU32(a + ".vocab_size", uint32_t(c.vocab_size));
    if (c.head_dim * c.num_heads != c.hidden_size) {
      w_.SetU32(a + ".attention.key_length", uint32_t(c.head_dim));
      w_.SetU32(a + ".attention.value_length", uint32_t(c.head_dim));
    }
    if (c.rope_scaling == RopeScaling::kLinear) {
      w_.SetString(a + ".rope.scaling.type", "linear");
      w_.SetF32(a + ".rope.scaling.factor", float(c.rope_factor));
    }
    return Status::Ok();
  }

  // Llama 3 RoPE scaling as llama.cpp takes it: a per-frequency divisor tensor rope_freqs.weight
  // (conversion/llama.py generate_extra_tensors; the same rule as llmq's model.cc).
  Status RopeFreqs() {
    const ModelConfig& c = ckpt_->config();
    if (c.rope_scaling != RopeScaling::kLlama3) return Status::Ok();
    const double low_wavelen = double(c.rope_original_max_positions) / c.rope_low_freq_factor;
    const double high_wavelen = double(c.rope_original_max_positions) / c.rope_high_freq_factor;
    std::vector<float> factors;
    for (int64_t i = 0; i < c.head_dim / 2; ++i) {
      const double freq = 1.0 / std::pow(c.rope_theta, double(2 * i) / double(c.head_dim));
      const double wavelen = 2.0 * M_PI / freq;
      double f = 1.0;
      if (wavelen > low_wavelen) {
        f = c.rope_factor;
      } else if (wavelen >= high_wavelen) {
        const double smooth = (double(c.rope_original_max_positions) / wavelen - c.rope_low_freq_factor) /
                              (c.rope_high_freq_factor - c.rope_low_freq_factor);
        f = 1.0 / ((1.0 - smooth) / c.rope_factor + smooth);
      }
      factors.push_back(float(f));
    }
    return Add("rope_freqs.weight", {c.head_dim / 2}, kGgmlF32, f32_bytes(factors));
  }

  // Embeddings beyond the vocabulary get unused placeholder tokens (as llama.cpp's converter).
  Status PadVocab(const std::string& file, std::vector<std::string>* tokens, std::vector<int32_t>* types,
                  std::vector<float>* scores) {
    const int64_t n = ckpt_->config().vocab_size;
    if (int64_t(tokens->size()) > n)
      return Status::InvalidArgument(file + ": " + std::to_string(tokens->size()) + " tokens but the model has " +
                                     std::to_string(n) + " embeddings");
    for (int64_t i = int64_t(tokens->size()); i < n; ++i) {
      tokens->push_back("[PAD" + std::to_string(i) + "]");
      types->push_back(5);
      if (scores) scores->push_back(-1000.0f);
    }
    return Status::Ok();
  }

  Status Tokenizer() {
    const std::string folder = ckpt_->folder();
    const std::string model = (fs::path(folder) / "tokenizer.model").string();
    if (!fs::exists(model)) return BpeTokenizer((fs::path(folder) / "tokenizer.json").string());
    LLMQ_ASSIGN_OR_RETURN(internal::SpmVocab v, internal::read_spm_vocab(model));
    if (v.removes_extra_whitespace)  // SentencePiece's training default; llama.cpp has no such option
      report_.warnings.push_back(model + ": the SentencePiece normalizer collapses runs of spaces and trims the text; "
                                         "llama.cpp does not, so text with repeated, leading or trailing spaces "
                                         "tokenizes differently there");
    LLMQ_RETURN_IF_ERROR(PadVocab(model, &v.pieces, &v.types, &v.scores));
    bool add_bos = true, add_eos = false;
    if (auto cfg = internal::read_text_file((fs::path(folder) / "tokenizer_config.json").string()); cfg.ok()) {
      const auto j = nlohmann::json::parse(*cfg, nullptr, false);
      if (j.is_object()) {
        if (j.contains("add_bos_token") && j["add_bos_token"].is_boolean()) add_bos = j["add_bos_token"].get<bool>();
        if (j.contains("add_eos_token") && j["add_eos_token"].is_boolean()) add_eos = j["add_eos_token"].get<bool>();
      }
    }
    w_.SetString("tokenizer.ggml.model", "llama");
    w_.SetString("tokenizer.ggml.pre", "default");
    w_.SetStrings("tokenizer.ggml.tokens", v.pieces);
    w_.SetF32s("tokenizer.ggml.scores", v.scores);
    w_.SetI32s("tokenizer.ggml.token_type", v.types);
    if (v.bos >= 0) w_.SetU32("tokenizer.ggml.bos_token_id", uint32_t(v.bos));
    if (v.eos >= 0) w_.SetU32("tokenizer.ggml.eos_token_id", uint32_t(v.eos));
    if (v.unk >= 0) w_.SetU32("tokenizer.ggml.unknown_token_id", uint32_t(v.unk));
    if (v.pad >= 0) w_.SetU32("tokenizer.ggml.padding_token_id", uint32_t(v.pad));
    w_.SetBool("tokenizer.ggml.add_bos_token", add_bos);
    w_.SetBool("tokenizer.ggml.add_eos_token", add_eos);
    w_.SetBool("tokenizer.ggml.add_space_prefix", v.add_dummy_prefix);
    return Status::Ok();
  }

  // A Hugging Face byte-level BPE tokenizer.json as llama.cpp's "gpt2" vocabulary: tokens, types,
  // merges, and the pre-tokenizer by the name llama.cpp knows its regex under.
  Status BpeTokenizer(const std::string& path) {
    if (!fs::exists(path))
      return Status::NotFound(ckpt_->folder() + ": no tokenizer.model or tokenizer.json to write the vocabulary from");
    LLMQ_ASSIGN_OR_RETURN(internal::HfBpeVocab v, internal::read_hf_bpe_vocab(path));
    if (v.prefix.size() > 1 || v.suffix.size() > 1)
      return Status::NotSupported(path + ": the post-processor adds more than one token before or after a sequence, "
                                         "which llama.cpp's add_bos/add_eos cannot express");
    LLMQ_RETURN_IF_ERROR(PadVocab(path, &v.tokens, &v.types, nullptr));
    if (!v.flagged_added_tokens.empty()) {
      std::string list;
      for (const std::string& t : v.flagged_added_tokens) list += (list.empty() ? "" : ", ") + t;
      report_.warnings.push_back(path + ": added tokens " + list + " carry matching flags GGUF cannot hold; "
                                 "llama.cpp matches them plainly, so text where a flag matters tokenizes differently");
    }
    w_.SetString("tokenizer.ggml.model", "gpt2");
    w_.SetString("tokenizer.ggml.pre", v.pre);
    w_.SetStrings("tokenizer.ggml.tokens", v.tokens);
    w_.SetI32s("tokenizer.ggml.token_type", v.types);
    w_.SetStrings("tokenizer.ggml.merges", v.merges);
    const int32_t bos = v.prefix.empty() ? v.bos : v.prefix[0], eos = v.suffix.empty() ? v.eos : v.suffix[0];
    if (bos >= 0) w_.SetU32("tokenizer.ggml.bos_token_id", uint32_t(bos));
    if (eos >= 0) w_.SetU32("tokenizer.ggml.eos_token_id", uint32_t(eos));
    w_.SetBool("tokenizer.ggml.add_bos_token", !v.prefix.empty());
    w_.SetBool("tokenizer.ggml.add_eos_token", !v.suffix.empty());
    return Status::Ok();
  }

  Status Tensors() {
    const ModelConfig& c = ckpt_->config();
    const std::string& base = ckpt_->base_prefix();
    LLMQ_RETURN_IF_ERROR(Matrix(internal::embed_tokens(base), "token_embd.weight", c.vocab_size, c.hidden_size, 0));
    LLMQ_RETURN_IF_ERROR(RopeFreqs());
    const std::vector<LinearInfo> linears = ckpt_->linears();
    for (int64_t layer = 0; layer < c.num_layers; ++layer) {
      const std::string blk = "blk." + std::to_string(layer) + ".";
      LLMQ_RETURN_IF_ERROR(Vector(internal::block_norm(c, base, layer, internal::BlockNorm::kAttention) + ".weight",
                                  blk + "attn_norm.weight", c.hidden_size));
      for (const LinearInfo& l : linears) {
        if (l.layer != layer) continue;
        // llama's RoPE pairs (2i, 2i+1): q/k rows permuted; qwen2 rotates halves as Hugging Face does.
        const int64_t heads = arch_ != "llama"            ? 0
                              : l.role == LinearRole::kQ ? c.num_heads
                              : l.role == LinearRole::kK ? c.num_kv_heads
                                                         : 0;
        LLMQ_RETURN_IF_ERROR(Matrix(l.module, blk + gguf_linear_name(l.role) + ".weight", l.rows, l.cols, heads));
        if (l.has_bias)  // Qwen2's q/k/v biases (only those: checked in Run)
          LLMQ_RETURN_IF_ERROR(Vector(l.module + ".bias", blk + gguf_linear_name(l.role) + ".bias", l.rows));
      }
      LLMQ_RETURN_IF_ERROR(Vector(internal::block_norm(c, base, layer, internal::BlockNorm::kMlp) + ".weight",
                                  blk + "ffn_norm.weight", c.hidden_size));
    }
    LLMQ_RETURN_IF_ERROR(Vector(internal::final_norm(c, base) + ".weight", "output_norm.weight", c.hidden_size));
    const bool head = ckpt_->find(internal::kLmHeadWeight) != nullptr || ckpt_->is_quantized_module("lm_head");
    if (head) LLMQ_RETURN_IF_ERROR(Matrix("lm_head", "output.weight", c.vocab_size, c.hidden_size, 0));
    return Status::Ok();
  }

  Result<GgufExportReport> Run(const std::string& output) {
    const ModelConfig& c = ckpt_->config();
    if (c.family != ModelFamily::kLlama)
      return Status::NotSupported(ckpt_->folder() + ": " + c.architecture +
                                  " has no llama.cpp architecture llmq can write (GGUF export covers Llama, Mistral and "
                                  "Qwen2)");
    arch_ = c.architecture == "Qwen2ForCausalLM" ? "qwen2" : "llama";
    if (c.mlp_bias || c.o_bias || (c.attention_bias && arch_ != "qwen2"))
      return Status::NotSupported(ckpt_->folder() + ": " + c.architecture + " with " +
                                  (c.mlp_bias ? "MLP" : c.o_bias ? "output projection" : "q/k/v") +
                                  " biases has no llama.cpp architecture llmq can write");
    LLMQ_RETURN_IF_ERROR(Plan());
    LLMQ_RETURN_IF_ERROR(Metadata());
    LLMQ_RETURN_IF_ERROR(Tokenizer());
    LLMQ_RETURN_IF_ERROR(Tensors());
    LLMQ_RETURN_IF_ERROR(w_.Write(output));
    report_.output = output;
    report_.bytes = w_.FileBytes();
    report_.architecture = arch_;
    report_.type = type_;
    return report_;
  }

 private:
  std::shared_ptr<const Checkpoint> ckpt_;
  GgufExportOptions opt_;
  bool copy_blocks_ = false;
  std::string arch_ = "llama";  // llama.cpp's architecture name
  std::string type_;
  int file_type_ = 0;
  std::optional<internal::GgmlPlan> plan_;
  GgufWriter w_;
  GgufExportReport report_;
};

}  // namespace

std::string GgufExportReport::ToJson() const {
  nlohmann::ordered_json j;
  j["output"] = output;
  j["bytes"] = bytes;
  j["architecture"] = architecture;
  j["type"] = type;
  j["tensor_types"] = tensor_types;
  j["fallbacks"] = fallbacks;
  j["warnings"] = warnings;
  return j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace);
}

bool is_gguf_file(const std::string& path) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) return false;
  char magic[4] = {};
  FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) return false;
  const size_t n = std::fread(magic, 1, 4, f);
  std::fclose(f);
  return n == 4 && std::memcmp(magic, "GGUF", 4) == 0;
}

Result<GgufExportReport> export_gguf(const std::string& folder, const std::string& output,
                                     const GgufExportOptions& options) {
  std::error_code ec;
  if (output.empty()) return Status::InvalidArgument("no output path given");
  if (fs::is_directory(output, ec)) return Status::InvalidArgument(output + ": is a folder; give a file name (model.gguf)");
  if (fs::exists(output, ec)) {
    if (!options.overwrite)
      return Status::FailedPrecondition(output + ": exists (pass --overwrite to replace a GGUF file)");
    if (!is_gguf_file(output))
      return Status::InvalidArgument(output + ": exists and is not a GGUF file; not replacing it");
  }
  const fs::path parent = fs::absolute(output, ec).parent_path();
  if (!fs::is_directory(parent, ec)) return Status::NotFound(parent.string() + ": output folder does not exist");
  LLMQ_ASSIGN_OR_RETURN(auto ckpt, Checkpoint::Open(folder));
  Exporter e(ckpt, options);
  return e.Run(output);
}

}  // namespace llmq
