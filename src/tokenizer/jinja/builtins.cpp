#include "tokenizer/jinja/builtins.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <limits>
#include <optional>
#include <unordered_map>

#include "tokenizer/jinja/template_error.hpp"
#include "tokenizer/jinja/text.hpp"

namespace wgllm::tokenizer::jinja {

namespace {

// jinja2's sandbox refuses range() results longer than this (MAX_RANGE).
constexpr int64_t kMaxRange = 100000;

// Binds call arguments to parameter names the way Python does: positional in order, then keywords.
class Params {
 public:
  Params(std::string_view fn, const CallArgs& args, std::initializer_list<const char*> names)
      : values_(names.size()) {
    std::vector<const char*> n(names);
    if (args.positional.size() > n.size())
      fail("TypeError: " + std::string(fn) + "() takes at most " + std::to_string(n.size()) + " argument(s)");
    for (size_t i = 0; i < args.positional.size(); ++i) values_[i] = args.positional[i];
    for (const auto& [key, value] : args.keyword) {
      size_t i = 0;
      while (i < n.size() && key != n[i]) ++i;
      if (i == n.size())
        fail("TypeError: " + std::string(fn) + "() got an unexpected keyword argument '" + key + "'");
      if (values_[i])
        fail("TypeError: " + std::string(fn) + "() got multiple values for argument '" + key + "'");
      values_[i] = value;
    }
  }
  bool has(size_t i) const { return values_[i].has_value(); }
  Value get(size_t i, Value fallback = Value::none()) const { return values_[i] ? *values_[i] : fallback; }

