// llmq export hf: a quantized folder in the GPTQ, AWQ GEMM or compressed-tensors layout. Only
// orchestration lives here; the layouts are io/hf_quant_format.cc.
#include "llmq/hf_export.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>

#include "io/checkpoint_writer.h"
#include "io/hf_quant_format.h"
#include "llmq/checkpoint.h"
#include "llmq/version.h"

namespace llmq {
namespace fs = std::filesystem;

std::string HfExportReport::ToJson() const {
  nlohmann::ordered_json j;
  j["output"] = output;
  j["format"] = format;
  j["checkpoint_format"] = checkpoint_format;
  j["bits"] = bits;
  j["group_size"] = group_size;
  j["desc_act"] = desc_act;
  j["quantized_modules"] = quantized_modules;
  j["files"] = files;
  j["bytes"] = bytes;
  j["seconds"] = seconds;
  return j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace);
}

namespace {

Result<internal::HfQuantConfig> target_config(const HfExportOptions& o, const QuantizationInfo& qi,
                                              const std::string& folder) {
  internal::HfQuantConfig c;
  if (o.format == "gptq") {
    c.layout = internal::HfLayout::kGptq;
    if (o.checkpoint_format != "gptq" && o.checkpoint_format != "gptq_v2")
      return Status::InvalidArgument("--checkpoint-format " + o.checkpoint_format + ": expected gptq or gptq_v2");
    c.checkpoint_format = o.checkpoint_format;
  } else if (o.format == "awq") {
    c.layout = internal::HfLayout::kAwqGemm;
    c.checkpoint_format = "gemm";
  } else if (o.format == "compressed-tensors") {
    c.layout = internal::HfLayout::kCompressedTensors;
    c.checkpoint_format = "pack-quantized";
  } else {
    return Status::InvalidArgument("--format " + o.format + ": expected gptq, awq or compressed-tensors");
  }
  if (o.format != "gptq" && o.checkpoint_format != "gptq")
    return Status::InvalidArgument("--checkpoint-format applies to --format gptq only");
  c.quant_method = o.format;
  // One quantization_config holds one bits / group size for every module.
  const QuantizedModuleInfo* first = nullptr;
  std::string first_name;
  c.symmetric = true;
  for (const auto& [module, m] : qi.modules) {
    if (m.spec.is_ggml())
      return Status::InvalidArgument(folder + ": module '" + module + "' holds codes on llama.cpp's " +
                                     ggml_type_name(m.spec.ggml_type) + " grid, which the " + o.format +
                                     " format cannot store (export the folder with `llmq export gguf`)");
    if (first == nullptr) {
      first = &m;
      first_name = module;
    } else if (m.spec.bits != first->spec.bits || m.spec.group_size != first->spec.group_size) {
      return Status::InvalidArgument(folder + ": modules are quantized differently (" + first_name + ": " +
                                     first->spec.ToString() + ", " + module + ": " + m.spec.ToString() + "); a " +
                                     o.format + " quantization_config holds one bits/group_size for every module");
    }
    c.symmetric &= m.spec.symmetric;
  }
  c.bits = first->spec.bits;
  c.group_size = first->spec.group_size;
  return c;
}

// The module a stored tensor belongs to ("a.b.qcodes" -> "a.b"), if that module is quantized.
std::string quantized_module_of(const Checkpoint& ckpt, const std::string& tensor) {
  const size_t dot = tensor.rfind('.');
  if (dot == std::string::npos) return "";
  const std::string module = tensor.substr(0, dot);
  return ckpt.is_quantized_module(module) ? module : "";
}

}  // namespace

