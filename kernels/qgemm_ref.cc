// Scalar reference kernels: the definition every SIMD variant is tested against.
// Per row: y = sum_g (scale_g * sum_{j in g} code_j x_j + mzero_g * xsum_g), accumulated in double.
#include "packed.h"

namespace llmq::kernels {
namespace {

void gemv_ref(const PackedWeights& w, const float* x, const float* xsum, int64_t r0, int64_t r1, float* y) {
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
  for (int64_t r = r0; r < r1; ++r)
    for (int64_t g = 0; g < w.ngroups; ++g) {
      const float s = w.scales[size_t(r * w.ngroups + g)], m = w.mzero[size_t(r * w.ngroups + g)];
      for (int64_t j = w.group_start[size_t(g)]; j < w.group_start[size_t(g + 1)]; ++j)
        out[(r - r0) * w.kp + j] = s * float(w.code(r, j)) + m;
    }
}

}  // namespace

const KernelTable& scalar_kernels() {
  static const KernelTable t{"scalar", gemv_ref, dequant_ref};
  return t;
}

}  // namespace llmq::kernels
