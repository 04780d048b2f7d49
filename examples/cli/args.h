// A small command-line parser for the llmq CLI: --flag, --key value, --key=value, positionals.
#ifndef LLMQ_EXAMPLES_CLI_ARGS_H_
#define LLMQ_EXAMPLES_CLI_ARGS_H_

#include <map>
#include <set>
#include <string>
#include <vector>

#include "llmq/status.h"

namespace llmq::cli {

class Args {
 public:
  // `flags` take no value; `options` take one. Anything else starting with "--" is an error.
  static Result<Args> Parse(int argc, char** argv, int first, const std::set<std::string>& flags,
                            const std::set<std::string>& options);
  bool has(const std::string& name) const { return flags_.count(name) || values_.count(name); }
  std::string get(const std::string& name, const std::string& dflt = "") const;
  // Parses an integer option; InvalidArgument naming the option if it is not one.
  Result<long long> get_int(const std::string& name, long long dflt) const;
  Result<double> get_double(const std::string& name, double dflt) const;
  const std::vector<std::string>& positional() const { return positional_; }

 private:
  std::set<std::string> flags_;
  std::map<std::string, std::string> values_;
  std::vector<std::string> positional_;
};

// Renders Progress on stderr: a bar with percent, elapsed time and ETA; one line per
// update when stderr is not a terminal (at most ~20 lines per operation).
class ProgressPrinter {
 public:
  explicit ProgressPrinter(std::string label);
  void Update(long long done, long long total, const std::string& item, double elapsed_s);
  void Finish();

 private:
  std::string label_;
  bool tty_ = false;
  int last_bucket_ = -1;
  bool active_ = false;
};

}  // namespace llmq::cli

#endif  // LLMQ_EXAMPLES_CLI_ARGS_H_
