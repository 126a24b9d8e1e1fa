#include "tokenizer/jinja/interpreter.hpp"

#include <cmath>
#include <limits>
#include <utility>

#include "tokenizer/jinja/builtins.hpp"
#include "tokenizer/jinja/template_error.hpp"
#include "tokenizer/jinja/text.hpp"

namespace wgllm::tokenizer::jinja {

namespace {

// jinja2's object_type_repr, for "'dict object' has no attribute 'x'".
std::string object_name(const Value& v) {
  if (v.is_none()) return "None";
  return v.type_name() + " object";
}

// Python's slice.indices(): the positions a[start:stop:step] visits.
std::vector<size_t> slice_positions(int64_t n, const Value& start_v, const Value& stop_v,
                                    const Value& step_v) {
  auto as_index = [](const Value& v) -> int64_t {
    if (!v.is_int() && !v.is_bool()) fail("TypeError: slice indices must be integers or None");
    return v.integer();
  };
  int64_t step = step_v.is_none() ? 1 : as_index(step_v);
  if (step == 0) fail("ValueError: slice step cannot be zero");
  int64_t lower = step > 0 ? 0 : -1, upper = step > 0 ? n : n - 1;
  auto clamp = [&](const Value& v, int64_t def) {
    if (v.is_none()) return def;
    int64_t i = as_index(v);
    if (i < 0) i = std::max(i + n, lower);
    return std::min(i, upper);
  };
  int64_t start = clamp(start_v, step > 0 ? lower : upper);
  int64_t stop = clamp(stop_v, step > 0 ? upper : lower);
  std::vector<size_t> out;
  for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) out.push_back(static_cast<size_t>(i));
  return out;
}

[[noreturn]] void overflow() {
  fail("OverflowError: integer result exceeds the 64-bit range");
}

int64_t add_checked(int64_t a, int64_t b) {
  int64_t r;
  if (__builtin_add_overflow(a, b, &r)) overflow();
  return r;
}

int64_t sub_checked(int64_t a, int64_t b) {
  int64_t r;
  if (__builtin_sub_overflow(a, b, &r)) overflow();
  return r;
}

int64_t mul_checked(int64_t a, int64_t b) {
  int64_t r;
  if (__builtin_mul_overflow(a, b, &r)) overflow();
  return r;
}

}  // namespace

Value* Scope::find_here(const std::string& name) {
  if (index_.empty()) {
    for (auto& [n, v] : vars_)
      if (n == name) return &v;
    return nullptr;
  }
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &vars_[it->second].second;
}

const Value* Scope::find(const std::string& name) const {
  for (const Scope* s = this; s; s = s->parent_.get())
    if (const Value* v = const_cast<Scope*>(s)->find_here(name)) return v;
  return nullptr;
}

void Scope::set(const std::string& name, Value value) {
  if (Value* v = find_here(name)) {
    *v = std::move(value);
    return;
  }
  vars_.emplace_back(name, std::move(value));
  if (index_.empty() && vars_.size() >= kIndexFrom) {
    for (size_t i = 0; i < vars_.size(); ++i) index_.emplace(vars_[i].first, i);
  } else if (!index_.empty()) {
    index_.emplace(name, vars_.size() - 1);
  }
}

struct Interpreter::Depth {
  explicit Depth(Interpreter& in) : in(in) {
    if (++in.depth_ > in.limits_.max_depth)
      fail("evaluation nested deeper than " + std::to_string(in.limits_.max_depth) +
           " levels (recursive macro?)");
  }
  ~Depth() { --in.depth_; }
  Interpreter& in;
};

namespace {
// Runs a body in another scope and puts the previous one back, also when an error unwinds.
struct ScopeSwap {
  ScopeSwap(std::shared_ptr<Scope>& slot, std::shared_ptr<Scope> next) : slot(slot), saved(std::move(slot)) {
    slot = std::move(next);
  }
  ~ScopeSwap() { slot = std::move(saved); }
  std::shared_ptr<Scope>& slot;
  std::shared_ptr<Scope> saved;
};
}  // namespace

namespace {
thread_local Interpreter* t_rendering = nullptr;  // the render charge_text() charges
}  // namespace

void charge_text(size_t bytes) {
  if (t_rendering) t_rendering->charge_text_bytes(bytes);
}

