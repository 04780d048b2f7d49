// Status and Result<T>: how every fallible public llmq call reports failure.
//
// Errors at the library boundary are values, never exceptions or aborts. A
// message names the object (file, tensor, layer) and the problem so that a
// user can act on it, e.g.
//   "model.safetensors: tensor 'lm_head.weight' byte range [0, 4096) does not
//    match shape [512, 256] x F16 (262144 bytes)".
#ifndef LLMQ_STATUS_H_
#define LLMQ_STATUS_H_

#include "llmq/export.h"

#include <cassert>
#include <string>
#include <utility>
#include <variant>

namespace llmq {

enum class StatusCode {
  kOk = 0,
  kInvalidArgument,     // a caller-supplied value or option is wrong
  kNotFound,            // a file or tensor that should exist does not
  kNotSupported,        // valid input that llmq does not handle (architecture, dtype)
  kCorruption,          // a file is malformed or inconsistent
  kIOError,             // the operating system refused a read or write
  kFailedPrecondition,  // e.g. a Hessian that stays singular after damping
  kOutOfMemory,
  kInternal,            // a bug in llmq
  kCancelled,           // the caller asked a long operation to stop (e.g. Ctrl-C)
};

class [[nodiscard]] LLMQ_EXPORT Status {
 public:
  Status() = default;
  static Status Ok() { return Status(); }
  static Status InvalidArgument(std::string m) { return Status(StatusCode::kInvalidArgument, std::move(m)); }
  static Status NotFound(std::string m) { return Status(StatusCode::kNotFound, std::move(m)); }
  static Status NotSupported(std::string m) { return Status(StatusCode::kNotSupported, std::move(m)); }
  static Status Corruption(std::string m) { return Status(StatusCode::kCorruption, std::move(m)); }
  static Status IOError(std::string m) { return Status(StatusCode::kIOError, std::move(m)); }
  static Status FailedPrecondition(std::string m) { return Status(StatusCode::kFailedPrecondition, std::move(m)); }
  static Status OutOfMemory(std::string m) { return Status(StatusCode::kOutOfMemory, std::move(m)); }
  static Status Internal(std::string m) { return Status(StatusCode::kInternal, std::move(m)); }
  static Status Cancelled(std::string m) { return Status(StatusCode::kCancelled, std::move(m)); }

  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }
  // "Corruption: <message>", or "OK".
  std::string ToString() const;

  // Prefixes the message with context, e.g. the file name: "a.safetensors: <message>".
  Status WithContext(const std::string& context) const {
    if (ok()) return *this;
    return Status(code_, context + ": " + message_);
  }

 private:
  Status(StatusCode c, std::string m) : code_(c), message_(std::move(m)) {}
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

// Either a value or a non-OK Status.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT: implicit by design
  Result(Status status) : v_(std::move(status)) {  // NOLINT
    assert(!std::get<Status>(v_).ok() && "Result constructed from an OK Status");
  }
  bool ok() const { return std::holds_alternative<T>(v_); }
  const Status& status() const {
    static const Status kOk;
    return ok() ? kOk : std::get<Status>(v_);
  }
  T& value() & { assert(ok()); return std::get<T>(v_); }
  const T& value() const& { assert(ok()); return std::get<T>(v_); }
  T&& value() && { assert(ok()); return std::get<T>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace llmq

// Internal convenience: return early on error.
#define LLMQ_RETURN_IF_ERROR(expr)          \
  do {                                      \
    ::llmq::Status _llmq_st = (expr);       \
    if (!_llmq_st.ok()) return _llmq_st;    \
  } while (0)

#define LLMQ_CONCAT_INNER_(a, b) a##b
#define LLMQ_CONCAT_(a, b) LLMQ_CONCAT_INNER_(a, b)
#define LLMQ_ASSIGN_OR_RETURN(lhs, expr) LLMQ_ASSIGN_OR_RETURN_IMPL_(LLMQ_CONCAT_(_llmq_r, __LINE__), lhs, expr)
#define LLMQ_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                                \
  if (!tmp.ok()) return tmp.status();               \
  lhs = std::move(tmp).value()

#endif  // LLMQ_STATUS_H_
