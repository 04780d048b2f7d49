// Scalar reference kernels: the definition every SIMD variant is tested against.
// Per row: y = sum_g (scale_g * sum_{j in g} code_j x_j + mzero_g * xsum_g), accumulated in double.
#include <algorithm>
#include <cmath>

#define LLMQ_OUTLIER_IMPL outliers_baseline
#include "activation_outliers_impl.h"
#include "llmq/float16.h"
#include "packed.h"
#include "sparse_outliers_impl.h"

namespace llmq::kernels {
namespace {

// Lookup codes: the weight of packed column j of row r in group g is one of the group's levels.
float lookup_weight(const PackedWeights& w, int64_t r, int64_t g, int64_t j) {
  return fp16_to_float(w.lut[size_t((r * w.ngroups + g) * 8 + w.class_offset[size_t(j)] + w.code(r, j))]);
}

void gemv_ref(const PackedWeights& w, const float* x, const float* xsum, int64_t r0, int64_t r1, float* y) {
  if (w.lookup) {
    for (int64_t r = r0; r < r1; ++r) {
      double acc = 0.0;
      for (int64_t g = 0; g < w.ngroups; ++g)
        for (int64_t j = w.group_start[size_t(g)]; j < w.group_start[size_t(g + 1)]; ++j)
          acc += double(lookup_weight(w, r, g, j)) * double(x[j]);
      y[r] = float(acc);
    }
    return;
  }
  for (int64_t r = r0; r < r1; ++r) {
    double acc = 0.0;
    for (int64_t g = 0; g < w.ngroups; ++g) {
      double dot = 0.0;
      for (int64_t j = w.group_start[size_t(g)]; j < w.group_start[size_t(g + 1)]; ++j)
        dot += double(w.code(r, j)) * double(x[j]);
      acc += double(w.scales[size_t(r * w.ngroups + g)]) * dot + double(w.mzero[size_t(r * w.ngroups + g)]) * xsum[g];
    }
    y[r] = float(acc);
  }
}

void dequant_ref(const PackedWeights& w, int64_t r0, int64_t r1, float* out) {
  if (w.lookup) {
    for (int64_t r = r0; r < r1; ++r)
      for (int64_t g = 0; g < w.ngroups; ++g)
        for (int64_t j = w.group_start[size_t(g)]; j < w.group_start[size_t(g + 1)]; ++j)
          out[(r - r0) * w.kp + j] = lookup_weight(w, r, g, j);
    return;
  }
  for (int64_t r = r0; r < r1; ++r)
    for (int64_t g = 0; g < w.ngroups; ++g) {
      const float s = w.scales[size_t(r * w.ngroups + g)], m = w.mzero[size_t(r * w.ngroups + g)];
      for (int64_t j = w.group_start[size_t(g)]; j < w.group_start[size_t(g + 1)]; ++j)
        out[(r - r0) * w.kp + j] = std::fma(float(w.code(r, j)), s, m);  // one rounding, as the SIMD FMAs
    }
}

void gemm_i8_ref(const PackedWeights& w, const int8_t* xq, const int32_t* xqsum, const float* sx, int64_t n,
                 int64_t p0, int64_t p1, float* y) {
  for (int64_t p = p0; p < p1; ++p)
    for (int64_t rr = 0; rr < 16; ++rr) {
      const int64_t r = p * 16 + rr;
      if (r >= w.rows) break;
      for (int64_t t = 0; t < n; ++t) {
        float acc = 0.0f;
        for (int64_t g = 0; g < w.ngroups; ++g) {
          int32_t dot = 0;
          for (int64_t j = w.group_start[size_t(g)]; j < w.group_start[size_t(g + 1)]; ++j)
            dot += w.panel_code(r, j) * int32_t(xq[t * w.kp + j]);
          dot -= w.panel_zero(r, g) * xqsum[t * w.ngroups + g];
          acc = std::fma(w.panel_scale(r, g), float(dot), acc);
          if (w.panel_has_mins) acc = std::fma(-w.panel_min(r, g), float(xqsum[t * w.ngroups + g]), acc);
        }
        y[t * w.rows + r] = acc * sx[t];
      }
    }
}

void outlier_product_scalar(const PackedWeights& w, const std::vector<int32_t>& ocols, const OutlierActivations& a,
                          const float* sx, int64_t n, int64_t r0, int64_t r1, float* y) {
  LLMQ_OUTLIER_IMPL::outlier_product_rows(w, ocols, a, sx, n, r0, r1, y);
}

void sparse_add_scalar(const PackedWeights& w, const float* x, int64_t n, int64_t r0, int64_t r1, float* y,
                       int64_t ldy) {
  LLMQ_OUTLIER_IMPL::sparse_rows(w, x, n, r0, r1, y, ldy, [](const float*, int32_t i0, int32_t, double* lanes) {
    std::fill(lanes, lanes + LLMQ_OUTLIER_IMPL::kSparseLanes, 0.0);
    return i0;
  });
}

}  // namespace

const KernelTable& scalar_kernels() {
  static const KernelTable t{"scalar", gemv_ref, nullptr, dequant_ref, gemm_i8_ref, outlier_product_scalar,
                             sparse_add_scalar, nullptr};
  return t;
}

}  // namespace llmq::kernels