std::string Interpreter::render(const Body& body, const Value& context) {
  if (!context.is_dict()) fail("the template context must be a dict, not " + context.type_name());
  struct Rendering {
    explicit Rendering(Interpreter* in) : previous(std::exchange(t_rendering, in)) {}
    ~Rendering() { t_rendering = previous; }
    Interpreter* previous;
  } rendering(this);
  auto globals = std::make_shared<Scope>(nullptr);
  add_globals(*globals);
  auto ctx = std::make_shared<Scope>(globals);
  for (const auto& [k, v] : context.as_dict().items()) {
    if (!k.is_string()) fail("the template context's keys must be strings");
    ctx->set(k.as_string(), v);
  }
  struct Cleanup {  // namespaces may refer to themselves; Python's GC collects those, we clear them
    ~Cleanup() {
      // All are held while their members go, so that a long chain of namespaces is not freed recursively.
      std::vector<std::shared_ptr<Namespace>> alive;
      for (auto& w : in.namespaces_)
        if (auto n = w.lock()) alive.push_back(std::move(n));
      for (auto& n : alive) n->attrs = Dict();
      in.namespaces_.clear();
      in.root_.reset();
      in.scope_.reset();
      in.out_ = nullptr;
    }
    Interpreter& in;
  } cleanup{*this};
  root_ = std::make_shared<Scope>(ctx);
  scope_ = root_;
  std::string out;
  out_ = &out;
  exec(body);
  return out;
}

std::shared_ptr<Namespace> Interpreter::make_namespace() {
  auto n = std::make_shared<Namespace>();
  namespaces_.push_back(n);
  return n;
}

void Interpreter::charge_bytes(size_t bytes) {
  work_bytes_ += bytes;
  if (work_bytes_ > limits_.max_work_bytes)
    fail("the template built more than " + std::to_string(limits_.max_work_bytes) +
         " bytes of strings and lists");
}

void Interpreter::charge_steps(uint64_t steps) {
  steps_ += steps;
  if (steps_ > limits_.max_steps)
    fail("the template ran for more than " + std::to_string(limits_.max_steps) + " steps");
}

void Interpreter::charge_text_bytes(size_t bytes) {
  text_bytes_ += bytes;
  if (text_bytes_ >= kTextBytesPerStep) {
    charge_steps(text_bytes_ / kTextBytesPerStep);
    text_bytes_ %= kTextBytesPerStep;
  }
}

Value Interpreter::string(std::string s) {
  if (s.size() > limits_.max_output_bytes)
    fail("a string of " + std::to_string(s.size()) + " bytes exceeds the limit of " +
         std::to_string(limits_.max_output_bytes));
  charge_bytes(s.size());
  return Value(std::move(s));
}

void Interpreter::write(const std::string& s) {
  if (out_->size() + s.size() > limits_.max_output_bytes)
    fail("the output exceeds " + std::to_string(limits_.max_output_bytes) + " bytes");
  charge_bytes(s.size());
  out_->append(s);
}

void Interpreter::undefined_error(const Value& v) {
  const std::string& hint = v.undefined_hint();
  fail(hint.empty() ? "use of an undefined value" : hint);
}

// --- attribute and item access -------------------------------------------------------------------------

namespace {
// Attributes that would change a list or dict: the immutable sandbox refuses them.
bool mutates(const Value& object, const std::string& name) {
  static const char* list_ops[] = {"append", "extend", "insert", "pop", "remove", "clear", "sort", "reverse"};
  static const char* dict_ops[] = {"update", "pop", "popitem", "setdefault", "clear"};
  if (object.is_list() && !object.is_tuple())
    for (const char* op : list_ops)
      if (name == op) return true;
  if (object.is_dict())
    for (const char* op : dict_ops)
      if (name == op) return true;
  return false;
}

// The attribute alone (no item lookup): a method, a namespace member, or undefined.
Value attribute(const Value& object, const std::string& name) {
  if (mutates(object, name))
    return Value::undefined("access to attribute '" + name + "' of '" + object.type_name() +
                            "' object is unsafe");
  if (object.is_namespace()) {
    if (const Value* v = object.as_namespace().attrs.find(Value(name))) return *v;
  } else {
    Value m = method(object, name);
    if (!m.is_undefined()) return m;
  }
  return Value::undefined("'" + object_name(object) + "' has no attribute '" + name + "'");
}

// The item alone, or nullopt-like undefined without hint when there is none.
bool item(const Value& object, const Value& key, Value& out) {
  if (object.is_list() && (key.is_int() || key.is_bool())) {
    const ValueList& items = object.as_list();
    int64_t n = static_cast<int64_t>(items.size()), i = key.integer();
    if (i < 0) i += n;
    if (i < 0 || i >= n) return false;
    out = items[static_cast<size_t>(i)];
    return true;
  }
  if (object.is_string() && (key.is_int() || key.is_bool())) {
    charge_text(object.as_string().size());
    std::vector<std::string_view> cs = text::chars(object.as_string());
    int64_t n = static_cast<int64_t>(cs.size()), i = key.integer();
    if (i < 0) i += n;
    if (i < 0 || i >= n) return false;
    out = Value(cs[static_cast<size_t>(i)]);
    return true;
  }
  if (object.is_dict()) {
    if (const Value* v = object.as_dict().find(key)) {
      out = *v;
      return true;
    }
  }
  return false;
}
}  // namespace

