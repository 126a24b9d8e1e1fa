// Walks the parsed template and writes its output, with jinja2's semantics as transformers configures it
// (sandboxed and immutable: no attribute of a list or dict can change it; only namespace() objects are
// mutable). Scoping follows jinja2: a for loop body gets a fresh scope each iteration, macros see the
// scope they were defined in, {% if %} opens no scope. Every render is bounded by Limits, so hostile
// templates end in a clear error instead of exhausting memory, time or the stack.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "tokenizer/jinja/ast.hpp"
#include "tokenizer/jinja/value.hpp"

namespace wgllm::tokenizer::jinja {

struct Limits {
  size_t max_output_bytes = size_t{16} << 20;  // the rendered text, and any one string built on the way
  size_t max_work_bytes = size_t{256} << 20;   // all strings and lists built during one render
  // Nodes evaluated, loop iterations, items filtered, and text read (kTextBytesPerStep bytes a step).
  uint64_t max_steps = 5'000'000;
  int max_depth = 400;  // nested evaluation, macro calls included
};

// Operations that read a string (compare, search, hash, index by character, filters and methods) charge
// one step per this many bytes, so that max_steps bounds the time of a render that reads a long string
// over and over, not only the nodes it evaluates.
inline constexpr size_t kTextBytesPerStep = 16;

// Charges the render running on this thread, if any, for reading `bytes` of text (throws TemplateError
// beyond max_steps). Free-standing so that value comparisons and hashing can call it.
void charge_text(size_t bytes);

// Variables of one scope. Most scopes hold a loop variable or two: a vector is searched linearly until
// it grows large enough to deserve an index.
class Scope {
 public:
  explicit Scope(std::shared_ptr<Scope> parent) : parent_(std::move(parent)) {}
  const Value* find(const std::string& name) const;  // here or in an enclosing scope
  void set(const std::string& name, Value value);    // in this scope
  void clear() {
    vars_.clear();
    index_.clear();
  }

 private:
  static constexpr size_t kIndexFrom = 16;
  Value* find_here(const std::string& name);
  std::vector<std::pair<std::string, Value>> vars_;
  std::unordered_map<std::string, size_t> index_;  // name -> position in vars_, once indexed
  std::shared_ptr<Scope> parent_;
};

class Interpreter {
 public:
  explicit Interpreter(const Limits& limits) : limits_(limits) {}

  // `context` is a dict of the template's variables. Throws TemplateError; line() then tells where.
  std::string render(const Body& body, const Value& context);
  int line() const { return line_; }

  // --- for the builtin filters, tests and functions ---
  Value get_attr(const Value& object, const std::string& name);  // jinja2 getattr: attribute, then item
  Value get_item(const Value& object, const Value& key);         // jinja2 getitem: item, then attribute
  ValueList iterate(const Value& v);  // what a for loop visits: items, characters, keys
  bool contains(const Value& container, const Value& item);
  Value add(const Value& a, const Value& b);
  Value call(const Value& callee, CallArgs& args);
  Value filter(const std::string& name, const Value& subject, CallArgs& args);
  bool test(const std::string& name, const Value& subject, CallArgs& args);
  // A string built by an operation: its size counts against the limits.
  Value string(std::string s);
  std::string str(const Value& v) const { return v.str(limits_.max_output_bytes); }
  // namespace(): cleared when the render ends, which breaks reference cycles (ns.self = ns).
  std::shared_ptr<Namespace> make_namespace();
  void charge_bytes(size_t bytes);
  void charge_steps(uint64_t steps);
  void charge_text_bytes(size_t bytes);
  const Limits& limits() const { return limits_; }

 private:
  enum class Flow { Normal, Break, Continue };
  struct Depth;

  Value eval(const Expr& e);
  Value eval_binary(const BinaryExpr& e);
  bool eval_compare(const CompareExpr& e);
  Value eval_slice(const SliceExpr& e);
  Value eval_call(const CallExpr& e, const Value* caller);
  Value eval_filter(const FilterExpr& f, const Value& subject);
  void eval_args(const Arguments& a, CallArgs& out);
  [[noreturn]] void undefined_error(const Value& v);

  Flow exec(const Body& body);
  Flow exec(const Stmt& s);
  Flow exec_for(const ForStmt& s);
  void assign(const Target& t, const Value& v);
  std::string capture(const Body& body, const std::shared_ptr<Scope>& scope);
  void write(const std::string& s);
  Value make_macro(const MacroStmt& m);
  Value call_macro(const MacroStmt& m, const std::weak_ptr<Scope>& defined_in, CallArgs& args);

  const Limits& limits_;
  std::shared_ptr<Scope> root_;   // the template's top level (context and globals below it)
  std::shared_ptr<Scope> scope_;  // the innermost scope
  std::string* out_ = nullptr;    // where output goes: the result, or a capture ({% set %} block, macro)
  int line_ = 0;
  int depth_ = 0;
  uint64_t steps_ = 0;
  size_t text_bytes_ = 0;  // read but not yet charged as a step
  size_t work_bytes_ = 0;
  std::vector<std::weak_ptr<Namespace>> namespaces_;
};

}  // namespace wgllm::tokenizer::jinja
