// Calibration windows and the block-by-block calibration driver (see calibration.h).
#include "quant/calibration.h"

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <cstring>
#include <random>

#include "core/cluster.h"
#include "core/phase_clock.h"
#include "io/file_util.h"
#include "io/json_util.h"
#include "llmq/float16.h"
#include "model/backward.h"
#include "quant/gptq_internal.h"
#include "dense.h"

namespace llmq::internal {
namespace fs = std::filesystem;

namespace {

// The text behind a calibration path: a file, a .jsonl of {"text"} rows, or a folder of .txt files.
Result<std::string> read_calibration_text(const std::string& path) {
  std::error_code ec;
  if (fs::is_directory(path, ec)) {
    std::vector<std::string> files;
    for (const auto& e : fs::directory_iterator(path, ec))
      if (e.is_regular_file() && e.path().extension() == ".txt") files.push_back(e.path().string());
    std::sort(files.begin(), files.end());
    if (files.empty()) return Status::InvalidArgument(path + ": the calibration folder has no .txt files");
    std::string all;
    for (const auto& f : files) {
      LLMQ_ASSIGN_OR_RETURN(std::string t, read_text_file(f));
      if (!all.empty()) all += "\n\n";
      all += t;
    }
    return all;
  }
  LLMQ_ASSIGN_OR_RETURN(std::string text, read_text_file(path));
  if (!path.ends_with(".jsonl")) return text;
  std::string all;
  size_t line_no = 0, pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    const std::string line = text.substr(pos, end - pos);
    pos = end + 1;
    ++line_no;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    nlohmann::json row = nlohmann::json::parse(line, nullptr, false);
    if (row.is_discarded() || !row.is_object() || !row.contains("text") || !row["text"].is_string())
      return Status::InvalidArgument(path + ": line " + std::to_string(line_no) +
                                     " is not a JSON object with a string \"text\"");
    if (!all.empty()) all += "\n\n";
    all += row["text"].get<std::string>();
  }
  return all;
}

Status check_ids(const std::vector<int32_t>& ids, int64_t vocab, const std::string& path) {
  for (size_t i = 0; i < ids.size(); ++i)
    if (ids[i] < 0 || ids[i] >= vocab)
      return Status::InvalidArgument(path + ": token id " + std::to_string(ids[i]) + " at position " +
                                     std::to_string(i) + " is outside the model's vocabulary (" +
                                     std::to_string(vocab) + ")");
  return Status::Ok();
}

}  // namespace