Value Interpreter::get_attr(const Value& object, const std::string& name) {
  if (object.is_undefined()) undefined_error(object);
  Value a = attribute(object, name);
  if (!a.is_undefined() || mutates(object, name)) return a;
  Value v;
  if (item(object, Value(name), v)) return v;
  return a;
}

Value Interpreter::get_item(const Value& object, const Value& key) {
  if (object.is_undefined()) undefined_error(object);
  Value v;
  if (item(object, key, v)) return v;
  if (key.is_string()) return attribute(object, key.as_string());
  return Value::undefined("'" + object_name(object) + "' has no element " + key.repr());
}

ValueList Interpreter::iterate(const Value& v) {
  ValueList out;
  switch (v.kind()) {
    case Value::Kind::Undefined:
      return out;
    case Value::Kind::List:
      out = v.as_list();
      break;
    case Value::Kind::String: {
      // Charged before the list is built: a 16 MB string would otherwise become 16M values first.
      const size_t n = text::length(v.as_string());
      charge_steps(n);
      charge_bytes(n * sizeof(Value));
      for (std::string_view c : text::chars(v.as_string())) out.emplace_back(c);
      return out;
    }
    case Value::Kind::Dict:
      for (const auto& kv : v.as_dict().items()) out.push_back(kv.first);
      break;
    default:
      fail("TypeError: '" + v.type_name() + "' object is not iterable");
  }
  charge_steps(out.size());
  charge_bytes(out.size() * sizeof(Value));
  return out;
}

bool Interpreter::contains(const Value& container, const Value& needle) {
  switch (container.kind()) {
    case Value::Kind::Undefined:
      return false;
    case Value::Kind::String:
      if (!needle.is_string())
        fail("TypeError: 'in <string>' requires string as left operand, not " + needle.type_name());
      charge_text(container.as_string().size());
      return container.as_string().find(needle.as_string()) != std::string::npos;
    case Value::Kind::List:
      charge_steps(container.as_list().size());
      for (const Value& v : container.as_list())
        if (equal(v, needle)) return true;
      return false;
    case Value::Kind::Dict:
      return container.as_dict().find(needle) != nullptr;
    default:
      fail("TypeError: argument of type '" + container.type_name() + "' is not iterable");
  }
}

Value Interpreter::add(const Value& a, const Value& b) {
  if (a.is_undefined()) undefined_error(a);
  if (b.is_undefined()) undefined_error(b);
  if (a.is_number() && b.is_number()) {
    if (a.is_float() || b.is_float()) return Value(a.number() + b.number());
    return Value(add_checked(a.integer(), b.integer()));
  }
  if (a.is_string() && b.is_string()) return string(a.as_string() + b.as_string());
  if (a.is_list() && b.is_list() && a.is_tuple() == b.is_tuple()) {
    ValueList items = a.as_list();
    items.insert(items.end(), b.as_list().begin(), b.as_list().end());
    charge_bytes(items.size() * sizeof(Value));
    return Value::list(std::move(items), a.is_tuple());
  }
  if (a.is_string()) fail("TypeError: can only concatenate str (not \"" + b.type_name() + "\") to str");
  fail("TypeError: unsupported operand type(s) for +: '" + a.type_name() + "' and '" + b.type_name() + "'");
}

Value Interpreter::call(const Value& callee, CallArgs& args) {
  if (callee.is_undefined()) undefined_error(callee);
  if (!callee.is_callable()) fail("TypeError: '" + callee.type_name() + "' object is not callable");
  Depth depth(*this);
  return callee.as_callable().call(*this, args);
}

