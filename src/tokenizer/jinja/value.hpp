// The values a Jinja template computes with, modelled on the Python objects that jinja2 sees when
// Hugging Face transformers renders a chat template: undefined, None, bool, int, float, str, list (and
// tuple), dict, jinja2's namespace and callables (macros, builtins, bound methods). Printing, comparison
// and JSON output follow Python (str(), ==, <, json.dumps) because the rendered prompt must match
// transformers byte for byte.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <variant>
#include <vector>

namespace wgllm::tokenizer::jinja {

class Value;
class Dict;
struct Namespace;
struct Callable;
struct CallArgs;
class Interpreter;

using ValueList = std::vector<Value>;

// Lists and dicts nest at most this deep (JSON input included): printing, comparing and freeing them
// recurses. A namespace counts as one level: it is mutable and may even contain itself.
inline constexpr int kMaxValueDepth = 256;

class Value {
 public:
  enum class Kind : uint8_t { Undefined, None, Bool, Int, Float, String, List, Dict, Namespace, Callable };

  Value() = default;  // undefined
  // `hint` says why the value is undefined ("'x' is undefined"); using it in an operation reports it.
  static Value undefined(std::string hint);
  static Value none();
  Value(bool b) : kind_(Kind::Bool), data_(b) {}
  Value(int64_t i) : kind_(Kind::Int), data_(i) {}
  Value(int i) : kind_(Kind::Int), data_(int64_t{i}) {}
  Value(double f) : kind_(Kind::Float), data_(f) {}
  Value(std::string s) : kind_(Kind::String), data_(std::make_shared<const std::string>(std::move(s))) {}
  Value(std::string_view s) : Value(std::string(s)) {}
  Value(const char* s) : Value(std::string(s)) {}
  static Value list(ValueList items, bool tuple = false);
  static Value dict(Dict d);
  static Value ns(std::shared_ptr<Namespace> n);
  static Value callable(std::shared_ptr<const Callable> c);

  Kind kind() const { return kind_; }
  bool is_undefined() const { return kind_ == Kind::Undefined; }
  bool is_none() const { return kind_ == Kind::None; }
  bool is_bool() const { return kind_ == Kind::Bool; }
  bool is_int() const { return kind_ == Kind::Int; }
  bool is_float() const { return kind_ == Kind::Float; }
  bool is_number() const { return kind_ == Kind::Int || kind_ == Kind::Float || kind_ == Kind::Bool; }
  bool is_string() const { return kind_ == Kind::String; }
  bool is_list() const { return kind_ == Kind::List; }
  bool is_tuple() const { return kind_ == Kind::List && tuple_; }
  bool is_dict() const { return kind_ == Kind::Dict; }
  bool is_namespace() const { return kind_ == Kind::Namespace; }
  bool is_callable() const { return kind_ == Kind::Callable; }

  bool as_bool() const { return std::get<bool>(data_); }
  int64_t as_int() const { return std::get<int64_t>(data_); }
  double as_float() const { return std::get<double>(data_); }
  const std::string& as_string() const { return *std::get<std::shared_ptr<const std::string>>(data_); }
  const ValueList& as_list() const { return *std::get<std::shared_ptr<const ValueList>>(data_); }
  const Dict& as_dict() const { return *std::get<std::shared_ptr<const Dict>>(data_); }
  Namespace& as_namespace() const { return *std::get<std::shared_ptr<Namespace>>(data_); }
  const Callable& as_callable() const { return *std::get<std::shared_ptr<const Callable>>(data_); }
  const std::string& undefined_hint() const;
  // Int or Bool as int64 (Python's bool is an int); Float as double.
  int64_t integer() const { return kind_ == Kind::Bool ? int64_t{as_bool()} : as_int(); }
  double number() const { return kind_ == Kind::Float ? as_float() : static_cast<double>(integer()); }

  bool truthy() const;  // Python bool()
  // Python str() (undefined prints as "") and repr(); a text longer than max_bytes is an error, so that
  // printing a list holding one large string many times cannot exhaust memory.
  std::string str(size_t max_bytes = SIZE_MAX) const;
  std::string repr(size_t max_bytes = SIZE_MAX) const;
  std::string type_name() const;  // Python's type name, for messages ("str", "NoneType", ...)

 private:
  void repr_into(std::string& out, size_t max_bytes, int depth) const;

  Kind kind_ = Kind::Undefined;
  bool tuple_ = false;
  uint16_t depth_ = 0;  // nesting of lists and dicts below this value
  // Strings are shared like lists: copying a value never copies text (a list may repeat one long string).
  std::variant<std::monostate, bool, int64_t, double, std::shared_ptr<const std::string>,
               std::shared_ptr<const ValueList>, std::shared_ptr<const Dict>, std::shared_ptr<Namespace>,
               std::shared_ptr<const Callable>>
      data_;
};

// A Python dict: insertion-ordered; keys are str, int, float, bool or None, and 1, 1.0 and True are
// the same key as in Python.
class Dict {
 public:
  Dict() = default;
  // From pairs whose keys are known to be distinct (no duplicate checks).
  explicit Dict(std::vector<std::pair<Value, Value>> distinct_items);

  const Value* find(const Value& key) const;  // nullptr when absent
  void set(const Value& key, Value value);    // Error for an unhashable key (list, dict)
  size_t size() const { return items_.size(); }
  bool empty() const { return items_.empty(); }
  const std::vector<std::pair<Value, Value>>& items() const { return items_; }

 private:
  // Small dicts (messages, the loop variable) are searched linearly; a larger one gets an index.
  static constexpr size_t kIndexFrom = 16;
  void build_index();
  std::vector<std::pair<Value, Value>> items_;
  std::unordered_map<std::string, size_t> index_;  // hash_key(key) -> position in items_, once indexed
};

// jinja2's namespace(): the one mutable object templates can carry out of a loop.
struct Namespace {
  Dict attrs;
};

// Positional and keyword arguments of a call.
struct CallArgs {
  ValueList positional;
  std::vector<std::pair<std::string, Value>> keyword;
};

struct Callable {
  std::string name;
  std::string repr;  // what str() prints, e.g. "<Macro 'm'>"
  std::function<Value(Interpreter&, CallArgs&)> call;
};

// Python ==, and the ordering behind <, <=, sort, min and max (throws for types Python cannot order).
bool equal(const Value& a, const Value& b);
int compare(const Value& a, const Value& b);  // -1, 0, 1

// Python's repr() of a float ("1.0", "1e+16", "0.30000000000000004").
std::string float_repr(double d);

// json.dumps(value, ensure_ascii, indent, separators, sort_keys) as transformers' tojson filter calls it.
struct JsonOptions {
  bool ensure_ascii = false;
  bool pretty = false;  // indent given (json.dumps indent is not None)
  std::string indent;   // one level of indentation
  std::string item_separator = ", ";
  std::string key_separator = ": ";
  bool sort_keys = false;
  size_t max_bytes = SIZE_MAX;  // a longer result is an error
};
std::string to_json(const Value& v, const JsonOptions& options);

// A context or data value from JSON text (objects keep their key order; null becomes None).
// Throws Error(BadInput) for malformed JSON.
Value from_json(std::string_view json_text);

}  // namespace wgllm::tokenizer::jinja
