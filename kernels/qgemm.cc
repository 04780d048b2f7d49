// PackedLinear: conversion from QuantizedTensor to the kernel layout, ISA dispatch, and the
// GEMV / GEMM drivers (threads over rows; GEMM dequantizes row tiles into an L2-sized buffer
// and multiplies them with Eigen).
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <numeric>
#include <string>

#include "cpu_features.h"
#include "llmq/float16.h"
#include "llmq/kernels.h"
#include "packed.h"
#include "dense.h"

namespace llmq {

using kernels::PackedWeights;

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::kScalar: return "scalar";
    case Isa::kAvx2: return "avx2";
    case Isa::kAvx512: return "avx512";
  }
  return "?";
}

bool isa_supported(Isa isa) {
  const auto& f = kernels::cpu_features();
  switch (isa) {
    case Isa::kScalar: return true;
    case Isa::kAvx2: return kernels::avx2_kernels() != nullptr && f.avx2 && f.fma && f.f16c;
    case Isa::kAvx512: return kernels::avx512_kernels() != nullptr && f.avx512f && f.avx512bw && f.avx512vl;
  }
  return false;
}

namespace {
Isa best_isa() {
  if (isa_supported(Isa::kAvx512)) return Isa::kAvx512;
  if (isa_supported(Isa::kAvx2)) return Isa::kAvx2;
  return Isa::kScalar;
}
}  // namespace

Result<Isa> isa_from_environment() {
  const char* env = std::getenv("LLMQ_ISA");
  if (env == nullptr || *env == '\0') return best_isa();
  const std::string v = env;
  for (Isa isa : {Isa::kScalar, Isa::kAvx2, Isa::kAvx512})
    if (v == isa_name(isa)) {
      if (!isa_supported(isa)) return Status::InvalidArgument("LLMQ_ISA=" + v + ": this CPU does not support it");
      return isa;
    }
  return Status::InvalidArgument("LLMQ_ISA=" + v + ": expected scalar, avx2 or avx512");
}

void set_num_threads(int n) {
  static const int default_threads = omp_get_max_threads();
  omp_set_num_threads(n > 0 ? n : default_threads);
}

int num_threads() { return omp_get_max_threads(); }

Isa active_isa() {
  static const Isa isa = [] {
    auto r = isa_from_environment();
    return r.ok() ? *r : best_isa();
  }();
  return isa;
}

PackedLinear::PackedLinear() = default;
PackedLinear::~PackedLinear() = default;
PackedLinear::PackedLinear(PackedLinear&&) noexcept = default;
PackedLinear& PackedLinear::operator=(PackedLinear&&) noexcept = default;
int64_t PackedLinear::rows() const { return w_->rows; }
int64_t PackedLinear::cols() const { return w_->cols; }
int PackedLinear::bits() const { return w_->bits; }
bool PackedLinear::int8_activations() const { return w_->int8_activations; }
uint64_t PackedLinear::bytes() const { return w_->bytes(); }
const ActivationOutlierOptions& PackedLinear::activation_outliers() const { return w_->act_outliers; }
ActivationOutlierStats PackedLinear::activation_outlier_stats() const {
  ActivationOutlierStats st;
  st.calls = w_->outlier_calls.load();
  st.outlier_columns = w_->outlier_cols_seen.load();
  st.cols = w_->cols;
  return st;
}

