// jinja2's builtin filters, tests and globals that chat templates use, transformers' additions
// (tojson with ensure_ascii=False and indent, raise_exception, strftime_now), and the methods of str
// and dict that the sandbox lets templates call.
#pragma once

#include <string>
#include <string_view>

#include "tokenizer/jinja/interpreter.hpp"
#include "tokenizer/jinja/value.hpp"

namespace wgllm::tokenizer::jinja {

using FilterFn = Value (*)(Interpreter&, const Value&, CallArgs&);
using TestFn = bool (*)(Interpreter&, const Value&, CallArgs&);

FilterFn find_filter(std::string_view name);  // nullptr when there is none
TestFn find_test(std::string_view name);
inline bool is_filter(std::string_view name) {
  return find_filter(name) != nullptr;
}
inline bool is_test(std::string_view name) {
  return find_test(name) != nullptr;
}

// `object.name` as a bound method (str.strip, dict.items, ...), or undefined when the type has none.
Value method(const Value& object, const std::string& name);

// range, namespace, dict, raise_exception, strftime_now.
void add_globals(Scope& scope);

}  // namespace wgllm::tokenizer::jinja
