// The outlier columns' product of the int8-activation decomposition (docs/OUTLIERS.md; the
// activations are prepared by activation_outliers.cc): one body, compiled by each kernel file with
// its own ISA flags (qgemm_ref.cc, qgemm_avx2.cc, qgemm_avx512.cc) so that the loops over rows
// vectorize there, and dispatched through KernelTable::outlier_product. The including file names the
// namespace of its copy (LLMQ_OUTLIER_IMPL, e.g. outliers_avx512), as the dense copies rename
// Eigen's: the linker can never hand an AVX-512 copy of an inline function to baseline code, and
// tests/portable_isa_check.py can tell the copies apart. Integer sums are exact and every float
// operation is an explicit fma or a product in the same order, so all copies give the same bits.
#ifndef LLMQ_KERNELS_ACTIVATION_OUTLIERS_IMPL_H_
#define LLMQ_KERNELS_ACTIVATION_OUTLIERS_IMPL_H_

#include <algorithm>
#include <cmath>
#include <vector>

#include "packed.h"

#ifndef LLMQ_OUTLIER_IMPL
#error "define LLMQ_OUTLIER_IMPL (this copy's namespace) before including activation_outliers_impl.h"
#endif

namespace llmq::kernels::LLMQ_OUTLIER_IMPL {

inline float panel_scale(const PackedWeights& w, int64_t r, int64_t g) { return w.panel_scale(r, g); }
inline int32_t panel_zero(const PackedWeights& w, int64_t r, int64_t g) { return w.panel_zero(r, g); }
inline int64_t group_of_packed(const PackedWeights& w, int64_t j) {
  return int64_t(std::upper_bound(w.group_start.begin(), w.group_start.end(), j) - w.group_start.begin()) - 1;
}

constexpr int64_t kChunk = 64;  // rows per step: the inner loops run over contiguous rows

// a * b for |a| <= 128 and b an int8 or u8 value: |a b| <= 32640 fits int16, so the product is a
// 16-bit multiply (vpmullw) widened to int32 for the sum, instead of a 32-bit multiply.
template <typename T>
inline int32_t mul16(int32_t a, T b) {
  return int32_t(int16_t(int16_t(a) * int16_t(b)));
}

// Fixed columns: y[t, r0 + r] += the product with their own weights (fixed_w / fixed_w_i8).
inline void fixed_product(const PackedWeights& w, const OutlierActivations& a, const float* sx, int64_t n, int64_t no,
                   int64_t r0, int64_t nr, float* y) {
  const bool integer = w.act_outliers.integer;
  float add[kChunk];
  int32_t hh[kChunk], hl[kChunk], lh[kChunk], ll[kChunk];
  for (int64_t t = 0; t < n; ++t) {
    float* yr = y + t * w.rows + r0;
    if (integer) {
      // (128 h + l)(128 wh + wl) = 16384 h·wh + 128 (h·wl + l·wh) + l·wl: four int8 x int8 sums.
      std::fill(hh, hh + nr, 0);
      std::fill(hl, hl + nr, 0);
      std::fill(lh, lh + nr, 0);
      std::fill(ll, ll + nr, 0);
      for (int64_t i = 0; i < no; ++i) {
        const int32_t h = a.hi[size_t(t * no + i)], l = a.lo[size_t(t * no + i)];
        const int8_t* wh = w.fixed_w_hi.data() + i * w.rows + r0;
        const int8_t* wl = w.fixed_w_lo.data() + i * w.rows + r0;
        for (int64_t r = 0; r < nr; ++r) {
          hh[r] += mul16(h, wh[r]);
          hl[r] += mul16(h, wl[r]);
          lh[r] += mul16(l, wh[r]);
          ll[r] += mul16(l, wl[r]);
        }
      }
      for (int64_t r = 0; r < nr; ++r) {
        // The int32 sums to float (vcvtdq2ps) and combined with exact power-of-two scalings: one
        // rounding per term, the same operations in every copy.
        const float v = std::fma(float(hh[r]), 16384.0f, std::fma(float(hl[r] + lh[r]), 128.0f, float(ll[r])));
        yr[r] = std::fma(sx[t] * w.fixed_w_scale[size_t(r0 + r)], v, yr[r]);
      }
    } else {
      std::fill(add, add + nr, 0.0f);
      for (int64_t i = 0; i < no; ++i) {
        const float xv = a.x[size_t(t * no + i)];
        const float* wi = w.fixed_w.data() + i * w.rows + r0;
        for (int64_t r = 0; r < nr; ++r) add[r] = std::fma(xv, wi[r], add[r]);
      }
      for (int64_t r = 0; r < nr; ++r) yr[r] += add[r];
    }
  }
}

// y[t, r] += the outlier columns' product for rows [r_begin, r_end) (OutlierProductFn).
inline void outlier_product_rows(const PackedWeights& w, const std::vector<int32_t>& ocols, const OutlierActivations& a,
                                 const float* sx, int64_t n, int64_t r_begin, int64_t r_end, float* y) {
  const int64_t no = int64_t(ocols.size()), rows = w.rows;
  if (no == 0 || r_end <= r_begin) return;
  const bool integer = w.act_outliers.integer;
  if (!w.fixed_outlier_cols.empty()) {
    for (int64_t c0 = r_begin; c0 < r_end; c0 += kChunk) fixed_product(w, a, sx, n, no, c0, std::min(kChunk, r_end - c0), y);
    return;
  }
  // Columns found per call: the dense codes of those columns. Segments of outlier columns sharing
  // a weight group (ocols is sorted, groups are contiguous), one scale and zero point each.
  std::vector<int64_t> seg_start, seg_group;
  for (int64_t i = 0; i < no; ++i) {
    const int64_t g = group_of_packed(w, ocols[size_t(i)]);
    if (seg_group.empty() || seg_group.back() != g) {
      seg_start.push_back(i);
      seg_group.push_back(g);
    }
  }
  seg_start.push_back(no);
  const int64_t nseg = int64_t(seg_group.size());
  std::vector<uint8_t> code(size_t(no * kChunk));  // [column][row] of the current rows
  std::vector<float> scale(size_t(nseg * kChunk));
  std::vector<int32_t> zero(size_t(nseg * kChunk));
  for (int64_t c0 = r_begin; c0 < r_end; c0 += kChunk) {
    const int64_t nr = std::min(kChunk, r_end - c0);
    for (int64_t i = 0; i < no; ++i)
      for (int64_t r = 0; r < nr; ++r) code[size_t(i * kChunk + r)] = uint8_t(w.panel_code(c0 + r, ocols[size_t(i)]));
    for (int64_t sg = 0; sg < nseg; ++sg)
      for (int64_t r = 0; r < nr; ++r) {
        scale[size_t(sg * kChunk + r)] = panel_scale(w, c0 + r, seg_group[size_t(sg)]);
        zero[size_t(sg * kChunk + r)] = panel_zero(w, c0 + r, seg_group[size_t(sg)]);
      }
    float add[kChunk];
    int32_t acc_hi[kChunk], acc_lo[kChunk];
    for (int64_t t = 0; t < n; ++t) {
      std::fill(add, add + nr, 0.0f);
      for (int64_t sg = 0; sg < nseg; ++sg) {
        const float* sc = scale.data() + sg * kChunk;
        const int32_t* zr = zero.data() + sg * kChunk;
        if (integer) {
          // Σ v·(code - zero) = 128 (Σ hi·code - zero Σ hi) + (Σ lo·code - zero Σ lo).
          std::fill(acc_hi, acc_hi + nr, 0);
          std::fill(acc_lo, acc_lo + nr, 0);
          int32_t hisum = 0, losum = 0;
          for (int64_t i = seg_start[size_t(sg)]; i < seg_start[size_t(sg + 1)]; ++i) {
            const int32_t h = a.hi[size_t(t * no + i)], l = a.lo[size_t(t * no + i)];
            hisum += h;
            losum += l;
            const uint8_t* ci = code.data() + i * kChunk;
            for (int64_t r = 0; r < nr; ++r) {
              acc_hi[r] += mul16(h, ci[r]);
              acc_lo[r] += mul16(l, ci[r]);
            }
          }
          for (int64_t r = 0; r < nr; ++r) {
            const float v = std::fma(float(acc_hi[r] - zr[r] * hisum), 128.0f, float(acc_lo[r] - zr[r] * losum));
            add[r] = std::fma(sc[r], v, add[r]);
          }
        } else {
          for (int64_t i = seg_start[size_t(sg)]; i < seg_start[size_t(sg + 1)]; ++i) {
            const float xv = a.x[size_t(t * no + i)];
            const uint8_t* ci = code.data() + i * kChunk;
            for (int64_t r = 0; r < nr; ++r) add[r] = std::fma(xv, sc[r] * float(int32_t(ci[r]) - zr[r]), add[r]);
          }
        }
      }
      float* yr = y + t * rows + c0;
      const float f = integer ? sx[t] : 1.0f;
      for (int64_t r = 0; r < nr; ++r) yr[r] = std::fma(f, add[r], yr[r]);
    }
  }
}

}  // namespace llmq::kernels::LLMQ_OUTLIER_IMPL

#endif  // LLMQ_KERNELS_ACTIVATION_OUTLIERS_IMPL_H_