Result<CalibrationSet> load_calibration_set(const CalibrationOptions& options, const Tokenizer* tokenizer,
                                            int64_t max_context, int64_t vocab_size) {
  const std::string& path = options.data;
  if (path.empty()) return Status::InvalidArgument("this method needs calibration data (--calib <text-file>)");
  if (options.nsamples <= 0 || options.seq_len <= 1)
    return Status::InvalidArgument("calibration needs nsamples >= 1 and seq_len >= 2");
  CalibrationSet set;
  set.seq_len = std::min(options.seq_len, max_context);
  std::vector<int32_t> ids;  // a running token stream to draw windows from
  std::error_code ec;
  if (!fs::exists(path, ec)) return Status::NotFound(path + ": calibration data not found");
  if (path.ends_with(".json")) {
    LLMQ_ASSIGN_OR_RETURN(std::string text, read_text_file(path));
    nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
    if (j.is_discarded() || !j.is_array() || j.empty())
      return Status::InvalidArgument(path + ": expected a JSON array of token ids or of windows of token ids");
    try {
      if (j[0].is_array()) {  // windows given as they are: no sampling
        for (size_t w = 0; w < j.size() && int64_t(set.windows.size()) < options.nsamples; ++w) {
          if (!j[w].is_array()) return Status::InvalidArgument(path + ": window " + std::to_string(w) + " is not an array of ids");
          std::vector<int32_t> win;
          for (const auto& id : j[w]) win.push_back(json_int<int32_t>(id));
          if (int64_t(win.size()) < set.seq_len)
            return Status::InvalidArgument(path + ": window " + std::to_string(w) + " has " +
                                           std::to_string(win.size()) + " tokens, fewer than seq_len " +
                                           std::to_string(set.seq_len));
          win.resize(size_t(set.seq_len));
          LLMQ_RETURN_IF_ERROR(check_ids(win, vocab_size, path));
          set.source_tokens += int64_t(win.size());
          set.windows.push_back(std::move(win));
        }
        return set;
      }
      for (const auto& id : j) ids.push_back(json_int<int32_t>(id));
    } catch (const nlohmann::json::exception&) {
      return Status::InvalidArgument(path + ": token ids must be integers");
    }
  } else if (path.ends_with(".bin")) {
    LLMQ_ASSIGN_OR_RETURN(std::string raw, read_text_file(path));
    if (raw.size() % 4 != 0)
      return Status::InvalidArgument(path + ": a .bin token file holds little-endian int32 ids; its size " +
                                     std::to_string(raw.size()) + " is not a multiple of 4");
    ids.resize(raw.size() / 4);
    if (!raw.empty()) std::memcpy(ids.data(), raw.data(), raw.size());
  } else {
    if (tokenizer == nullptr) return Status::InvalidArgument(path + ": text calibration data needs the model's tokenizer");
    LLMQ_ASSIGN_OR_RETURN(std::string text, read_calibration_text(path));
    if (text.empty()) return Status::InvalidArgument(path + ": the calibration text is empty");
    // Encoded in pieces of about 256 KiB cut after a blank line: SentencePiece needs about 100x
    // the text size when given one string, and windows rarely straddle a cut anyway.
    constexpr size_t kPiece = 256 << 10;
    for (size_t pos = 0; pos < text.size();) {
      size_t end = text.size();
      if (text.size() - pos > 2 * kPiece) {
        const size_t cut = text.find("\n\n", pos + kPiece);
        if (cut != std::string::npos) end = cut + 2;
      }
      LLMQ_ASSIGN_OR_RETURN(std::vector<int32_t> piece, tokenizer->Encode(text.substr(pos, end - pos)));
      ids.insert(ids.end(), piece.begin(), piece.end());
      pos = end;
    }
  }
  LLMQ_RETURN_IF_ERROR(check_ids(ids, vocab_size, path));
  set.source_tokens = int64_t(ids.size());
  if (int64_t(ids.size()) <= set.seq_len)
    return Status::InvalidArgument(path + ": the calibration data has " + std::to_string(ids.size()) +
                                   " tokens, not more than one window of " + std::to_string(set.seq_len));
  // Random windows as in the GPTQ reference (get_wikitext2/get_c4): start uniform in [0, n - seq_len).
  // mt19937_64 is specified bit for bit by the standard; the modulo keeps it platform-independent.
  std::mt19937_64 rng(options.seed);
  const uint64_t starts = uint64_t(ids.size()) - uint64_t(set.seq_len);
  for (int64_t s = 0; s < options.nsamples; ++s) {
    const uint64_t i = rng() % starts;
    set.windows.emplace_back(ids.begin() + int64_t(i), ids.begin() + int64_t(i) + set.seq_len);
  }
  return set;
}

bool is_token_id_file(const std::string& path) { return path.ends_with(".json") || path.ends_with(".bin"); }

int input_slot(LinearRole role) {
  switch (role) {
    case LinearRole::kQ:
    case LinearRole::kK:
    case LinearRole::kV: return 0;
    case LinearRole::kO: return 1;
    case LinearRole::kGate:
    case LinearRole::kUp:
    case LinearRole::kFc1: return 2;
    case LinearRole::kDown:
    case LinearRole::kFc2: return 3;
  }
  return -1;
}

Result<std::unique_ptr<BlockwiseCalibrator>> BlockwiseCalibrator::Create(const std::string& folder, CalibrationSet set,
                                                                         bool fp16_activations) {
  std::unique_ptr<BlockwiseCalibrator> c(new BlockwiseCalibrator());
  ModelLoadOptions lo;
  lo.load_blocks = false;
  LLMQ_ASSIGN_OR_RETURN(c->model_, Model::Load(folder, lo));
  c->set_ = std::move(set);
  c->fp16_ = fp16_activations;
  c->hidden_ = c->model_->hidden_size();
  const int64_t n = c->num_windows(), per = c->set_.seq_len * c->hidden_;
  if (c->fp16_) c->act16_.assign(size_t(n), std::vector<uint16_t>(size_t(per)));
  else c->act32_.assign(size_t(n), std::vector<float>(size_t(per)));
  std::vector<float> x(static_cast<size_t>(per));
  for (int64_t i = 0; i < n; ++i) {
    LLMQ_RETURN_IF_ERROR(c->model_->Embed(c->set_.windows[size_t(i)].data(), c->set_.seq_len, 0, x.data()));
    c->Store(i, x.data());
  }
  return c;
}

