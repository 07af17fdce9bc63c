// Status and Result: how every fallible call in the core reports failure.
// Native code never aborts or exits; a failure travels up as a Status whose
// message names what failed (file, tensor, shape, kernel). The binding turns
// the code into a JS error `code` (see status_code_name).
#pragma once

#include <optional>
#include <string>
#include <utility>

namespace rex {

enum class StatusCode {
  kOk = 0,
  kInvalidArgument,        // a caller passed a bad value
  kNotFound,               // a file or directory does not exist
  kIoError,                // open/read/mmap failed
  kCorruptFile,            // truncated file, offsets out of range, bad sizes
  kBadHeader,              // a header or config that is not valid JSON / schema
  kMissingTensor,          // a tensor the model needs is absent
  kShapeMismatch,          // a tensor has the wrong shape
  kUnsupportedDtype,       // a dtype we cannot compute with
  kUnsupportedArchitecture,// config.json describes another model
  kOutOfMemory,
  kCudaError,
  kCancelled,
  kDeadlineExceeded,       // a request's deadline passed before it finished
  kResourceExhausted,      // a bounded queue is full (submit refused at once)
  kInternal,
};

// Stable, JS-facing name of a code, e.g. "ERR_REX_MISSING_TENSOR".
const char* status_code_name(StatusCode code);

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}
  static Status Ok() { return Status(); }

  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }
  const char* code_name() const { return status_code_name(code_); }

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

// A value or the Status that explains why there is none.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : value_(std::move(value)) {}            // NOLINT: implicit by design
  Result(Status status) : status_(std::move(status)) {}    // NOLINT: implicit by design

  bool ok() const { return value_.has_value(); }
  const Status& status() const { return status_; }
  T& value() & { return *value_; }
  const T& value() const& { return *value_; }
  T&& value() && { return std::move(*value_); }
  T* operator->() { return &*value_; }
  const T* operator->() const { return &*value_; }

 private:
  std::optional<T> value_;
  Status status_;
};

}  // namespace rex

// Propagate a failed Status from the current function.
#define REX_RETURN_IF_ERROR(expr)          \
  do {                                     \
    ::rex::Status rex_status_ = (expr);    \
    if (!rex_status_.ok()) return rex_status_; \
  } while (0)
