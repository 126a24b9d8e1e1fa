#include "tokenizer/jinja/parser.hpp"

#include <algorithm>
#include <initializer_list>
#include <string_view>

#include "tokenizer/jinja/builtins.hpp"
#include "tokenizer/jinja/template_error.hpp"

namespace wgllm::tokenizer::jinja {

namespace {

std::string describe(const Token& t) {
  switch (t.type) {
    case TokenType::Text:
      return "template text";
    case TokenType::VarBegin:
      return "'{{'";
    case TokenType::VarEnd:
      return "'}}'";
    case TokenType::BlockBegin:
      return "'{%'";
    case TokenType::BlockEnd:
      return "'%}'";
    case TokenType::End:
      return "end of template";
    case TokenType::String:
      return "a string";
    case TokenType::Integer:
    case TokenType::Float:
      return "a number";
    default:
      return "'" + t.value + "'";
  }
}

class Parser {
 public:
  explicit Parser(const std::vector<Token>& tokens) : tokens_(tokens) {}

  Body run() {
    auto [body, end] = parse_body({});
    return std::move(body);
  }

 private:
  // --- token stream ---------------------------------------------------------------------------------
  const Token& cur() const { return tokens_[pos_]; }
  const Token& peek(size_t n = 1) const { return tokens_[std::min(pos_ + n, tokens_.size() - 1)]; }
  void next() {
    if (pos_ + 1 < tokens_.size()) ++pos_;
  }
  bool is_op(std::string_view op) const { return cur().type == TokenType::Operator && cur().value == op; }
  bool is_name(std::string_view name) const { return cur().type == TokenType::Name && cur().value == name; }
  bool skip_op(std::string_view op) {
    if (!is_op(op)) return false;
    next();
    return true;
  }
  bool skip_name(std::string_view name) {
    if (!is_name(name)) return false;
    next();
    return true;
  }
  [[noreturn]] void error(const std::string& message) const { fail("syntax error: " + message, cur().line); }
  void expect_op(std::string_view op) {
    if (!skip_op(op)) error("expected '" + std::string(op) + "', got " + describe(cur()));
  }
  std::string expect_name() {
    if (cur().type != TokenType::Name) error("expected a name, got " + describe(cur()));
    std::string n = cur().value;
    next();
    return n;
  }
  void expect_block_end() {
    if (cur().type != TokenType::BlockEnd) error("expected '%}', got " + describe(cur()));
    next();
  }

  // One more level of tree depth (a left-associative chain like a + b + c deepens the tree without
  // recursing in the parser); the caller gives it back with `depth_ -= n` when its loop ends.
  void deeper() {
    if (++depth_ > kMaxNesting) error("nesting deeper than " + std::to_string(kMaxNesting) + " levels");
  }

  struct Nest {  // counts nesting; kMaxNesting bounds the recursion
    Nest(Parser& p) : p(p) {
      if (++p.depth_ > kMaxNesting) p.error("nesting deeper than " + std::to_string(kMaxNesting) + " levels");
    }
    ~Nest() { --p.depth_; }
    Parser& p;
  };

  // --- statements -----------------------------------------------------------------------------------
  // Parses until one of the `ends` tags ("{% endfor", "{% else"...) and returns it (its name consumed,
  // the rest of its tag not); "" at the end of the template, which is an error when ends are expected.
  std::pair<Body, std::string> parse_body(std::initializer_list<std::string_view> ends, int opened_at = 0) {
    Nest nest(*this);
    Body body;
    while (true) {
      const Token& t = cur();
      switch (t.type) {
        case TokenType::Text:
          body.push_back(std::make_unique<TextStmt>(t.value, t.line));
          next();
          break;
        case TokenType::VarBegin: {
          int line = t.line;
          next();
          ExprPtr e = parse_tuple({}, false, true);
          if (cur().type != TokenType::VarEnd) error("expected '}}', got " + describe(cur()));
          next();
          body.push_back(std::make_unique<PrintStmt>(std::move(e), line));
          break;
        }
        case TokenType::BlockBegin: {
          next();
          if (cur().type != TokenType::Name) error("expected a statement name, got " + describe(cur()));
          std::string name = cur().value;
          if (std::find(ends.begin(), ends.end(), name) != ends.end()) {
            next();
            return {std::move(body), name};
          }
          body.push_back(parse_statement(ends));
          break;
        }
        case TokenType::End:
          if (ends.size() == 0) return {std::move(body), ""};
          fail("syntax error: unexpected end of template: the block opened on line " +
                   std::to_string(opened_at) + " needs '" + std::string(*ends.begin()) + "'" +
                   ends_hint(ends),
               t.line);
        default:
          error("unexpected " + describe(t));
      }
    }
  }