uint64_t BlockwiseCalibrator::activation_bytes() const {
  return uint64_t(num_windows()) * uint64_t(set_.seq_len * hidden_) * (fp16_ ? 2u : 4u);
}

void BlockwiseCalibrator::Load(int64_t i, float* x) const {
  if (fp16_) {
    const auto& a = act16_[size_t(i)];
    for (size_t k = 0; k < a.size(); ++k) x[k] = fp16_to_float(a[k]);
  } else {
    std::copy(act32_[size_t(i)].begin(), act32_[size_t(i)].end(), x);
  }
}

void BlockwiseCalibrator::Store(int64_t i, const float* x) {
  if (fp16_) {
    auto& a = act16_[size_t(i)];
    for (size_t k = 0; k < a.size(); ++k) a[k] = float_to_fp16(x[k]);
  } else {
    std::copy(x, x + act32_[size_t(i)].size(), act32_[size_t(i)].begin());
  }
}

std::vector<float> BlockwiseCalibrator::Activations(int64_t i) const {
  std::vector<float> x(size_t(set_.seq_len * hidden_));
  Load(i, x.data());
  return x;
}

Status BlockwiseCalibrator::RunAll(int layer, const LinearInputHook& hook, bool keep_outputs,
                                   const WindowProgress& progress) {
  return RunWindows(layer, 0, num_windows(), hook, keep_outputs, progress);
}

Status BlockwiseCalibrator::RunWindows(int layer, int64_t begin, int64_t end, const LinearInputHook& hook,
                                       bool keep_outputs, const WindowProgress& progress) {
  {
    ScopedPhase phase(Phase::kLoad);
    LLMQ_RETURN_IF_ERROR(model_->LoadBlock(layer));
  }
  // A KV cache for this block only: every window starts at position 0.
  KVCache cache;
  cache.capacity = set_.seq_len;
  cache.k.resize(size_t(model_->config().num_layers));
  cache.v.resize(cache.k.size());
  const size_t kv = size_t(set_.seq_len * model_->config().num_kv_heads * model_->config().head_dim);
  cache.k[size_t(layer)].assign(kv, 0.0f);
  cache.v[size_t(layer)].assign(kv, 0.0f);
  std::vector<float> x(size_t(set_.seq_len * hidden_));
  const int64_t n = num_windows();
  for (int64_t i = begin; i < end; ++i) {
    ScopedPhase phase(Phase::kForward);
    Load(i, x.data());
    cache.length = 0;
    model_->RunBlock(layer, x.data(), set_.seq_len, &cache, hook);
    if (keep_outputs) Store(i, x.data());
    if (progress) progress((i + 1 - begin) * n / (end - begin), n);
  }
  return Status::Ok();
}

void BlockwiseCalibrator::BroadcastWindow(int64_t i, int owner) {
  const Cluster& c = Cluster::World();
  if (fp16_) c.Broadcast(act16_[size_t(i)].data(), act16_[size_t(i)].size() * 2, owner);
  else c.Broadcast(act32_[size_t(i)].data(), act32_[size_t(i)].size() * 4, owner);
}

namespace {

// One accumulator per distinct input slot of `linears` (keyed by every module that reads it),
// fed by the first role of each slot as `run` sends the windows through the block.
template <typename T, typename Make, typename Add>
Result<std::map<std::string, std::shared_ptr<T>>> collect_per_slot(
    const std::vector<LinearInfo>& linears, Make make, Add add,
    const std::function<Status(const LinearInputHook&)>& run) {
  std::map<int, std::shared_ptr<T>> by_slot;
  std::map<int, LinearRole> collector;  // the one role per slot whose hook call is accumulated
  std::map<std::string, std::shared_ptr<T>> out;
  for (const LinearInfo& l : linears) {
    const int slot = input_slot(l.role);
    if (!by_slot.count(slot)) {
      by_slot[slot] = make(l.cols);
      collector[slot] = l.role;
    }
    out[l.module] = by_slot[slot];
  }
  LinearInputHook hook = [&](const LinearInfo& l, const float* x, int64_t n) {
    auto it = collector.find(input_slot(l.role));
    if (it == collector.end() || it->second != l.role) return;
    ScopedPhase phase(Phase::kHessian);
    add(*by_slot[it->first], x, n, l.cols);
  };
  LLMQ_RETURN_IF_ERROR(run(hook));
  return out;
}

}  // namespace

