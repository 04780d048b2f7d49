// AWQ (Lin, Tang, Tang, Yang, Chen, Wang, Xiao, Dang, Gan, Han, "AWQ: Activation-aware Weight
// Quantization for LLM Compression and Acceleration", MLSys 2024), eq. (4)-(5):
//   s* = argmin_s || Q(W diag(s)) (diag(s)^-1 X) - W X ||,   s = s_X^alpha, alpha in [0, 1)
// searched on a grid with the output of the inspected module (whole attention, whole MLP or
// the linear itself) as the loss; s_X = mean |x| per input channel. With AutoAWQ's duo scaling
// s = s_X^alpha / s_W^(1-alpha). diag(s)^-1 is folded into the op in front (a norm's weight and
// bias, or the rows of a linear), diag(s) into the weights, so the float model is unchanged.
// Then the clip search (auto_clip) shrinks each group's range where that lowers the error of
// the group's partial dot products. ../shared/docs/algorithms.md §3 has the reference details.
#include "quant/awq.h"

#include "core/ordered_sum.h"

#include "dense.h"
#include "io/hf_names.h"

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <limits>

namespace llmq::internal {

namespace {

using RowMatrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using ConstMap = Eigen::Map<const RowMatrix>;

// Runs one half of the block over every window of x [windows * seq_len, hidden].
Result<std::vector<float>> run_part(const Model& model, int layer, Model::BlockPart part, const float* x,
                                    int64_t tokens, int64_t seq_len) {
  const int64_t d = model.hidden_size();
  std::vector<float> y(size_t(tokens * d));
  for (int64_t t = 0; t < tokens; t += seq_len) {
    LLMQ_RETURN_IF_ERROR(model.RunBlockPart(layer, part, x + t * d, std::min(seq_len, tokens - t), y.data() + t * d));
  }
  return y;
}

double mean_squared_difference(const std::vector<float>& a, const std::vector<float>& b) {
  const double s = ordered_sum(int64_t(a.size()), [&](int64_t i) {
    const double e = double(a[size_t(i)]) - double(b[size_t(i)]);
    return e * e;
  });
  return a.empty() ? 0.0 : s / double(a.size());
}

// GQA v -> o: o's input channel (head h, dim k) reads kv channel ((h / rep) * hd + k).
int64_t kv_channel(int64_t j, int64_t rep, int64_t hd) { return (j / hd) / rep * hd + j % hd; }

std::vector<float> tie_to_kv(const std::vector<float>& v, int64_t rep, int64_t hd) {
  std::vector<float> out(v.size() / size_t(rep), 0.0f);
  for (int64_t j = 0; j < int64_t(v.size()); ++j) out[size_t(kv_channel(j, rep, hd))] += v[size_t(j)] / float(rep);
  return out;
}

std::vector<float> expand_from_kv(const std::vector<float>& s, int64_t cols, int64_t rep, int64_t hd) {
  std::vector<float> out(static_cast<size_t>(cols));
  for (int64_t j = 0; j < cols; ++j) out[size_t(j)] = s[size_t(kv_channel(j, rep, hd))];
  return out;
}

}  // namespace

std::vector<float> mean_abs_per_column(const float* x, int64_t tokens, int64_t cols) {
  std::vector<double> sum(size_t(cols), 0.0);
  for (int64_t t = 0; t < tokens; ++t)
    for (int64_t j = 0; j < cols; ++j) sum[size_t(j)] += std::fabs(x[t * cols + j]);
  std::vector<float> m(static_cast<size_t>(cols));
  for (int64_t j = 0; j < cols; ++j) m[size_t(j)] = tokens > 0 ? float(sum[size_t(j)] / double(tokens)) : 0.0f;
  return m;
}

std::vector<float> awq_weight_mean(const std::vector<std::pair<const float*, int64_t>>& weights, int64_t cols,
                                   int64_t group) {
  std::vector<double> sum(size_t(cols), 0.0);
  int64_t total_rows = 0;
  for (const auto& [w, rows] : weights) {
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c0 = 0; c0 < cols; c0 += group) {
        const int64_t c1 = std::min(cols, c0 + group);
        float mx = 0.0f;
        for (int64_t c = c0; c < c1; ++c) mx = std::max(mx, std::fabs(w[r * cols + c]));
        for (int64_t c = c0; c < c1; ++c) sum[size_t(c)] += std::fabs(w[r * cols + c]) / (double(mx) + 1e-6);
      }
    total_rows += rows;
  }
  std::vector<float> m(static_cast<size_t>(cols));
  for (int64_t c = 0; c < cols; ++c) m[size_t(c)] = total_rows > 0 ? float(sum[size_t(c)] / double(total_rows)) : 0.0f;
  return m;
}