  static std::string ends_hint(std::initializer_list<std::string_view> ends) {
    std::string s;
    for (auto it = ends.begin() + 1; it != ends.end(); ++it) s += " or '" + std::string(*it) + "'";
    return s;
  }

  StmtPtr parse_statement(std::initializer_list<std::string_view> ends) {
    const Token& t = cur();
    std::string name = t.value;
    int line = t.line;
    next();
    if (name == "if") return parse_if(line);
    if (name == "for") return parse_for(line);
    if (name == "set") return parse_set(line);
    if (name == "macro") return parse_macro(line);
    if (name == "call") return parse_call_block(line);
    if (name == "filter") return parse_filter_block(line);
    if (name == "with") return parse_with(line);
    if (name == "generation") {
      auto s = std::make_unique<ScopeStmt>(line);
      expect_block_end();
      s->body = parse_end("endgeneration", line);
      return s;
    }
    if (name == "break" || name == "continue") {
      if (loop_depth_ == 0) fail("syntax error: '" + name + "' outside a for loop", line);
      expect_block_end();
      return std::make_unique<LoopControlStmt>(name == "break" ? Stmt::Kind::Break : Stmt::Kind::Continue,
                                               line);
    }
    std::string msg = "unknown tag '" + name + "'";
    if (ends.size() > 0) msg += ", expected '" + std::string(*ends.begin()) + "'" + ends_hint(ends);
    if (name == "include" || name == "import" || name == "from" || name == "extends" || name == "block")
      msg = "'" + name + "' is not supported: a chat template is a single template";
    fail("syntax error: " + msg, line);
  }

  Body parse_end(std::string_view end, int opened_at) {
    auto [body, found] = parse_body({end}, opened_at);
    expect_block_end();
    return std::move(body);
  }

  StmtPtr parse_if(int line) {
    auto s = std::make_unique<IfStmt>(line);
    ExprPtr cond = parse_tuple({}, false, false);
    expect_block_end();
    while (true) {
      auto [body, end] = parse_body({"endif", "elif", "else"}, line);
      s->branches.emplace_back(std::move(cond), std::move(body));
      if (end == "elif") {
        cond = parse_tuple({}, false, false);
        expect_block_end();
        continue;
      }
      expect_block_end();
      if (end == "else") s->otherwise = parse_end("endif", line);
      return s;
    }
  }

  StmtPtr parse_for(int line) {
    auto s = std::make_unique<ForStmt>(line);
    s->target = parse_target(false, {"in"});
    if (!skip_name("in")) error("expected 'in', got " + describe(cur()));
    s->iterable = parse_tuple({"recursive"}, false, false);
    if (skip_name("if")) s->filter = parse_expression(true);
    if (is_name("recursive")) error("recursive loops are not supported");
    expect_block_end();
    ++loop_depth_;
    auto [body, end] = parse_body({"endfor", "else"}, line);
    --loop_depth_;
    s->body = std::move(body);
    expect_block_end();
    if (end == "else") s->otherwise = parse_end("endfor", line);
    return s;
  }

  StmtPtr parse_set(int line) {
    Target target = parse_target(true, {});
    if (skip_op("=")) {
      auto s = std::make_unique<SetStmt>(line);
      s->target = std::move(target);
      s->value = parse_tuple({}, false, true);
      expect_block_end();
      return s;
    }
    auto s = std::make_unique<SetBlockStmt>(line);
    if (target.unpack) error("a block set assigns to one name");
    s->target = std::move(target);
    while (skip_op("|")) s->filters.push_back(parse_filter(nullptr));
    expect_block_end();
    s->body = parse_end("endset", line);
    return s;
  }

