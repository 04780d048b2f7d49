// Sums in parallel whose result does not depend on the thread count (internal).
//
// An OpenMP reduction(+) adds per-thread partial sums, so its rounding changes with
// OMP_NUM_THREADS; llmq's outputs must be the same bits for any thread count and any number of
// MPI ranks (docs/DESIGN.md, "Determinism"). Here the terms are summed in fixed chunks, each in
// order by one thread, and the chunk sums in order.
#ifndef LLMQ_CORE_ORDERED_SUM_H_
#define LLMQ_CORE_ORDERED_SUM_H_

#include <cstdint>
#include <vector>

namespace llmq::internal {

// term(i) for i in [0, n), summed as described above; `chunk` terms per chunk.
template <typename Term>
double ordered_sum(int64_t n, const Term& term, int64_t chunk = 4096) {
  if (n <= 0) return 0.0;
  const int64_t chunks = (n + chunk - 1) / chunk;
  std::vector<double> part(static_cast<size_t>(chunks), 0.0);
#pragma omp parallel for schedule(static) if (chunks > 1)
  for (int64_t c = 0; c < chunks; ++c) {
    double s = 0.0;
    const int64_t end = (c + 1) * chunk < n ? (c + 1) * chunk : n;
    for (int64_t i = c * chunk; i < end; ++i) s += term(i);
    part[static_cast<size_t>(c)] = s;
  }
  double s = 0.0;
  for (double p : part) s += p;
  return s;
}

}  // namespace llmq::internal

#endif  // LLMQ_CORE_ORDERED_SUM_H_