Result<HfExportReport> export_hf(const std::string& folder, const std::string& output, const HfExportOptions& o) {
  const auto t0 = std::chrono::steady_clock::now();
  LLMQ_ASSIGN_OR_RETURN(auto ckpt, Checkpoint::Open(folder));
  const QuantizationInfo* qi = ckpt->quantization();
  if (qi == nullptr || qi->modules.empty())
    return Status::InvalidArgument(folder + ": is not quantized; quantize it first (e.g. llmq quantize --method gptq " +
                                   folder + " <out>) and export that folder");
  if (qi->activations != "fp32")
    return Status::InvalidArgument(folder + ": runs its linears with " + qi->activations +
                                   " activations (W8A8), which " + o.format + " checkpoints do not describe");
  LLMQ_ASSIGN_OR_RETURN(internal::HfQuantConfig config, target_config(o, *qi, folder));
  config.lm_head = qi->modules.count("lm_head") > 0;

  LLMQ_ASSIGN_OR_RETURN(auto writer,
                        internal::CheckpointWriter::Create(output, internal::replace_policy(o.overwrite, o.force),
                                                           o.max_shard_bytes, folder));
  std::set<std::string> written;
  for (const std::string& name : ckpt->tensor_names()) {
    const std::string module = quantized_module_of(*ckpt, name);
    if (module.empty() || name == module + ".bias") {  // not quantized: copied as stored
      LLMQ_ASSIGN_OR_RETURN(TensorView v, ckpt->get(name));
      std::vector<uint8_t> bytes(v.nbytes());
      if (!bytes.empty()) std::memcpy(bytes.data(), v.data, bytes.size());
      LLMQ_RETURN_IF_ERROR(writer->Add({name, v.dtype, v.shape, std::move(bytes)}));
      ckpt->release_pages(name);
      continue;
    }
    if (!written.insert(module).second) continue;  // its other parts: already written
    LLMQ_ASSIGN_OR_RETURN(QuantizedTensor q, ckpt->get_quantized(module));
    const std::string why = internal::hf_unexpressible(config.layout, q);
    if (!why.empty())
      return Status::InvalidArgument(folder + ": module '" + module + "' holds " + why + ", which the " + o.format +
                                     " format cannot store");
    for (auto& t : internal::hf_quantized_tensors(config, module, q)) LLMQ_RETURN_IF_ERROR(writer->Add(std::move(t)));
    config.desc_act |= !q.g_idx.empty();  // an act-order index (a plain c / group one is dropped on import)
  }

  nlohmann::ordered_json cfg = nlohmann::ordered_json::parse(ckpt->config_json());
  nlohmann::ordered_json qc = internal::hf_quantization_config_json(config);
  if (config.layout == internal::HfLayout::kGptq && cfg.contains("quantization_config")) {
    // How the source was made, where it says (llmq's GPTQ options, or an imported GPTQ config).
    const auto& src = cfg["quantization_config"];
    for (const auto& [from, to] : std::vector<std::pair<std::string, std::string>>{
             {"damp", "damp_percent"}, {"damp_percent", "damp_percent"}, {"true_sequential", "true_sequential"},
             {"static_groups", "static_groups"}})
      if (src.contains(from) && (src[from].is_number() || src[from].is_boolean())) qc[to] = src[from];
  }
  cfg["quantization_config"] = qc;
  std::map<std::string, std::string> extra;
  if (config.layout == internal::HfLayout::kGptq) extra["quantize_config.json"] = qc.dump(2) + "\n";
  // Provenance; it also marks the folder as llmq's, so --overwrite may replace it.
  extra["llmq_report.json"] = nlohmann::ordered_json{{"tool", "llmq"},
                                                     {"version", version()},
                                                     {"command", "export hf"},
                                                     {"source", folder},
                                                     {"source_method", qi->method},
                                                     {"format", o.format},
                                                     {"checkpoint_format", config.checkpoint_format}}
                                  .dump(2) + "\n";
  LLMQ_RETURN_IF_ERROR(writer->Commit(cfg.dump(2) + "\n", folder, extra));

  // Reading the output back checks every tensor against its config.
  auto back = Checkpoint::Open(output);
  if (!back.ok()) return back.status().WithContext("written output does not read back");
  HfExportReport r;
  r.output = output;
  r.format = o.format;
  r.checkpoint_format = config.checkpoint_format;
  r.bits = config.bits;
  r.group_size = config.group_size > 0 ? config.group_size : -1;
  r.desc_act = config.desc_act;
  r.quantized_modules = int64_t(written.size());
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(output, ec)) {
    r.files.push_back(e.path().filename().string());
    r.bytes += e.is_regular_file(ec) ? uint64_t(e.file_size(ec)) : 0;
  }
  std::sort(r.files.begin(), r.files.end());
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

}  // namespace llmq
