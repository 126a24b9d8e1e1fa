#include "tokenizer/jinja/template.hpp"

#include "core/error.hpp"
#include "tokenizer/jinja/lexer.hpp"
#include "tokenizer/jinja/parser.hpp"
#include "tokenizer/jinja/template_error.hpp"

namespace wgllm::tokenizer::jinja {

Template::Template(std::string_view source, std::string name, Limits limits)
    : name_(std::move(name)), limits_(limits) {
  try {
    body_ = std::make_shared<const Body>(parse(lex(source)));
  } catch (const TemplateError& e) {
    fail_input(name_ + ":" + std::to_string(e.line) + ": " + e.what());
  }
}

std::string Template::render(const Value& context) const {
  Interpreter interpreter(limits_);
  try {
    return interpreter.render(*body_, context);
  } catch (const TemplateError& e) {
    int line = e.line ? e.line : interpreter.line();
    fail_input(name_ + ":" + std::to_string(line) + ": " + e.what());
  }
}

std::string render(std::string_view source, std::string_view context_json, std::string name) {
  return Template(source, std::move(name)).render(from_json(context_json));
}

}  // namespace wgllm::tokenizer::jinja