namespace {

bool same_bits(float a, float b) { return std::memcmp(&a, &b, sizeof(float)) == 0; }

// K-quants (q.super_scales: fp16 d, dmin per row and 256 columns): the panels' scales and mins as
// their super-blocks' d and dmin times one integer code per group (packed.h, kSuperBlock). The codes
// are found from the fp32 values (round(scale / d)), and the form is kept only if it gives back
// every scale and min bit for bit (QuantizedTensor::Validate already refuses K-quant scales that
// are not d * code; this keeps the pack exact whatever a caller hands it).
bool to_super_blocks(const QuantizedTensor& q, kernels::PackedWeights* w) {
  using Scales = kernels::PackedWeights::PanelScales;
  if (!q.spec.is_ggml() || q.super_scales.empty() || !w->perm.empty() || q.cols % 256 != 0 ||
      q.spec.group_size <= 0 || 256 % q.spec.group_size != 0 || w->ngroups != q.num_groups())
    return false;
  const int64_t gps = 256 / q.spec.group_size, nsuper = q.cols / 256;
  if (w->ngroups != nsuper * gps) return false;
  w->groups_per_super = gps;
  while ((int64_t(1) << w->super_shift) < gps) ++w->super_shift;  // 256 / group size: a power of 2
  const int64_t stride = w->param_stride();
  w->panel_super.assign(size_t(w->panel_count * nsuper * stride), 0);
  w->panel_group_codes.assign(size_t(w->panel_count * w->ngroups * stride), 0);
  bool exact = true;
  for (int64_t r = 0; r < q.rows && exact; ++r) {
    const int64_t p = r / 16, rr = r % 16;
    for (int64_t sb = 0; sb < nsuper; ++sb)
      for (int k = 0; k < (w->panel_has_mins ? 2 : 1); ++k)
        w->panel_super[w->super_offset(p, sb * gps) + size_t(16 * k + rr)] = q.super_scales[size_t((r * nsuper + sb) * 2 + k)];
    for (int64_t g = 0; g < w->ngroups && exact; ++g)
      for (int k = 0; k < (w->panel_has_mins ? 2 : 1) && exact; ++k) {
        const size_t pg = kernels::PackedWeights::panel_index(w->ngroups, p, g, rr);
        const float v = k == 0 ? w->panel_scales[pg] : w->panel_mins[pg];
        const float d = fp16_to_float(w->panel_super[w->super_offset(p, g) + size_t(16 * k + rr)]);
        const float code = d != 0.0f ? std::nearbyint(v / d) : 0.0f;
        exact = std::isfinite(code) && code >= -128.0f && code <= 127.0f && same_bits(d * code, v);
        if (exact) w->panel_group_codes[w->group_codes_offset(p, g) + size_t(16 * k + rr)] = int8_t(code);
      }
  }
  if (!exact) {
    std::vector<uint16_t>().swap(w->panel_super);
    std::vector<int8_t>().swap(w->panel_group_codes);
    w->groups_per_super = 0;
    w->super_shift = 0;
    return false;
  }
  w->panel_scale_kind = Scales::kSuperBlock;
  std::vector<float>().swap(w->panel_scales);
  std::vector<float>().swap(w->panel_mins);
  return true;
}

// The int8 panels' scales and zero points (filled as fp32 and bytes) stored as small as they stay
// exact (packed.h): K-quants' super-blocks, else fp16 scales; one constant zero point.
void compact_panel_params(const QuantizedTensor& q, kernels::PackedWeights* w) {
  using Zeros = kernels::PackedWeights::PanelZeros;
  using Scales = kernels::PackedWeights::PanelScales;
  const bool f16 = !to_super_blocks(q, w) && std::all_of(w->panel_scales.begin(), w->panel_scales.end(), [](float s) {
    return same_bits(fp16_to_float(float_to_fp16(s)), s);
  });
  if (f16) {
    w->panel_scales16.resize(w->panel_scales.size());
    for (size_t i = 0; i < w->panel_scales.size(); ++i) w->panel_scales16[i] = float_to_fp16(w->panel_scales[i]);
    std::vector<float>().swap(w->panel_scales);
    w->panel_scale_kind = Scales::kF16;
  }
  // Padding rows of the last panel hold zero 0: only real rows decide the constant.
  const auto zero = [w](int64_t r, int64_t g) {
    return w->panel_zeros[kernels::PackedWeights::panel_index(w->ngroups, r / 16, g, r % 16)];
  };
  bool constant = true;
  for (int64_t r = 0; r < w->rows && constant; ++r)
    for (int64_t g = 0; g < w->ngroups && constant; ++g) constant = zero(r, g) == zero(0, 0);
  if (constant) {
    w->panel_zero_kind = Zeros::kConstant;
    w->panel_zero_constant = w->rows == 0 || w->ngroups == 0 ? 0 : zero(0, 0);
    std::vector<uint8_t>().swap(w->panel_zeros);
  }
  // Codes of up to 7 bits and their zero points differ by at most 127; 8-bit ones are checked.
  w->signed_codes_fit_int8 = w->bits <= 7;
  if (!w->signed_codes_fit_int8) {
    bool fit = true;
    for (int64_t r = 0; r < w->rows && fit; ++r)
      for (int64_t g = 0; g < w->ngroups && fit; ++g) {
        const int32_t z = w->panel_zero(r, g);
        for (int64_t j = w->group_start[size_t(g)]; j < w->group_start[size_t(g + 1)] && fit; ++j)
          fit = w->panel_code(r, j) - z >= -128 && w->panel_code(r, j) - z <= 127;
      }
    w->signed_codes_fit_int8 = fit;
  }
}

// What outlier k (of row r) adds to the dense part: its fp16 value, or for an in-slot outlier the
// difference its second scale makes, (outlier_scale - scale) * (code - zero).
float sparse_outlier_value(const QuantizedTensor& q, int64_t r, int32_t k) {
  if (!q.in_slot_outliers()) return fp16_to_float(q.outliers.values[size_t(k)]);
  const int32_t c = q.outliers.col_idx[size_t(k)];
  const size_t rg = size_t(r * q.num_groups() + q.group_of(c));
  return (q.outlier_scales[rg] - q.scales[rg]) * (float(q.code(r, c)) - q.zero_value(r, q.group_of(c)));
}

}  // namespace