  void parse_params(std::vector<MacroParam>& params) {
    expect_op("(");
    while (!is_op(")")) {
      if (!params.empty()) expect_op(",");
      if (is_op(")")) break;
      MacroParam p;
      p.name = expect_name();
      if (skip_op("=")) {
        p.default_value = parse_expression(true);
      } else if (!params.empty() && params.back().default_value) {
        error("parameter '" + p.name + "' without a default follows one with a default");
      }
      params.push_back(std::move(p));
    }
    next();
  }

  // A macro body is a new function: no enclosing loop to break out of.
  Body parse_macro_body(MacroStmt& m, std::string_view end, int line) {
    int saved_loops = loop_depth_;
    loop_depth_ = 0;
    macros_.push_back(&m);
    Body body = parse_end(end, line);
    macros_.pop_back();
    loop_depth_ = saved_loops;
    return body;
  }

  StmtPtr parse_macro(int line) {
    auto s = std::make_unique<MacroStmt>(line);
    s->name = expect_name();
    parse_params(s->params);
    expect_block_end();
    s->body = parse_macro_body(*s, "endmacro", line);
    return s;
  }

  StmtPtr parse_call_block(int line) {
    auto s = std::make_unique<CallBlockStmt>(line);
    s->caller.name = "caller";
    if (is_op("(")) parse_params(s->caller.params);
    ExprPtr call = parse_expression(true);
    if (call->kind != Expr::Kind::Call) fail("syntax error: {% call %} needs a macro call", line);
    s->call.reset(static_cast<CallExpr*>(call.release()));
    expect_block_end();
    s->caller.body = parse_macro_body(s->caller, "endcall", line);
    return s;
  }

  StmtPtr parse_filter_block(int line) {
    auto s = std::make_unique<FilterBlockStmt>(line);
    do {
      s->filters.push_back(parse_filter(nullptr));
    } while (skip_op("|"));
    expect_block_end();
    s->body = parse_end("endfilter", line);
    return s;
  }

  StmtPtr parse_with(int line) {
    auto s = std::make_unique<WithStmt>(line);
    while (cur().type != TokenType::BlockEnd) {
      if (!s->assignments.empty()) expect_op(",");
      Target t = parse_target(false, {});
      expect_op("=");
      s->assignments.emplace_back(std::move(t), parse_expression(true));
    }
    expect_block_end();
    s->body = parse_end("endwith", line);
    return s;
  }

  // name | name, name, ... | (with_namespace) name.attribute
  Target parse_target(bool with_namespace, std::initializer_list<std::string_view> extra_ends) {
    Target t;
    if (with_namespace && cur().type == TokenType::Name && peek().type == TokenType::Operator &&
        peek().value == ".") {
      t.names.push_back(expect_name());
      next();
      t.attribute = expect_name();
      return t;
    }
    bool parens = skip_op("(");
    while (true) {
      t.names.push_back(expect_name());
      if (!is_op(",")) break;
      next();
      t.unpack = true;
      if (extra_ends.size() > 0 && is_name(*extra_ends.begin())) break;  // "for a, in ..."
    }
    if (parens) {
      expect_op(")");
      t.unpack = true;
    }
    static const char* reserved[] = {"true", "false", "none", "True", "False", "None"};
    for (const std::string& n : t.names)
      for (const char* r : reserved)
        if (n == r) error("cannot assign to '" + n + "'");
    return t;
  }

  // --- expressions ----------------------------------------------------------------------------------
  bool tuple_end(std::initializer_list<std::string_view> extra_ends) const {
    if (cur().type == TokenType::VarEnd || cur().type == TokenType::BlockEnd || cur().type == TokenType::End)
      return true;
    if (is_op(")")) return true;
    for (std::string_view e : extra_ends)
      if (is_name(e)) return true;
    return false;
  }

  // Expressions separated by commas: one is itself, several (or "()") a tuple.
  ExprPtr parse_tuple(std::initializer_list<std::string_view> extra_ends, bool explicit_parens,
                      bool with_condexpr) {
    int line = cur().line;
    auto tuple = std::make_unique<ListExpr>(true, line);
    bool is_tuple = false;
    while (true) {
      if (!tuple->items.empty()) expect_op(",");
      if (tuple_end(extra_ends)) break;
      tuple->items.push_back(parse_expression(with_condexpr));
      if (is_op(","))
        is_tuple = true;
      else
        break;
    }
    if (!is_tuple) {
      if (!tuple->items.empty()) return std::move(tuple->items[0]);
      if (!explicit_parens) error("expected an expression, got " + describe(cur()));
    }
    return tuple;
  }

