// The sparse outliers' product (SpQR's fp16 outliers, AdpQ's in-slot corrections, LLM.int8's exact
// columns): y[t, r] += sum over row r's outliers i of value_i * x[t, col_i], added after the dense
// product. The scalar reference is the definition every ISA copy reproduces bit for bit:
//  - each product value * x is formed in double, where it is exact (24 x 24 bits < 53), so a fused
//    or a separate multiply-add rounds the same;
//  - the i-th outlier of a row (counted from the row's first) goes to lane i % 16 of 16 double
//    accumulators, each summed in outlier order;
//  - the lanes are summed 0..15 in order and added to y once: y = float(double(y) + total).
// A SIMD copy (qgemm_avx2.cc, qgemm_avx512.cc) gathers 16 activations per step into the same lanes.
// The helpers below are compiled by each kernel file in the namespace of its copy (LLMQ_OUTLIER_IMPL,
// as activation_outliers_impl.h), so no ISA's inline copy can stand in for another's.
#ifndef LLMQ_KERNELS_SPARSE_OUTLIERS_IMPL_H_
#define LLMQ_KERNELS_SPARSE_OUTLIERS_IMPL_H_

#include <cstdint>

#include "packed.h"

#ifndef LLMQ_OUTLIER_IMPL
#error "define LLMQ_OUTLIER_IMPL (this copy's namespace) before including sparse_outliers_impl.h"
#endif

namespace llmq::kernels::LLMQ_OUTLIER_IMPL {

constexpr int kSparseLanes = 16;

// Adds outliers [i, i1) of one row to lanes (lane of outlier k = (k - i0) % 16), then returns
// y + the lane sum, all as the reference does it.
inline void sparse_lanes_scalar(const PackedWeights& w, const float* x, int32_t i0, int32_t i, int32_t i1,
                                double lanes[kSparseLanes]) {
  for (; i < i1; ++i)
    lanes[(i - i0) % kSparseLanes] += double(w.out_val[size_t(i)]) * double(x[w.out_col[size_t(i)]]);
}

inline float sparse_finish(const double lanes[kSparseLanes], float y) {
  double total = lanes[0];
  for (int l = 1; l < kSparseLanes; ++l) total += lanes[l];
  return float(double(y) + total);
}

// The product for rows [r0, r1) and n tokens. simd_steps(xt, i0, i1, lanes) fills all 16 lanes from
// the row's first outliers in whole steps of 16 and returns the first outlier it did not take; the
// rest go through the scalar lanes.
template <typename SimdSteps>
inline void sparse_rows(const PackedWeights& w, const float* x, int64_t n, int64_t r0, int64_t r1, float* y,
                        int64_t ldy, SimdSteps simd_steps) {
  if (w.out_col.empty()) return;
  // Tokens outside, rows inside: the token's activations stay in L1 while every row gathers from
  // them (rows outside would fetch a different token's row of x for every token, ~n cache misses
  // per outlier at prompt sizes).
  for (int64_t t = 0; t < n; ++t) {
    const float* xt = x + t * w.cols;
    for (int64_t r = r0; r < r1; ++r) {
      const int32_t i0 = w.out_row_ptr[size_t(r)], i1 = w.out_row_ptr[size_t(r + 1)];
      if (i1 == i0) continue;
      alignas(64) double lanes[kSparseLanes];
      const int32_t i = simd_steps(xt, i0, i1, lanes);
      sparse_lanes_scalar(w, xt, i0, i, i1, lanes);
      y[t * ldy + r] = sparse_finish(lanes, y[t * ldy + r]);
    }
  }
}

}  // namespace llmq::kernels::LLMQ_OUTLIER_IMPL

#endif  // LLMQ_KERNELS_SPARSE_OUTLIERS_IMPL_H_