Result<std::map<std::string, std::shared_ptr<HessianAccumulator>>> BlockwiseCalibrator::CollectHessians(
    int layer, const std::vector<LinearInfo>& linears, const WindowProgress& progress) {
  return collect_per_slot<HessianAccumulator>(
      linears, [](int64_t cols) { return std::make_shared<HessianAccumulator>(cols); },
      [](HessianAccumulator& h, const float* x, int64_t n, int64_t) { h.Add(x, n); },
      [&](const LinearInputHook& hook) { return RunAll(layer, hook, false, progress); });
}

namespace {
using RowMatrixF = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using ConstRowMap = Eigen::Map<const RowMatrixF>;
}  // namespace

void add_output_adaptive(HessianAccumulator* h, const float* x, const float* delta, int64_t n, int64_t rows,
                         float delta_scale, bool per_token) {
  ScopedPhase phase(Phase::kHessian);
  const int64_t cols = h->cols();
  const ConstRowMap X(x, n, cols), D(delta, n, rows);
  if (per_token) {
    RowMatrixF scaled = X;
    for (int64_t t = 0; t < n; ++t) scaled.row(t) *= delta_scale * D.row(t).norm();
    h->Add(scaled.data(), n);
    return;
  }
  // Per sequence, H += GᵀG with G = Dᵀ X. Forming G costs rows·n·cols and its Gram rows·cols²;
  // through the n×n matrix S = D Dᵀ (H += Xᵀ S X, §6.2) it is n²·(rows + cols) + n·cols², less
  // when the window is shorter than the layer (2048 tokens: 1.4x faster on a 4096x4096 layer, 2.7x
  // on 11008x4096; bench_oac).
  const double direct = double(rows) * double(cols) * double(n + cols);
  const double via_tokens = double(n) * double(n) * double(rows + cols) + double(n) * double(cols) * double(cols);
  if (via_tokens < direct) {
    RowMatrixF S(n, n);
    dense::gemm(false, true, n, n, rows, delta_scale * delta_scale, D.data(), rows, D.data(), rows, 0.0f, S.data(), n);
    h->AddWeighted(x, n, S.data());
  } else {
    RowMatrixF G(rows, cols);  // this sequence's weight gradient G = Dᵀ X
    dense::gemm(true, false, rows, cols, n, delta_scale, D.data(), rows, x, cols, 0.0f, G.data(), cols);
    h->Add(G.data(), rows);
  }
}

Result<std::map<std::string, std::shared_ptr<HessianAccumulator>>> BlockwiseCalibrator::CollectOutputAdaptiveHessians(
    int layer, const std::vector<LinearInfo>& linears, bool per_token, const WindowProgress& progress) {
  const int layers = int(model_->config().num_layers);
  {
    ScopedPhase phase(Phase::kLoad);
    for (int l = layer; l < layers; ++l) LLMQ_RETURN_IF_ERROR(model_->LoadBlock(l));
  }
  std::map<std::string, std::shared_ptr<HessianAccumulator>> out;
  for (const LinearInfo& l : linears) {
    if (l.layer != layer) return Status::InvalidArgument(l.module + " is not in block " + std::to_string(layer));
    out[l.module] = std::make_shared<HessianAccumulator>(l.cols);
  }
  const int64_t T = set_.seq_len;
  std::vector<float> x(size_t(T * hidden_));
  const int64_t n = num_windows();
  internal::BackwardWorkspace workspace;
  const GradientSource source = PlanGradients(layer, n);
  for (int64_t i = 0; i < n; ++i) {
    ScopedPhase phase(Phase::kForward);  // the backward passes
    Load(i, x.data());
    Status st = WindowBackward(
        layer, i, x.data(), source,
        [&](const LinearInfo& l, const float* xin, const float* delta, int64_t nt) {
          auto it = out.find(l.module);
          // δ carries the mean loss's 1/(T-1): scale it back (H's scale changes no decision, §6.4,
          // but keeps the fp32 sums far from underflow).
          if (it != out.end()) add_output_adaptive(it->second.get(), xin, delta, nt, l.rows, float(T - 1), per_token);
        },
        &workspace);
    if (!st.ok()) return st.WithContext("OAC backward, block " + std::to_string(layer));
    if (progress) progress(i + 1, n);
  }
  return out;
}