  ExprPtr parse_expression(bool with_condexpr) {
    Nest nest(*this);
    if (!with_condexpr) return parse_or();
    int line = cur().line;
    ExprPtr expr = parse_or();
    int chain = 0;
    while (skip_name("if")) {
      deeper();
      ++chain;
      ExprPtr test = parse_or();
      ExprPtr otherwise = skip_name("else") ? parse_expression(true) : nullptr;
      expr = std::make_unique<CondExpr>(std::move(test), std::move(expr), std::move(otherwise), line);
      line = cur().line;
    }
    depth_ -= chain;
    return expr;
  }

  ExprPtr parse_or() {
    ExprPtr left = parse_and();
    int chain = 0;
    while (is_name("or")) {
      deeper();
      ++chain;
      int line = cur().line;
      next();
      left = std::make_unique<BinaryExpr>("or", std::move(left), parse_and(), line);
    }
    depth_ -= chain;
    return left;
  }

  ExprPtr parse_and() {
    ExprPtr left = parse_not();
    int chain = 0;
    while (is_name("and")) {
      deeper();
      ++chain;
      int line = cur().line;
      next();
      left = std::make_unique<BinaryExpr>("and", std::move(left), parse_not(), line);
    }
    depth_ -= chain;
    return left;
  }

  ExprPtr parse_not() {
    if (is_name("not")) {
      Nest nest(*this);
      int line = cur().line;
      next();
      return std::make_unique<UnaryExpr>("not", parse_not(), line);
    }
    return parse_compare();
  }

  ExprPtr parse_compare() {
    int line = cur().line;
    ExprPtr first = parse_math1();
    auto cmp = std::make_unique<CompareExpr>(std::move(first), line);
    int chain = 0;
    while (true) {
      std::string op;
      if (cur().type == TokenType::Operator &&
          (cur().value == "==" || cur().value == "!=" || cur().value == "<" || cur().value == "<=" ||
           cur().value == ">" || cur().value == ">=")) {
        op = cur().value;
        next();
      } else if (is_name("in")) {
        op = "in";
        next();
      } else if (is_name("not") && peek().type == TokenType::Name && peek().value == "in") {
        op = "not in";
        next();
        next();
      } else {
        break;
      }
      deeper();
      ++chain;
      cmp->rest.emplace_back(op, parse_math1());
    }
    depth_ -= chain;
    if (cmp->rest.empty()) return std::move(cmp->first);
    return cmp;
  }

  ExprPtr parse_math1() {
    ExprPtr left = parse_concat();
    int chain = 0;
    while (is_op("+") || is_op("-")) {
      deeper();
      ++chain;
      std::string op = cur().value;
      int line = cur().line;
      next();
      left = std::make_unique<BinaryExpr>(op, std::move(left), parse_concat(), line);
    }
    depth_ -= chain;
    return left;
  }

  ExprPtr parse_concat() {
    ExprPtr left = parse_math2();
    int chain = 0;
    while (is_op("~")) {
      deeper();
      ++chain;
      int line = cur().line;
      next();
      left = std::make_unique<BinaryExpr>("~", std::move(left), parse_math2(), line);
    }
    depth_ -= chain;
    return left;
  }

  ExprPtr parse_math2() {
    ExprPtr left = parse_pow();
    int chain = 0;
    while (is_op("*") || is_op("/") || is_op("//") || is_op("%")) {
      deeper();
      ++chain;
      std::string op = cur().value;
      int line = cur().line;
      next();
      left = std::make_unique<BinaryExpr>(op, std::move(left), parse_pow(), line);
    }
    depth_ -= chain;
    return left;
  }

  ExprPtr parse_pow() {
    ExprPtr left = parse_unary(true);
    int chain = 0;
    while (is_op("**")) {
      deeper();
      ++chain;
      int line = cur().line;
      next();
      left = std::make_unique<BinaryExpr>("**", std::move(left), parse_unary(true), line);
    }
    depth_ -= chain;
    return left;
  }

  ExprPtr parse_unary(bool with_filter) {
    Nest nest(*this);
    int line = cur().line;
    ExprPtr node;
    if (is_op("-") || is_op("+")) {
      std::string op = cur().value;
      next();
      node = std::make_unique<UnaryExpr>(op, parse_unary(false), line);
    } else {
      node = parse_postfix(parse_primary());
    }
    return with_filter ? parse_filter_expr(std::move(node)) : std::move(node);
  }

