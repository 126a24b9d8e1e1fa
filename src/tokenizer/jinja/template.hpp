// A Jinja template rendered the way Hugging Face transformers renders chat templates: jinja2's
// ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols]) with
// transformers' tojson, raise_exception and strftime_now. The features real chat templates use are there
// (see docs/chat-templates.md); anything else is a syntax error naming the line, never undefined
// behaviour. Parsing happens once; render() may be called any number of times, also concurrently.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "tokenizer/jinja/interpreter.hpp"
#include "tokenizer/jinja/value.hpp"

namespace wgllm::tokenizer::jinja {

class Template {
 public:
  // Throws Error(BadInput) "<name>:<line>: syntax error: ..." for a template jinja2 would not compile
  // (unknown filters and tests included).
  explicit Template(std::string_view source, std::string name = "template", Limits limits = {});

  // `context` must be a dict; its keys become the template's variables. Throws Error(BadInput)
  // "<name>:<line>: <what went wrong>" for runtime errors: raise_exception(), undefined values used in
  // operations, type errors, and any limit exceeded.
  std::string render(const Value& context) const;

  const std::string& name() const { return name_; }

 private:
  std::string name_;
  Limits limits_;
  std::shared_ptr<const Body> body_;
};

// Parses and renders once; `context_json` is a JSON object.
std::string render(std::string_view source, std::string_view context_json, std::string name = "template");

}  // namespace wgllm::tokenizer::jinja
