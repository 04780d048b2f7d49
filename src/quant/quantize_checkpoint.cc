// quantize_checkpoint: read a float checkpoint, quantize every decoder linear with the method's
// row of the method table (quant/method.h), write the llmq format (docs/FORMAT.md) atomically.
// Orchestration only: zero-shot rows quantize one linear at a time while the output is written;
// calibrated rows run block by block on the calibration windows (algorithms.md §2.4), each
// finished block going to the block store (quant/block_store.h) before the next one starts, and
// the output is then assembled from the store.
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>
#include <optional>
#include <nlohmann/json.hpp>

#include "core/cluster.h"
#include "core/phase_clock.h"
#include "io/checkpoint_writer.h"
#include "io/file_util.h"
#include "io/llmq_format.h"
#include "llmq/checkpoint.h"
#include "llmq/quantize.h"
#include "llmq/tokenizer.h"
#include "quant/block_store.h"
#include "quant/calibration.h"
#include "quant/bit_budget.h"
#include "quant/ggml_plan.h"
#include "quant/method.h"

namespace llmq {
namespace fs = std::filesystem;
namespace {

using internal::BlockResult;
using internal::BlockStore;
using internal::FinishedBlock;
using internal::Method;
using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// First non-finite element of a float tensor, or -1.
int64_t first_non_finite(const TensorView& v) {
  auto r = to_float32(v);
  if (!r.ok()) return -1;
  for (size_t i = 0; i < r->size(); ++i)
    if (!std::isfinite((*r)[i])) return int64_t(i);
  return -1;
}

TensorToWrite copy_of(const std::string& name, const TensorView& v) {
  std::vector<uint8_t> bytes(v.nbytes());
  if (!bytes.empty()) std::memcpy(bytes.data(), v.data, bytes.size());
  return {name, v.dtype, v.shape, std::move(bytes)};
}

// Everything that determines a calibrated run's output; a resumed run must match it.
nlohmann::ordered_json run_manifest(const std::string& input_folder, const Checkpoint& ckpt, const QuantizeOptions& o,
                                    const Method& method) {
  std::error_code ec;
  nlohmann::ordered_json m;
  m["input"] = fs::absolute(input_folder, ec).lexically_normal().string();
  m["input_bytes"] = ckpt.bytes_on_disk();
  // The inputs' contents, not only their names: a model or data changed in place since the
  // interrupted run must not be resumed with its stale blocks.
  m["input_content"] = internal::content_fingerprint(input_folder);
  m["calibration_content"] = internal::content_fingerprint(o.calibration.data);
  m["method"] = o.method;
  m["spec"] = internal::spec_to_json(o.spec);
  m["mse_search"] = o.spec.mse_search;
  if (!o.gguf_type.empty()) m["gguf_type"] = o.gguf_type;
  if (!o.module_specs.empty()) {  // a GGUF type's or a bit budget's per-linear specs
    nlohmann::ordered_json specs = nlohmann::ordered_json::object();
    for (const auto& [module, s] : o.module_specs) specs[module] = internal::spec_to_json(s);
    m["module_specs"] = specs;
  }
  m["calibration"] = {{"data", fs::absolute(o.calibration.data, ec).lexically_normal().string()},
                      {"nsamples", o.calibration.nsamples},
                      {"seq_len", o.calibration.seq_len},
                      {"seed", o.calibration.seed},
                      {"fp16_activations", o.calibration.fp16_activations}};
  nlohmann::ordered_json own = nlohmann::ordered_json::object();
  if (method.config_json) method.config_json(o, &own);
  m["method_options"] = own;
  // GPTQ options quantization_config leaves out (they change rounding, not the method).
  m["gptq"] = {{"block_size", o.gptq.block_size}, {"damp_retries", o.gptq.damp_retries}};
  m["format_version"] = internal::kFormatVersion;
  return m;
}

// A calibrated method over the whole model, block by block. Finished blocks go to `store`; on
// return every block is there and report->layers holds every linear's line. Under MPI every rank
// runs this (the calibrator spreads the windows) and only rank 0 has a store: it alone reads and
// writes finished blocks, and a block it resumes reaches the other ranks as dequantized weights.
Status run_calibrated(const std::string& input_folder, const Checkpoint& ckpt, const QuantizeOptions& options,
                      const std::vector<LinearInfo>& all, const Method& method, const BlockStore* store,
                      QuantizeReport* report, Clock::time_point t0) {
  const internal::Cluster& cluster = internal::Cluster::World();
  const ModelConfig& cfg = ckpt.config();
  const bool propagate = method.propagates_quantized(options);
  report->calibrated = true;
  LLMQ_ASSIGN_OR_RETURN(auto calib, internal::open_calibrator(input_folder, ckpt, options.calibration, &report->calibration));
  const int64_t L = cfg.num_layers, N = calib->num_windows();
  // Progress in window passes: per block, one pass per stage plus the final pass, plus one
  // pass-equivalent per linear for the solve itself.
  const int stages = options.true_sequential ? 4 : 1;
  const int64_t per_linear = int64_t(all.size()) / std::max<int64_t>(1, L);
  const int64_t per_block = (stages + 1 + per_linear) * N;
  bool cancelled = false;
  auto progress = [&](int layer, int64_t units, const std::string& item) {
    if (options.cancel && !cancelled) cancelled = options.cancel();
    if (options.progress)
      options.progress({layer * per_block + std::min(units, per_block), L * per_block,
                        "block " + std::to_string(layer + 1) + "/" + std::to_string(L) + " " + item,
                        seconds_since(t0)});
  };
  auto stop = [&]() {
    return Status::Cancelled("interrupted; finished blocks are kept in " + (store ? store->dir() : std::string("rank 0's block store")) +
                             " (run the same command with --resume to continue)");
  };
  // The next block sees this one as the method left it: quantized weights and rewritten tensors.
  auto propagate_block = [&](const std::vector<std::pair<LinearInfo, QuantizedTensor>>& linears,
                             const std::vector<std::pair<std::string, std::vector<float>>>& rewritten) -> Status {
    if (!propagate) return Status::Ok();
    for (const auto& [l, q] : linears) LLMQ_RETURN_IF_ERROR(calib->model().SetLinearWeight(l, dequantize(q)));
    for (const auto& [name, value] : rewritten) LLMQ_RETURN_IF_ERROR(calib->model().SetBlockTensor(name, value));
    return Status::Ok();
  };
  // A block rank 0 resumed, on every rank: its dequantized linears and rewritten tensors.
  auto propagate_from_root = [&](const std::vector<LinearInfo>& linears,
                                 const std::vector<std::pair<LinearInfo, QuantizedTensor>>& quantized,
                                 std::vector<std::pair<std::string, std::vector<float>>> rewritten) -> Status {
    if (!propagate) return Status::Ok();
    for (size_t k = 0; k < linears.size(); ++k) {
      std::vector<float> w = cluster.root() ? dequantize(quantized[k].second) : std::vector<float>();
      cluster.Broadcast(&w, 0);
      LLMQ_RETURN_IF_ERROR(calib->model().SetLinearWeight(linears[k], w));
    }
    uint64_t count = rewritten.size();
    cluster.Broadcast(&count, sizeof count, 0);
    rewritten.resize(size_t(count));
    for (auto& [name, value] : rewritten) {
      cluster.Broadcast(&name, 0);
      cluster.Broadcast(&value, 0);
      LLMQ_RETURN_IF_ERROR(calib->model().SetBlockTensor(name, value));
    }
    return Status::Ok();
  };

  for (int layer = 0; layer < int(L); ++layer) {
    if (cancelled) return stop();
    std::vector<LinearInfo> linears;
    for (const LinearInfo& l : all)
      if (l.layer == layer) linears.push_back(l);
    {
      internal::ScopedPhase phase(internal::Phase::kLoad);
      LLMQ_RETURN_IF_ERROR(calib->model().LoadBlock(layer));
    }
    std::vector<std::pair<LinearInfo, QuantizedTensor>> quantized;
    std::vector<std::pair<std::string, std::vector<float>>> rewritten;
    bool resumed = false;
    if (store && options.resume && store->Finished(layer)) {
      auto done = store->Read(layer);
      if (done.ok() && done->modules.size() == linears.size()) {
        const std::string where = store->dir() + " block " + std::to_string(layer);
        for (const LinearInfo& l : linears) {
          if (!done->modules.count(l.module)) return Status::Corruption(where + ": no entry for " + l.module);
          LLMQ_ASSIGN_OR_RETURN(QuantizedModuleInfo mi, internal::module_info_from_json(done->modules[l.module], where));
          LLMQ_ASSIGN_OR_RETURN(QuantizedTensor q, internal::read_quantized(*done->file, l.module, mi));
          quantized.emplace_back(l, std::move(q));
        }
        for (const std::string& name : done->rewritten) {
          LLMQ_ASSIGN_OR_RETURN(TensorView v, done->file->get(name));
          LLMQ_ASSIGN_OR_RETURN(std::vector<float> value, to_float32(v));
          rewritten.emplace_back(name, std::move(value));
        }
        for (auto& r : done->reports) report->layers.push_back(r);
        ++report->calibration.resumed_blocks;
        resumed = true;
      }
    }
    cluster.Broadcast(&resumed, 0);
    if (resumed && cluster.distributed()) LLMQ_RETURN_IF_ERROR(propagate_from_root(linears, quantized, rewritten));
    if (!resumed) {
      internal::BlockContext ctx{ckpt, *calib, layer, linears, options,
                                 [&](int64_t units, const std::string& item) { progress(layer, units, item); },
                                 [&] { return cancelled; }};
      auto block = method.quantize_block(ctx);
      if (!block.ok()) return block.status().code() == StatusCode::kCancelled ? stop() : block.status();
      if (cancelled) return stop();
      // Finished blocks are on disk before the next one starts: a crash loses at most one block.
      if (store) {
        internal::ScopedPhase phase(internal::Phase::kWrite);
        LLMQ_RETURN_IF_ERROR(store->Write(layer, *block));
      }
      report->oac_backward_seconds += block->hessian_seconds;
      report->oac_quantize_seconds += block->solve_seconds;
      for (auto& l : block->linears) {
        report->layers.push_back(l.report);
        quantized.emplace_back(l.linear, std::move(l.q));
      }
      rewritten = std::move(block->rewritten);
    }
    if (!(resumed && cluster.distributed())) LLMQ_RETURN_IF_ERROR(propagate_block(quantized, rewritten));
    quantized.clear();
    LLMQ_RETURN_IF_ERROR(calib->Advance(layer, [&](int64_t i, int64_t) {
      progress(layer, per_block - N + i, resumed ? "replaying finished block" : "propagating");
    }));
    calib->model().ReleaseBlock(layer);
  }
  report->oac_linear_in_depth = calib->kept_output_gradients();
  return Status::Ok();
}

}  // namespace

Result<QuantizeReport> quantize_checkpoint(const std::string& input_folder, const std::string& output_folder,
                                           const QuantizeOptions& requested) {
  const auto t0 = Clock::now();
  LLMQ_RETURN_IF_ERROR(requested.Validate());
  const Method& method = *internal::find_method(requested.method);  // Validate: a known method
  LLMQ_ASSIGN_OR_RETURN(auto ckpt, Checkpoint::Open(input_folder));
  if (ckpt->is_quantized())
    return Status::InvalidArgument(input_folder + ": is already quantized (" +
                                   (ckpt->quantization()->format == "llmq" ? std::string("by llmq")
                                                                           : ckpt->quantization()->format + " format") +
                                   "); quantize the float checkpoint");
  // A GGUF type fixes each tensor's ggml type (llama.cpp's rules); the linears that fell back to
  // f16 stay float, like the tensors no method quantizes.
  QuantizeOptions options = requested;
  std::optional<internal::GgmlPlan> plan;
  std::vector<LinearInfo> linears;
  if (!options.gguf_type.empty()) {
    LLMQ_ASSIGN_OR_RETURN(plan, internal::plan_ggml_types(options.gguf_type, *ckpt));
    options.spec = QuantSpec::ForGgml(plan->base);
    for (const auto& [name, type] : plan->types)
      if (name.size() > 7) options.module_specs[name.substr(0, name.size() - 7)] = QuantSpec::ForGgml(type);
  }
  for (const LinearInfo& l : ckpt->linears())
    if (!plan || plan->types.count(l.module + ".weight")) linears.push_back(l);
  // Under MPI only rank 0 writes; the others calibrate with it (run_calibrated) and return.
  const internal::Cluster& cluster = internal::Cluster::World();
  // Fail on an unusable output folder before hours of calibration.
  std::unique_ptr<internal::CheckpointWriter> writer;
  if (cluster.root()) {
    LLMQ_ASSIGN_OR_RETURN(writer, internal::CheckpointWriter::Create(
                                      output_folder, internal::replace_policy(options.overwrite, options.force),
                                      options.max_shard_bytes, input_folder));
  }

  // A bit budget: every linear's spec from the menu, chosen before anything is quantized.
  internal::BitPlan bit_plan;
  if (options.target_bits > 0 && method.Takes(MethodOption::kBitBudget)) {
    LLMQ_ASSIGN_OR_RETURN(bit_plan, internal::plan_bit_budget(input_folder, *ckpt, linears, options,
                                                              [&](int64_t done, int64_t n, const std::string& m) {
                                                                if (options.progress)
                                                                  options.progress({done, n, "bit budget: " + m,
                                                                                    seconds_since(t0)});
                                                              }));
    // The plan's specs replace the linears' (a GGUF recipe's included); the token embeddings and
    // output head keep theirs.
    for (const auto& [module, spec] : bit_plan.specs) {
      options.module_specs[module] = spec;
      if (plan && spec.is_ggml()) {
        plan->types[module + ".weight"] = spec.ggml_type;
        plan->fallbacks.erase(module + ".weight");
      }
    }
  }

  QuantizeReport report;
  report.method = options.method;
  report.spec = options.spec;
  report.input = input_folder;
  report.output = output_folder;
  report.input_bytes = ckpt->bytes_on_disk();
  report.unused_tensors = ckpt->UnusedTensors();
  report.gptq = options.gptq;
  report.awq = options.awq;
  report.adpq = options.adpq;
  report.target_bits = options.target_bits;
  report.oac = options.oac;
  report.billm = options.billm;
  if (!bit_plan.specs.empty()) {
    report.bit_sensitivity = bit_sensitivity_name(bit_plan.sensitivity);
    report.bit_estimate = options.bit_estimate == BitEstimate::kGptq ? "gptq" : "rtn";
    report.bit_menu = bit_plan.menu;
    report.bit_plan_bits = bit_plan.bits_per_weight;
    report.bit_plan_loss = bit_plan.loss;
    report.bit_plan_seconds = bit_plan.seconds;
  }
  report.true_sequential = options.true_sequential;
  report.alpha = method.Takes(MethodOption::kAlpha) ? options.alpha : 0.0;
  report.int8_activations = method.int8_activations || options.int8_activations;
  report.activation_outliers = options.activation_outliers;
  if (plan) {
    report.gguf_type = plan->name;
    for (const auto& [name, type] : plan->types) report.tensor_types[name] = ggml_type_name(type);
    report.gguf_fallbacks = plan->fallbacks;
  }

  std::optional<BlockStore> store;
  std::map<std::string, int> rewritten_by;  // non-linear tensor -> the block that rewrote it
  if (method.calibrated(options)) {
    if (cluster.root()) {
      LLMQ_ASSIGN_OR_RETURN(store, BlockStore::Open(output_folder, run_manifest(input_folder, *ckpt, options, method),
                                                    options.resume));
    }
    internal::PhaseClock& clock = internal::PhaseClock::ThisThread();
    clock.Reset();
    const auto tc = Clock::now();
    LLMQ_RETURN_IF_ERROR(
        run_calibrated(input_folder, *ckpt, options, linears, method, store ? &*store : nullptr, &report, t0));
    report.calibration.seconds = seconds_since(tc);
    const auto& ph = clock.seconds();
    auto& out = report.calibration.phase_seconds;
    using internal::Phase;
    out = {ph[int(Phase::kLoad)],     ph[int(Phase::kForward)], ph[int(Phase::kHessian)], ph[int(Phase::kExchange)],
           ph[int(Phase::kSolve)],    ph[int(Phase::kWrite)],   0.0};
    double accounted = 0.0;
    for (double v : ph) accounted += v;
    out.other = std::max(0.0, report.calibration.seconds - accounted);
    if (cluster.distributed()) {  // every rank's split (a few doubles each), for finding who waits on whom
      for (int r = 0; r < cluster.size(); ++r) {
        CalibrationReport::PhaseSeconds theirs = out;
        cluster.Broadcast(&theirs, sizeof theirs, r);
        report.calibration.rank_phase_seconds.push_back(theirs);
      }
    }
    if (!cluster.root()) return report;
    for (int l = 0; l < int(ckpt->config().num_layers); ++l) {
      LLMQ_ASSIGN_OR_RETURN(FinishedBlock b, store->Read(l));
      for (const auto& name : b.rewritten) rewritten_by[name] = l;
    }
  }

  if (!cluster.root()) return report;  // a zero-shot method: rank 0 does it all

  // The output, in the input's tensor order: linears quantized (now, or taken from the block
  // store), tensors a method rewrote from the store, everything else copied.
  std::map<std::string, LinearInfo> linear_of_weight;
  for (const LinearInfo& l : linears) linear_of_weight[l.module + ".weight"] = l;
  const int64_t total = int64_t(linear_of_weight.size());
  std::map<std::string, LayerReport> report_of;
  for (const LayerReport& l : report.layers) report_of[l.module] = l;
  nlohmann::ordered_json modules = nlohmann::ordered_json::object();
  double weighted_bits = 0;
  int64_t quantized_weights = 0;
  auto add_module = [&](const LayerReport& r, nlohmann::ordered_json info) {
    info["relative_error"] = r.relative_error;
    modules[r.module] = std::move(info);
    weighted_bits += r.bits_per_weight * double(r.rows * r.cols);
    quantized_weights += r.rows * r.cols;
  };
  std::map<int, FinishedBlock> blocks;  // finished blocks, opened as needed
  auto block = [&](int layer) -> Result<const FinishedBlock*> {
    if (!blocks.count(layer)) {
      LLMQ_ASSIGN_OR_RETURN(blocks[layer], store->Read(layer));
      blocks.erase(layer - 1);  // tensors come in block order: earlier blocks are done with
    }
    return &blocks[layer];
  };

  for (const std::string& name : ckpt->tensor_names()) {
    auto lin = linear_of_weight.find(name);
    if (lin == linear_of_weight.end()) {
      if (auto r = rewritten_by.find(name); r != rewritten_by.end()) {
        LLMQ_ASSIGN_OR_RETURN(const FinishedBlock* b, block(r->second));
        LLMQ_ASSIGN_OR_RETURN(TensorView v, b->file->get(name));
        LLMQ_RETURN_IF_ERROR(writer->Add(copy_of(name, v)));
        continue;
      }
      LLMQ_ASSIGN_OR_RETURN(TensorView view, ckpt->get(name));
      if (is_float_dtype(view.dtype)) {
        const int64_t bad = first_non_finite(view);
        if (bad >= 0)
          return Status::InvalidArgument(input_folder + ": tensor '" + name +
                                         "' has a non-finite value (NaN or Inf) at element " + std::to_string(bad));
      }
      if (plan && plan->types.count(name) && view.shape.size() == 2) {
        // Token embeddings and output head on their ggml grid: RTN, as llama.cpp quantizes them.
        const std::string module = name.substr(0, name.size() - 7);  // without ".weight"
        LLMQ_ASSIGN_OR_RETURN(std::vector<float> w, ckpt->get_float(name));
        auto q = quantize_rtn(w.data(), view.shape[0], view.shape[1], QuantSpec::ForGgml(plan->types.at(name)));
        if (!q.ok()) return q.status().WithContext(input_folder + ": tensor '" + name + "'");
        for (auto& t : internal::quantized_tensors(module, *q)) LLMQ_RETURN_IF_ERROR(writer->Add(std::move(t)));
        nlohmann::ordered_json info = internal::module_info_to_json(*q);
        info["relative_error"] = relative_error(w.data(), *q);
        modules[module] = std::move(info);
        continue;
      }
      LLMQ_RETURN_IF_ERROR(writer->Add(copy_of(name, view)));
      ckpt->release_pages(name);  // written out: keep the resident set at about one tensor
      continue;
    }
    const LinearInfo& l = lin->second;
    if (method.calibrated(options)) {
      LLMQ_ASSIGN_OR_RETURN(const FinishedBlock* b, block(l.layer));
      auto m = b->modules.find(l.module);
      auto r = report_of.find(l.module);
      if (m == b->modules.end() || r == report_of.end())
        return Status::Corruption(b->file->path() + ": no tensors for " + l.module);
      for (const TensorInfo& t : b->file->tensors()) {
        // The module's quantized parts; a bias this block rewrote (AWQ folds scales into the
        // bias of the linear in front of a site) is written once, under its own name.
        if (t.name.compare(0, l.module.size() + 1, l.module + ".") != 0 || rewritten_by.count(t.name)) continue;
        LLMQ_ASSIGN_OR_RETURN(TensorView v, b->file->get(t.name));
        LLMQ_RETURN_IF_ERROR(writer->Add(copy_of(t.name, v)));
        b->file->ReleasePages(t);
      }
      add_module(r->second, m->second);
      continue;
    }
    if (options.cancel && options.cancel())  // Ctrl-C: the writer removes its temporary folder
      return Status::Cancelled("interrupted; nothing was written to " + output_folder);
    const auto tl = Clock::now();
    LLMQ_ASSIGN_OR_RETURN(std::vector<float> w, ckpt->get_float(name));
    QuantizeOptions linear_options = options;
    linear_options.spec = options.SpecFor(l.module);
    auto q = method.quantize_linear(w.data(), l.rows, l.cols, linear_options);
    if (!q.ok()) return q.status().WithContext(input_folder + ": tensor '" + name + "'");
    LayerReport lr = internal::make_layer_report(l, w.data(), *q);
    for (auto& t : internal::quantized_tensors(l.module, *q)) LLMQ_RETURN_IF_ERROR(writer->Add(std::move(t)));
    lr.seconds = seconds_since(tl);
    add_module(lr, internal::module_info_to_json(*q));
    report.layers.push_back(lr);
    if (options.progress) options.progress({int64_t(report.layers.size()), total, l.module, seconds_since(t0)});
  }
  report.bits_per_weight = quantized_weights ? weighted_bits / double(quantized_weights) : 0.0;
  for (LayerReport& l : report.layers)
    if (auto it = bit_plan.specs.find(l.module); it != bit_plan.specs.end()) {
      l.bit_choice = it->second.ToString();
      l.estimated_loss = bit_plan.estimated_loss.at(l.module);
    }

  nlohmann::ordered_json config = nlohmann::ordered_json::parse(ckpt->config_json());
  nlohmann::ordered_json qc = {{"quant_method", internal::kLlmqQuantMethod},
                               {"format_version", internal::kFormatVersion},
                               {"method", options.method}};
  const nlohmann::json spec_json = internal::spec_to_json(options.spec);
  for (auto it = spec_json.begin(); it != spec_json.end(); ++it) qc[it.key()] = it.value();
  if (report.int8_activations) qc["activations"] = "int8";
  if (report.activation_outliers.enabled())
    qc["activation_outliers"] = {{"threshold", report.activation_outliers.threshold},
                                 {"integer", report.activation_outliers.integer}};
  if (plan) {
    qc["gguf_type"] = plan->name;
    qc["gguf_file_type"] = plan->file_type;
  }
  if (method.config_json) method.config_json(options, &qc);
  if (method.calibrated(options))
    qc["calibration"] = {{"nsamples", report.calibration.nsamples},
                         {"seq_len", report.calibration.seq_len},
                         {"seed", report.calibration.seed}};
  qc["bits_per_weight"] = report.bits_per_weight;
  qc["modules"] = modules;
  config["quantization_config"] = qc;
  blocks.clear();
  LLMQ_RETURN_IF_ERROR(writer->Commit(config.dump(2) + "\n", input_folder, {}));
  // Reopening validates what was written (and gives its size for the report).
  auto out = Checkpoint::Open(output_folder);
  if (!out.ok()) return out.status().WithContext("written output does not read back");
  report.output_bytes = (*out)->bytes_on_disk();
  report.seconds = seconds_since(t0);
  report.peak_rss_bytes = peak_rss_bytes();
  LLMQ_RETURN_IF_ERROR(internal::write_text_file_atomic(output_folder + "/llmq_report.json", report.ToJson() + "\n"));
  if (store) store->Remove();  // the output is complete; finished blocks are no longer needed
  return report;
}

}  // namespace llmq