Value Interpreter::filter(const std::string& name, const Value& subject, CallArgs& args) {
  FilterFn fn = find_filter(name);
  if (!fn) fail("no filter named '" + name + "'");
  // Filters read their string subject and arguments.
  if (subject.is_string()) charge_text(subject.as_string().size());
  for (const Value& v : args.positional)
    if (v.is_string()) charge_text(v.as_string().size());
  return fn(*this, subject, args);
}

bool Interpreter::test(const std::string& name, const Value& subject, CallArgs& args) {
  TestFn fn = find_test(name);
  if (!fn) fail("no test named '" + name + "'");
  return fn(*this, subject, args);
}

// --- expressions ---------------------------------------------------------------------------------------

void Interpreter::eval_args(const Arguments& a, CallArgs& out) {
  for (const ExprPtr& e : a.positional) out.positional.push_back(eval(*e));
  for (const auto& [k, e] : a.keyword) out.keyword.emplace_back(k, eval(*e));
}

Value Interpreter::eval(const Expr& e) {
  Depth depth(*this);
  line_ = e.line;
  charge_steps(1);
  switch (e.kind) {
    case Expr::Kind::Literal:
      return static_cast<const LiteralExpr&>(e).value;
    case Expr::Kind::Name: {
      const std::string& name = static_cast<const NameExpr&>(e).name;
      if (const Value* v = scope_->find(name)) return *v;
      return Value::undefined("'" + name + "' is undefined");
    }
    case Expr::Kind::List: {
      const auto& l = static_cast<const ListExpr&>(e);
      ValueList items;
      for (const ExprPtr& x : l.items) items.push_back(eval(*x));
      charge_bytes(items.size() * sizeof(Value));
      return Value::list(std::move(items), l.tuple);
    }
    case Expr::Kind::Dict: {
      Dict d;
      for (const auto& [k, v] : static_cast<const DictExpr&>(e).items) {
        Value key = eval(*k);
        d.set(key, eval(*v));
      }
      charge_bytes(d.size() * 2 * sizeof(Value));
      return Value::dict(std::move(d));
    }
    case Expr::Kind::GetAttr: {
      const auto& g = static_cast<const GetAttrExpr&>(e);
      Value object = eval(*g.object);
      line_ = e.line;
      return get_attr(object, g.attr);
    }
    case Expr::Kind::GetItem: {
      const auto& g = static_cast<const GetItemExpr&>(e);
      Value object = eval(*g.object);
      Value key = eval(*g.index);
      line_ = e.line;
      return get_item(object, key);
    }
    case Expr::Kind::Slice:
      return eval_slice(static_cast<const SliceExpr&>(e));
    case Expr::Kind::Call:
      return eval_call(static_cast<const CallExpr&>(e), nullptr);
    case Expr::Kind::Filter: {
      const auto& f = static_cast<const FilterExpr&>(e);
      return eval_filter(f, eval(*f.subject));
    }
    case Expr::Kind::Test: {
      const auto& t = static_cast<const TestExpr&>(e);
      Value subject = eval(*t.subject);
      CallArgs args;
      eval_args(t.args, args);
      line_ = e.line;
      return Value(test(t.name, subject, args) != t.negated);
    }
    case Expr::Kind::Unary: {
      const auto& u = static_cast<const UnaryExpr&>(e);
      Value v = eval(*u.operand);
      line_ = e.line;
      if (u.op == "not") return Value(!v.truthy());
      if (v.is_undefined()) undefined_error(v);
      if (!v.is_number()) fail("TypeError: bad operand type for unary " + u.op + ": '" + v.type_name() + "'");
      if (u.op == "+") return v.is_bool() ? Value(v.integer()) : v;
      if (v.is_float()) return Value(-v.as_float());
      return Value(sub_checked(0, v.integer()));
    }
    case Expr::Kind::Binary:
      return eval_binary(static_cast<const BinaryExpr&>(e));
    case Expr::Kind::Compare:
      return Value(eval_compare(static_cast<const CompareExpr&>(e)));
    case Expr::Kind::Cond: {
      const auto& c = static_cast<const CondExpr&>(e);
      if (eval(*c.test).truthy()) return eval(*c.then);
      if (c.otherwise) return eval(*c.otherwise);
      return Value::undefined("the inline if-expression on line " + std::to_string(e.line) +
                              " evaluated to false and has no else");
    }
  }
  return Value();
}