BlockwiseCalibrator::GradientSource BlockwiseCalibrator::PlanGradients(int layer, int64_t windows) {
  if (gradient_budget_ <= 0) return GradientSource::kFromLoss;
  for (auto& [w, by_block] : kept_) by_block.erase(by_block.begin(), by_block.lower_bound(layer));  // done with
  if (kept_from_ >= 0 && layer > kept_from_) return GradientSource::kKept;
  if (kept_from_ == layer) return GradientSource::kFromLoss;  // a later stage of the block that kept them
  const int64_t later = model_->config().num_layers - layer - 1;
  const double bytes = double(windows) * double(later) * double(set_.seq_len) * double(hidden_) * 4.0;
  if (later <= 0 || bytes > double(gradient_budget_)) return GradientSource::kFromLoss;
  kept_from_ = layer;
  kept_.clear();
  return GradientSource::kFromLossKeeping;
}

Status BlockwiseCalibrator::WindowBackward(int layer, int64_t i, const float* x, GradientSource source,
                                           const LinearGradientHook& hook, BackwardWorkspace* workspace) {
  const int64_t T = set_.seq_len;
  if (source == GradientSource::kKept) {
    auto w = kept_.find(i);
    if (w == kept_.end() || !w->second.count(layer))
      return Status::Internal("no kept output gradient of window " + std::to_string(i));
    return backward_block(*model_, layer, x, w->second[layer].data(), T, hook, workspace);
  }
  BlockGradientHook keep;
  if (source == GradientSource::kFromLossKeeping)
    keep = [&](int l, const float* dout) {
      if (l > layer) kept_[i][l].assign(dout, dout + T * hidden_);
    };
  return backward_window(*model_, layer, layer, x, set_.windows[size_t(i)].data(), T, hook, workspace,
                         kDefaultTapeBudgetBytes, keep)
      .status();
}

Result<std::map<std::string, std::shared_ptr<std::vector<float>>>> BlockwiseCalibrator::CollectInputAbsMax(
    int layer, const std::vector<LinearInfo>& linears, const WindowProgress& progress) {
  return collect_per_slot<std::vector<float>>(
      linears, [](int64_t cols) { return std::make_shared<std::vector<float>>(size_t(cols), 0.0f); },
      [](std::vector<float>& m, const float* x, int64_t n, int64_t cols) {
        for (int64_t t = 0; t < n; ++t)
          for (int64_t j = 0; j < cols; ++j) m[size_t(j)] = std::max(m[size_t(j)], std::fabs(x[t * cols + j]));
      },
      [&](const LinearInputHook& hook) { return RunAll(layer, hook, false, progress); });
}

Result<std::map<std::string, std::shared_ptr<std::vector<float>>>> BlockwiseCalibrator::CollectInputs(
    int layer, const std::vector<LinearInfo>& linears, const WindowProgress& progress) {
  const size_t tokens = size_t(num_windows() * set_.seq_len);
  return collect_per_slot<std::vector<float>>(
      linears,
      [&](int64_t cols) {
        auto v = std::make_shared<std::vector<float>>();
        v->reserve(tokens * size_t(cols));
        return v;
      },
      [](std::vector<float>& m, const float* x, int64_t n, int64_t cols) { m.insert(m.end(), x, x + n * cols); },
      [&](const LinearInputHook& hook) { return RunAll(layer, hook, false, progress); });
}

Status BlockwiseCalibrator::Advance(int layer, const WindowProgress& progress) {
  const Cluster& c = Cluster::World();
  if (!c.distributed()) return RunAll(layer, nullptr, true, progress);
  const auto [begin, end] = c.Share(num_windows());
  LLMQ_RETURN_IF_ERROR(RunWindows(layer, begin, end, nullptr, true, progress));
  for (int r = 0; r < c.size(); ++r) {
    const auto [rb, re] = c.Share(num_windows(), r);
    for (int64_t i = rb; i < re; ++i) BroadcastWindow(i, r);
  }
  return Status::Ok();
}

