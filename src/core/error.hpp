// One exception type for the whole engine. Its message names the problem (file, offset, field, limit);
// its kind decides the CLI's exit code (CONTRACTS.md: 1 runtime failure, 2 bad usage or bad input).
#pragma once

#include <stdexcept>
#include <string>

namespace wgllm {

enum class ErrorKind {
  BadInput,  // a malformed file, a wrong flag, a value out of range: the user can fix it (exit 2)
  Runtime,   // the GPU, the OS or a resource failed (exit 1)
};

class Error : public std::runtime_error {
 public:
  Error(ErrorKind kind, const std::string& message) : std::runtime_error(message), kind_(kind) {}
  ErrorKind kind() const { return kind_; }

 private:
  ErrorKind kind_;
};

[[noreturn]] inline void fail_input(const std::string& message) { throw Error(ErrorKind::BadInput, message); }
[[noreturn]] inline void fail_runtime(const std::string& message) { throw Error(ErrorKind::Runtime, message); }

}  // namespace wgllm
