// The llmq CLI's commands (each returns the process exit code).
#ifndef LLMQ_EXAMPLES_CLI_COMMANDS_H_
#define LLMQ_EXAMPLES_CLI_COMMANDS_H_

#include <string>

#include "llmq/status.h"

namespace llmq::cli {

int run_inspect(int argc, char** argv);
int run_quantize(int argc, char** argv);
int run_eval(int argc, char** argv);
int run_generate(int argc, char** argv);
int run_bench(int argc, char** argv);

// Prints "llmq: error: <message>" to stderr and returns 1.
int fail(const Status& st);
// Prints a usage error for `command` and returns 2.
int usage_error(const std::string& msg, const char* command);

}  // namespace llmq::cli

#endif  // LLMQ_EXAMPLES_CLI_COMMANDS_H_