Result<PackedLinear> PackedLinear::Pack(const QuantizedTensor& q, const PackOptions& options) {
  LLMQ_RETURN_IF_ERROR(q.Validate());
  if (options.int8_activations && q.spec.bilevel_zeros())
    return Status::InvalidArgument("int8 activations need integer zero points; this tensor has bilevel (" +
                                   std::to_string(q.spec.zero_bits) + "-bit coded, real-valued) zeros");
  ActivationOutlierOptions ao = options.outliers;
  if (ao.enabled() && !options.int8_activations)
    return Status::InvalidArgument("the activation outlier decomposition needs int8 activations");
  // The outlier columns' product (activation_outliers_impl.h) has no min term.
  if (ao.enabled() && !q.mins.empty())
    return Status::InvalidArgument(std::string("the activation outlier decomposition needs integer zero points; ") +
                                   ggml_type_name(q.spec.ggml_type) + " has float mins");
  if (!std::isfinite(ao.threshold) || ao.threshold < 0.0)
    return Status::InvalidArgument("activation outlier threshold must be a finite number >= 0, got " +
                                   std::to_string(ao.threshold));
  for (int32_t c : ao.columns)
    if (c < 0 || c >= q.cols)
      return Status::InvalidArgument("activation outlier column " + std::to_string(c) + " is outside the " +
                                     std::to_string(q.cols) + " input columns");
  // A tensor with fixed outlier columns (llm.int8 with calibration) runs them outside the int8 row.
  if (ao.columns.empty() && options.int8_activations) ao.columns = q.activation_outlier_columns;
  if (q.spec.lookup && options.int8_activations)
    return Status::InvalidArgument("int8 activations need a uniform grid; this tensor has " + std::to_string(q.spec.bits) +
                                   "-bit lookup codes (BiLLM)");
  auto w = std::make_unique<PackedWeights>();
  w->rows = q.rows;
  w->cols = q.cols;
  w->lookup = q.spec.lookup;
  const int64_t block = w->lookup ? 64 : 32;  // columns per SIMD step
  w->kp = (q.cols + block - 1) / block * block;
  w->bits = q.spec.bits;
  w->code_bits = w->lookup ? 2 : q.spec.bits > 4 ? 8 : 4;  // 5- and 6-bit codes (ggml grids) are bytes too
  w->row_bytes = w->kp * w->code_bits / 8;
  // Packed column order: source columns sorted by group (stable), so groups are contiguous.
  std::vector<int32_t> order(static_cast<size_t>(q.cols));
  std::iota(order.begin(), order.end(), 0);
  if (!q.g_idx.empty())
    std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return q.g_idx[size_t(a)] < q.g_idx[size_t(b)]; });
  std::vector<int32_t> source_group;  // per packed group: the source group id
  for (int64_t j = 0; j < q.cols; ++j) {
    const int gid = q.group_of(order[size_t(j)]);
    if (source_group.empty() || source_group.back() != gid) {
      source_group.push_back(gid);
      w->group_start.push_back(j);
    }
  }
  w->group_start.push_back(w->kp);
  w->ngroups = int64_t(source_group.size());
  w->block_aligned = true;
  for (int64_t g = 0; g < w->ngroups; ++g) w->block_aligned &= w->group_start[size_t(g)] % block == 0;
  if (!w->block_aligned && !w->lookup) {
    w->half_aligned = true;
    for (int64_t g = 0; g < w->ngroups; ++g) w->half_aligned &= w->group_start[size_t(g)] % 16 == 0;
    if (w->half_aligned) {
      w->half_group.resize(size_t(w->kp / 16));
      for (int64_t g = 0; g < w->ngroups; ++g)
        for (int64_t h = w->group_start[size_t(g)] / 16; h < w->group_start[size_t(g + 1)] / 16; ++h)
          w->half_group[size_t(h)] = int32_t(g);
    }
  }
  bool identity = true;
  for (int64_t j = 0; j < q.cols && identity; ++j) identity = order[size_t(j)] == j;
  if (!identity) w->perm = order;
  std::vector<int32_t> packed_of(size_t(q.cols));  // source column -> packed column
  for (int64_t j = 0; j < q.cols; ++j) packed_of[size_t(order[size_t(j)])] = int32_t(j);
  if (ao.enabled()) {
    w->act_outliers = ao;
    for (int32_t c : ao.columns) w->fixed_outlier_cols.push_back(packed_of[size_t(c)]);
    std::sort(w->fixed_outlier_cols.begin(), w->fixed_outlier_cols.end());
    w->fixed_outlier_cols.erase(std::unique(w->fixed_outlier_cols.begin(), w->fixed_outlier_cols.end()),
                                w->fixed_outlier_cols.end());
  }

  w->int8_activations = options.int8_activations;
  if (w->int8_activations) {
    w->panel_count = (w->rows + 15) / 16;
    w->panel_code_bits = q.spec.bits <= 4 ? 4 : q.spec.bits <= 6 ? 6 : 8;
    w->panel_bytes = 2 * w->kp * w->panel_code_bits;
    w->panels.assign(size_t(w->panel_count * w->panel_bytes), 0);
    w->panel_scales.assign(size_t(w->panel_count * w->ngroups * 16), 0.0f);
    w->panel_zeros.assign(w->panel_scales.size(), 0);
    w->panel_has_mins = !q.mins.empty();
    if (w->panel_has_mins) w->panel_mins.assign(w->panel_scales.size(), 0.0f);
  } else if (w->lookup) {
    w->codes.assign(size_t(w->rows * w->row_bytes), 0);
    w->lut.assign(size_t(w->rows * w->ngroups * 8), 0);
    w->class_offset.assign(size_t(w->kp), 0);
    for (int64_t j = 0; j < q.cols; ++j) w->class_offset[size_t(j)] = 4 * q.column_classes[size_t(order[size_t(j)])];
  } else {
    w->codes.assign(size_t(w->rows * w->row_bytes), 0);
    w->scales.resize(size_t(w->rows * w->ngroups));
    w->mzero.resize(w->scales.size());
  }
  std::vector<uint8_t> src(static_cast<size_t>(q.cols));