Value Interpreter::eval_slice(const SliceExpr& e) {
  Value object = eval(*e.object);
  Value start = e.start ? eval(*e.start) : Value::none();
  Value stop = e.stop ? eval(*e.stop) : Value::none();
  Value step = e.step ? eval(*e.step) : Value::none();
  line_ = e.line;
  if (object.is_undefined()) undefined_error(object);
  if (object.is_list()) {
    const ValueList& items = object.as_list();
    ValueList out;
    for (size_t i : slice_positions(static_cast<int64_t>(items.size()), start, stop, step))
      out.push_back(items[i]);
    charge_bytes(out.size() * sizeof(Value));
    return Value::list(std::move(out), object.is_tuple());
  }
  if (object.is_string()) {
    charge_text(object.as_string().size());
    std::vector<std::string_view> cs = text::chars(object.as_string());
    std::string out;
    for (size_t i : slice_positions(static_cast<int64_t>(cs.size()), start, stop, step)) out += cs[i];
    return string(std::move(out));
  }
  return Value::undefined("'" + object_name(object) + "' cannot be sliced");
}

Value Interpreter::eval_call(const CallExpr& e, const Value* caller) {
  Value callee = eval(*e.callee);
  CallArgs args;
  eval_args(e.args, args);
  if (caller) args.keyword.emplace_back("caller", *caller);
  line_ = e.line;
  return call(callee, args);
}

Value Interpreter::eval_filter(const FilterExpr& f, const Value& subject) {
  CallArgs args;
  eval_args(f.args, args);
  line_ = f.line;
  return filter(f.name, subject, args);
}

Value Interpreter::eval_binary(const BinaryExpr& e) {
  if (e.op == "and") {
    Value l = eval(*e.left);
    return l.truthy() ? eval(*e.right) : l;
  }
  if (e.op == "or") {
    Value l = eval(*e.left);
    return l.truthy() ? l : eval(*e.right);
  }
  Value a = eval(*e.left);
  Value b = eval(*e.right);
  line_ = e.line;
  if (e.op == "~") return string(str(a) + str(b));
  if (e.op == "+") return add(a, b);
  if (a.is_undefined()) undefined_error(a);
  if (b.is_undefined()) undefined_error(b);
  auto unsupported = [&]() -> Value {
    fail("TypeError: unsupported operand type(s) for " + e.op + ": '" + a.type_name() + "' and '" +
         b.type_name() + "'");
  };
  if (e.op == "*") {
    auto repeat = [&](const Value& seq, const Value& count) -> Value {
      int64_t n = std::max<int64_t>(count.integer(), 0);
      size_t unit = seq.is_string() ? seq.as_string().size() : seq.as_list().size() * sizeof(Value);
      if (unit && static_cast<uint64_t>(n) > limits_.max_output_bytes / unit)
        fail("repetition result exceeds the limit of " + std::to_string(limits_.max_output_bytes) + " bytes");
      if (seq.is_string()) {
        const std::string& unit_text = seq.as_string();
        const size_t total = unit_text.size() * static_cast<size_t>(n);
        std::string out;
        if (total == 0) return string(std::move(out));
        out.reserve(total);
        out = unit_text;
        while (out.size() * 2 <= total) out += out;  // doubling: log(n) appends
        out.append(out, 0, total - out.size());
        return string(std::move(out));
      }
      ValueList out;
      out.reserve(seq.as_list().size() * static_cast<size_t>(n));
      for (int64_t i = 0; i < n; ++i) out.insert(out.end(), seq.as_list().begin(), seq.as_list().end());
      charge_bytes(out.size() * sizeof(Value));
      return Value::list(std::move(out), seq.is_tuple());
    };
    bool a_int = a.is_int() || a.is_bool(), b_int = b.is_int() || b.is_bool();
    if ((a.is_string() || a.is_list()) && b_int) return repeat(a, b);
    if ((b.is_string() || b.is_list()) && a_int) return repeat(b, a);
  }
  if (!a.is_number() || !b.is_number()) {
    if (e.op == "%" && a.is_string()) fail("printf-style formatting with % is not supported");
    return unsupported();
  }
  bool ints = !a.is_float() && !b.is_float();
  int64_t x = ints ? a.integer() : 0, y = ints ? b.integer() : 0;
  double p = a.number(), q = b.number();
  if (e.op == "-") return ints ? Value(sub_checked(x, y)) : Value(p - q);
  if (e.op == "*") return ints ? Value(mul_checked(x, y)) : Value(p * q);
  if (e.op == "/") {
    if (q == 0) fail("ZeroDivisionError: division by zero");
    return Value(p / q);
  }
  if (e.op == "//" || e.op == "%") {
    if (q == 0)
      fail(std::string("ZeroDivisionError: integer ") + (e.op == "%" ? "modulo" : "division") + " by zero");
    if (ints) {
      if (x == std::numeric_limits<int64_t>::min() && y == -1) overflow();
      int64_t div = x / y, mod = x % y;
      if (mod != 0 && ((mod < 0) != (y < 0))) {  // Python floors toward negative infinity
        div -= 1;
        mod += y;
      }
      return Value(e.op == "//" ? div : mod);
    }
    // CPython's float_divmod.
    double mod = std::fmod(p, q);
    double div = (p - mod) / q;
    if (mod != 0) {
      if ((q < 0) != (mod < 0)) {
        mod += q;
        div -= 1.0;
      }
    } else {
      mod = std::copysign(0.0, q);
    }
    double floordiv = std::copysign(0.0, p / q);
    if (div != 0) {
      floordiv = std::floor(div);
      if (div - floordiv > 0.5) floordiv += 1.0;
    }
    return Value(e.op == "%" ? mod : floordiv);
  }
  if (e.op == "**") {
    if (ints && y >= 0) {
      int64_t result = 1, base = x;
      for (int64_t k = y; k > 0; k >>= 1) {
        if (k & 1) result = mul_checked(result, base);
        if (k > 1) base = mul_checked(base, base);
      }
      return Value(result);
    }
    if (p == 0 && q < 0) fail("ZeroDivisionError: 0.0 cannot be raised to a negative power");
    if (p < 0 && q != std::trunc(q)) fail("ValueError: a negative number to a fractional power is complex");
    return Value(std::pow(p, q));
  }
  return unsupported();
}