std::vector<float> awq_scales(const std::vector<float>& x_mean, const std::vector<float>* w_mean, double alpha) {
  std::vector<float> s(x_mean.size());
  double mx = 0.0, mn = std::numeric_limits<double>::infinity();
  for (size_t j = 0; j < s.size(); ++j) {
    double v = std::pow(double(x_mean[j]), alpha);
    if (w_mean != nullptr) v /= std::pow(double((*w_mean)[j]), 1.0 - alpha) + 1e-4;
    v = std::max(v, 1e-4);
    s[j] = float(v);
    mx = std::max(mx, v);
    mn = std::min(mn, v);
  }
  const float norm = float(std::sqrt(mx * mn));
  for (float& v : s) v /= norm;
  return s;
}

Result<std::vector<float>> fake_quantize_scaled(const float* w, int64_t rows, int64_t cols, const std::vector<float>& s,
                                                const QuantSpec& spec) {
  std::vector<float> ws(w, w + rows * cols);
  if (!s.empty())
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c) ws[size_t(r * cols + c)] *= s[size_t(c)];
  LLMQ_ASSIGN_OR_RETURN(QuantizedTensor q, quantize_rtn(ws.data(), rows, cols, spec));
  dequantize(q, ws.data());
  if (!s.empty())
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c) ws[size_t(r * cols + c)] /= s[size_t(c)];
  return ws;
}

Result<double> linear_output_mse(const std::vector<float>& hessian, int64_t cols,
                                 const std::vector<std::pair<const float*, int64_t>>& weights,
                                 const std::vector<float>& s, const QuantSpec& spec) {
  double sum = 0;
  int64_t count = 0;
  for (const auto& [w, rows] : weights) {
    LLMQ_ASSIGN_OR_RETURN(std::vector<float> d, fake_quantize_scaled(w, rows, cols, s, spec));
    for (size_t i = 0; i < d.size(); ++i) d[i] -= w[i];
    const ConstMap D(d.data(), rows, cols);
    RowMatrix dh(rows, cols);
    dense::gemm(false, false, rows, cols, cols, 1.0f, d.data(), cols, hessian.data(), cols, 0.0f, dh.data(), cols);
    sum += double(dh.cwiseProduct(D).sum()) / 2.0;
    count += rows;
  }
  return sum / double(std::max<int64_t>(1, count));
}

Result<AwqSiteResult> awq_search_scales(const std::vector<float>& x_mean, const std::vector<float>* w_mean, int grid,
                                        const AwqLoss& loss,
                                        const std::function<std::vector<float>(std::vector<float>)>& expand) {
  AwqSiteResult r;
  LLMQ_ASSIGN_OR_RETURN(r.loss_unscaled, loss({}));
  r.loss = std::numeric_limits<double>::infinity();
  for (int i = 0; i < grid; ++i) {
    const double alpha = double(i) / double(grid);
    std::vector<float> s = awq_scales(x_mean, w_mean, alpha);
    if (expand) s = expand(std::move(s));
    LLMQ_ASSIGN_OR_RETURN(double l, loss(s));
    if (l < r.loss) {
      r.loss = l;
      r.alpha = alpha;
      r.scales = std::move(s);
    }
  }
  if (r.scales.empty()) return Status::Internal("the AWQ scale search found no finite loss");
  return r;
}