#pragma omp parallel for schedule(static) firstprivate(src)
  for (int64_t r = 0; r < q.rows; ++r) {
    unpack_bits(q.codes.data() + r * q.words_per_row(), q.cols, q.spec.bits, src.data());
    if (w->int8_activations) {
      uint8_t* panel = w->panels.data() + (r / 16) * w->panel_bytes;
      const int64_t rr = r % 16;
      for (int64_t j = 0; j < q.cols; ++j) {
        const uint8_t c = src[size_t(order[size_t(j)])];
        if (w->panel_code_bits == 8) {
          panel[(j / 4) * 64 + rr * 4 + j % 4] = c;
        } else if (w->panel_code_bits == 6) {
          uint8_t* blk = panel + (j / 16) * 192;
          const int64_t m = (j % 16) / 4;
          blk[(m / 2) * 64 + rr * 4 + j % 4] |= uint8_t((m % 2) == 0 ? (c & 15) : (c & 15) << 4);
          blk[128 + rr * 4 + j % 4] |= uint8_t((c >> 4) << (2 * m));
        } else {
          panel[(j / 8) * 64 + rr * 4 + j % 4] |= uint8_t((j % 8) < 4 ? c : c << 4);
        }
      }
    } else {
      uint8_t* row = w->codes.data() + r * w->row_bytes;
      for (int64_t j = 0; j < q.cols; ++j) {
        const uint8_t c = src[size_t(order[size_t(j)])];
        if (w->code_bits == 8) {
          row[j] = c;
        } else if (w->code_bits == 2) {
          row[(j / 64) * 16 + j % 16] |= uint8_t(c << (2 * ((j % 64) / 16)));
        } else {
          const int64_t blk = j / 32, i = j % 32;
          row[blk * 16 + (i % 16)] |= uint8_t(i < 16 ? c : c << 4);
        }
      }
    }
    for (int64_t g = 0; g < w->ngroups && w->lookup; ++g) {
      const int64_t sg = source_group[size_t(g)], L = int64_t(1) << q.spec.bits;
      for (int cls = 0; cls < QuantizedTensor::kLookupClasses; ++cls)
        for (int64_t c = 0; c < L; ++c)
          w->lut[size_t((r * w->ngroups + g) * 8 + 4 * cls + c)] =
              float_to_fp16(q.levels[size_t(((r * q.num_groups() + sg) * QuantizedTensor::kLookupClasses + cls) * L + c)]);
    }
    for (int64_t g = 0; g < w->ngroups && !w->lookup; ++g) {
      const int sg = source_group[size_t(g)];
      const float s = q.scales[size_t(r * q.num_groups() + sg)];
      if (w->int8_activations) {
        const size_t pg = size_t(((r / 16) * w->ngroups + g) * 16 + r % 16);
        w->panel_scales[pg] = s;
        w->panel_zeros[pg] = uint8_t(q.zero_of(r, sg));  // QuantizedTensor's zeros are bytes (0 with mins)
        if (w->panel_has_mins) w->panel_mins[pg] = q.min_of(r, sg);
      } else {
        w->scales[size_t(r * w->ngroups + g)] = s;
        w->mzero[size_t(r * w->ngroups + g)] = -s * q.zero_value(r, sg) - q.min_of(r, sg);
      }
    }
  }
  if (w->int8_activations) compact_panel_params(q, w.get());
  // Fixed outlier columns: their weights (dense + sparse) in a block of their own; their sparse
  // outliers are in that block, not in the CSR below.
  std::vector<bool> fixed(static_cast<size_t>(q.cols), false);
  for (int32_t c : ao.columns) fixed[size_t(c)] = true;
  if (!w->fixed_outlier_cols.empty()) {
    const int64_t no = int64_t(w->fixed_outlier_cols.size());
    std::vector<float> weff(size_t(no * q.rows));
    for (int64_t i = 0; i < no; ++i) {
      const int64_t c = w->perm.empty() ? w->fixed_outlier_cols[size_t(i)] : w->perm[size_t(w->fixed_outlier_cols[size_t(i)])];
      const int g = q.group_of(c);
      for (int64_t r = 0; r < q.rows; ++r)
        weff[size_t(i * q.rows + r)] =
            q.scales[size_t(r * q.num_groups() + g)] * (float(q.code(r, c)) - q.zero_value(r, g)) - q.min_of(r, g);
    }
    if (!q.outliers.empty())
      for (int64_t r = 0; r < q.rows; ++r)
        for (int32_t k = q.outliers.row_ptr[size_t(r)]; k < q.outliers.row_ptr[size_t(r + 1)]; ++k) {
          const int32_t c = q.outliers.col_idx[size_t(k)];
          if (!fixed[size_t(c)]) continue;
          const int32_t j = packed_of[size_t(c)];
          const int64_t i = std::lower_bound(w->fixed_outlier_cols.begin(), w->fixed_outlier_cols.end(), j) -
                            w->fixed_outlier_cols.begin();
          weff[size_t(i * q.rows + r)] += sparse_outlier_value(q, r, k);
        }
    if (ao.integer) {  // 15-bit integers per row (absmax / 16319), as two int8 tiles
      w->fixed_w_hi.resize(weff.size());
      w->fixed_w_lo.resize(weff.size());
      w->fixed_w_scale.assign(size_t(q.rows), 1.0f);
      for (int64_t r = 0; r < q.rows; ++r) {
        float amax = 0.0f;
        for (int64_t i = 0; i < no; ++i) amax = std::max(amax, std::fabs(weff[size_t(i * q.rows + r)]));
        const float s = amax > 0.0f ? amax / kernels::kMaxTiled : 1.0f;
        w->fixed_w_scale[size_t(r)] = s;
        for (int64_t i = 0; i < no; ++i) {
          const size_t k = size_t(i * q.rows + r);
          const float v = std::clamp(std::nearbyint(weff[k] / s), -kernels::kMaxTiled, kernels::kMaxTiled);
          const float hi = std::nearbyint(v / 128.0f);
          w->fixed_w_hi[k] = int8_t(hi);
          w->fixed_w_lo[k] = int8_t(v - 128.0f * hi);
        }
      }
    } else {
      w->fixed_w = std::move(weff);
    }
  }
  if (!q.outliers.empty()) {
    w->out_row_ptr.assign(size_t(q.rows + 1), 0);
    for (int64_t r = 0; r < q.rows; ++r) {
      for (int32_t k = q.outliers.row_ptr[size_t(r)]; k < q.outliers.row_ptr[size_t(r + 1)]; ++k) {
        if (!w->fixed_outlier_cols.empty() && fixed[size_t(q.outliers.col_idx[size_t(k)])]) continue;
        w->out_col.push_back(q.outliers.col_idx[size_t(k)]);
        w->out_val.push_back(sparse_outlier_value(q, r, k));
      }
      w->out_row_ptr[size_t(r + 1)] = int32_t(w->out_col.size());
    }
    if (w->out_col.empty()) w->out_row_ptr.clear();
  }
  PackedLinear p;
  p.w_ = std::move(w);
  return p;
}

