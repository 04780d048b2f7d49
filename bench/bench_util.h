// Helpers shared by the benchmark files: random inputs and best-of-N wall-clock timing of a
// baseline measured in the same process (the ratios in the counters are against it).
#ifndef LLMQ_BENCH_BENCH_UTIL_H_
#define LLMQ_BENCH_BENCH_UTIL_H_

#include <Eigen/Core>
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

namespace llmq::bench {

using RowMatF = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// n values from N(0, sd^2), deterministic for a seed.
inline std::vector<float> gaussian(size_t n, uint32_t seed = 42, float sd = 0.02f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, sd);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

// Fastest of `reps` runs of f(i), in seconds (i = 0 .. reps-1).
template <typename F>
double best_seconds(int reps, F&& f) {
  double best = 1e30;
  for (int i = 0; i < reps; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    f(i);
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  return best;
}

#ifndef LLMQ_SHARED_DIR
#define LLMQ_SHARED_DIR "../shared"
#endif

// The index-th folder (sorted by name) of ../shared/models, or "" when there are fewer.
inline std::string shared_model_dir(int index) {
  std::vector<std::string> dirs;
  for (const auto& e : std::filesystem::directory_iterator(std::filesystem::path(LLMQ_SHARED_DIR) / "models"))
    dirs.push_back(e.path().string());
  std::sort(dirs.begin(), dirs.end());
  return index < int(dirs.size()) ? dirs[size_t(index)] : "";
}

}  // namespace llmq::bench

#endif  // LLMQ_BENCH_BENCH_UTIL_H_
