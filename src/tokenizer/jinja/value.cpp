#include "tokenizer/jinja/value.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <limits>

#include <nlohmann/json.hpp>

#include "core/error.hpp"
#include "core/utf8.hpp"
#include "tokenizer/jinja/interpreter.hpp"
#include "tokenizer/jinja/template_error.hpp"

namespace wgllm::tokenizer::jinja {

namespace {

const std::string kEmpty;

void check_size(const std::string& out, size_t max_bytes) {
  if (out.size() > max_bytes)
    fail("a value's text exceeds the limit of " + std::to_string(max_bytes) + " bytes");
}

std::string hash_key(const Value& key) {
  switch (key.kind()) {
    case Value::Kind::Bool:
    case Value::Kind::Int:
      return "i" + std::to_string(key.integer());
    case Value::Kind::Float: {
      double f = key.as_float();
      if (std::isfinite(f) && f == std::trunc(f) && std::fabs(f) < 9.2e18)
        return "i" + std::to_string(static_cast<int64_t>(f));
      return "f" + float_repr(f);
    }
    case Value::Kind::String:
      charge_text(key.as_string().size());
      return "s" + key.as_string();
    case Value::Kind::None:
      return "n";
    default:
      fail("TypeError: unhashable type: '" + key.type_name() + "'");
  }
}

std::string string_repr(const std::string& s) {
  char quote = s.find('\'') != std::string::npos && s.find('"') == std::string::npos ? '"' : '\'';
  std::string out(1, quote);
  for (char c : s) {
    unsigned char u = static_cast<unsigned char>(c);
    if (c == quote || c == '\\') {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (u < 0x20 || u == 0x7F) {
      static const char* hex = "0123456789abcdef";
      out += "\\x";
      out += hex[u >> 4];
      out += hex[u & 15];
    } else {
      out += c;
    }
  }
  out += quote;
  return out;
}

void json_string(std::string& out, const std::string& s, bool ensure_ascii) {
  static const char* hex = "0123456789abcdef";
  auto u4 = [&](uint32_t v) {
    out += "\\u";
    for (int shift = 12; shift >= 0; shift -= 4) out += hex[(v >> shift) & 15];
  };
  out += '"';
  std::string_view rest = s;
  while (!rest.empty()) {
    unsigned char c = static_cast<unsigned char>(rest[0]);
    if (c < 0x80) {
      rest.remove_prefix(1);
      switch (c) {
        case '"':
          out += "\\\"";
          break;
        case '\\':
          out += "\\\\";
          break;
        case '\n':
          out += "\\n";
          break;
        case '\r':
          out += "\\r";
          break;
        case '\t':
          out += "\\t";
          break;
        case '\b':
          out += "\\b";
          break;
        case '\f':
          out += "\\f";
          break;
        default:
          if (c < 0x20 || (ensure_ascii && c == 0x7F))
            u4(c);
          else
            out += static_cast<char>(c);
      }
      continue;
    }
    utf8::Decoded d = utf8::decode(rest);
    char32_t cp = d.status == utf8::Status::Valid ? d.cp : utf8::kReplacement;
    if (!ensure_ascii) {
      if (d.status == utf8::Status::Valid)
        out.append(rest.substr(0, d.length));
      else
        utf8::append(out, cp);
    } else if (cp >= 0x10000) {
      uint32_t v = cp - 0x10000;
      u4(0xD800 + (v >> 10));
      u4(0xDC00 + (v & 0x3FF));
    } else {
      u4(cp);
    }
    rest.remove_prefix(d.length);
  }
  out += '"';
}

std::string json_key(const Value& key) {
  switch (key.kind()) {
    case Value::Kind::String:
      return key.as_string();
    case Value::Kind::Bool:
      return key.as_bool() ? "true" : "false";
    case Value::Kind::Int:
      return std::to_string(key.as_int());
    case Value::Kind::Float:
      return float_repr(key.as_float());
    case Value::Kind::None:
      return "null";
    default:
      fail("TypeError: keys must be str, int, float, bool or None, not " + key.type_name());
  }
}

void json_value(std::string& out, const Value& v, const JsonOptions& o, int level) {
  check_size(out, o.max_bytes);
  auto newline = [&](int lvl) {
    out += '\n';
    for (int i = 0; i < lvl; ++i) {
      out += o.indent;
      check_size(out, o.max_bytes);
    }
  };
  switch (v.kind()) {
    case Value::Kind::None:
      out += "null";
      return;
    case Value::Kind::Bool:
      out += v.as_bool() ? "true" : "false";
      return;
    case Value::Kind::Int:
      out += std::to_string(v.as_int());
      return;
    case Value::Kind::Float: {
      double f = v.as_float();
      if (std::isnan(f))
        out += "NaN";
      else if (std::isinf(f))
        out += f > 0 ? "Infinity" : "-Infinity";
      else
        out += float_repr(f);
      return;
    }
    case Value::Kind::String:
      json_string(out, v.as_string(), o.ensure_ascii);
      check_size(out, o.max_bytes);
      return;
    case Value::Kind::List: {
      const ValueList& items = v.as_list();
      if (items.empty()) {
        out += "[]";
        return;
      }
      out += '[';
      for (size_t i = 0; i < items.size(); ++i) {
        if (i) out += o.item_separator;
        if (o.pretty) newline(level + 1);
        json_value(out, items[i], o, level + 1);
      }
      if (o.pretty) newline(level);
      out += ']';
      return;
    }
    case Value::Kind::Dict: {
      std::vector<const std::pair<Value, Value>*> items;
      for (const auto& kv : v.as_dict().items()) items.push_back(&kv);
      if (items.empty()) {
        out += "{}";
        return;
      }
      if (o.sort_keys)
        std::stable_sort(items.begin(), items.end(),
                         [](const auto* a, const auto* b) { return compare(a->first, b->first) < 0; });
      out += '{';
      for (size_t i = 0; i < items.size(); ++i) {
        if (i) out += o.item_separator;
        if (o.pretty) newline(level + 1);
        json_string(out, json_key(items[i]->first), o.ensure_ascii);
        out += o.key_separator;
        json_value(out, items[i]->second, o, level + 1);
      }
      if (o.pretty) newline(level);
      out += '}';
      return;
    }
    default:
      fail("TypeError: Object of type " + v.type_name() + " is not JSON serializable");
  }
}

Value from_nlohmann(const nlohmann::ordered_json& j, int depth) {
  if (depth >= kMaxValueDepth)
    wgllm::fail_input("JSON context nests deeper than " + std::to_string(kMaxValueDepth));
  switch (j.type()) {
    case nlohmann::ordered_json::value_t::null:
      return Value::none();
    case nlohmann::ordered_json::value_t::boolean:
      return Value(j.get<bool>());
    case nlohmann::ordered_json::value_t::number_integer:
      return Value(j.get<int64_t>());
    case nlohmann::ordered_json::value_t::number_unsigned: {
      uint64_t u = j.get<uint64_t>();
      if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
        wgllm::fail_input("JSON context: integer " + std::to_string(u) + " exceeds the 64-bit range");
      return Value(static_cast<int64_t>(u));
    }
    case nlohmann::ordered_json::value_t::number_float:
      return Value(j.get<double>());
    case nlohmann::ordered_json::value_t::string:
      return Value(j.get<std::string>());
    case nlohmann::ordered_json::value_t::array: {
      ValueList items;
      items.reserve(j.size());
      for (const auto& e : j) items.push_back(from_nlohmann(e, depth + 1));
      return Value::list(std::move(items));
    }
    case nlohmann::ordered_json::value_t::object: {
      Dict d;
      for (const auto& [k, e] : j.items()) d.set(Value(k), from_nlohmann(e, depth + 1));
      return Value::dict(std::move(d));
    }
    default:
      wgllm::fail_input("JSON context: unsupported value");
  }
}

}  // namespace

Value Value::undefined(std::string hint) {
  Value v;
  v.data_ = std::make_shared<const std::string>(std::move(hint));
  return v;
}

Value Value::none() {
  Value v;
  v.kind_ = Kind::None;
  return v;
}

Value Value::list(ValueList items, bool tuple) {
  Value v;
  v.kind_ = Kind::List;
  v.tuple_ = tuple;
  for (const Value& item : items) v.depth_ = std::max<uint16_t>(v.depth_, item.depth_ + 1);
  if (v.depth_ >= kMaxValueDepth)
    fail("lists and dicts nested deeper than " + std::to_string(kMaxValueDepth) + " levels");
  v.data_ = std::make_shared<const ValueList>(std::move(items));
  return v;
}

Value Value::dict(Dict d) {
  Value v;
  v.kind_ = Kind::Dict;
  for (const auto& kv : d.items()) v.depth_ = std::max<uint16_t>(v.depth_, kv.second.depth_ + 1);
  if (v.depth_ >= kMaxValueDepth)
    fail("lists and dicts nested deeper than " + std::to_string(kMaxValueDepth) + " levels");
  v.data_ = std::make_shared<const Dict>(std::move(d));
  return v;
}

Value Value::ns(std::shared_ptr<Namespace> n) {
  Value v;
  v.kind_ = Kind::Namespace;
  v.data_ = std::move(n);
  return v;
}

Value Value::callable(std::shared_ptr<const Callable> c) {
  Value v;
  v.kind_ = Kind::Callable;
  v.data_ = std::move(c);
  return v;
}

const std::string& Value::undefined_hint() const {
  if (const auto* s = std::get_if<std::shared_ptr<const std::string>>(&data_); s && kind_ == Kind::Undefined)
    return **s;
  return kEmpty;
}

bool Value::truthy() const {
  switch (kind_) {
    case Kind::Undefined:
    case Kind::None:
      return false;
    case Kind::Bool:
      return as_bool();
    case Kind::Int:
      return as_int() != 0;
    case Kind::Float:
      return as_float() != 0.0;
    case Kind::String:
      return !as_string().empty();
    case Kind::List:
      return !as_list().empty();
    case Kind::Dict:
      return !as_dict().empty();
    default:
      return true;
  }
}

std::string Value::str(size_t max_bytes) const {
  switch (kind_) {
    case Kind::Undefined:
      return {};
    case Kind::String:
      return as_string();
    default:
      return repr(max_bytes);
  }
}

std::string Value::repr(size_t max_bytes) const {
  std::string out;
  repr_into(out, max_bytes, 0);
  return out;
}

void Value::repr_into(std::string& out, size_t max_bytes, int depth) const {
  // Namespaces can contain themselves; Python prints "{...}" there, a deep enough cycle is an error here.
  if (depth > kMaxValueDepth) fail("a value nests too deeply to print (a namespace containing itself?)");
  switch (kind_) {
    case Kind::Undefined:
      out += "Undefined";
      break;
    case Kind::None:
      out += "None";
      break;
    case Kind::Bool:
      out += as_bool() ? "True" : "False";
      break;
    case Kind::Int:
      out += std::to_string(as_int());
      break;
    case Kind::Float:
      out += float_repr(as_float());
      break;
    case Kind::String:
      out += string_repr(as_string());
      break;
    case Kind::List: {
      const ValueList& items = as_list();
      out += tuple_ ? "(" : "[";
      for (size_t i = 0; i < items.size(); ++i) {
        if (i) out += ", ";
        items[i].repr_into(out, max_bytes, depth + 1);
        check_size(out, max_bytes);
      }
      if (tuple_ && items.size() == 1) out += ",";
      out += tuple_ ? ")" : "]";
      break;
    }
    case Kind::Dict:
    case Kind::Namespace: {
      const Dict& d = kind_ == Kind::Dict ? as_dict() : as_namespace().attrs;
      out += kind_ == Kind::Dict ? "{" : "<Namespace {";
      bool first = true;
      for (const auto& [k, v] : d.items()) {
        if (!first) out += ", ";
        first = false;
        k.repr_into(out, max_bytes, depth + 1);
        out += ": ";
        v.repr_into(out, max_bytes, depth + 1);
        check_size(out, max_bytes);
      }
      out += kind_ == Kind::Dict ? "}" : "}>";
      break;
    }
    case Kind::Callable:
      out += as_callable().repr;
      break;
  }
  check_size(out, max_bytes);
}

std::string Value::type_name() const {
  switch (kind_) {
    case Kind::Undefined:
      return "Undefined";
    case Kind::None:
      return "NoneType";
    case Kind::Bool:
      return "bool";
    case Kind::Int:
      return "int";
    case Kind::Float:
      return "float";
    case Kind::String:
      return "str";
    case Kind::List:
      return tuple_ ? "tuple" : "list";
    case Kind::Dict:
      return "dict";
    case Kind::Namespace:
      return "Namespace";
    case Kind::Callable:
      return "function";
  }
  return {};
}

namespace {
bool hashable(const Value& key) {
  return key.is_none() || key.is_bool() || key.is_int() || key.is_float() || key.is_string();
}
}  // namespace

Dict::Dict(std::vector<std::pair<Value, Value>> distinct_items) : items_(std::move(distinct_items)) {
  for (const auto& kv : items_)
    if (!hashable(kv.first)) hash_key(kv.first);  // reports the unhashable type
  if (items_.size() >= kIndexFrom) build_index();
}

void Dict::build_index() {
  for (size_t i = 0; i < items_.size(); ++i) index_.emplace(hash_key(items_[i].first), i);
}

const Value* Dict::find(const Value& key) const {
  if (!hashable(key)) return nullptr;
  if (index_.empty()) {
    for (const auto& [k, v] : items_)
      if (equal(k, key)) return &v;
    return nullptr;
  }
  auto it = index_.find(hash_key(key));
  return it == index_.end() ? nullptr : &items_[it->second].second;
}

void Dict::set(const Value& key, Value value) {
  if (!hashable(key)) hash_key(key);  // reports the unhashable type
  if (index_.empty()) {
    for (auto& [k, v] : items_) {
      if (equal(k, key)) {
        v = std::move(value);
        return;
      }
    }
    items_.emplace_back(key, std::move(value));
    if (items_.size() >= kIndexFrom) build_index();
    return;
  }
  auto [it, inserted] = index_.try_emplace(hash_key(key), items_.size());
  if (inserted)
    items_.emplace_back(key, std::move(value));
  else
    items_[it->second].second = std::move(value);
}

bool equal(const Value& a, const Value& b) {
  if (a.is_number() && b.is_number()) {
    if (a.is_float() || b.is_float()) return a.number() == b.number();
    return a.integer() == b.integer();
  }
  if (a.kind() != b.kind()) return false;
  switch (a.kind()) {
    case Value::Kind::Undefined:
    case Value::Kind::None:
      return true;
    case Value::Kind::String:
      if (a.as_string().size() != b.as_string().size()) return false;
      charge_text(a.as_string().size());
      return a.as_string() == b.as_string();
    case Value::Kind::List: {
      if (a.is_tuple() != b.is_tuple()) return false;
      const ValueList &x = a.as_list(), &y = b.as_list();
      if (x.size() != y.size()) return false;
      for (size_t i = 0; i < x.size(); ++i)
        if (!equal(x[i], y[i])) return false;
      return true;
    }
    case Value::Kind::Dict: {
      const Dict &x = a.as_dict(), &y = b.as_dict();
      if (x.size() != y.size()) return false;
      for (const auto& [k, v] : x.items()) {
        const Value* other = y.find(k);
        if (!other || !equal(v, *other)) return false;
      }
      return true;
    }
    case Value::Kind::Namespace:
      return &a.as_namespace() == &b.as_namespace();
    case Value::Kind::Callable:
      return &a.as_callable() == &b.as_callable();
    default:
      return false;
  }
}

int compare(const Value& a, const Value& b) {
  if (a.is_number() && b.is_number()) {
    if (a.is_float() || b.is_float()) {
      double x = a.number(), y = b.number();
      return x < y ? -1 : (y < x ? 1 : 0);
    }
    int64_t x = a.integer(), y = b.integer();
    return x < y ? -1 : (y < x ? 1 : 0);
  }
  if (a.is_string() && b.is_string()) {
    // UTF-8 byte order is code point order, which is how Python orders str.
    charge_text(std::min(a.as_string().size(), b.as_string().size()));
    int c = a.as_string().compare(b.as_string());
    return c < 0 ? -1 : (c > 0 ? 1 : 0);
  }
  if (a.is_list() && b.is_list() && a.is_tuple() == b.is_tuple()) {
    const ValueList &x = a.as_list(), &y = b.as_list();
    for (size_t i = 0; i < x.size() && i < y.size(); ++i)
      if (!equal(x[i], y[i])) return compare(x[i], y[i]);
    return x.size() < y.size() ? -1 : (x.size() > y.size() ? 1 : 0);
  }
  fail("TypeError: '<' not supported between instances of '" + a.type_name() + "' and '" + b.type_name() +
       "'");
}

std::string float_repr(double d) {
  if (std::isnan(d)) return "nan";
  if (std::isinf(d)) return d > 0 ? "inf" : "-inf";
  // The shortest digits that round-trip, placed the way Python's repr places them: positional for
  // exponents -4..15, scientific with a signed two-digit exponent otherwise, ".0" on integral values.
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof(buf), d, std::chars_format::scientific);
  std::string sci(buf, r.ptr);
  bool negative = sci[0] == '-';
  if (negative) sci.erase(0, 1);
  size_t e = sci.find('e');
  std::string digits = sci.substr(0, e);
  digits.erase(std::remove(digits.begin(), digits.end(), '.'), digits.end());
  int exp = std::stoi(sci.substr(e + 1));
  std::string out = negative ? "-" : "";
  if (exp >= -4 && exp < 16) {
    if (exp >= 0) {
      if (digits.size() <= static_cast<size_t>(exp) + 1) {
        out += digits + std::string(exp + 1 - digits.size(), '0') + ".0";
      } else {
        out += digits.substr(0, exp + 1) + "." + digits.substr(exp + 1);
      }
    } else {
      out += "0." + std::string(-exp - 1, '0') + digits;
    }
    return out;
  }
  out += digits.substr(0, 1);
  if (digits.size() > 1) out += "." + digits.substr(1);
  out += exp < 0 ? "e-" : "e+";
  std::string ed = std::to_string(exp < 0 ? -exp : exp);
  if (ed.size() < 2) ed = "0" + ed;
  return out + ed;
}

std::string to_json(const Value& v, const JsonOptions& options) {
  std::string out;
  json_value(out, v, options, 0);
  return out;
}

Value from_json(std::string_view json_text) {
  nlohmann::ordered_json j;
  try {
    j = nlohmann::ordered_json::parse(json_text);
  } catch (const nlohmann::json::exception& e) {
    wgllm::fail_input(std::string("JSON context: ") + e.what());
  }
  return from_nlohmann(j, 0);
}

}  // namespace wgllm::tokenizer::jinja