 private:
  std::vector<std::optional<Value>> values_;
};

int64_t int_arg(const Value& v, const char* what) {
  if (!v.is_int() && !v.is_bool())
    fail(std::string("TypeError: ") + what + " must be an integer, not " + v.type_name());
  return v.integer();
}

const std::string& str_arg(const Value& v, const char* what) {
  if (!v.is_string()) fail(std::string("TypeError: ") + what + " must be a string, not " + v.type_name());
  return v.as_string();
}

// An indentation of n spaces (none for n <= 0, as Python's " " * n).
std::string spaces(Interpreter& in, int64_t n) {
  if (n > static_cast<int64_t>(in.limits().max_output_bytes))
    fail("an indentation of " + std::to_string(n) + " exceeds the output limit");
  return std::string(static_cast<size_t>(std::max<int64_t>(n, 0)), ' ');
}

CallArgs rest_args(const CallArgs& args, size_t skip) {
  CallArgs rest;
  rest.positional.assign(
      args.positional.begin() + static_cast<std::ptrdiff_t>(std::min(skip, args.positional.size())),
      args.positional.end());
  rest.keyword = args.keyword;
  return rest;
}

// "a.b.0" -> item a, then b, then element 0 (jinja2's make_attrgetter).
Value lookup_path(Interpreter& in, const Value& item, const Value& attribute) {
  if (!attribute.is_string()) return in.get_item(item, attribute);
  Value v = item;
  size_t pos = 0;
  const std::string& path = attribute.as_string();
  while (true) {
    size_t dot = path.find('.', pos);
    std::string part = path.substr(pos, dot == std::string::npos ? std::string::npos : dot - pos);
    bool digits =
        !part.empty() && std::all_of(part.begin(), part.end(), [](char c) { return c >= '0' && c <= '9'; });
    int64_t index = 0;
    if (digits && std::from_chars(part.data(), part.data() + part.size(), index).ec == std::errc())
      v = in.get_item(v, Value(index));
    else
      v = in.get_item(v, Value(part));
    if (dot == std::string::npos) return v;
    pos = dot + 1;
  }
}

// The sort key of sort, unique, min, max, dictsort: strings compare case-insensitively by default.
Value sort_key(Interpreter& in, const Value& item, const Value& attribute, bool case_sensitive) {
  Value key = attribute.is_none() ? item : lookup_path(in, item, attribute);
  if (!case_sensitive && key.is_string()) return in.string(text::lower(key.as_string()));
  return key;
}

std::string escape_html(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&#34;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

// Python's int(str, base) for the bases templates use; nullopt where Python raises ValueError.
std::optional<int64_t> parse_int(const std::string& s, int base) {
  std::string t = text::strip(s, true, true);
  bool negative = false;
  size_t i = 0;
  if (i < t.size() && (t[i] == '+' || t[i] == '-')) negative = t[i++] == '-';
  if (base == 16 || base == 8 || base == 2) {
    char p = base == 16 ? 'x' : (base == 8 ? 'o' : 'b');
    if (i + 1 < t.size() && t[i] == '0' && (t[i + 1] | 0x20) == p) {
      i += 2;
      if (i < t.size() && t[i] == '_') ++i;
    }
  }
  std::string digits;
  for (; i < t.size(); ++i) {
    if (t[i] == '_' && !digits.empty() && i + 1 < t.size() && t[i + 1] != '_') continue;
    digits += t[i];
  }
  if (digits.empty()) return std::nullopt;
  uint64_t u = 0;
  auto r = std::from_chars(digits.data(), digits.data() + digits.size(), u, base);
  if (r.ptr != digits.data() + digits.size()) return std::nullopt;
  if (r.ec != std::errc() ||
      u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) + (negative ? 1 : 0))
    fail("OverflowError: integer " + t + " exceeds the 64-bit range");
  return negative ? static_cast<int64_t>(0 - u) : static_cast<int64_t>(u);
}

// Python's float(str); nullopt where Python raises ValueError.
std::optional<double> parse_float(const std::string& s) {
  std::string t = text::strip(s, true, true);
  bool negative = false;
  size_t i = 0;
  if (i < t.size() && (t[i] == '+' || t[i] == '-')) negative = t[i++] == '-';
  std::string body;
  for (; i < t.size(); ++i) {
    bool digit_around = i > 0 && i + 1 < t.size() && std::isdigit(static_cast<unsigned char>(t[i - 1])) &&
                        std::isdigit(static_cast<unsigned char>(t[i + 1]));
    if (t[i] == '_' && digit_around) continue;
    body += t[i];
  }
  if (body.empty() || body[0] == '+' || body[0] == '-' || body.find_first_of("xXpP") != std::string::npos)
    return std::nullopt;
  double d = 0;
  auto r = std::from_chars(body.data(), body.data() + body.size(), d);
  if (r.ptr != body.data() + body.size()) return std::nullopt;
  if (r.ec == std::errc::result_out_of_range)
    d = std::strtod(body.c_str(), nullptr);  // overflow: inf, as Python
  else if (r.ec != std::errc())
    return std::nullopt;
  return negative ? -d : d;
}

// --- filters ------------------------------------------------------------------------------------------

Value f_abs(Interpreter&, const Value& v, CallArgs& args) {
  Params("abs", args, {});
  if (v.is_float()) return Value(std::fabs(v.as_float()));
  if (v.is_int() || v.is_bool()) {
    if (v.integer() == std::numeric_limits<int64_t>::min())
      fail("OverflowError: integer result exceeds the 64-bit range");
    return Value(v.integer() < 0 ? -v.integer() : v.integer());
  }
  fail("TypeError: bad operand type for abs(): '" + v.type_name() + "'");
}

Value f_capitalize(Interpreter& in, const Value& v, CallArgs& args) {
  Params("capitalize", args, {});
  return in.string(text::capitalize(in.str(v)));
}

Value f_default(Interpreter&, const Value& v, CallArgs& args) {
  Params p("default", args, {"default_value", "boolean"});
  bool boolean = p.get(1, Value(false)).truthy();
  if (v.is_undefined() || (boolean && !v.truthy())) return p.get(0, Value(""));
  return v;
}

Value f_dictsort(Interpreter& in, const Value& v, CallArgs& args) {
  Params p("dictsort", args, {"case_sensitive", "by", "reverse"});
  if (!v.is_dict()) fail("TypeError: dictsort expects a mapping, not " + v.type_name());
  bool case_sensitive = p.get(0, Value(false)).truthy();
  Value by = p.get(1, Value("key"));
  if (!by.is_string() || (by.as_string() != "key" && by.as_string() != "value"))
    fail("FilterArgumentError: You can only sort by either \"key\" or \"value\"");
  size_t pos = by.as_string() == "key" ? 0 : 1;
  ValueList items;
  for (const auto& [k, val] : v.as_dict().items()) items.push_back(Value::list({k, val}, true));
  std::stable_sort(items.begin(), items.end(), [&](const Value& a, const Value& b) {
    return compare(sort_key(in, a.as_list()[pos], Value::none(), case_sensitive),
                   sort_key(in, b.as_list()[pos], Value::none(), case_sensitive)) < 0;
  });
  if (p.get(2, Value(false)).truthy()) std::reverse(items.begin(), items.end());
  return Value::list(std::move(items));
}

Value f_escape(Interpreter& in, const Value& v, CallArgs& args) {
  Params("escape", args, {});
  return in.string(escape_html(in.str(v)));
}

Value f_first(Interpreter& in, const Value& v, CallArgs& args) {
  Params("first", args, {});
  if (v.is_list())
    return v.as_list().empty() ? Value::undefined("No first item, sequence was empty.") : v.as_list().front();
  ValueList items = in.iterate(v);
  return items.empty() ? Value::undefined("No first item, sequence was empty.") : items.front();
}

Value f_last(Interpreter& in, const Value& v, CallArgs& args) {
  Params("last", args, {});
  if (v.is_list())
    return v.as_list().empty() ? Value::undefined("No last item, sequence was empty.") : v.as_list().back();
  ValueList items = in.iterate(v);
  return items.empty() ? Value::undefined("No last item, sequence was empty.") : items.back();
}

Value f_float(Interpreter&, const Value& v, CallArgs& args) {
  Params p("float", args, {"default"});
  if (v.is_number()) return Value(v.number());
  if (v.is_string())
    if (std::optional<double> d = parse_float(v.as_string())) return Value(*d);
  return p.get(0, Value(0.0));
}

Value f_int(Interpreter&, const Value& v, CallArgs& args) {
  Params p("int", args, {"default", "base"});
  Value fallback = p.get(0, Value(0));
  if (v.is_int() || v.is_bool()) return Value(v.integer());
  double d;
  if (v.is_float()) {
    d = v.as_float();
  } else if (v.is_string()) {
    if (std::optional<int64_t> i =
            parse_int(v.as_string(), static_cast<int>(int_arg(p.get(1, Value(10)), "base"))))
      return Value(*i);
    std::optional<double> f = parse_float(v.as_string());
    if (!f) return fallback;
    d = *f;
  } else {
    return fallback;
  }
  if (!std::isfinite(d)) return fallback;
  if (std::fabs(d) >= 9.2e18) fail("OverflowError: " + float_repr(d) + " exceeds the 64-bit integer range");
  return Value(static_cast<int64_t>(std::trunc(d)));
}

Value f_indent(Interpreter& in, const Value& v, CallArgs& args) {
  Params p("indent", args, {"width", "first", "blank"});
  Value width = p.get(0, Value(4));
  std::string indention = width.is_string() ? width.as_string() : spaces(in, int_arg(width, "width"));
  std::string subject = in.str(v);
  if (indention.size() > in.limits().max_output_bytes ||
      (static_cast<size_t>(std::count(subject.begin(), subject.end(), '\n')) + 2) * indention.size() >
          in.limits().max_output_bytes)
    fail("indent() result exceeds the limit of " + std::to_string(in.limits().max_output_bytes) + " bytes");
  std::vector<std::string> lines = text::splitlines(subject + "\n");
  std::string out;
  if (p.get(2, Value(false)).truthy()) {
    for (size_t i = 0; i < lines.size(); ++i) out += (i ? "\n" + indention : "") + lines[i];
  } else {
    for (size_t i = 0; i < lines.size(); ++i)
      out += i == 0 ? lines[i] : "\n" + (lines[i].empty() ? "" : indention) + lines[i];
  }
  if (p.get(1, Value(false)).truthy()) out = indention + out;
  return in.string(std::move(out));
}

Value f_items(Interpreter& in, const Value& v, CallArgs& args) {
  Params("items", args, {});
  if (v.is_undefined()) return Value::list({});
  if (!v.is_dict()) fail("TypeError: Can only get item pairs from a mapping.");
  ValueList items;
  for (const auto& [k, val] : v.as_dict().items()) items.push_back(Value::list({k, val}, true));
  in.charge_bytes(items.size() * 3 * sizeof(Value));
  return Value::list(std::move(items));
}

Value f_join(Interpreter& in, const Value& v, CallArgs& args) {
  Params p("join", args, {"d", "attribute"});
  std::string sep = in.str(p.get(0, Value("")));
  Value attribute = p.get(1);
  std::string out;
  bool first = true;
  for (const Value& item : in.iterate(v)) {
    if (!first) out += sep;
    first = false;
    out += in.str(attribute.is_none() ? item : lookup_path(in, item, attribute));
    if (out.size() > in.limits().max_output_bytes) break;  // string() reports it
  }
  return in.string(std::move(out));
}

Value f_length(Interpreter&, const Value& v, CallArgs& args) {
  Params("length", args, {});
  switch (v.kind()) {
    case Value::Kind::Undefined:
      return Value(0);
    case Value::Kind::String:
      return Value(static_cast<int64_t>(text::length(v.as_string())));
    case Value::Kind::List:
      return Value(static_cast<int64_t>(v.as_list().size()));
    case Value::Kind::Dict:
      return Value(static_cast<int64_t>(v.as_dict().size()));
    default:
      fail("TypeError: object of type '" + v.type_name() + "' has no len()");
  }
}

Value f_list(Interpreter& in, const Value& v, CallArgs& args) {
  Params("list", args, {});
  return Value::list(in.iterate(v));
}

Value f_lower(Interpreter& in, const Value& v, CallArgs& args) {
  Params("lower", args, {});
  return in.string(text::lower(in.str(v)));
}

// map, select, reject, selectattr and rejectattr do nothing with a false value (jinja2's `if value:`), and
// look up a filter or test by name only when they apply it to an item: an unknown name is no error then.
Value f_map(Interpreter& in, const Value& v, CallArgs& args) {
  ValueList out;
  if (!v.truthy()) return Value::list(std::move(out));
  if (args.positional.empty()) {
    Params p("map", args, {"attribute", "default"});
    if (!p.has(0)) fail("TypeError: map() needs a filter name or attribute=");
    for (const Value& item : in.iterate(v)) {
      Value x = lookup_path(in, item, p.get(0));
      out.push_back(x.is_undefined() && p.has(1) ? p.get(1) : x);
    }
  } else {
    const std::string& name = str_arg(args.positional[0], "map()'s filter name");
    for (const Value& item : in.iterate(v)) {
      CallArgs rest = rest_args(args, 1);
      out.push_back(in.filter(name, item, rest));
    }
  }
  return Value::list(std::move(out));
}

Value min_max(Interpreter& in, const Value& v, CallArgs& args, const char* fn, bool want_max) {
  Params p(fn, args, {"case_sensitive", "attribute"});
  bool case_sensitive = p.get(0, Value(false)).truthy();
  Value attribute = p.get(1);
  ValueList items = in.iterate(v);
  if (items.empty()) return Value::undefined("No aggregated item, sequence was empty.");
  size_t best = 0;
  Value best_key = sort_key(in, items[0], attribute, case_sensitive);
  for (size_t i = 1; i < items.size(); ++i) {
    Value key = sort_key(in, items[i], attribute, case_sensitive);
    int c = compare(key, best_key);
    if (want_max ? c > 0 : c < 0) {
      best = i;
      best_key = key;
    }
  }
  return items[best];
}
Value f_max(Interpreter& in, const Value& v, CallArgs& args) {
  return min_max(in, v, args, "max", true);
}
Value f_min(Interpreter& in, const Value& v, CallArgs& args) {
  return min_max(in, v, args, "min", false);
}

// select / reject / selectattr / rejectattr: keep the items whose (attribute's) test result is `keep`.
Value select(Interpreter& in, const Value& v, CallArgs& args, bool by_attribute, bool keep) {
  ValueList out;
  if (!v.truthy()) return Value::list(std::move(out));
  size_t first_test_arg = by_attribute ? 1 : 0;
  if (by_attribute && args.positional.empty()) fail("TypeError: selectattr()/rejectattr() need an attribute");
  std::string test;
  if (args.positional.size() > first_test_arg)
    test = str_arg(args.positional[first_test_arg], "the test name");
  for (const Value& item : in.iterate(v)) {
    Value subject = by_attribute ? lookup_path(in, item, args.positional[0]) : item;
    bool result;
    if (test.empty()) {
      result = subject.truthy();
    } else {
      CallArgs rest = rest_args(args, first_test_arg + 1);
      result = in.test(test, subject, rest);
    }
    if (result == keep) out.push_back(item);
  }
  return Value::list(std::move(out));
}
Value f_select(Interpreter& in, const Value& v, CallArgs& a) {
  return select(in, v, a, false, true);
}
Value f_reject(Interpreter& in, const Value& v, CallArgs& a) {
  return select(in, v, a, false, false);
}
Value f_selectattr(Interpreter& in, const Value& v, CallArgs& a) {
  return select(in, v, a, true, true);
}
Value f_rejectattr(Interpreter& in, const Value& v, CallArgs& a) {
  return select(in, v, a, true, false);
}

Value f_replace(Interpreter& in, const Value& v, CallArgs& args) {
  Params p("replace", args, {"old", "new", "count"});
  if (!p.has(0) || !p.has(1)) fail("TypeError: replace() needs old and new");
  Value count = p.get(2);
  int64_t n = count.is_none() ? -1 : int_arg(count, "count");
  std::string s = in.str(v), old = in.str(p.get(0)), with = in.str(p.get(1));
  if (!old.empty() && with.size() > old.size() &&
      s.size() / old.size() * (with.size() - old.size()) > in.limits().max_output_bytes)
    fail("replace() result exceeds the limit of " + std::to_string(in.limits().max_output_bytes) + " bytes");
  if (old.empty() && (text::length(s) + 1) * with.size() > in.limits().max_output_bytes)
    fail("replace() result exceeds the limit of " + std::to_string(in.limits().max_output_bytes) + " bytes");
  return in.string(text::replace(s, old, with, n));
}

Value f_reverse(Interpreter& in, const Value& v, CallArgs& args) {
  Params("reverse", args, {});
  if (v.is_string()) {
    std::vector<std::string_view> cs = text::chars(v.as_string());
    std::string out;
    for (auto it = cs.rbegin(); it != cs.rend(); ++it) out += *it;
    return in.string(std::move(out));
  }
  ValueList items = in.iterate(v);
  std::reverse(items.begin(), items.end());
  return Value::list(std::move(items));
}

Value f_round(Interpreter&, const Value& v, CallArgs& args) {
  Params p("round", args, {"precision", "method"});
  int64_t precision = int_arg(p.get(0, Value(0)), "precision");
  std::string method = p.get(1, Value("common")).str();
  if (method != "common" && method != "ceil" && method != "floor")
    fail("FilterArgumentError: method must be common, ceil or floor");
  if (!v.is_number()) fail("TypeError: type " + v.type_name() + " doesn't define __round__ method");
  if (method == "common" && !v.is_float()) return Value(v.integer());  // round(int, n) stays an int
  double x = v.number();
  if (method != "common") {
    double scale = std::pow(10.0, static_cast<double>(precision));
    return Value((method == "ceil" ? std::ceil(x * scale) : std::floor(x * scale)) / scale);
  }
  if (!std::isfinite(x) || precision > 300) return Value(x);
  if (precision < 0) {
    double scale = std::pow(10.0, static_cast<double>(-precision));
    return Value(std::nearbyint(x / scale) * scale);
  }
  // printf rounds the exact binary value half to even, as Python's round() does.
  char buf[512];
  std::snprintf(buf, sizeof(buf), "%.*f", static_cast<int>(precision), x);
  return Value(std::strtod(buf, nullptr));
}

Value f_safe(Interpreter& in, const Value& v, CallArgs& args) {
  Params("safe", args, {});
  return in.string(in.str(v));
}

Value f_sort(Interpreter& in, const Value& v, CallArgs& args) {
  Params p("sort", args, {"reverse", "case_sensitive", "attribute"});
  bool reverse = p.get(0, Value(false)).truthy(), case_sensitive = p.get(1, Value(false)).truthy();
  Value attribute = p.get(2);
  ValueList items = in.iterate(v);
  std::vector<std::pair<Value, size_t>> keyed;
  for (size_t i = 0; i < items.size(); ++i)
    keyed.emplace_back(sort_key(in, items[i], attribute, case_sensitive), i);
  std::stable_sort(keyed.begin(), keyed.end(), [&](const auto& a, const auto& b) {
    return reverse ? compare(b.first, a.first) < 0 : compare(a.first, b.first) < 0;
  });
  ValueList out;
  for (const auto& [key, i] : keyed) out.push_back(items[i]);
  return Value::list(std::move(out));
}

Value f_string(Interpreter& in, const Value& v, CallArgs& args) {
  Params("string", args, {});
  return in.string(in.str(v));
}

Value f_sum(Interpreter& in, const Value& v, CallArgs& args) {
  Params p("sum", args, {"attribute", "start"});
  Value attribute = p.get(0), total = p.get(1, Value(0));
  for (const Value& item : in.iterate(v))
    total = in.add(total, attribute.is_none() ? item : lookup_path(in, item, attribute));
  return total;
}

Value f_title(Interpreter& in, const Value& v, CallArgs& args) {
  Params("title", args, {});
  return in.string(text::title_words(in.str(v)));
}

// transformers' tojson: json.dumps(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False).
Value f_tojson(Interpreter& in, const Value& v, CallArgs& args) {
  Params p("tojson", args, {"ensure_ascii", "indent", "separators", "sort_keys"});
  JsonOptions o;
  o.ensure_ascii = p.get(0, Value(false)).truthy();
  Value indent = p.get(1);
  if (!indent.is_none()) {
    o.pretty = true;
    o.indent = indent.is_string() ? indent.as_string() : spaces(in, int_arg(indent, "indent"));
    o.item_separator = ",";
  }
  Value separators = p.get(2);
  if (!separators.is_none()) {
    if (!separators.is_list() || separators.as_list().size() != 2)
      fail("ValueError: separators must be an (item_separator, key_separator) pair");
    o.item_separator = str_arg(separators.as_list()[0], "item separator");
    o.key_separator = str_arg(separators.as_list()[1], "key separator");
  }
  o.sort_keys = p.get(3, Value(false)).truthy();
  o.max_bytes = in.limits().max_output_bytes;
  return in.string(to_json(v, o));
}

Value f_trim(Interpreter& in, const Value& v, CallArgs& args) {
  Params p("trim", args, {"chars"});
  Value chars = p.get(0);
  std::string c = chars.is_none() ? std::string() : in.str(chars);
  return in.string(text::strip(in.str(v), true, true, chars.is_none() ? nullptr : &c));
}

Value f_unique(Interpreter& in, const Value& v, CallArgs& args) {
  Params p("unique", args, {"case_sensitive", "attribute"});
  bool case_sensitive = p.get(0, Value(false)).truthy();
  Value attribute = p.get(1);
  Dict seen;
  ValueList out;
  for (const Value& item : in.iterate(v)) {
    Value key = sort_key(in, item, attribute, case_sensitive);
    if (seen.find(key)) continue;
    seen.set(key, Value::none());
    out.push_back(item);
  }
  return Value::list(std::move(out));
}

Value f_upper(Interpreter& in, const Value& v, CallArgs& args) {
  Params("upper", args, {});
  return in.string(text::upper(in.str(v)));
}

// --- tests --------------------------------------------------------------------------------------------

const Value& one_arg(const CallArgs& args, const char* test) {
  if (args.positional.size() != 1 || !args.keyword.empty())
    fail(std::string("TypeError: test '") + test + "' takes one argument");
  return args.positional[0];
}

void no_args(const CallArgs& args, const char* test) {
  if (!args.positional.empty() || !args.keyword.empty())
    fail(std::string("TypeError: test '") + test + "' takes no arguments");
}

bool has_case(const std::string& s, bool want_lower) {
  charge_text(s.size());
  bool cased = false;
  for (char c : s) {
    if (c >= 'a' && c <= 'z') {
      if (!want_lower) return false;
      cased = true;
    } else if (c >= 'A' && c <= 'Z') {
      if (want_lower) return false;
      cased = true;
    }
  }
  return cased;
}

#define SIMPLE_TEST(fn, name, expr)                       \
  bool fn(Interpreter&, const Value& v, CallArgs& args) { \
    no_args(args, name);                                  \
    return expr;                                          \
  }
SIMPLE_TEST(t_defined, "defined", !v.is_undefined())
SIMPLE_TEST(t_undefined, "undefined", v.is_undefined())
SIMPLE_TEST(t_none, "none", v.is_none())
SIMPLE_TEST(t_boolean, "boolean", v.is_bool())
SIMPLE_TEST(t_true, "true", v.is_bool() && v.as_bool())
SIMPLE_TEST(t_false, "false", v.is_bool() && !v.as_bool())
SIMPLE_TEST(t_integer, "integer", v.is_int())
SIMPLE_TEST(t_float, "float", v.is_float())
SIMPLE_TEST(t_number, "number", v.is_number())
SIMPLE_TEST(t_string, "string", v.is_string())
SIMPLE_TEST(t_mapping, "mapping", v.is_dict())
SIMPLE_TEST(t_iterable, "iterable", v.is_list() || v.is_string() || v.is_dict() || v.is_undefined())
SIMPLE_TEST(t_sequence, "sequence", v.is_list() || v.is_string() || v.is_dict() || v.is_undefined())
SIMPLE_TEST(t_callable, "callable", v.is_callable())
SIMPLE_TEST(t_lower, "lower", v.is_string() && has_case(v.as_string(), true))
SIMPLE_TEST(t_upper, "upper", v.is_string() && has_case(v.as_string(), false))
#undef SIMPLE_TEST

bool t_odd(Interpreter&, const Value& v, CallArgs& args) {
  no_args(args, "odd");
  return ((int_arg(v, "odd's value") % 2) + 2) % 2 == 1;
}
bool t_even(Interpreter&, const Value& v, CallArgs& args) {
  no_args(args, "even");
  return int_arg(v, "even's value") % 2 == 0;
}
bool t_divisibleby(Interpreter&, const Value& v, CallArgs& args) {
  int64_t n = int_arg(one_arg(args, "divisibleby"), "divisibleby's argument");
  if (n == 0) fail("ZeroDivisionError: integer modulo by zero");
  return int_arg(v, "divisibleby's value") % n == 0;
}
bool t_sameas(Interpreter&, const Value& v, CallArgs& args) {
  const Value& o = one_arg(args, "sameas");
  if (v.kind() != o.kind()) return false;
  if (v.is_none() || v.is_undefined()) return true;
  if (v.is_bool() || v.is_int() || v.is_float() || v.is_string() || v.is_namespace() || v.is_callable())
    return equal(v, o);
  return false;
}
bool t_in(Interpreter& in, const Value& v, CallArgs& args) {
  return in.contains(one_arg(args, "in"), v);
}
bool t_eq(Interpreter&, const Value& v, CallArgs& args) {
  return equal(v, one_arg(args, "=="));
}
bool t_ne(Interpreter&, const Value& v, CallArgs& args) {
  return !equal(v, one_arg(args, "!="));
}
bool t_lt(Interpreter&, const Value& v, CallArgs& args) {
  return compare(v, one_arg(args, "<")) < 0;
}
bool t_le(Interpreter&, const Value& v, CallArgs& args) {
  return compare(v, one_arg(args, "<=")) <= 0;
}
bool t_gt(Interpreter&, const Value& v, CallArgs& args) {
  return compare(v, one_arg(args, ">")) > 0;
}
bool t_ge(Interpreter&, const Value& v, CallArgs& args) {
  return compare(v, one_arg(args, ">=")) >= 0;
}
bool t_filter(Interpreter&, const Value& v, CallArgs& args) {
  no_args(args, "filter");
  return v.is_string() && find_filter(v.as_string());
}
bool t_test(Interpreter&, const Value& v, CallArgs& args) {
  no_args(args, "test");
  return v.is_string() && find_test(v.as_string());
}

// --- methods of str and dict --------------------------------------------------------------------------

// The code point range [start, end) of str.startswith/endswith/find's optional arguments.
std::string substring(const std::string& s, const Value& start, const Value& end) {
  if (start.is_none() && end.is_none()) return s;
  std::vector<std::string_view> cs = text::chars(s);
  int64_t n = static_cast<int64_t>(cs.size());
  auto norm = [&](const Value& v, int64_t def) {
    if (v.is_none()) return def;
    int64_t i = int_arg(v, "slice index");
    if (i < 0) i = std::max<int64_t>(i + n, 0);
    return std::min(i, n);
  };
  int64_t b = norm(start, 0), e = norm(end, n);
  std::string out;
  for (int64_t i = b; i < e; ++i) out += cs[static_cast<size_t>(i)];
  return out;
}

bool affix(const std::string& s, const Value& what, bool prefix) {
  auto one = [&](const Value& a) {
    const std::string& x = str_arg(a, prefix ? "startswith's argument" : "endswith's argument");
    return x.size() <= s.size() &&
           (prefix ? s.compare(0, x.size(), x) == 0 : s.compare(s.size() - x.size(), x.size(), x) == 0);
  };
  if (what.is_list()) return std::any_of(what.as_list().begin(), what.as_list().end(), one);
  return one(what);
}

int64_t code_point_index(const std::string& s, size_t byte_offset) {
  return static_cast<int64_t>(text::length(std::string_view(s).substr(0, byte_offset)));
}

bool all_chars(const std::string& s, bool (*pred)(unsigned char)) {
  return !s.empty() &&
         std::all_of(s.begin(), s.end(), [&](char c) { return pred(static_cast<unsigned char>(c)); });
}

Value str_method(Interpreter& in, const std::string& s, const std::string& name, CallArgs& args) {
  charge_text(s.size());
  for (const Value& v : args.positional)
    if (v.is_string()) charge_text(v.as_string().size());
  if (name == "strip" || name == "lstrip" || name == "rstrip") {
    Params p(name, args, {"chars"});
    Value chars = p.get(0);
    if (!chars.is_none()) str_arg(chars, "strip's chars");
    return Value(
        text::strip(s, name != "rstrip", name != "lstrip", chars.is_none() ? nullptr : &chars.as_string()));
  }
  if (name == "split" || name == "rsplit") {
    Params p(name, args, {"sep", "maxsplit"});
    Value sep = p.get(0);
    if (!sep.is_none()) str_arg(sep, "split's separator");
    ValueList parts;
    for (std::string& part : text::split(s, sep.is_none() ? nullptr : &sep.as_string(),
                                         int_arg(p.get(1, Value(-1)), "maxsplit"), name == "rsplit"))
      parts.emplace_back(std::move(part));
    in.charge_bytes(parts.size() * sizeof(Value));
    return Value::list(std::move(parts));
  }
  if (name == "splitlines") {
    Params no_args("splitlines", args, {});
    ValueList lines;
    for (std::string& line : text::splitlines(s)) lines.emplace_back(std::move(line));
    return Value::list(std::move(lines));
  }
  if (name == "startswith" || name == "endswith") {
    Params p(name, args, {"prefix", "start", "end"});
    if (!p.has(0)) fail("TypeError: " + name + "() takes at least 1 argument");
    return Value(affix(substring(s, p.get(1), p.get(2)), p.get(0), name == "startswith"));
  }
  if (name == "upper" || name == "lower" || name == "title" || name == "capitalize") {
    Params no_args(name, args, {});
    return in.string(name == "upper"   ? text::upper(s)
                     : name == "lower" ? text::lower(s)
                     : name == "title" ? text::title(s)
                                       : text::capitalize(s));
  }
  if (name == "replace") {
    Params p(name, args, {"old", "new", "count"});
    if (!p.has(0) || !p.has(1)) fail("TypeError: replace() takes at least 2 arguments");
    CallArgs forwarded{{Value(str_arg(p.get(0), "replace's old")), Value(str_arg(p.get(1), "replace's new"))},
                       {}};
    if (p.has(2)) forwarded.positional.push_back(p.get(2));
    return f_replace(in, Value(s), forwarded);
  }
  if (name == "find" || name == "rfind" || name == "count") {
    Params p(name, args, {"sub", "start", "end"});
    if (!p.has(0)) fail("TypeError: " + name + "() takes at least 1 argument");
    const std::string& sub = str_arg(p.get(0), "the substring");
    std::string hay = substring(s, p.get(1), p.get(2));
    if (name == "count") {
      if (sub.empty()) return Value(static_cast<int64_t>(text::length(hay)) + 1);
      int64_t n = 0;
      for (size_t at = hay.find(sub); at != std::string::npos; at = hay.find(sub, at + sub.size())) ++n;
      return Value(n);
    }
    size_t at = name == "find" ? hay.find(sub) : hay.rfind(sub);
    if (at == std::string::npos) return Value(-1);
    int64_t start = 0;
    if (!p.get(1).is_none()) {
      int64_t n = static_cast<int64_t>(text::length(s)), b = int_arg(p.get(1), "start");
      start = b < 0 ? std::max<int64_t>(b + n, 0) : std::min(b, n);
    }
    return Value(start + code_point_index(hay, at));
  }
  if (name == "join") {
    Params p(name, args, {"iterable"});
    std::string out;
    bool first = true;
    for (const Value& item : in.iterate(p.get(0))) {
      if (!first) out += s;
      first = false;
      out += str_arg(item, "each joined item");
      if (out.size() > in.limits().max_output_bytes) break;
    }
    return in.string(std::move(out));
  }
  Params no_args(name, args, {});
  if (name == "isdigit") return Value(all_chars(s, [](unsigned char c) { return c >= '0' && c <= '9'; }));
  if (name == "isalpha")
    return Value(all_chars(s, [](unsigned char c) { return c >= 0x80 || std::isalpha(c) != 0; }));
  if (name == "isalnum")
    return Value(all_chars(s, [](unsigned char c) { return c >= 0x80 || std::isalnum(c) != 0; }));
  if (name == "isspace") return Value(!s.empty() && text::strip(s, true, true).empty());
  if (name == "islower") return Value(has_case(s, true));
  if (name == "isupper") return Value(has_case(s, false));
  fail("str has no method '" + name + "'");
}

Value dict_method(Interpreter& in, const Dict& d, const std::string& name, CallArgs& args) {
  if (name == "get") {
    Params p(name, args, {"key", "default"});
    if (!p.has(0)) fail("TypeError: get() takes at least 1 argument");
    const Value* v = d.find(p.get(0));
    return v ? *v : p.get(1);
  }
  Params no_args(name, args, {});
  ValueList out;
  for (const auto& [k, v] : d.items()) {
    if (name == "items")
      out.push_back(Value::list({k, v}, true));
    else
      out.push_back(name == "keys" ? k : v);
  }
  in.charge_bytes(out.size() * sizeof(Value));
  return Value::list(std::move(out));
}

bool is_str_method(const std::string& n) {
  static const char* names[] = {"strip",      "lstrip",   "rstrip",  "split",   "rsplit", "splitlines",
                                "startswith", "endswith", "upper",   "lower",   "title",  "capitalize",
                                "replace",    "find",     "rfind",   "count",   "join",   "isdigit",
                                "isalpha",    "isalnum",  "isspace", "islower", "isupper"};
  return std::any_of(std::begin(names), std::end(names), [&](const char* m) { return n == m; });
}

bool is_dict_method(const std::string& n) {
  return n == "items" || n == "keys" || n == "values" || n == "get";
}

// --- globals ------------------------------------------------------------------------------------------

Value g_range(Interpreter& in, CallArgs& args) {
  if (!args.keyword.empty() || args.positional.empty() || args.positional.size() > 3)
    fail("TypeError: range() takes 1 to 3 integer arguments");
  int64_t start = 0, stop, step = 1;
  if (args.positional.size() == 1) {
    stop = int_arg(args.positional[0], "range()'s argument");
  } else {
    start = int_arg(args.positional[0], "range()'s argument");
    stop = int_arg(args.positional[1], "range()'s argument");
    if (args.positional.size() == 3) step = int_arg(args.positional[2], "range()'s argument");
  }
  if (step == 0) fail("ValueError: range() arg 3 must not be zero");
  // Counted in long double: stop - start may overflow int64.
  long double span = static_cast<long double>(stop) - static_cast<long double>(start);
  long double count = step > 0 ? std::ceil(span / step) : std::ceil(span / step);
  if (count > kMaxRange)
    fail("OverflowError: range too big: the sandbox allows at most " + std::to_string(kMaxRange) + " items");
  ValueList out;
  for (int64_t i = 0; i < static_cast<int64_t>(count); ++i) out.emplace_back(start + i * step);
  in.charge_steps(out.size());
  in.charge_bytes(out.size() * sizeof(Value));
  return Value::list(std::move(out));
}

void update_from(Dict& d, const CallArgs& args, const char* fn) {
  if (args.positional.size() > 1)
    fail(std::string("TypeError: ") + fn + "() takes at most 1 positional argument");
  if (!args.positional.empty()) {
    const Value& src = args.positional[0];
    if (!src.is_dict()) fail(std::string("TypeError: ") + fn + "() expects a mapping");
    for (const auto& [k, v] : src.as_dict().items()) d.set(k, v);
  }
  for (const auto& [k, v] : args.keyword) d.set(Value(k), v);
}

Value g_namespace(Interpreter& in, CallArgs& args) {
  std::shared_ptr<Namespace> ns = in.make_namespace();
  update_from(ns->attrs, args, "namespace");
  return Value::ns(std::move(ns));
}

Value g_dict(Interpreter&, CallArgs& args) {
  Dict d;
  update_from(d, args, "dict");
  return Value::dict(std::move(d));
}

Value g_raise_exception(Interpreter&, CallArgs& args) {
  if (args.positional.size() != 1 || !args.keyword.empty())
    fail("TypeError: raise_exception() takes one argument");
  fail("raise_exception: " + args.positional[0].str(4096));
}

// transformers' strftime_now: datetime.now().strftime(format), in local time.
Value g_strftime_now(Interpreter& in, CallArgs& args) {
  if (args.positional.size() != 1 || !args.keyword.empty())
    fail("TypeError: strftime_now() takes one argument");
  const std::string& format = str_arg(args.positional[0], "strftime_now's format");
  if (format.size() > 1024) fail("strftime_now: format longer than 1024 bytes");
  std::time_t now = std::time(nullptr);
  std::tm local{};
  localtime_r(&now, &local);
  std::string buf(format.size() * 64 + 64, '\0');
  size_t n = std::strftime(buf.data(), buf.size(), format.c_str(), &local);
  if (n == 0 && !format.empty()) fail("strftime_now: cannot format '" + format + "'");
  buf.resize(n);
  return in.string(std::move(buf));
}

void add_global(Scope& scope, const std::string& name, Value (*fn)(Interpreter&, CallArgs&)) {
  auto c = std::make_shared<Callable>();
  c->name = name;
  c->repr = "<function " + name + ">";
  c->call = fn;
  scope.set(name, Value::callable(std::move(c)));
}

}  // namespace

FilterFn find_filter(std::string_view name) {
  static const std::unordered_map<std::string_view, FilterFn> filters = {
      {"abs", f_abs},
      {"capitalize", f_capitalize},
      {"count", f_length},
      {"d", f_default},
      {"default", f_default},
      {"dictsort", f_dictsort},
      {"e", f_escape},
      {"escape", f_escape},
      {"first", f_first},
      {"float", f_float},
      {"indent", f_indent},
      {"int", f_int},
      {"items", f_items},
      {"join", f_join},
      {"last", f_last},
      {"length", f_length},
      {"list", f_list},
      {"lower", f_lower},
      {"map", f_map},
      {"max", f_max},
      {"min", f_min},
      {"reject", f_reject},
      {"rejectattr", f_rejectattr},
      {"replace", f_replace},
      {"reverse", f_reverse},
      {"round", f_round},
      {"safe", f_safe},
      {"select", f_select},
      {"selectattr", f_selectattr},
      {"sort", f_sort},
      {"string", f_string},
      {"sum", f_sum},
      {"title", f_title},
      {"tojson", f_tojson},
      {"trim", f_trim},
      {"unique", f_unique},
      {"upper", f_upper},
  };
  auto it = filters.find(name);
  return it == filters.end() ? nullptr : it->second;
}

TestFn find_test(std::string_view name) {
  static const std::unordered_map<std::string_view, TestFn> tests = {
      {"defined", t_defined},
      {"undefined", t_undefined},
      {"none", t_none},
      {"boolean", t_boolean},
      {"true", t_true},
      {"false", t_false},
      {"integer", t_integer},
      {"float", t_float},
      {"number", t_number},
      {"string", t_string},
      {"mapping", t_mapping},
      {"iterable", t_iterable},
      {"sequence", t_sequence},
      {"callable", t_callable},
      {"sameas", t_sameas},
      {"in", t_in},
      {"eq", t_eq},
      {"equalto", t_eq},
      {"==", t_eq},
      {"ne", t_ne},
      {"!=", t_ne},
      {"lt", t_lt},
      {"lessthan", t_lt},
      {"<", t_lt},
      {"le", t_le},
      {"<=", t_le},
      {"gt", t_gt},
      {"greaterthan", t_gt},
      {">", t_gt},
      {"ge", t_ge},
      {">=", t_ge},
      {"odd", t_odd},
      {"even", t_even},
      {"divisibleby", t_divisibleby},
      {"lower", t_lower},
      {"upper", t_upper},
      {"filter", t_filter},
      {"test", t_test},
  };
  auto it = tests.find(name);
  return it == tests.end() ? nullptr : it->second;
}

Value method(const Value& object, const std::string& name) {
  bool str = object.is_string() && is_str_method(name);
  bool dict = object.is_dict() && is_dict_method(name);
  if (!str && !dict) return Value::undefined("");
  auto c = std::make_shared<Callable>();
  c->name = name;
  c->repr = "<built-in method " + name + " of " + object.type_name() + " object>";
  c->call = [object, name, str](Interpreter& in, CallArgs& args) {
    return str ? str_method(in, object.as_string(), name, args)
               : dict_method(in, object.as_dict(), name, args);
  };
  return Value::callable(std::move(c));
}

void add_globals(Scope& scope) {
  add_global(scope, "range", g_range);
  add_global(scope, "namespace", g_namespace);
  add_global(scope, "dict", g_dict);
  add_global(scope, "raise_exception", g_raise_exception);
  add_global(scope, "strftime_now", g_strftime_now);
}

}  // namespace wgllm::tokenizer::jinja