double awq_clip(float* w, int64_t rows, int64_t cols, const float* x, int64_t tokens, const QuantSpec& spec,
                const AwqOptions& options) {
  const int n_shrink = int(options.max_shrink * options.clip_grid);
  if (n_shrink <= 0 || rows == 0 || tokens == 0) return 0.0;
  const int64_t stride = std::max<int64_t>(1, tokens / std::max<int64_t>(1, options.clip_tokens));
  const int64_t ts = (tokens + stride - 1) / stride;
  RowMatrix xs(ts, cols);
  for (int64_t t = 0; t < ts; ++t) std::copy_n(x + t * stride * cols, cols, xs.row(t).data());
  const int64_t g = spec.group_cols(cols), ng = spec.num_groups(cols);
  std::vector<double> shrink(size_t(ng), 0.0);  // per group, summed in order (thread-count independent)
#pragma omp parallel for schedule(dynamic)
  for (int64_t gi = 0; gi < ng; ++gi) {
    const int64_t c0 = gi * g, gc = std::min(g, cols - c0);
    const RowMatrix xg = xs.middleCols(c0, gc);
    RowMatrix wg(rows, gc), d(rows, gc);
    for (int64_t r = 0; r < rows; ++r) std::copy_n(w + r * cols + c0, gc, wg.row(r).data());
    const Eigen::VectorXf absmax = wg.cwiseAbs().rowwise().maxCoeff();
    Eigen::VectorXf best_err = Eigen::VectorXf::Constant(rows, std::numeric_limits<float>::infinity());
    Eigen::VectorXi best_i = Eigen::VectorXi::Zero(rows);
    std::vector<float> clamped(static_cast<size_t>(gc));
    for (int i = 0; i < n_shrink; ++i) {
      const float keep = 1.0f - float(i) / float(options.clip_grid);
      for (int64_t r = 0; r < rows; ++r) {
        const float mv = absmax(r) * keep;
        for (int64_t k = 0; k < gc; ++k) clamped[size_t(k)] = std::clamp(wg(r, k), -mv, mv);
        const GroupParams p = rtn_group_params(clamped.data(), gc, spec);
        for (int64_t k = 0; k < gc; ++k)
          d(r, k) = dequantize_value(rtn_quantize_value(clamped[size_t(k)], p, spec), p) - wg(r, k);
      }
      const RowMatrix e = d * xg.transpose();  // [rows, ts]: each group's partial output error
      const Eigen::VectorXf err = e.rowwise().squaredNorm() / float(ts);
      for (int64_t r = 0; r < rows; ++r)
        if (err(r) < best_err(r)) {
          best_err(r) = err(r);
          best_i(r) = i;
        }
    }
    for (int64_t r = 0; r < rows; ++r) {
      const float mv = absmax(r) * (1.0f - float(best_i(r)) / float(options.clip_grid));
      for (int64_t k = 0; k < gc; ++k) w[r * cols + c0 + k] = std::clamp(wg(r, k), -mv, mv);
      shrink[size_t(gi)] += double(best_i(r)) / double(options.clip_grid);
    }
  }
  double shrink_sum = 0.0;
  for (double s : shrink) shrink_sum += s;
  return shrink_sum / double(rows * ng);
}

std::vector<AwqSite> awq_sites(const ModelConfig& cfg, const std::string& base_prefix, int layer,
                               const std::vector<LinearInfo>& linears, const AwqOptions& options) {
  std::map<LinearRole, LinearInfo> by_role;
  for (const LinearInfo& l : linears)
    if (l.layer == layer) by_role[l.role] = l;
  auto have = [&](std::initializer_list<LinearRole> roles) {
    for (LinearRole r : roles)
      if (!by_role.count(r)) return false;
    return true;
  };
  const bool opt = cfg.family == ModelFamily::kOpt;
  const bool pre_ln = !opt || cfg.do_layer_norm_before;
  const std::string attn_norm = block_norm(cfg, base_prefix, layer, BlockNorm::kAttention);
  const std::string mlp_norm = block_norm(cfg, base_prefix, layer, BlockNorm::kMlp);
  const int attention = int(Model::BlockPart::kAttention), mlp = int(Model::BlockPart::kMlp);
  std::vector<AwqSite> sites;
  using R = LinearRole;
  if (pre_ln && have({R::kQ, R::kK, R::kV}))
    sites.push_back({attn_norm, true,
                     {by_role[R::kQ], by_role[R::kK], by_role[R::kV]}, attention, 0});
  if (have({R::kV, R::kO})) {
    const LinearInfo &v = by_role[R::kV], &o = by_role[R::kO];
    if (v.rows == o.cols) {
      sites.push_back({v.module, false, {o}, -1, 0});
    } else if (options.gqa_v_to_o && cfg.head_dim > 0 && v.rows > 0 && o.cols % v.rows == 0 &&
               v.rows % cfg.head_dim == 0) {
      sites.push_back({v.module, false, {o}, -1, o.cols / v.rows});
    }
  }
  if (opt) {
    if (pre_ln && have({R::kFc1})) sites.push_back({mlp_norm, true, {by_role[R::kFc1]}, -1, 0});
    if (have({R::kFc1, R::kFc2})) sites.push_back({by_role[R::kFc1].module, false, {by_role[R::kFc2]}, -1, 0});
  } else {
    if (have({R::kGate, R::kUp}))
      sites.push_back({mlp_norm, true, {by_role[R::kGate], by_role[R::kUp]}, mlp, 0});
    if (have({R::kUp, R::kDown})) sites.push_back({by_role[R::kUp].module, false, {by_role[R::kDown]}, -1, 0});
  }
  return sites;
}