namespace {

// Every window's record of one stream (`per_window` floats each; this rank's windows' records
// are `mine`, concatenated) handed to `consume` on rank `owner` in window order: the other ranks
// send theirs, the owner takes them rank by rank. Tags keep the streams of one call apart.
void feed_in_window_order(const Cluster& c, int64_t windows, int owner, int tag, const std::vector<float>& mine,
                          int64_t per_window, const std::function<void(const float*)>& consume) {
  if (c.rank() != owner) {
    c.Send(mine.data(), mine.size() * sizeof(float), owner, tag);
    return;
  }
  std::vector<float> theirs;
  for (int r = 0; r < c.size(); ++r) {
    const auto [b, e] = c.Share(windows, r);
    const float* src = mine.data();
    if (r != c.rank()) {
      theirs.resize(size_t((e - b) * per_window));
      c.Recv(theirs.data(), theirs.size() * sizeof(float), r, tag);
      src = theirs.data();
    }
    for (int64_t w = 0; w < e - b; ++w) consume(src + w * per_window);
  }
}

// The finished Hessian of `acc` (on its owner) on every rank.
std::shared_ptr<const std::vector<float>> broadcast_hessian(const Cluster& c, const HessianAccumulator* acc,
                                                            int64_t cols, int owner) {
  std::vector<float> h;
  {
    ScopedPhase phase(Phase::kHessian);
    h = acc ? acc->Hessian() : std::vector<float>(size_t(cols * cols));
  }
  c.Broadcast(h.data(), h.size() * sizeof(float), owner);
  return std::make_shared<const std::vector<float>>(std::move(h));
}

}  // namespace