namespace {

// LLMQ_AVX2_INT8=emulated: use the vpmaddubsw path even on AVX-VNNI CPUs (so tests cover both).
bool avx2_int8_emulation_forced() {
  const char* v = std::getenv("LLMQ_AVX2_INT8");
  return v != nullptr && std::string(v) == "emulated";
}

// LLMQ_AMX=off: the AVX-512 path keeps to VNNI (tests compare both with the reference; AMX is
// also invisible to valgrind).
bool amx_disabled() {
  const char* v = std::getenv("LLMQ_AMX");
  return v != nullptr && std::string(v) == "off";
}

// From this many tokens the AMX tile kernel (16 tokens per tile) beats the VNNI one
// (docs/RESULTS.md); below, a tile would be mostly padding.
constexpr int64_t kAmxMinTokens = 16;

const kernels::KernelTable& table_for(const PackedWeights& w, Isa isa) {
  // SIMD kernels walk whole 32-column blocks, each half (16 columns) in one group; other layouts
  // use the reference.
  if (w.simd_layout()) {
    if (isa == Isa::kAvx512 && isa_supported(isa)) return *kernels::avx512_kernels();
    if (isa == Isa::kAvx2 && isa_supported(isa)) return *kernels::avx2_kernels();
  }
  return kernels::scalar_kernels();
}

// The int8 kernel for `isa`: AVX-512 needs VNNI; AVX2 uses vpdpbusd when the CPU has AVX-VNNI
// and an exact vpmaddubsw emulation otherwise. Those step 4 or 8 columns at a time and AMX tiles
// 16, 32 or 64, so groups of 16 (q6_k, q2_k, q3_k, SpQR's) suit every one of them.
kernels::GemmI8Fn gemm_i8_for(const PackedWeights& w, Isa isa, int64_t n) {
  const auto& f = kernels::cpu_features();
  if ((w.block_aligned || w.half_aligned) && isa_supported(isa)) {
    if (isa == Isa::kAvx512 && n >= kAmxMinTokens && f.amx_int8 && w.signed_codes_fit_int8 &&
        kernels::amx_gemm_i8() != nullptr && !amx_disabled())
      return kernels::amx_gemm_i8();
    if (isa == Isa::kAvx512 && f.avx512vnni && kernels::avx512_kernels()->gemm_i8 != nullptr)
      return kernels::avx512_kernels()->gemm_i8;
    if (isa == Isa::kAvx2) {
      if (f.avx_vnni && kernels::avxvnni_gemm_i8() != nullptr && !avx2_int8_emulation_forced())
        return kernels::avxvnni_gemm_i8();
      return kernels::avx2_kernels()->gemm_i8;
    }
  }
  return kernels::scalar_kernels().gemm_i8;
}

// Grow-only storage reused by every Forward of one thread; at most kKeepBytes is kept after a call
// that needed more (a long prompt through a wide linear).
template <class T>
class ScratchBuffer {
 public:
  T* get(int64_t count) {
    if (buf_.size() < size_t(count)) buf_.resize(size_t(count));
    return buf_.data();
  }
  void trim() {
    if (buf_.size() * sizeof(T) > kKeepBytes) std::vector<T>().swap(buf_);
  }