  ExprPtr parse_primary() {
    const Token& t = cur();
    int line = t.line;
    switch (t.type) {
      case TokenType::Name: {
        std::string n = t.value;
        next();
        if (n == "true" || n == "True") return std::make_unique<LiteralExpr>(Value(true), line);
        if (n == "false" || n == "False") return std::make_unique<LiteralExpr>(Value(false), line);
        if (n == "none" || n == "None") return std::make_unique<LiteralExpr>(Value::none(), line);
        if (!macros_.empty() && n == "varargs") macros_.back()->uses_varargs = true;
        if (!macros_.empty() && n == "kwargs") macros_.back()->uses_kwargs = true;
        return std::make_unique<NameExpr>(n, line);
      }
      case TokenType::String: {
        std::string s;
        while (cur().type == TokenType::String) {  // adjacent literals concatenate, as in Python
          s += cur().value;
          next();
        }
        return std::make_unique<LiteralExpr>(Value(std::move(s)), line);
      }
      case TokenType::Integer: {
        Value v(t.integer);
        next();
        return std::make_unique<LiteralExpr>(std::move(v), line);
      }
      case TokenType::Float: {
        Value v(t.real);
        next();
        return std::make_unique<LiteralExpr>(std::move(v), line);
      }
      case TokenType::Operator:
        if (t.value == "(") {
          next();
          ExprPtr e = parse_tuple({}, true, true);
          expect_op(")");
          return e;
        }
        if (t.value == "[") {
          next();
          auto list = std::make_unique<ListExpr>(false, line);
          while (!is_op("]")) {
            if (!list->items.empty()) expect_op(",");
            if (is_op("]")) break;
            list->items.push_back(parse_expression(true));
          }
          next();
          return list;
        }
        if (t.value == "{") {
          next();
          auto dict = std::make_unique<DictExpr>(line);
          while (!is_op("}")) {
            if (!dict->items.empty()) expect_op(",");
            if (is_op("}")) break;
            ExprPtr key = parse_expression(true);
            expect_op(":");
            dict->items.emplace_back(std::move(key), parse_expression(true));
          }
          next();
          return dict;
        }
        [[fallthrough]];
      default:
        error("expected an expression, got " + describe(t));
    }
  }

  ExprPtr parse_postfix(ExprPtr node) {
    int chain = 0;
    while (true) {
      if (is_op(".") || is_op("[") || is_op("(")) {
        deeper();
        ++chain;
      }
      if (is_op(".") || is_op("[")) {
        node = parse_subscript(std::move(node));
      } else if (is_op("(")) {
        node = parse_call(std::move(node));
      } else {
        depth_ -= chain;
        return node;
      }
    }
  }

  ExprPtr parse_filter_expr(ExprPtr node) {
    int chain = 0;
    while (true) {
      if (is_op("|") || is_name("is") || is_op("(")) {
        deeper();
        ++chain;
      }
      if (is_op("|")) {
        next();
        node = parse_filter(std::move(node));
      } else if (is_name("is")) {
        node = parse_test(std::move(node));
      } else if (is_op("(")) {
        node = parse_call(std::move(node));
      } else {
        depth_ -= chain;
        return node;
      }
    }
  }

  ExprPtr parse_subscript(ExprPtr node) {
    int line = cur().line;
    if (skip_op(".")) {
      if (cur().type == TokenType::Name)
        return std::make_unique<GetAttrExpr>(std::move(node), expect_name(), line);
      if (cur().type == TokenType::Integer) {
        auto index = std::make_unique<LiteralExpr>(Value(cur().integer), line);
        next();
        return std::make_unique<GetItemExpr>(std::move(node), std::move(index), line);
      }
      error("expected a name after '.', got " + describe(cur()));
    }
    expect_op("[");
    ExprPtr start;
    if (!is_op(":")) {
      start = parse_expression(true);
      if (!is_op(":")) {
        expect_op("]");
        return std::make_unique<GetItemExpr>(std::move(node), std::move(start), line);
      }
    }
    auto slice = std::make_unique<SliceExpr>(std::move(node), line);
    slice->start = std::move(start);
    next();  // ':'
    if (!is_op(":") && !is_op("]")) slice->stop = parse_expression(true);
    if (skip_op(":") && !is_op("]")) slice->step = parse_expression(true);
    expect_op("]");
    return slice;
  }

