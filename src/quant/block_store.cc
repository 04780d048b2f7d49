// The store of finished blocks of a calibrated run (block_store.h).
#include "quant/block_store.h"

#include <cstring>
#include <filesystem>

#include "io/file_util.h"
#include "io/json_util.h"
#include "io/llmq_format.h"

namespace llmq::internal {
namespace fs = std::filesystem;
namespace {

nlohmann::ordered_json layer_report_to_json(const LayerReport& l) {
  return {{"module", l.module},        {"rows", l.rows},
          {"cols", l.cols},            {"relative_error", l.relative_error},
          {"bits_per_weight", l.bits_per_weight}, {"seconds", l.seconds},
          {"output_relative_error", l.output_relative_error}, {"gptq_loss", l.gptq_loss},
          {"damp", l.damp},            {"damp_retries", l.damp_retries},
          {"fell_back_to_rtn", l.fell_back_to_rtn}, {"dead_columns", l.dead_columns},
          {"awq_alpha", l.awq_alpha},  {"awq_loss", l.awq_loss},
          {"awq_loss_unscaled", l.awq_loss_unscaled}, {"awq_clip_shrink", l.awq_clip_shrink},
          {"outliers", l.outliers},    {"outlier_threshold", l.outlier_threshold},
          {"activation_outlier_columns", l.activation_outlier_columns},
          {"salient_fraction", l.salient_fraction}, {"row_pieces", l.row_pieces}};
}

LayerReport layer_report_from_json(const nlohmann::json& j) {
  LayerReport l;
  l.module = j.at("module").get<std::string>();
  l.rows = j.at("rows").get<int64_t>();
  l.cols = j.at("cols").get<int64_t>();
  l.relative_error = j.at("relative_error").get<double>();
  l.bits_per_weight = j.at("bits_per_weight").get<double>();
  l.seconds = j.at("seconds").get<double>();
  l.output_relative_error = j.at("output_relative_error").get<double>();
  l.gptq_loss = j.at("gptq_loss").get<double>();
  l.damp = j.at("damp").get<double>();
  l.damp_retries = j.at("damp_retries").get<int>();
  l.fell_back_to_rtn = j.at("fell_back_to_rtn").get<bool>();
  l.dead_columns = j.at("dead_columns").get<int64_t>();
  l.awq_alpha = j.at("awq_alpha").get<double>();
  l.awq_loss = j.at("awq_loss").get<double>();
  l.awq_loss_unscaled = j.at("awq_loss_unscaled").get<double>();
  l.awq_clip_shrink = j.at("awq_clip_shrink").get<double>();
  l.outliers = j.at("outliers").get<int64_t>();
  l.outlier_threshold = j.at("outlier_threshold").get<double>();
  l.activation_outlier_columns = j.value("activation_outlier_columns", int64_t(0));
  l.salient_fraction = j.value("salient_fraction", -1.0);
  l.row_pieces = j.value("row_pieces", 1);
  return l;
}

// A float32 tensor for the block file (norms and biases a method rewrote).
TensorToWrite float_tensor(const std::string& name, const std::vector<float>& v) {
  TensorToWrite t{name, DType::kF32, {int64_t(v.size())}, std::vector<uint8_t>(v.size() * 4)};
  if (!v.empty()) std::memcpy(t.bytes.data(), v.data(), t.bytes.size());
  return t;
}

}  // namespace

// The report line's JSON framed (json_framed) in front of quantized_bytes.
std::vector<uint8_t> pack_linear(const QuantizedLinear& l) {
  return json_framed(layer_report_to_json(l.report).dump(), quantized_bytes(l.linear.module, l.q));
}

Result<QuantizedTensor> join_row_pieces(std::vector<QuantizedTensor> pieces) {
  if (pieces.empty()) return Status::InvalidArgument("no row pieces to join");
  QuantizedTensor out = std::move(pieces[0]);
  const QuantSpec& spec = out.spec;
  if (spec.scale_bits > 0 || spec.bilevel_zeros() || spec.lookup || !out.activation_outlier_columns.empty())
    return Status::InvalidArgument("a " + spec.ToString() + " tensor's rows are not independent: cannot join row pieces");
  // Per-row arrays grow by each piece's rows; the CSR outliers by its row pointers.
  auto append = [](auto& dst, const auto& src) { dst.insert(dst.end(), src.begin(), src.end()); };
  for (size_t i = 1; i < pieces.size(); ++i) {
    QuantizedTensor& p = pieces[i];
    if (p.cols != out.cols || p.spec.ToString() != spec.ToString() || p.g_idx != out.g_idx)
      return Status::InvalidArgument("row pieces of different tensors");
    append(out.codes, p.codes);
    append(out.scales, p.scales);
    append(out.zeros, p.zeros);
    append(out.outlier_scales, p.outlier_scales);
    append(out.mins, p.mins);
    append(out.scale_codes, p.scale_codes);
    append(out.min_codes, p.min_codes);
    append(out.super_scales, p.super_scales);
    if (!p.outliers.row_ptr.empty() || !out.outliers.row_ptr.empty()) {
      if (out.outliers.row_ptr.empty()) out.outliers.row_ptr.assign(size_t(out.rows + 1), 0);
      std::vector<int32_t> ptr = p.outliers.row_ptr;
      if (ptr.empty()) ptr.assign(size_t(p.rows + 1), 0);
      const int32_t base = out.outliers.row_ptr.back();
      for (size_t r = 1; r < ptr.size(); ++r) out.outliers.row_ptr.push_back(base + ptr[r]);
      append(out.outliers.col_idx, p.outliers.col_idx);
      append(out.outliers.values, p.outliers.values);
    }
    out.rows += p.rows;
  }
  return out;
}

Result<QuantizedLinear> unpack_linear(const LinearInfo& info, const std::vector<uint8_t>& bytes) {
  auto [report, start] = json_unframed(bytes);
  if (report.is_discarded()) return Status::Corruption("solved linear " + info.module + ": truncated bytes");
  QuantizedLinear l{info, {}, {}};
  try {
    l.report = layer_report_from_json(report);
  } catch (const nlohmann::json::exception& e) {
    return Status::Corruption("solved linear " + info.module + ": " + e.what());
  }
  LLMQ_ASSIGN_OR_RETURN(l.q, parse_quantized(info.module, std::vector<uint8_t>(bytes.begin() + int64_t(start), bytes.end())));
  return l;
}

Result<BlockStore> BlockStore::Open(const std::string& output_folder, const nlohmann::ordered_json& manifest,
                                    bool resume) {
  std::error_code ec;
  fs::path out = fs::absolute(fs::path(output_folder), ec).lexically_normal();
  if (!out.has_filename()) out = out.parent_path();
  BlockStore s;
  s.dir_ = (out.parent_path() / ("." + out.filename().string() + ".llmq-partial")).string();
  const std::string mpath = (fs::path(s.dir_) / "manifest.json").string();
  if (fs::exists(s.dir_, ec)) {
    if (resume) {
      auto text = read_text_file(mpath);
      nlohmann::json old = text.ok() ? nlohmann::json::parse(*text, nullptr, false) : nlohmann::json();
      if (!old.is_discarded() && old == nlohmann::json(manifest)) return s;
      return Status::InvalidArgument(s.dir_ + ": holds a run with different inputs or options (see its manifest.json); "
                                     "run without --resume to start over");
    }
    fs::remove_all(s.dir_, ec);
    if (ec) return Status::IOError(s.dir_ + ": cannot remove the previous partial run: " + ec.message());
  }
  fs::create_directories(s.dir_, ec);
  if (ec) return Status::IOError(s.dir_ + ": cannot create the folder for finished blocks: " + ec.message());
  LLMQ_RETURN_IF_ERROR(write_text_file_atomic(
      mpath, manifest.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n"));
  return s;
}

std::string BlockStore::stem(int layer) const {
  char buf[32];
  std::snprintf(buf, sizeof buf, "block-%05d", layer);
  return (fs::path(dir_) / buf).string();
}

bool BlockStore::Finished(int layer) const {
  std::error_code ec;
  return fs::exists(stem(layer) + ".json", ec);
}

Status BlockStore::Write(int layer, const BlockResult& block) const {
  std::vector<TensorToWrite> tensors;
  nlohmann::ordered_json modules = nlohmann::ordered_json::object(), reports = nlohmann::ordered_json::array();
  nlohmann::ordered_json rewritten = nlohmann::ordered_json::array();
  for (const auto& [name, value] : block.rewritten) {
    tensors.push_back(float_tensor(name, value));
    rewritten.push_back(name);
  }
  for (const QuantizedLinear& l : block.linears) {
    for (auto& t : quantized_tensors(l.linear.module, l.q)) tensors.push_back(std::move(t));
    modules[l.linear.module] = module_info_to_json(l.q);
    reports.push_back(layer_report_to_json(l.report));
  }
  const std::string s = stem(layer);
  LLMQ_RETURN_IF_ERROR(write_safetensors(s + ".safetensors", tensors, {{"producer", "llmq"}}));
  return write_text_file_atomic(
      s + ".json",
      nlohmann::ordered_json({{"layers", reports}, {"modules", modules}, {"replaced", rewritten}}).dump(1) + "\n");
}

Result<FinishedBlock> BlockStore::Read(int layer) const {
  const std::string s = stem(layer);
  FinishedBlock b;
  LLMQ_ASSIGN_OR_RETURN(std::string text, read_text_file(s + ".json"));
  nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object() || !j.contains("layers") || !j.contains("modules"))
    return Status::Corruption(s + ".json: not a finished-block record");
  try {
    for (const auto& l : j["layers"]) b.reports.push_back(layer_report_from_json(l));
    for (auto it = j["modules"].begin(); it != j["modules"].end(); ++it) b.modules[it.key()] = it.value();
    for (const auto& r : j.value("replaced", nlohmann::json::array())) b.rewritten.push_back(r.get<std::string>());
  } catch (const nlohmann::json::exception& e) {
    return Status::Corruption(s + ".json: " + e.what());
  }
  LLMQ_ASSIGN_OR_RETURN(b.file, SafetensorsFile::Open(s + ".safetensors"));
  return b;
}

void BlockStore::Remove() const {
  std::error_code ec;
  fs::remove_all(dir_, ec);
}

}  // namespace llmq::internal
