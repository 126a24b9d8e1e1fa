// Errors in OpenAI's error-object format: {"error": {"message", "type", "param", "code"}} with an HTTP
// status.
#pragma once

#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>

namespace wgllm::server {

struct ApiError : std::runtime_error {
  ApiError(int status, std::string type, const std::string& message, std::string param = {},
           std::string code = {})
      : std::runtime_error(message),
        status(status),
        type(std::move(type)),
        param(std::move(param)),
        code(std::move(code)) {}

  nlohmann::json to_json() const {
    auto opt = [](const std::string& s) { return s.empty() ? nlohmann::json(nullptr) : nlohmann::json(s); };
    return {{"error", {{"message", what()}, {"type", type}, {"param", opt(param)}, {"code", opt(code)}}}};
  }

  int status;
  std::string type;
  std::string param;  // the request field at fault, if one is
  std::string code;
};

// 400 invalid_request_error, naming the field at fault.
[[noreturn]] inline void bad_request(const std::string& message, const std::string& param = {}) {
  throw ApiError(400, "invalid_request_error", message, param);
}

}  // namespace wgllm::server