  void parse_arguments(Arguments& args) {
    expect_op("(");
    while (!is_op(")")) {
      if (!args.positional.empty() || !args.keyword.empty()) expect_op(",");
      if (is_op(")")) break;
      if (is_op("*") || is_op("**")) error("*args and **kwargs in calls are not supported");
      if (cur().type == TokenType::Name && peek().type == TokenType::Operator && peek().value == "=") {
        std::string key = expect_name();
        next();
        for (const auto& [k, e] : args.keyword)
          if (k == key) error("keyword argument '" + key + "' repeated");
        args.keyword.emplace_back(key, parse_expression(true));
      } else {
        if (!args.keyword.empty()) error("positional argument follows keyword argument");
        args.positional.push_back(parse_expression(true));
      }
    }
    next();
  }

  ExprPtr parse_call(ExprPtr callee) {
    auto call = std::make_unique<CallExpr>(std::move(callee), cur().line);
    parse_arguments(call->args);
    return call;
  }

  // name(.name)* as jinja2 allows dotted filter and test names.
  std::string dotted_name() {
    std::string n = expect_name();
    while (is_op(".") && peek().type == TokenType::Name) {
      next();
      n += "." + expect_name();
    }
    return n;
  }

  std::unique_ptr<FilterExpr> parse_filter(ExprPtr subject) {
    int line = cur().line;
    std::string name = dotted_name();
    auto f = std::make_unique<FilterExpr>(std::move(subject), name, line);
    if (is_op("(")) parse_arguments(f->args);
    return f;
  }

  ExprPtr parse_test(ExprPtr subject) {
    int line = cur().line;
    next();  // is
    bool negated = skip_name("not");
    std::string name = dotted_name();
    auto t = std::make_unique<TestExpr>(std::move(subject), name, negated, line);
    if (is_op("(")) {
      parse_arguments(t->args);
    } else if ((cur().type == TokenType::Name || cur().type == TokenType::String ||
                cur().type == TokenType::Integer || cur().type == TokenType::Float || is_op("[") ||
                is_op("{")) &&
               !is_name("else") && !is_name("or") && !is_name("and")) {
      if (is_name("is")) error("tests cannot be chained with 'is'");
      t->args.positional.push_back(parse_postfix(parse_primary()));  // "x is divisibleby 3"
    }
    return t;
  }

  const std::vector<Token>& tokens_;
  size_t pos_ = 0;
  int depth_ = 0;
  int loop_depth_ = 0;
  std::vector<MacroStmt*> macros_;  // macros being parsed, innermost last
};

// jinja2 reports unknown filters and tests when it compiles the template, except in the condition and
// branches of an {% if %} and in inline if-expressions (its "soft" frames), where they fail only if they
// run. Loops, macros, blocks and {% with %} bodies start hard frames again.
class NameCheck {
 public:
  void body(const Body& b, bool soft) {
    for (const StmtPtr& s : b) stmt(*s, soft);
  }

 private:
  void args(const Arguments& a, bool soft) {
    for (const ExprPtr& e : a.positional) expr(e.get(), soft);
    for (const auto& [k, e] : a.keyword) expr(e.get(), soft);
  }