 private:
  static constexpr size_t kKeepBytes = size_t(64) << 20;
  std::vector<T> buf_;
};

struct ForwardScratch {
  ScratchBuffer<float> xp, xsum, sx;
  ScratchBuffer<int8_t> xq;
  ScratchBuffer<int32_t> xqsum;
  void trim() {
    xp.trim(), xsum.trim(), sx.trim(), xq.trim(), xqsum.trim();
  }
};

ForwardScratch& forward_scratch() {
  thread_local ForwardScratch s;
  return s;
}

// From this many tokens Forward prepares the inputs (packed order, int8 quantization) over the threads.
constexpr int64_t kParallelPrepTokens = 16;
// ForwardShared runs its linears in one parallel region up to this many tokens: a decode step's
// GEMVs, where every region's end waits for the slower thread.
constexpr int64_t kSharedRegionTokens = 2;

// Rows [r0, r1) of thread t of nt, in multiples of 8 rows.
void thread_rows(int64_t rows, int t, int nt, int64_t* r0, int64_t* r1) {
  const int64_t chunks = (rows + 7) / 8;
  *r0 = std::min(rows, chunks * t / nt * 8);
  *r1 = std::min(rows, chunks * (t + 1) / nt * 8);
}

// One token's input in packed column order, zero-padded to kp (src: [cols] in source order).
void pack_input(const PackedWeights& w, const float* src, float* out) {
  if (w.perm.empty()) std::memcpy(out, src, size_t(w.cols) * sizeof(float));
  else
    for (int64_t j = 0; j < w.cols; ++j) out[j] = src[w.perm[size_t(j)]];
  std::fill(out + w.cols, out + w.kp, 0.0f);
}

// One token's int8 activations without outlier columns (xp: its packed input): the table's
// vectorized copy of quantize_activations where the layout has one, else the reference.
void quantize_token(const PackedWeights& w, const kernels::KernelTable& k, const float* xp, int8_t* xq,
                    int32_t* xqsum, float* sx) {
  if (w.simd_layout() && k.quantize_tokens != nullptr) {
    k.quantize_tokens(w, xp, 1, xq, xqsum, sx);
    return;
  }
  kernels::OutlierActivations none;
  kernels::quantize_activations(w, xp, 1, {}, xq, xqsum, sx, &none);
}

}  // namespace

Isa PackedLinear::kernel_isa(Isa isa) const {
  const kernels::KernelTable& k = table_for(*w_, isa);
  return &k == kernels::avx512_kernels() ? Isa::kAvx512 : &k == kernels::avx2_kernels() ? Isa::kAvx2 : Isa::kScalar;
}

std::string PackedLinear::kernel(int64_t n, Isa isa) const {
  const PackedWeights& w = *w_;
  if (w.int8_activations) {
    const std::string why = !w.simd_layout() && isa != Isa::kScalar ? " (groups not 16-column aligned)" : "";
    const kernels::GemmI8Fn f = gemm_i8_for(w, isa, n);
    const char* name = f == kernels::amx_gemm_i8() && f != nullptr ? "amx"
                       : kernels::avx512_kernels() != nullptr && f == kernels::avx512_kernels()->gemm_i8 ? "avx512-vnni"
                       : f == kernels::avxvnni_gemm_i8() && f != nullptr                         ? "avx-vnni"
                       : kernels::avx2_kernels() != nullptr && f == kernels::avx2_kernels()->gemm_i8 ? "avx2"
                                                                                                    : "scalar";
    const char* outliers = !w.act_outliers.enabled() ? ""
                           : w.act_outliers.integer   ? " + int8-tiled outliers"
                                                      : " + fp32 outliers";
    return std::string(name) + " int8" + outliers + why;
  }
  const kernels::KernelTable& k = table_for(w, isa);
  const char* path = n < 4 ? "gemv" : n <= 64 && k.gemv_multi != nullptr ? "gemv8" : "dequant+gemm";
  const std::string why = w.lookup ? (isa == Isa::kScalar || w.block_aligned ? " (lookup)" : " (lookup groups not 64-column aligned)")
                          : isa == Isa::kScalar || w.block_aligned ? ""
                          : w.half_aligned                        ? " (16-column groups)"
                                                                  : " (groups not 16-column aligned)";
  return std::string(k.name) + " " + path + why;
}

