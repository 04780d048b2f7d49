// Command-line parsing and progress rendering for the llmq CLI.
#include "args.h"

#include <cmath>

#include <unistd.h>

#include <cstdio>
#include <cstdlib>

namespace llmq::cli {

Result<Args> Args::Parse(int argc, char** argv, int first, const std::set<std::string>& flags,
                         const std::set<std::string>& options) {
  Args a;
  for (int i = first; i < argc; ++i) {
    std::string s = argv[i];
    if (s.size() > 2 && s.rfind("--", 0) == 0) {
      std::string key = s.substr(2), value;
      const size_t eq = key.find('=');
      const bool inline_value = eq != std::string::npos;
      if (inline_value) {
        value = key.substr(eq + 1);
        key = key.substr(0, eq);
      }
      if (flags.count(key)) {
        if (inline_value) return Status::InvalidArgument("option --" + key + " takes no value");
        a.flags_.insert(key);
      } else if (options.count(key)) {
        if (!inline_value) {
          if (i + 1 >= argc) return Status::InvalidArgument("option --" + key + " needs a value");
          value = argv[++i];
        }
        a.values_[key] = value;
      } else {
        return Status::InvalidArgument("unknown option --" + key + " (see --help)");
      }
    } else if (s == "-n" && options.count("n")) {
      if (i + 1 >= argc) return Status::InvalidArgument("option -n needs a value");
      a.values_["n"] = argv[++i];
    } else {
      a.positional_.push_back(s);
    }
  }
  return a;
}

std::string Args::get(const std::string& name, const std::string& dflt) const {
  auto it = values_.find(name);
  return it == values_.end() ? dflt : it->second;
}

Result<long long> Args::get_int(const std::string& name, long long dflt) const {
  auto it = values_.find(name);
  if (it == values_.end()) return dflt;
  char* end = nullptr;
  const long long v = std::strtoll(it->second.c_str(), &end, 10);
  if (it->second.empty() || *end != '\0')
    return Status::InvalidArgument("--" + name + " expects an integer, got '" + it->second + "'");
  return v;
}

Result<double> Args::get_double(const std::string& name, double dflt) const {
  auto it = values_.find(name);
  if (it == values_.end()) return dflt;
  char* end = nullptr;
  const double v = std::strtod(it->second.c_str(), &end);
  if (it->second.empty() || *end != '\0' || std::isnan(v))
    return Status::InvalidArgument("--" + name + " expects a number, got '" + it->second + "'");
  return v;
}

namespace {
std::string fmt_time(double s) {
  char buf[32];
  if (s < 0 || s > 1e7) return "?";
  const int t = int(s + 0.5);
  if (t >= 3600) std::snprintf(buf, sizeof buf, "%dh%02dm%02ds", t / 3600, (t / 60) % 60, t % 60);
  else if (t >= 60) std::snprintf(buf, sizeof buf, "%dm%02ds", t / 60, t % 60);
  else std::snprintf(buf, sizeof buf, "%.1fs", s);
  return buf;
}
}  // namespace

ProgressPrinter::ProgressPrinter(std::string label) : label_(std::move(label)), tty_(isatty(STDERR_FILENO)) {}

void ProgressPrinter::Update(long long done, long long total, const std::string& item, double elapsed_s) {
  if (total <= 0) return;
  const double frac = double(done) / double(total);
  const double eta = done > 0 ? elapsed_s * (double(total - done) / double(done)) : -1;
  if (tty_) {
    const int width = 30, filled = int(frac * width);
    std::fprintf(stderr, "\r%s [%.*s%*s] %3d%% %lld/%lld elapsed %s ETA %s  %-40.40s", label_.c_str(), filled,
                 "##############################", width - filled, "", int(frac * 100), done, total,
                 fmt_time(elapsed_s).c_str(), fmt_time(eta).c_str(), item.c_str());
    active_ = true;
  } else {
    const int bucket = int(frac * 20);
    if (bucket == last_bucket_ && done != total) return;
    last_bucket_ = bucket;
    std::fprintf(stderr, "%s %3d%% %lld/%lld elapsed %s ETA %s %s\n", label_.c_str(), int(frac * 100), done, total,
                 fmt_time(elapsed_s).c_str(), fmt_time(eta).c_str(), item.c_str());
  }
  std::fflush(stderr);
}

void ProgressPrinter::Finish() {
  if (tty_ && active_) std::fprintf(stderr, "\n");
  active_ = false;
}

}  // namespace llmq::cli