bool Interpreter::eval_compare(const CompareExpr& e) {
  Value left = eval(*e.first);
  for (const auto& [op, expr] : e.rest) {
    Value right = eval(*expr);
    line_ = e.line;
    bool ok;
    if (op == "==") {
      ok = equal(left, right);
    } else if (op == "!=") {
      ok = !equal(left, right);
    } else if (op == "in" || op == "not in") {
      ok = contains(right, left) == (op == "in");
    } else {
      if (left.is_undefined()) undefined_error(left);
      if (right.is_undefined()) undefined_error(right);
      int c = compare(left, right);
      ok = op == "<" ? c < 0 : op == "<=" ? c <= 0 : op == ">" ? c > 0 : c >= 0;
    }
    if (!ok) return false;
    left = std::move(right);
  }
  return true;
}

// --- statements ----------------------------------------------------------------------------------------

std::string Interpreter::capture(const Body& body, const std::shared_ptr<Scope>& scope) {
  std::string buffer;
  std::string* saved = out_;
  out_ = &buffer;
  try {
    ScopeSwap swap(scope_, scope);
    exec(body);
  } catch (...) {
    out_ = saved;
    throw;
  }
  out_ = saved;
  return buffer;
}

void Interpreter::assign(const Target& t, const Value& v) {
  if (!t.attribute.empty()) {
    const Value* ns = scope_->find(t.names[0]);
    if (!ns || !ns->is_namespace())
      fail("cannot assign attribute '" + t.attribute + "' on a non-namespace object");
    ns->as_namespace().attrs.set(Value(t.attribute), v);
    return;
  }
  if (!t.unpack) {
    scope_->set(t.names[0], v);
    return;
  }
  ValueList items = iterate(v);
  if (items.size() != t.names.size())
    fail("ValueError: cannot unpack " + std::to_string(items.size()) + " values into " +
         std::to_string(t.names.size()) + " names");
  for (size_t i = 0; i < items.size(); ++i) scope_->set(t.names[i], items[i]);
}

Value Interpreter::make_macro(const MacroStmt& m) {
  auto c = std::make_shared<Callable>();
  c->name = m.name;
  c->repr = "<Macro '" + m.name + "'>";
  std::weak_ptr<Scope> defined_in = scope_;
  const MacroStmt* macro = &m;
  c->call = [macro, defined_in](Interpreter& in, CallArgs& args) {
    return in.call_macro(*macro, defined_in, args);
  };
  return Value::callable(std::move(c));
}