void PackedLinear::Forward(const float* x, int64_t n, float* y, Isa isa) const {
  const PackedWeights& w = *w_;
  const kernels::KernelTable& k = table_for(w, isa);
  const int64_t kp = w.kp, ng = w.ngroups;
  // Inputs in packed column order, zero-padded, and their per-group sums (for the zero points);
  // token by token, over the threads for a prompt (serial, this was a tenth of a 512-token AMX product).
  // The buffers are the calling thread's, kept between calls (a fresh 8 MiB per 512-token call was
  // page faults and a memset every time).
  // Without a permutation and padding x is already that input, and is read in place.
  ForwardScratch& scratch = forward_scratch();
  const bool in_place = w.perm.empty() && kp == w.cols;
  float* const xp_copy = in_place ? nullptr : scratch.xp.get(n * kp);
  const float* const xp = in_place ? x : xp_copy;
  float* const xsum = scratch.xsum.get(n * ng);
#pragma omp parallel for schedule(static) if (n >= kParallelPrepTokens)
  for (int64_t t = 0; t < n; ++t) {
    const float* src = x + t * w.cols;
    const float* dst = xp + t * kp;
    if (!in_place) pack_input(w, src, xp_copy + t * kp);
    if (w.int8_activations) continue;  // the int8 path sums the quantized activations instead
    for (int64_t g = 0; g < ng; ++g) {
      float s = 0.0f;
      for (int64_t j = w.group_start[size_t(g)]; j < w.group_start[size_t(g + 1)]; ++j) s += dst[j];
      xsum[size_t(t * ng + g)] = s;
    }
  }
  if (w.int8_activations) {
    // Per-token int8 activations (absmax / 127, round half to even), the outlier columns taken out.
    const std::vector<int32_t> ocols = kernels::find_outlier_columns(w, xp, n);
    if (w.act_outliers.enabled()) {
      w.outlier_calls.fetch_add(1, std::memory_order_relaxed);
      w.outlier_cols_seen.fetch_add(int64_t(ocols.size()), std::memory_order_relaxed);
    }
    int8_t* const xq = scratch.xq.get(n * kp);
    int32_t* const xqsum = scratch.xqsum.get(n * ng);
    float* const sx = scratch.sx.get(n);
    kernels::OutlierActivations xo;
    if (ocols.empty()) {
      // Each token on its own (without outlier columns nothing is shared between tokens).
#pragma omp parallel for schedule(static) if (n >= kParallelPrepTokens)
      for (int64_t t = 0; t < n; ++t) quantize_token(w, k, xp + t * kp, xq + t * kp, xqsum + t * ng, sx + t);
    } else {
      kernels::quantize_activations(w, xp, n, ocols, xq, xqsum, sx, &xo);
    }
    const kernels::GemmI8Fn gemm_i8 = gemm_i8_for(w, isa, n);
#pragma omp parallel
    {
      const int nt = omp_get_num_threads(), t = omp_get_thread_num();
      const int64_t p0 = w.panel_count * t / nt, p1 = w.panel_count * (t + 1) / nt;
      if (p1 > p0) {
        gemm_i8(w, xq, xqsum, sx, n, p0, p1, y);
        // The outlier columns and the sparse weight outliers of the same rows, in the same
        // parallel region (y still in cache).
        if (!ocols.empty()) k.outlier_product(w, ocols, xo, sx, n, 16 * p0, std::min(w.rows, 16 * p1), y);
        k.sparse_add(w, x, n, 16 * p0, std::min(w.rows, 16 * p1), y, w.rows);
      }
    }
  } else if (n < 4) {
    // Decode: one pass over the weights per token, rows split across threads.
    std::vector<float> yt(static_cast<size_t>(w.rows));
    for (int64_t t = 0; t < n; ++t) {
#pragma omp parallel
      {
        int64_t r0, r1;
        thread_rows(w.rows, omp_get_thread_num(), omp_get_num_threads(), &r0, &r1);
        if (r1 > r0) {
          k.gemv(w, xp + t * kp, xsum + t * ng, r0, r1, yt.data());
          k.sparse_add(w, x + t * w.cols, 1, r0, r1, yt.data(), w.rows);
        }
      }
      std::memcpy(y + t * w.rows, yt.data(), size_t(w.rows) * sizeof(float));
    }
  } else if (n <= 64 && k.gemv_multi != nullptr) {
    // A few tokens: up to 8 at a time share each decoded code (weights read n/8 times).
    for (int64_t t0 = 0; t0 < n; t0 += 8) {
      const int64_t nt = std::min<int64_t>(8, n - t0);
#pragma omp parallel
      {
        int64_t r0, r1;
        thread_rows(w.rows, omp_get_thread_num(), omp_get_num_threads(), &r0, &r1);
        if (r1 > r0) {
          k.gemv_multi(w, xp + t0 * kp, xsum + t0 * ng, nt, r0, r1, y + t0 * w.rows, w.rows);
          k.sparse_add(w, x + t0 * w.cols, nt, r0, r1, y + t0 * w.rows, w.rows);
        }
      }
    }
  } else {
    // Prompt processing: dequantize a tile of rows (a few MB), multiply it with the dense GEMM of this ISA.
    const int64_t tile = std::max<int64_t>(64, std::min<int64_t>(w.rows, (4 << 20) / (kp * 4) / 8 * 8));
    std::vector<float> buf(static_cast<size_t>(tile * kp));
    for (int64_t r0 = 0; r0 < w.rows; r0 += tile) {
      const int64_t tr = std::min(tile, w.rows - r0);
#pragma omp parallel
      {
        int64_t a, b;
        thread_rows(tr, omp_get_thread_num(), omp_get_num_threads(), &a, &b);
        if (b > a) k.dequant(w, r0 + a, r0 + b, buf.data() + a * kp);
      }
      dense::gemm(isa, false, true, n, tr, kp, 1.0f, xp, kp, buf.data(), kp, 0.0f, y + r0, w.rows);  // Y = X Tᵀ
    }
    if (!w.out_col.empty()) {
#pragma omp parallel
      {
        int64_t r0, r1;
        thread_rows(w.rows, omp_get_thread_num(), omp_get_num_threads(), &r0, &r1);
        if (r1 > r0) k.sparse_add(w, x, n, r0, r1, y, w.rows);
      }
    }
  }
  scratch.trim();
}