Result<HessianMatrices> BlockwiseCalibrator::InputHessians(int layer, const std::vector<LinearInfo>& linears,
                                                           const WindowProgress& progress) {
  const Cluster& c = Cluster::World();
  HessianMatrices out;
  if (!c.distributed()) {
    LLMQ_ASSIGN_OR_RETURN(auto acc, CollectHessians(layer, linears, progress));
    std::map<const HessianAccumulator*, std::shared_ptr<const std::vector<float>>> done;
    ScopedPhase phase(Phase::kHessian);
    for (const auto& [module, a] : acc) {
      if (!done.count(a.get())) done[a.get()] = std::make_shared<const std::vector<float>>(a->Hessian());
      out[module] = done[a.get()];
    }
    return out;
  }
  struct Slot {
    LinearRole collector;
    int64_t cols = 0;
    std::vector<std::string> modules;
    std::vector<float> mine;  // this rank's windows' inputs, in window order
  };
  std::map<int, Slot> slots;
  for (const LinearInfo& l : linears) {
    auto [it, fresh] = slots.try_emplace(input_slot(l.role));
    if (fresh) it->second.collector = l.role, it->second.cols = l.cols;
    it->second.modules.push_back(l.module);
  }
  // Work items: the 256-column panels of every Hessian's lower triangle (panel p of a Hessian
  // `cols` wide costs (cols - 256p) x 256), spread over the ranks.
  std::vector<double> costs;
  for (const auto& [id, s] : slots)
    for (int64_t p = 0; p < HessianAccess::panels(s.cols); ++p) {
      const int64_t j0 = p * kHessianPanel;
      costs.push_back(double(s.cols - j0) * double(std::min(kHessianPanel, s.cols - j0)));
    }
  const std::vector<int> owner = c.Assign(costs);
  const int64_t T = set_.seq_len;
  bool short_call = false;
  const auto [begin, end] = c.Share(num_windows());
  LLMQ_RETURN_IF_ERROR(RunWindows(
      layer, begin, end,
      [&](const LinearInfo& l, const float* x, int64_t n) {
        auto it = slots.find(input_slot(l.role));  // the block's other linears run too
        if (it == slots.end() || it->second.collector != l.role) return;
        Slot& s = it->second;
        if (n != T) short_call = true;
        ScopedPhase phase(Phase::kHessian);
        s.mine.insert(s.mine.end(), x, x + n * l.cols);
      },
      false, progress));
  if (short_call) return Status::Internal("a block's linear saw a partial window (distributed Hessians need whole ones)");
  size_t first_item = 0;
  for (auto& [id, s] : slots) {
    const int64_t panels = HessianAccess::panels(s.cols);
    std::vector<uint8_t> mine(size_t(panels), 0);
    for (int64_t p = 0; p < panels; ++p) mine[size_t(p)] = owner[first_item + size_t(p)] == c.rank();
    HessianAccumulator acc(s.cols);
    HessianAccess::keep_panels(&acc, mine);
    // Every rank adds every window, in window order, to its panels. The inputs go round first,
    // then the additions: work between two broadcasts keeps the other ranks waiting in the second.
    std::vector<std::vector<float>> inputs(static_cast<size_t>(c.size()));
    for (int r = 0; r < c.size(); ++r) {
      const auto [b, e] = c.Share(num_windows(), r);
      std::vector<float>& buf = r == c.rank() ? s.mine : inputs[size_t(r)];
      buf.resize(size_t((e - b) * T * s.cols));
      c.Broadcast(buf.data(), buf.size() * sizeof(float), r);
    }
    for (int r = 0; r < c.size(); ++r) {
      const auto [b, e] = c.Share(num_windows(), r);
      const std::vector<float>& buf = r == c.rank() ? s.mine : inputs[size_t(r)];
      ScopedPhase phase(Phase::kHessian);
      for (int64_t w = 0; w < e - b; ++w) acc.Add(buf.data() + w * T * s.cols, T);
    }
    std::vector<float>().swap(s.mine);
    std::vector<std::vector<float>>().swap(inputs);
    // Each panel's entries (rows from its first column down) from the rank that added it: every
    // panel block goes round, then the others' are copied into place.
    std::vector<float> h;
    {
      ScopedPhase phase(Phase::kHessian);
      h = acc.Hessian();
    }
    std::vector<std::vector<float>> blocks(static_cast<size_t>(panels));
    for (int64_t p = 0; p < panels; ++p) {
      const int64_t j0 = p * kHessianPanel, w = std::min(kHessianPanel, s.cols - j0), rows = s.cols - j0;
      std::vector<float>& block = blocks[size_t(p)];
      block.resize(size_t(rows * w));
      const int o = owner[first_item + size_t(p)];
      if (o == c.rank())
        for (int64_t i = 0; i < rows; ++i) std::copy_n(&h[size_t((j0 + i) * s.cols + j0)], w, &block[size_t(i * w)]);
      c.Broadcast(block.data(), block.size() * sizeof(float), o);
    }
    ScopedPhase phase(Phase::kHessian);
    for (int64_t p = 0; p < panels; ++p) {
      if (owner[first_item + size_t(p)] == c.rank()) continue;
      const int64_t j0 = p * kHessianPanel, w = std::min(kHessianPanel, s.cols - j0), rows = s.cols - j0;
      const std::vector<float>& block = blocks[size_t(p)];
      // The square on the diagonal from its lower triangle; below it each row is copied whole and
      // mirrored above the diagonal 64 rows at a time (a column written one entry per row touched a
      // cache line per entry: ~0.3 s per 5632-wide Hessian).
      for (int64_t i = 0; i < std::min(rows, w); ++i)
        for (int64_t j = 0; j <= i; ++j)
          h[size_t((j0 + i) * s.cols + j0 + j)] = h[size_t((j0 + j) * s.cols + j0 + i)] = block[size_t(i * w + j)];
      for (int64_t i0 = w; i0 < rows; i0 += 64) {
        const int64_t i1 = std::min(rows, i0 + 64);
        for (int64_t i = i0; i < i1; ++i)
          std::copy_n(&block[size_t(i * w)], w, &h[size_t((j0 + i) * s.cols + j0)]);
        for (int64_t j = 0; j < w; ++j) {
          float* above = &h[size_t((j0 + j) * s.cols + j0)];
          for (int64_t i = i0; i < i1; ++i) above[i] = block[size_t(i * w + j)];
        }
      }
    }
    std::vector<std::vector<float>>().swap(blocks);
    first_item += size_t(panels);
    auto shared = std::make_shared<const std::vector<float>>(std::move(h));
    for (const std::string& m : s.modules) out[m] = shared;
  }
  return out;
}

