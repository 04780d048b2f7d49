// llmq-vs-llamacpp: llmq's quantized matmul against llama.cpp's, in one process, on the same bits
// (issue 25). For each ggml type (q4_0, q4_k, q8_0), shape and token count, one weight matrix is
// quantized once on that type's grid (llmq's RTN on the ggml grid) and handed to both sides: the
// blocks themselves to ggml's CPU backend (through its repacking buffer type when it has one for
// the type, which is what llama.cpp users get), the same codes and scales to llmq's PackedLinear
// (fp32 activations, and int8 activations as "a8"). The sides run alternately, a burst of calls
// each, every call on the next of several weight copies (together beyond the last-level cache —
// 480 MiB on this machine — as in decoding); medians and spreads over the repetitions are printed
// as JSON with the ratio llama.cpp time / llmq time (> 1: llmq faster) and, at one token, each
// side's weight bandwidth as a fraction of STREAM and of the read-only bandwidth (`read_gbps`).
//
//   llmq-vs-llamacpp [--types q4_0,q4_k,q8_0] [--shapes 4096x4096,11008x4096,4096x11008,32768x4096]
//                    [--tokens 1,8,32,128,512] [--threads 1,2] [--reps 7] [--burst 8] [--cold-mib 1024]
//                    [--libs DIR]
//
// Shapes are rows x cols = out_features x in_features. Run it on a quiet machine with
// OMP_WAIT_POLICY=PASSIVE or not as you run llmq (the policy changes llmq's numbers; the bench
// sleeps between the two sides so neither's spinning threads take the other's cores).
#include <ggml-alloc.h>
#include <ggml-backend.h>
#include <ggml.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "bench_util.h"
#include "llmq/kernels.h"
#include "llmq/qtensor.h"
#include "llmq/rtn.h"
#include "quant/ggml_blocks.h"

namespace {

using Clock = std::chrono::steady_clock;
using llmq::GgmlType;

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string item; std::getline(ss, item, ',');)
    if (!item.empty()) out.push_back(item);
  return out;
}

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

struct Stats {
  double median = 0, min = 0, max = 0;
};
Stats stats_of(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return {v[v.size() / 2], v.front(), v.back()};
}

// Read-only bandwidth (GB/s) with `threads` OpenMP threads over `bytes` (the footprint of the
// GEMV's weight copies, beyond the last-level cache): what a GEMV can reach at most. STREAM's
// triad counts 12 bytes per element but moves 16 with the write-allocate of `a`, so a GEMV that
// only reads can run above "STREAM".
double read_gbps(int threads, uint64_t bytes) {
  return llmq::measure_memory_bandwidth(threads, int64_t(bytes / 2)).read_gbps;  // two arrays of bytes / 2
}

ggml_type ggml_id(GgmlType t) { return static_cast<ggml_type>(int(t)); }  // llmq's enum holds ggml's ids