void PackedLinear::ForwardShared(const PackedLinear* const* linears, float* const* ys, int count, const float* x,
                                 int64_t n, Isa isa) {
  bool shared = count > 1 && n <= kSharedRegionTokens;
  for (int i = 0; i < count && shared; ++i) {
    const PackedWeights& w = *linears[i]->w_;
    shared = w.int8_activations && !w.act_outliers.enabled() && w.cols == linears[0]->w_->cols;
  }
  if (!shared) {
    for (int i = 0; i < count; ++i) linears[i]->Forward(x, n, ys[i], isa);
    return;
  }
  // Each linear's int8 input, as Forward makes it (packed order, padding, per-token quantization);
  // a linear with the layout of the one before reads the same.
  struct Input {
    std::vector<float> xp;
    std::vector<int8_t> xq;
    std::vector<int32_t> xqsum;
    std::vector<float> sx;
  };
  std::vector<Input> inputs(static_cast<size_t>(count));
  std::vector<const Input*> input_of(static_cast<size_t>(count));
  for (int i = 0; i < count; ++i) {
    const PackedWeights& w = *linears[i]->w_;
    if (i > 0) {
      const PackedWeights& prev = *linears[i - 1]->w_;
      if (w.kp == prev.kp && w.perm == prev.perm && w.group_start == prev.group_start && w.block_aligned == prev.block_aligned) {
        input_of[size_t(i)] = input_of[size_t(i - 1)];
        continue;
      }
    }
    Input& in = inputs[size_t(i)];
    const int64_t kp = w.kp, ng = w.ngroups;
    in.xp.resize(size_t(n * kp));
    in.xq.resize(size_t(n * kp));
    in.xqsum.resize(size_t(n * ng));
    in.sx.resize(size_t(n));
    for (int64_t t = 0; t < n; ++t) {
      pack_input(w, x + t * w.cols, in.xp.data() + t * kp);
      quantize_token(w, table_for(w, isa), in.xp.data() + t * kp, in.xq.data() + t * kp, in.xqsum.data() + t * ng,
                     in.sx.data() + t);
    }
    input_of[size_t(i)] = &in;
  }
#pragma omp parallel
  {
    const int nt = omp_get_num_threads(), t = omp_get_thread_num();
    for (int i = 0; i < count; ++i) {
      const PackedWeights& w = *linears[i]->w_;
      const Input& in = *input_of[size_t(i)];
      const int64_t p0 = w.panel_count * t / nt, p1 = w.panel_count * (t + 1) / nt;
      if (p1 <= p0) continue;
      gemm_i8_for(w, isa, n)(w, in.xq.data(), in.xqsum.data(), in.sx.data(), n, p0, p1, ys[i]);
      table_for(w, isa).sparse_add(w, x, n, 16 * p0, std::min(w.rows, 16 * p1), ys[i], w.rows);
    }
  }
}

namespace kernels {

float PackedWeights::panel_scale(int64_t r, int64_t g) const {
  switch (panel_scale_kind) {
    case PanelScales::kF32: return panel_scales[panel_index(ngroups, r / 16, g, r % 16)];
    case PanelScales::kF16: return fp16_to_float(panel_scales16[panel_index(ngroups, r / 16, g, r % 16)]);
    case PanelScales::kSuperBlock: break;
  }
  return fp16_to_float(panel_super[super_offset(r / 16, g) + size_t(r % 16)]) *
         float(panel_group_codes[group_codes_offset(r / 16, g) + size_t(r % 16)]);
}

float PackedWeights::panel_min(int64_t r, int64_t g) const {
  if (!panel_has_mins) return 0.0f;
  if (panel_scale_kind != PanelScales::kSuperBlock) return panel_mins[panel_index(ngroups, r / 16, g, r % 16)];
  return fp16_to_float(panel_super[super_offset(r / 16, g) + size_t(16 + r % 16)]) *
         float(panel_group_codes[group_codes_offset(r / 16, g) + size_t(16 + r % 16)]);
}

int32_t PackedWeights::panel_zero(int64_t r, int64_t g) const {
  switch (panel_zero_kind) {
    case PanelZeros::kConstant: return panel_zero_constant;
    case PanelZeros::kBytes: break;
  }
  return panel_zeros[panel_index(ngroups, r / 16, g, r % 16)];
}

}  // namespace kernels
}  // namespace llmq