Value Interpreter::call_macro(const MacroStmt& m, const std::weak_ptr<Scope>& defined_in, CallArgs& args) {
  // A macro that outlived the loop iteration defining it sees the template's top level instead.
  std::shared_ptr<Scope> parent = defined_in.lock();
  auto scope = std::make_shared<Scope>(parent ? parent : root_);
  std::vector<bool> bound(m.params.size(), false);
  ValueList varargs;
  for (size_t i = 0; i < args.positional.size(); ++i) {
    if (i < m.params.size()) {
      scope->set(m.params[i].name, args.positional[i]);
      bound[i] = true;
    } else if (m.uses_varargs) {
      varargs.push_back(args.positional[i]);
    } else {
      fail("TypeError: macro '" + m.name + "' takes not more than " + std::to_string(m.params.size()) +
           " argument(s)");
    }
  }
  Dict kwargs;
  for (auto& [key, value] : args.keyword) {
    size_t i = 0;
    while (i < m.params.size() && m.params[i].name != key) ++i;
    if (i < m.params.size()) {
      if (bound[i]) fail("TypeError: macro '" + m.name + "' got multiple values for argument '" + key + "'");
      scope->set(key, value);
      bound[i] = true;
    } else if (key == "caller") {
      scope->set("caller", value);
    } else if (m.uses_kwargs) {
      kwargs.set(Value(key), value);
    } else {
      fail("TypeError: macro '" + m.name + "' takes no keyword argument '" + key + "'");
    }
  }
  scope->set("varargs", Value::list(std::move(varargs), true));
  scope->set("kwargs", Value::dict(std::move(kwargs)));
  {
    ScopeSwap swap(scope_, scope);  // defaults may refer to the parameters before them
    for (size_t i = 0; i < m.params.size(); ++i) {
      if (bound[i]) continue;
      const MacroParam& p = m.params[i];
      scope->set(p.name, p.default_value ? eval(*p.default_value)
                                         : Value::undefined("parameter '" + p.name + "' was not provided"));
    }
  }
  return string(capture(m.body, scope));
}

Interpreter::Flow Interpreter::exec(const Body& body) {
  for (const StmtPtr& s : body) {
    Flow f = exec(*s);
    if (f != Flow::Normal) return f;
  }
  return Flow::Normal;
}

Interpreter::Flow Interpreter::exec_for(const ForStmt& s) {
  Value iterable = eval(*s.iterable);
  ValueList materialized;  // the visited items unless they are a list as they are
  if (s.filter) {
    for (Value& item : iterate(iterable)) {
      ScopeSwap swap(scope_, std::make_shared<Scope>(scope_));
      assign(s.target, item);
      if (eval(*s.filter).truthy()) materialized.push_back(std::move(item));
    }
  } else if (!iterable.is_list()) {
    materialized = iterate(iterable);
  }
  const ValueList& items = iterable.is_list() && !s.filter ? iterable.as_list() : materialized;
  const int64_t n = static_cast<int64_t>(items.size());
  auto index = std::make_shared<int64_t>(0);  // loop.cycle() reads the current iteration
  auto cycle = std::make_shared<Callable>();
  cycle->name = "cycle";
  cycle->repr = "<bound method LoopContext.cycle>";
  cycle->call = [index](Interpreter&, CallArgs& args) -> Value {
    if (args.positional.empty()) fail("TypeError: no items for cycling given");
    return args.positional[static_cast<size_t>(*index) % args.positional.size()];
  };
  const Value cycle_value = Value::callable(std::move(cycle));
  std::shared_ptr<Scope> iteration;
  for (int64_t i = 0; i < n; ++i) {
    *index = i;
    charge_steps(1);
    // A fresh scope per iteration, as jinja2; the previous one is recycled unless a macro defined in
    // it may still look at it.
    if (iteration && iteration.use_count() == 1)
      iteration->clear();
    else
      iteration = std::make_shared<Scope>(scope_);
    ScopeSwap swap(scope_, iteration);
    line_ = s.line;
    assign(s.target, items[static_cast<size_t>(i)]);
    static const Value k_index("index"), k_index0("index0"), k_revindex("revindex"), k_revindex0("revindex0"),
        k_first("first"), k_last("last"), k_length("length"), k_depth("depth"), k_depth0("depth0"),
        k_previtem("previtem"), k_nextitem("nextitem"), k_cycle("cycle");
    std::vector<std::pair<Value, Value>> loop;
    loop.reserve(12);
    loop.emplace_back(k_index, i + 1);
    loop.emplace_back(k_index0, i);
    loop.emplace_back(k_revindex, n - i);
    loop.emplace_back(k_revindex0, n - i - 1);
    loop.emplace_back(k_first, i == 0);
    loop.emplace_back(k_last, i == n - 1);
    loop.emplace_back(k_length, n);
    loop.emplace_back(k_depth, 1);
    loop.emplace_back(k_depth0, 0);
    if (i > 0) loop.emplace_back(k_previtem, items[static_cast<size_t>(i - 1)]);
    if (i + 1 < n) loop.emplace_back(k_nextitem, items[static_cast<size_t>(i + 1)]);
    loop.emplace_back(k_cycle, cycle_value);
    scope_->set("loop", Value::dict(Dict(std::move(loop))));
    if (exec(s.body) == Flow::Break) break;
  }
  if (n == 0 && !s.otherwise.empty()) {
    ScopeSwap swap(scope_, std::make_shared<Scope>(scope_));
    return exec(s.otherwise);
  }
  return Flow::Normal;
}