  void expr(const Expr* e, bool soft) {
    if (!e) return;
    switch (e->kind) {
      case Expr::Kind::Literal:
      case Expr::Kind::Name:
        return;
      case Expr::Kind::List:
        for (const ExprPtr& x : static_cast<const ListExpr*>(e)->items) expr(x.get(), soft);
        return;
      case Expr::Kind::Dict:
        for (const auto& [k, v] : static_cast<const DictExpr*>(e)->items) {
          expr(k.get(), soft);
          expr(v.get(), soft);
        }
        return;
      case Expr::Kind::GetAttr:
        expr(static_cast<const GetAttrExpr*>(e)->object.get(), soft);
        return;
      case Expr::Kind::GetItem: {
        const auto* g = static_cast<const GetItemExpr*>(e);
        expr(g->object.get(), soft);
        expr(g->index.get(), soft);
        return;
      }
      case Expr::Kind::Slice: {
        const auto* sl = static_cast<const SliceExpr*>(e);
        for (const ExprPtr* x : {&sl->object, &sl->start, &sl->stop, &sl->step}) expr(x->get(), soft);
        return;
      }
      case Expr::Kind::Call: {
        const auto* c = static_cast<const CallExpr*>(e);
        expr(c->callee.get(), soft);
        args(c->args, soft);
        return;
      }
      case Expr::Kind::Filter:
        filter(*static_cast<const FilterExpr*>(e), soft);
        return;
      case Expr::Kind::Test: {
        const auto* t = static_cast<const TestExpr*>(e);
        expr(t->subject.get(), soft);
        if (!soft && !is_test(t->name)) fail("syntax error: no test named '" + t->name + "'", t->line);
        args(t->args, soft);
        return;
      }
      case Expr::Kind::Unary:
        expr(static_cast<const UnaryExpr*>(e)->operand.get(), soft);
        return;
      case Expr::Kind::Binary: {
        const auto* b = static_cast<const BinaryExpr*>(e);
        expr(b->left.get(), soft);
        expr(b->right.get(), soft);
        return;
      }
      case Expr::Kind::Compare: {
        const auto* c = static_cast<const CompareExpr*>(e);
        expr(c->first.get(), soft);
        for (const auto& [op, x] : c->rest) expr(x.get(), soft);
        return;
      }
      case Expr::Kind::Cond: {
        const auto* c = static_cast<const CondExpr*>(e);
        expr(c->test.get(), true);
        expr(c->then.get(), true);
        expr(c->otherwise.get(), true);
        return;
      }
    }
  }

  void filter(const FilterExpr& f, bool soft) {
    expr(f.subject.get(), soft);
    if (!soft && !is_filter(f.name)) fail("syntax error: no filter named '" + f.name + "'", f.line);
    args(f.args, soft);
  }

  void macro(const MacroStmt& m) {
    for (const MacroParam& p : m.params) expr(p.default_value.get(), false);
    body(m.body, false);
  }

  void stmt(const Stmt& s, bool soft) {
    switch (s.kind) {
      case Stmt::Kind::Text:
      case Stmt::Kind::Break:
      case Stmt::Kind::Continue:
        return;
      case Stmt::Kind::Print:
        expr(static_cast<const PrintStmt&>(s).expr.get(), soft);
        return;
      case Stmt::Kind::If: {
        const auto& i = static_cast<const IfStmt&>(s);
        for (const auto& [cond, b] : i.branches) {
          expr(cond.get(), true);
          body(b, true);
        }
        body(i.otherwise, true);
        return;
      }
      case Stmt::Kind::For: {
        const auto& f = static_cast<const ForStmt&>(s);
        expr(f.iterable.get(), soft);
        expr(f.filter.get(), false);
        body(f.body, false);
        body(f.otherwise, false);
        return;
      }
      case Stmt::Kind::Set:
        expr(static_cast<const SetStmt&>(s).value.get(), soft);
        return;
      case Stmt::Kind::SetBlock: {
        const auto& b = static_cast<const SetBlockStmt&>(s);
        body(b.body, false);
        for (const auto& f : b.filters) filter(*f, false);
        return;
      }
      case Stmt::Kind::Macro:
        macro(static_cast<const MacroStmt&>(s));
        return;
      case Stmt::Kind::CallBlock: {
        const auto& c = static_cast<const CallBlockStmt&>(s);
        expr(c.call.get(), soft);
        macro(c.caller);
        return;
      }
      case Stmt::Kind::FilterBlock: {
        const auto& f = static_cast<const FilterBlockStmt&>(s);
        for (const auto& x : f.filters) filter(*x, false);
        body(f.body, false);
        return;
      }
      case Stmt::Kind::With: {
        const auto& w = static_cast<const WithStmt&>(s);
        for (const auto& [target, value] : w.assignments) expr(value.get(), soft);
        body(w.body, false);
        return;
      }
      case Stmt::Kind::Scope:
        body(static_cast<const ScopeStmt&>(s).body, false);
        return;
    }
  }
};

}  // namespace

Body parse(const std::vector<Token>& tokens) {
  Body body = Parser(tokens).run();
  NameCheck().body(body, false);
  return body;
}

}  // namespace wgllm::tokenizer::jinja