Result<AwqBlock> awq_block(Model& model, const Checkpoint& ckpt, int layer, const std::vector<LinearInfo>& linears,
                           std::map<std::string, std::shared_ptr<std::vector<float>>>& inputs, int64_t seq_len,
                           const SpecOf& spec_of, const AwqOptions& options) {
  const ModelConfig& cfg = model.config();
  const int64_t hd = cfg.head_dim;
  AwqBlock out;
  std::map<std::string, LinearInfo> info;
  for (const LinearInfo& l : linears) {
    LLMQ_ASSIGN_OR_RETURN(out.weights[l.module], ckpt.linear_weight(l));
    info[l.module] = l;
    if (!inputs.count(l.module)) return Status::InvalidArgument(l.module + ": no calibration inputs collected");
  }
  const std::map<std::string, std::vector<float>> original = out.weights;
  const std::vector<AwqSite> sites = awq_sites(cfg, ckpt.base_prefix(), layer, linears, options);

  // 1. Search every site on the float weights (AutoAWQ searches all, then applies all).
  std::vector<AwqSiteResult> results;
  for (const AwqSite& site : sites) {
    const int64_t cols = site.linears[0].cols;
    const QuantSpec& spec = spec_of(site.linears[0].module);
    const std::vector<float>& xin = *inputs[site.linears[0].module];
    const int64_t tokens = int64_t(xin.size()) / cols;
    std::vector<float> x_mean = mean_abs_per_column(xin.data(), tokens, cols);
    std::vector<std::pair<const float*, int64_t>> ws;
    for (const LinearInfo& l : site.linears) ws.push_back({original.at(l.module).data(), l.rows});
    std::vector<float> w_mean = awq_weight_mean(ws, cols, spec.group_cols(cols));
    if (site.kv_tie > 0) {
      x_mean = tie_to_kv(x_mean, site.kv_tie, hd);
      w_mean = tie_to_kv(w_mean, site.kv_tie, hd);
    }
    std::vector<float> y0, h;
    const auto part = Model::BlockPart(site.inspect);
    if (site.inspect >= 0) {
      LLMQ_ASSIGN_OR_RETURN(y0, run_part(model, layer, part, xin.data(), tokens, seq_len));
    } else {
      HessianAccumulator acc(cols);
      acc.Add(xin.data(), tokens);
      h = acc.Hessian();
    }
    // The inspected output's MSE when the site's linears are quantized with scales s.
    auto loss_of = [&](const std::vector<float>& s) -> Result<double> {
      if (site.inspect < 0) return linear_output_mse(h, cols, ws, s, spec);
      for (const LinearInfo& l : site.linears) {
        LLMQ_ASSIGN_OR_RETURN(auto wq, fake_quantize_scaled(original.at(l.module).data(), l.rows, l.cols, s, spec));
        LLMQ_RETURN_IF_ERROR(model.SetLinearWeight(l, std::move(wq)));
      }
      LLMQ_ASSIGN_OR_RETURN(std::vector<float> y, run_part(model, layer, part, xin.data(), tokens, seq_len));
      return mean_squared_difference(y, y0);
    };
    std::function<std::vector<float>(std::vector<float>)> expand;
    if (site.kv_tie > 0) expand = [&](std::vector<float> s) { return expand_from_kv(s, cols, site.kv_tie, hd); };
    auto r = awq_search_scales(x_mean, options.duo_scaling ? &w_mean : nullptr, options.grid, loss_of, expand);
    if (!r.ok()) return r.status().WithContext(site.prev);
    if (site.inspect >= 0)
      for (const LinearInfo& l : site.linears) LLMQ_RETURN_IF_ERROR(model.SetLinearWeight(l, original.at(l.module)));
    results.push_back(std::move(*r));
  }

  // 2. Fold: prev op / s, linears' input channels * s, cached inputs / s.
  for (size_t k = 0; k < sites.size(); ++k) {
    const AwqSite& site = sites[k];
    const std::vector<float>& s = results[k].scales;
    const int64_t cols = int64_t(s.size());
    for (float v : s)
      if (!std::isfinite(v) || v <= 0.0f) return Status::Internal(site.prev + ": non-finite AWQ scale");
    // The divisor of the op in front: one per channel it produces (per kv channel under GQA).
    const std::vector<float> prev_s = site.kv_tie > 0 ? tie_to_kv(s, site.kv_tie, hd) : s;
    auto divide_tail = [&](std::vector<float>& v, int64_t stride) {  // the last prev_s.size() rows / entries
      const int64_t n = int64_t(prev_s.size()), first = int64_t(v.size()) / stride - n;
      for (int64_t i = 0; i < n; ++i)
        for (int64_t c = 0; c < stride; ++c) v[size_t((first + i) * stride + c)] /= prev_s[size_t(i)];
    };
    if (site.prev_is_norm) {
      LLMQ_ASSIGN_OR_RETURN(std::vector<float> nw, ckpt.get_float(site.prev + ".weight"));
      divide_tail(nw, 1);
      out.replaced.push_back({site.prev + ".weight", std::move(nw)});
      if (ckpt.find(site.prev + ".bias") != nullptr) {
        LLMQ_ASSIGN_OR_RETURN(std::vector<float> nb, ckpt.get_float(site.prev + ".bias"));
        divide_tail(nb, 1);
        out.replaced.push_back({site.prev + ".bias", std::move(nb)});
      }
    } else {
      const LinearInfo& p = info.at(site.prev);
      divide_tail(out.weights[p.module], p.cols);
      if (p.has_bias) {
        LLMQ_ASSIGN_OR_RETURN(std::vector<float> b, ckpt.get_float(p.module + ".bias"));
        divide_tail(b, 1);
        out.replaced.push_back({p.module + ".bias", std::move(b)});
      }
    }
    for (const LinearInfo& l : site.linears) {
      std::vector<float>& w = out.weights[l.module];
      for (int64_t r = 0; r < l.rows; ++r)
        for (int64_t c = 0; c < cols; ++c) w[size_t(r * cols + c)] *= s[size_t(c)];
      out.site_of[l.module] = results[k];
    }
    std::vector<float>& x = *inputs[site.linears[0].module];
    for (size_t i = 0; i < x.size(); ++i) x[i] /= s[i % size_t(cols)];
  }

  // 3. Clip every linear but q and k (the QK product makes clipping them risky).
  if (options.clip) out.unclipped = out.weights;
  for (const LinearInfo& l : linears) {
    if (!options.clip || l.role == LinearRole::kQ || l.role == LinearRole::kK) continue;
    const std::vector<float>& x = *inputs[l.module];
    out.clip_shrink[l.module] =
        awq_clip(out.weights[l.module].data(), l.rows, l.cols, x.data(), int64_t(x.size()) / l.cols,
                 spec_of(l.module), options);
  }
  return out;
}

Result<AwqBlock> awq_block(Model& model, const Checkpoint& ckpt, int layer, const std::vector<LinearInfo>& linears,
                           std::map<std::string, std::shared_ptr<std::vector<float>>>& inputs, int64_t seq_len,
                           const QuantSpec& spec, const AwqOptions& options) {
  return awq_block(model, ckpt, layer, linears, inputs, seq_len, [&](const std::string&) -> const QuantSpec& { return spec; },
                   options);
}

}  // namespace llmq::internal