Interpreter::Flow Interpreter::exec(const Stmt& s) {
  Depth depth(*this);
  line_ = s.line;
  charge_steps(1);
  switch (s.kind) {
    case Stmt::Kind::Text:
      write(static_cast<const TextStmt&>(s).text);
      return Flow::Normal;
    case Stmt::Kind::Print:
      write(str(eval(*static_cast<const PrintStmt&>(s).expr)));
      return Flow::Normal;
    case Stmt::Kind::If: {
      const auto& i = static_cast<const IfStmt&>(s);
      for (const auto& [cond, body] : i.branches)
        if (eval(*cond).truthy()) return exec(body);
      return exec(i.otherwise);
    }
    case Stmt::Kind::For:
      return exec_for(static_cast<const ForStmt&>(s));
    case Stmt::Kind::Set: {
      const auto& set = static_cast<const SetStmt&>(s);
      Value v = eval(*set.value);
      line_ = s.line;
      assign(set.target, v);
      return Flow::Normal;
    }
    case Stmt::Kind::SetBlock: {
      const auto& set = static_cast<const SetBlockStmt&>(s);
      Value v = string(capture(set.body, std::make_shared<Scope>(scope_)));
      for (const auto& f : set.filters) v = eval_filter(*f, v);
      line_ = s.line;
      assign(set.target, v);
      return Flow::Normal;
    }
    case Stmt::Kind::Macro: {
      const auto& m = static_cast<const MacroStmt&>(s);
      scope_->set(m.name, make_macro(m));
      return Flow::Normal;
    }
    case Stmt::Kind::CallBlock: {
      const auto& c = static_cast<const CallBlockStmt&>(s);
      Value caller = make_macro(c.caller);
      write(str(eval_call(*c.call, &caller)));
      return Flow::Normal;
    }
    case Stmt::Kind::FilterBlock: {
      const auto& f = static_cast<const FilterBlockStmt&>(s);
      Value v = string(capture(f.body, std::make_shared<Scope>(scope_)));
      for (const auto& filter : f.filters) v = eval_filter(*filter, v);
      write(str(v));
      return Flow::Normal;
    }
    case Stmt::Kind::With: {
      const auto& w = static_cast<const WithStmt&>(s);
      std::vector<Value> values;
      for (const auto& [target, expr] : w.assignments) values.push_back(eval(*expr));
      ScopeSwap swap(scope_, std::make_shared<Scope>(scope_));
      for (size_t i = 0; i < values.size(); ++i) assign(w.assignments[i].first, values[i]);
      return exec(w.body);
    }
    case Stmt::Kind::Scope: {
      ScopeSwap swap(scope_, std::make_shared<Scope>(scope_));
      return exec(static_cast<const ScopeStmt&>(s).body);
    }
    case Stmt::Kind::Break:
      return Flow::Break;
    case Stmt::Kind::Continue:
      return Flow::Continue;
  }
  return Flow::Normal;
}

}  // namespace wgllm::tokenizer::jinja