// ggml's CPU backend with its repacking ("extra") buffer types, loaded from the npm libraries.
class GgmlCpu {
 public:
  explicit GgmlCpu(const char* bins_dir) {
    ggml_backend_load_all_from_path(bins_dir);
    dev_ = ggml_backend_dev_by_type(GGML_BACKEND_DEVICE_TYPE_CPU);
    if (dev_ == nullptr) return;
    backend_ = ggml_backend_dev_init(dev_, nullptr);
    ggml_backend_reg_t reg = ggml_backend_dev_backend_reg(dev_);
    set_threads_ = reinterpret_cast<ggml_backend_set_n_threads_t>(
        ggml_backend_reg_get_proc_address(reg, "ggml_backend_set_n_threads"));
    pool_new_ = reinterpret_cast<PoolNew>(ggml_backend_reg_get_proc_address(reg, "ggml_threadpool_new"));
    pool_free_ = reinterpret_cast<PoolFree>(ggml_backend_reg_get_proc_address(reg, "ggml_threadpool_free"));
    set_pool_ = reinterpret_cast<SetPool>(ggml_backend_reg_get_proc_address(reg, "ggml_backend_cpu_set_threadpool"));
    auto extra = reinterpret_cast<ggml_backend_dev_get_extra_bufts_t>(
        ggml_backend_reg_get_proc_address(reg, "ggml_backend_dev_get_extra_bufts"));
    if (extra != nullptr)
      for (ggml_backend_buffer_type_t* b = extra(dev_); b != nullptr && *b != nullptr; ++b) extra_.push_back(*b);
  }
  ~GgmlCpu() {
    stop();
    if (backend_ != nullptr) ggml_backend_free(backend_);
  }
  bool ok() const { return backend_ != nullptr && set_threads_ != nullptr && pool_new_ && pool_free_ && set_pool_; }
  ggml_backend_t backend() const { return backend_; }
  // n threads in a persistent threadpool, as llama-cli and llama-server attach one (without it
  // every graph would start and join its threads; here every graph is one matmul). Stopped while
  // llmq runs: its threads poll for work between graphs and would take llmq's cores.
  void start(int n) {
    stop();
    ggml_threadpool_params params = ggml_threadpool_params_default(n);
    pool_ = pool_new_(&params);
    set_pool_(backend_, pool_);
    set_threads_(backend_, n);
  }
  void stop() {
    if (pool_ == nullptr) return;
    set_pool_(backend_, nullptr);
    pool_free_(pool_);
    pool_ = nullptr;
  }
  const std::vector<ggml_backend_buffer_type_t>& extra() const { return extra_; }
  ggml_backend_buffer_type_t cpu() const { return ggml_backend_get_default_buffer_type(backend_); }
  ggml_backend_dev_t device() const { return dev_; }

 private:
  ggml_backend_dev_t dev_ = nullptr;
  ggml_backend_t backend_ = nullptr;
  ggml_backend_set_n_threads_t set_threads_ = nullptr;
  // The CPU backend's threadpool functions (ggml-cpu.h), reached through its registry.
  using PoolNew = ggml_threadpool* (*)(ggml_threadpool_params*);
  using PoolFree = void (*)(ggml_threadpool*);
  using SetPool = void (*)(ggml_backend_t, ggml_threadpool*);
  PoolNew pool_new_ = nullptr;
  PoolFree pool_free_ = nullptr;
  SetPool set_pool_ = nullptr;
  ggml_threadpool* pool_ = nullptr;
  std::vector<ggml_backend_buffer_type_t> extra_;
};

// One y = W x through ggml: W's blocks in the first buffer type that takes them (a repacking one
// when the CPU has it for the type, else plain CPU memory).
class GgmlMatmul {
 public:
  GgmlMatmul(const GgmlCpu& cpu, ggml_type type, int64_t rows, int64_t cols, int64_t tokens,
             const std::vector<uint8_t>& blocks) {
    ggml_init_params wp = {ggml_tensor_overhead() * 2, nullptr, true};
    wctx_ = ggml_init(wp);
    w_ = ggml_new_tensor_2d(wctx_, type, cols, rows);
    ggml_init_params p = {ggml_tensor_overhead() * 8 + ggml_graph_overhead(), nullptr, true};
    ctx_ = ggml_init(p);
    x_ = ggml_new_tensor_2d(ctx_, GGML_TYPE_F32, cols, tokens);
    y_ = ggml_mul_mat(ctx_, w_, x_);
    for (ggml_backend_buffer_type_t b : cpu.extra()) {
      // A repacking buffer type that takes this product (llama.cpp's weight_buft_supported: ask the
      // device about the op with the weight in an empty buffer of that type).
      ggml_backend_buffer_t probe = ggml_backend_buft_alloc_buffer(b, 0);
      w_->buffer = probe;
      const bool supported = ggml_backend_dev_supports_op(cpu.device(), y_);
      w_->buffer = nullptr;
      ggml_backend_buffer_free(probe);
      if (!supported) continue;
      wbuf_ = ggml_backend_alloc_ctx_tensors_from_buft(wctx_, b);
      if (wbuf_ != nullptr) {
        buft_ = ggml_backend_buft_name(b);
        break;
      }
    }
    if (wbuf_ == nullptr) {
      wbuf_ = ggml_backend_alloc_ctx_tensors_from_buft(wctx_, cpu.cpu());
      buft_ = ggml_backend_buft_name(cpu.cpu());
    }
    ggml_backend_tensor_set(w_, blocks.data(), 0, blocks.size());  // repacked here by an extra buffer type
    graph_ = ggml_new_graph(ctx_);
    ggml_build_forward_expand(graph_, y_);
    buf_ = ggml_backend_alloc_ctx_tensors_from_buft(ctx_, cpu.cpu());
  }
  ~GgmlMatmul() {
    ggml_backend_buffer_free(buf_);
    ggml_backend_buffer_free(wbuf_);
    ggml_free(ctx_);
    ggml_free(wctx_);
  }
  GgmlMatmul(const GgmlMatmul&) = delete;
  GgmlMatmul& operator=(const GgmlMatmul&) = delete;
  void set_input(const std::vector<float>& x) { ggml_backend_tensor_set(x_, x.data(), 0, x.size() * sizeof(float)); }
  void run(const GgmlCpu& cpu) { ggml_backend_graph_compute(cpu.backend(), graph_); }
  std::vector<float> output() const {
    std::vector<float> y(size_t(ggml_nelements(y_)));
    ggml_backend_tensor_get(y_, y.data(), 0, y.size() * sizeof(float));
    return y;
  }
  const std::string& buffer_type() const { return buft_; }

