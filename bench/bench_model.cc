// Prompt processing of the models in ../shared/models, fp32 and RTN w4 g128 (through the
// kernels), against the time of the same pass's matrix multiplications alone (every linear,
// the LM head and the attention products QK^T and SV, each timed as a plain Eigen fp32 GEMM
// of the same shape). Counters:
//   tok_per_s        tokens processed per second (one window of `seq` tokens from position 0)
//   vs_matmul_only   forward time / matmul-only time (the bound: <= 2)
#include <benchmark/benchmark.h>
#include <llmq/llmq.h>

#include "bench_util.h"
#include "dense.h"

#include <Eigen/Core>
#include <chrono>
#include <filesystem>
#include <map>

namespace {

namespace fs = std::filesystem;
using llmq::bench::RowMatF;

double gemm_seconds(int64_t n, int64_t k, int64_t m) {  // [n, k] x [k, m]
  RowMatF a = RowMatF::Random(n, k), b = RowMatF::Random(k, m), c(n, m);
  return llmq::bench::best_seconds(5, [&](int) {  // Eigen through the dense layer (the library's ISA)
    llmq::dense::gemm(false, false, n, m, k, 1.0f, a.data(), k, b.data(), m, 0.0f, c.data(), m);
    benchmark::DoNotOptimize(c.data());
  });
}

double matmul_only_seconds(const llmq::ModelConfig& c, const std::vector<llmq::LinearInfo>& linears, int64_t n) {
  double t = 0;
  for (const auto& l : linears) t += gemm_seconds(n, l.cols, l.rows);
  t += gemm_seconds(n, c.hidden_size, c.vocab_size);  // LM head
  // Attention: per layer and head, S = Q K^T ([n, hd] x [hd, n]) and C = S V ([n, n] x [n, hd]).
  t += double(c.num_layers * c.num_heads) * (gemm_seconds(n, c.head_dim, n) + gemm_seconds(n, n, c.head_dim));
  return t;
}

// args: model index (sorted folders of ../shared/models), quantized (0/1), seq
void BM_PromptProcessing(benchmark::State& state) {
  const std::string folder = llmq::bench::shared_model_dir(int(state.range(0)));
  if (folder.empty()) {
    state.SkipWithError("no such model under " LLMQ_SHARED_DIR "/models");
    return;
  }
  std::string load = folder;
  const fs::path tmp = fs::temp_directory_path() / ("llmq-bench-" + fs::path(folder).filename().string() + "-w4");
  if (state.range(1) != 0) {
    llmq::QuantizeOptions o;
    o.overwrite = true;
    auto r = llmq::quantize_checkpoint(folder, tmp.string(), o);
    if (!r.ok()) {
      state.SkipWithError(r.status().ToString().c_str());
      return;
    }
    load = tmp.string();
  }
  auto model = llmq::Model::Load(load);
  if (!model.ok()) {
    state.SkipWithError(model.status().ToString().c_str());
    return;
  }
  const auto& cfg = (*model)->config();
  const int64_t n = std::min<int64_t>(state.range(2), cfg.max_position_embeddings);
  std::vector<int32_t> ids(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) ids[size_t(i)] = int32_t((i * 7919 + 1) % cfg.vocab_size);
  llmq::KVCache cache = (*model)->NewCache(n);
  double total = 0;
  for (auto _ : state) {
    cache.length = 0;
    const auto t0 = std::chrono::steady_clock::now();
    auto logits = (*model)->Forward(ids.data(), n, &cache);
    total += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    benchmark::DoNotOptimize(logits);
  }
  const double per = total / double(state.iterations());
  state.counters["tok_per_s"] = double(n) / per;
  state.counters["vs_matmul_only"] = per / matmul_only_seconds(cfg, (*model)->checkpoint().linears(), n);
  std::string kernels;  // the quantized kernels the forward pass ran
  for (const auto& [name, linears] : (*model)->QuantizedKernels(n)) kernels += " [" + name + " x" + std::to_string(linears) + "]";
  state.SetLabel(fs::path(folder).filename().string() + (state.range(1) ? " rtn-w4g128" : " fp32") + " seq " +
                 std::to_string(n) + kernels);
  if (state.range(1) != 0) fs::remove_all(tmp);
}
BENCHMARK(BM_PromptProcessing)
    ->ArgsProduct({{0, 1}, {0, 1}, {256}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

}  // namespace