Result<HessianMatrices> BlockwiseCalibrator::OutputAdaptiveHessians(int layer, const std::vector<LinearInfo>& linears,
                                                                    bool per_token, const WindowProgress& progress) {
  const Cluster& c = Cluster::World();
  HessianMatrices out;
  if (!c.distributed()) {
    LLMQ_ASSIGN_OR_RETURN(auto acc, CollectOutputAdaptiveHessians(layer, linears, per_token, progress));
    ScopedPhase phase(Phase::kHessian);
    for (const auto& [module, a] : acc) out[module] = std::make_shared<const std::vector<float>>(a->Hessian());
    return out;
  }
  const int layers = int(model_->config().num_layers);
  {
    ScopedPhase phase(Phase::kLoad);
    for (int l = layer; l < layers; ++l) LLMQ_RETURN_IF_ERROR(model_->LoadBlock(l));
  }
  // Per linear, per own window: its inputs x [T, cols], then its output gradients δ [T, rows].
  std::map<std::string, std::vector<float>> mine;
  std::vector<double> costs;
  for (const LinearInfo& l : linears) {
    if (l.layer != layer) return Status::InvalidArgument(l.module + " is not in block " + std::to_string(layer));
    mine[l.module];
    costs.push_back(double(l.cols) * double(l.cols + l.rows));
  }
  const std::vector<int> owner = c.Assign(costs);
  const int64_t T = set_.seq_len, n = num_windows();
  const auto [begin, end] = c.Share(n);
  std::vector<float> x(size_t(T * hidden_));
  internal::BackwardWorkspace workspace;
  bool short_call = false;
  // Decided on all the windows, as one process decides: every rank takes the same way (each
  // keeps only its own windows' gradients, so less than the budget).
  const GradientSource source = PlanGradients(layer, n);
  for (int64_t i = begin; i < end; ++i) {
    ScopedPhase phase(Phase::kForward);  // the backward passes
    Load(i, x.data());
    Status st = WindowBackward(
        layer, i, x.data(), source,
        [&](const LinearInfo& l, const float* xin, const float* delta, int64_t nt) {
          auto it = mine.find(l.module);
          if (it == mine.end()) return;
          if (nt != T) short_call = true;
          it->second.insert(it->second.end(), xin, xin + nt * l.cols);
          it->second.insert(it->second.end(), delta, delta + nt * l.rows);
        },
        &workspace);
    if (!st.ok()) return st.WithContext("OAC backward, block " + std::to_string(layer));
    if (progress) progress((i + 1 - begin) * n / (end - begin), n);
  }
  if (short_call) return Status::Internal("a block's linear saw a partial window (distributed Hessians need whole ones)");
  for (size_t k = 0; k < linears.size(); ++k) {
    const LinearInfo& l = linears[k];
    std::unique_ptr<HessianAccumulator> acc;
    if (c.rank() == owner[k]) acc = std::make_unique<HessianAccumulator>(l.cols);
    // As CollectOutputAdaptiveHessians: δ scaled back by T - 1.
    feed_in_window_order(c, n, owner[k], int(k), mine[l.module], T * (l.cols + l.rows), [&](const float* p) {
      add_output_adaptive(acc.get(), p, p + T * l.cols, T, l.rows, float(T - 1), per_token);
    });
    std::vector<float>().swap(mine[l.module]);
    out[l.module] = broadcast_hessian(c, acc.get(), l.cols, owner[k]);
  }
  return out;
}

Result<std::unique_ptr<BlockwiseCalibrator>> open_calibrator(const std::string& input_folder, const Checkpoint& ckpt,
                                                             const CalibrationOptions& options,
                                                             CalibrationReport* report) {
  const ModelConfig& cfg = ckpt.config();
  std::unique_ptr<Tokenizer> tokenizer;  // pre-tokenized data (.json / .bin ids) needs none
  if (!is_token_id_file(options.data)) {
    LLMQ_ASSIGN_OR_RETURN(tokenizer, Tokenizer::Open(input_folder));
  }
  const int64_t context = cfg.max_position_embeddings > 0 ? cfg.max_position_embeddings : options.seq_len;
  LLMQ_ASSIGN_OR_RETURN(CalibrationSet set, load_calibration_set(options, tokenizer.get(), context, cfg.vocab_size));
  report->data = options.data;
  report->nsamples = int64_t(set.windows.size());
  report->seq_len = set.seq_len;
  report->seed = options.seed;
  report->tokens = set.source_tokens;
  LLMQ_ASSIGN_OR_RETURN(auto calib, BlockwiseCalibrator::Create(input_folder, std::move(set), options.fp16_activations));
  report->activation_bytes = calib->activation_bytes();
  report->ranks = Cluster::World().size();
  return calib;
}

}  // namespace llmq::internal