 private:
  ggml_context* wctx_ = nullptr;
  ggml_context* ctx_ = nullptr;
  ggml_tensor *w_ = nullptr, *x_ = nullptr, *y_ = nullptr;
  ggml_cgraph* graph_ = nullptr;
  ggml_backend_buffer_t wbuf_ = nullptr, buf_ = nullptr;
  std::string buft_;
};

double max_rel_diff(const std::vector<float>& a, const std::vector<float>& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    num = std::max(num, double(std::abs(a[i] - b[i])));
    den = std::max(den, double(std::abs(b[i])));
  }
  return den > 0 ? num / den : num;
}

}  // namespace

int run(int argc, char** argv);

// Numbers in the options are parsed with std::sto*: a malformed one is a usage error, not a crash.
int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "llmq-vs-llamacpp: bad option value (%s); see --help\n", e.what());
    return 2;
  }
}

int run(int argc, char** argv) {
  std::map<std::string, std::string> opt = {{"types", "q4_0,q4_k,q8_0"},
                                            {"shapes", "4096x4096,11008x4096,4096x11008,32768x4096"},
                                            {"tokens", "1,8,32,128,512"},
                                            {"threads", "1,2"},
                                            {"reps", "7"},
                                            {"burst", "8"},
                                            {"cold-mib", "1024"},
                                            {"libs", LLMQ_LLAMACPP_BINS}};
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--help") {
      std::puts("Usage: llmq-vs-llamacpp [--types q4_0,q4_k,q8_0] [--shapes RxC,...] [--tokens 1,8,...] "
                "[--threads 1,2] [--reps 7] [--burst 8] [--cold-mib 1024] [--libs DIR]\n(JSON on stdout; see "
                "bench/llamacpp_side_by_side.cc; --libs: the folder of llama.cpp's libraries, default the build's)");
      return 0;
    }
    if (a.rfind("--", 0) != 0 || i + 1 >= argc || !opt.count(a.substr(2))) {
      std::fprintf(stderr, "llmq-vs-llamacpp: unknown or incomplete option '%s' (--help)\n", a.c_str());
      return 2;
    }
    opt[a.substr(2)] = argv[++i];
  }
  ggml_log_set([](ggml_log_level level, const char* text, void*) {  // ggml's warnings and errors only
    if (level >= GGML_LOG_LEVEL_WARN) std::fputs(text, stderr);
  }, nullptr);
  GgmlCpu cpu(opt["libs"].c_str());
  if (!cpu.ok()) {
    std::fprintf(stderr, "llmq-vs-llamacpp: no ggml CPU backend in %s\n", opt["libs"].c_str());
    return 1;
  }
  const int reps = std::max(1, std::stoi(opt["reps"]));
  const int burst = std::max(1, std::stoi(opt["burst"]));
  const uint64_t cold_bytes = uint64_t(std::stoll(opt["cold-mib"])) << 20;
  nlohmann::ordered_json out;
  out["llamacpp_bins"] = opt["libs"];
  out["llmq_isa"] = llmq::isa_name(llmq::active_isa());
  std::vector<std::string> extra;
  for (auto b : cpu.extra()) extra.push_back(ggml_backend_buft_name(b));
  out["llamacpp_extra_buffer_types"] = extra;
  nlohmann::ordered_json stream = nlohmann::ordered_json::object(), read = nlohmann::ordered_json::object();
  std::vector<int> thread_counts;
  for (const auto& t : split(opt["threads"])) {
    thread_counts.push_back(std::stoi(t));
    stream[t] = llmq::measure_memory_bandwidth(thread_counts.back()).triad_gbps;
    read[t] = read_gbps(thread_counts.back(), cold_bytes);
  }
  out["stream_gbps"] = stream;
  out["read_gbps"] = read;
  nlohmann::ordered_json rows = nlohmann::ordered_json::array();
  bool disagree = false;  // the two sides' products differ beyond llama.cpp's 8-bit activations
  for (const std::string& type_name : split(opt["types"])) {
    auto type = llmq::parse_ggml_type(type_name);
    if (!type.ok()) {
      std::fprintf(stderr, "llmq-vs-llamacpp: %s\n", type.status().ToString().c_str());
      return 2;
    }
    for (const std::string& shape : split(opt["shapes"])) {
      const size_t x = shape.find('x');
      if (x == std::string::npos || std::stoll(shape.substr(0, x)) <= 0 || std::stoll(shape.substr(x + 1)) <= 0) {
        std::fprintf(stderr, "llmq-vs-llamacpp: --shapes: '%s' is not ROWSxCOLS\n", shape.c_str());
        return 2;
      }
      const int64_t n = std::stoll(shape.substr(0, x)), k = std::stoll(shape.substr(x + 1));
      const std::vector<float> w = llmq::bench::gaussian(size_t(n * k), 1);
      auto q = llmq::quantize_rtn(w.data(), n, k, llmq::QuantSpec::ForGgml(*type));
      if (!q.ok()) {
        std::fprintf(stderr, "llmq-vs-llamacpp: %s %s: %s\n", type_name.c_str(), shape.c_str(), q.status().ToString().c_str());
        return 1;
      }
      const std::vector<uint8_t> blocks = llmq::internal::encode_ggml(*q);
      const int copies = int(std::max<uint64_t>(2, cold_bytes / blocks.size() + 1));
      std::vector<llmq::PackedLinear> ours, ours_a8;
      llmq::PackOptions a8;
      a8.int8_activations = true;
      for (int c = 0; c < copies; ++c) {
        auto p = llmq::PackedLinear::Pack(*q);
        if (!p.ok()) {
          std::fprintf(stderr, "llmq-vs-llamacpp: %s\n", p.status().ToString().c_str());
          return 1;
        }
        ours.push_back(std::move(*p));
        auto p8 = llmq::PackedLinear::Pack(*q, a8);
        if (p8.ok()) ours_a8.push_back(std::move(*p8));
      }
      for (const std::string& tok : split(opt["tokens"])) {
        const int64_t t = std::stoll(tok);
        const std::vector<float> xin = llmq::bench::gaussian(size_t(t * k), 2, 1.0f);
        std::vector<std::unique_ptr<GgmlMatmul>> theirs;
        for (int c = 0; c < copies; ++c) {
          theirs.push_back(std::make_unique<GgmlMatmul>(cpu, ggml_id(*type), n, k, t, blocks));
          theirs.back()->set_input(xin);
        }
        std::vector<float> y(size_t(t * n)), y_a8(size_t(t * n));
        for (int threads : thread_counts) {
          llmq::set_num_threads(threads);
          std::vector<double> tl, tq, tq8;
          // Each repetition times a burst of `burst` back-to-back calls per side after one untimed
          // call (threads awake, as between the linears of a decode step) and keeps the mean per
          // call; the sides alternate with a pause, so neither's spinning threads take the other's
          // cores. (Waking an idle vCPU on this VM costs milliseconds: single calls after a pause
          // measured that, not the kernels.)
          int next = 0;
          auto burst_seconds = [&](const std::function<void(int)>& call) {
            call(next++ % copies);
            const auto t0 = Clock::now();
            for (int i = 0; i < burst; ++i) call(next++ % copies);
            const double s = seconds_since(t0) / burst;
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
            return s;
          };
          for (int r = 0; r < reps; ++r) {
            cpu.start(threads);
            tl.push_back(burst_seconds([&](int c) { theirs[size_t(c)]->run(cpu); }));
            cpu.stop();
            tq.push_back(burst_seconds([&](int c) { ours[size_t(c)].Forward(xin.data(), t, y.data()); }));
            if (!ours_a8.empty())
              tq8.push_back(burst_seconds([&](int c) { ours_a8[size_t(c)].Forward(xin.data(), t, y_a8.data()); }));
          }
          if (tq8.empty()) tq8.push_back(0);
          const Stats sl = stats_of(tl), sq = stats_of(tq), sq8 = stats_of(tq8);
          nlohmann::ordered_json row;
          row["type"] = type_name;
          row["rows"] = n;
          row["cols"] = k;
          row["tokens"] = t;
          row["threads"] = threads;
          row["llamacpp_buffer"] = theirs[0]->buffer_type();
          row["llmq_kernel"] = ours[0].kernel(t);
          row["llamacpp_ms"] = {sl.median * 1e3, sl.min * 1e3, sl.max * 1e3};  // median, min, max
          row["llmq_ms"] = {sq.median * 1e3, sq.min * 1e3, sq.max * 1e3};
          const bool has_a8 = !ours_a8.empty();
          row["llmq_a8_ms"] = has_a8 ? nlohmann::ordered_json{sq8.median * 1e3, sq8.min * 1e3, sq8.max * 1e3}
                                     : nlohmann::ordered_json(nullptr);
          row["ratio"] = sl.median / sq.median;  // > 1: llmq (fp32 activations) faster
          row["ratio_a8"] = has_a8 ? nlohmann::ordered_json(sl.median / sq8.median)  // > 1: llmq (int8 activations) faster
                                   : nlohmann::ordered_json(nullptr);
          const double flop = 2.0 * double(n) * double(k) * double(t);
          row["llamacpp_gflops"] = flop / sl.median / 1e9;
          row["llmq_gflops"] = flop / sq.median / 1e9;
          if (t == 1) {
            const double gb = double(blocks.size()) / 1e9;
            row["llamacpp_fraction_of_stream"] = gb / sl.median / stream[std::to_string(threads)].get<double>();
            row["llmq_fraction_of_stream"] = double(ours[0].bytes()) / 1e9 / sq.median / stream[std::to_string(threads)].get<double>();
            row["llamacpp_fraction_of_read"] = gb / sl.median / read[std::to_string(threads)].get<double>();
            row["llmq_fraction_of_read"] = double(ours[0].bytes()) / 1e9 / sq.median / read[std::to_string(threads)].get<double>();
            if (has_a8) {  // the int8 path (what generate runs): its own panels' bytes
              const double gb8 = double(ours_a8[0].bytes()) / 1e9 / sq8.median;
              row["llmq_a8_fraction_of_stream"] = gb8 / stream[std::to_string(threads)].get<double>();
              row["llmq_a8_fraction_of_read"] = gb8 / read[std::to_string(threads)].get<double>();
            }
          }
          // Both sides compute the same product: llama.cpp quantizes x to 8 bits for its dot
          // products, so agreement is to that rounding, not exact.
          row["max_rel_diff"] = max_rel_diff(theirs[0]->output(), y);  // every copy holds the same weights
          if (row["max_rel_diff"].get<double>() > 0.05) disagree = true;
          std::fprintf(stderr, "%-5s %6lldx%-6lld t=%-4lld th=%d  llama.cpp %8.3f ms  llmq %8.3f ms (x%.2f)", type_name.c_str(),
                       (long long)n, (long long)k, (long long)t, threads, sl.median * 1e3, sq.median * 1e3,
                       sl.median / sq.median);
          if (has_a8) std::fprintf(stderr, "  a8 %8.3f ms (x%.2f)", sq8.median * 1e3, sl.median / sq8.median);
          std::fprintf(stderr, "  [%s]\n", theirs[0]->buffer_type().c_str());
          rows.push_back(row);
        }
      }
    }
  }
  out["results"] = rows;
  std::puts(out.dump(2).c_str());
  if (disagree) {
    std::fprintf(stderr, "llmq-vs-llamacpp: llmq's and llama.cpp's products differ by more than 5%% (max_rel_diff): "
                         "the two sides did not get the same weights\n");
    return 1;
  }
  return 0;
}
