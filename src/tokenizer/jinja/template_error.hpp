// What the lexer, parser and interpreter throw; Template turns it into wgllm::Error with the template's
// name and line ("chat_template:12: ...").
#pragma once

#include <stdexcept>
#include <string>

namespace wgllm::tokenizer::jinja {

struct TemplateError : std::runtime_error {
  // line 0: not known where it is thrown (a value operation); the interpreter supplies the line of the
  // node it was evaluating.
  explicit TemplateError(const std::string& message, int line = 0)
      : std::runtime_error(message), line(line) {}
  int line;
};

[[noreturn]] inline void fail(const std::string& message, int line = 0) {
  throw TemplateError(message, line);
}

}  // namespace wgllm::tokenizer::jinja
