// The parsed template: expression and statement nodes, each with the source line it came from.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "tokenizer/jinja/value.hpp"

namespace wgllm::tokenizer::jinja {

struct Expr {
  enum class Kind {
    Literal,
    Name,
    List,
    Dict,
    GetAttr,
    GetItem,
    Slice,
    Call,
    Filter,
    Test,
    Unary,
    Binary,
    Compare,
    Cond
  };
  Expr(Kind kind, int line) : kind(kind), line(line) {}
  virtual ~Expr() = default;
  Kind kind;
  int line;
};
using ExprPtr = std::unique_ptr<Expr>;

struct Arguments {
  std::vector<ExprPtr> positional;
  std::vector<std::pair<std::string, ExprPtr>> keyword;
};

struct LiteralExpr : Expr {
  LiteralExpr(Value v, int line) : Expr(Kind::Literal, line), value(std::move(v)) {}
  Value value;
};

struct NameExpr : Expr {
  NameExpr(std::string n, int line) : Expr(Kind::Name, line), name(std::move(n)) {}
  std::string name;
};

struct ListExpr : Expr {  // [a, b] or (a, b)
  ListExpr(bool tuple, int line) : Expr(Kind::List, line), tuple(tuple) {}
  std::vector<ExprPtr> items;
  bool tuple;
};

struct DictExpr : Expr {
  explicit DictExpr(int line) : Expr(Kind::Dict, line) {}
  std::vector<std::pair<ExprPtr, ExprPtr>> items;
};

struct GetAttrExpr : Expr {  // object.attr: attribute first, then item (jinja2's getattr)
  GetAttrExpr(ExprPtr o, std::string a, int line)
      : Expr(Kind::GetAttr, line), object(std::move(o)), attr(std::move(a)) {}
  ExprPtr object;
  std::string attr;
};

struct GetItemExpr : Expr {  // object[index]: item first, then attribute (jinja2's getitem)
  GetItemExpr(ExprPtr o, ExprPtr i, int line)
      : Expr(Kind::GetItem, line), object(std::move(o)), index(std::move(i)) {}
  ExprPtr object, index;
};

struct SliceExpr : Expr {  // object[start:stop:step], each bound optional
  SliceExpr(ExprPtr o, int line) : Expr(Kind::Slice, line), object(std::move(o)) {}
  ExprPtr object, start, stop, step;
};

struct CallExpr : Expr {
  CallExpr(ExprPtr c, int line) : Expr(Kind::Call, line), callee(std::move(c)) {}
  ExprPtr callee;
  Arguments args;
};

struct FilterExpr : Expr {  // subject | name(args); subject is null in {% filter %} and {% set x | f %}
  FilterExpr(ExprPtr s, std::string n, int line)
      : Expr(Kind::Filter, line), subject(std::move(s)), name(std::move(n)) {}
  ExprPtr subject;
  std::string name;
  Arguments args;
};

struct TestExpr : Expr {  // subject is [not] name(args)
  TestExpr(ExprPtr s, std::string n, bool neg, int line)
      : Expr(Kind::Test, line), subject(std::move(s)), name(std::move(n)), negated(neg) {}
  ExprPtr subject;
  std::string name;
  Arguments args;
  bool negated;
};

struct UnaryExpr : Expr {  // op: "-", "+", "not"
  UnaryExpr(std::string o, ExprPtr e, int line)
      : Expr(Kind::Unary, line), op(std::move(o)), operand(std::move(e)) {}
  std::string op;
  ExprPtr operand;
};

struct BinaryExpr : Expr {  // op: + - * / // % ** ~ and or
  BinaryExpr(std::string o, ExprPtr l, ExprPtr r, int line)
      : Expr(Kind::Binary, line), op(std::move(o)), left(std::move(l)), right(std::move(r)) {}
  std::string op;
  ExprPtr left, right;
};

struct CompareExpr : Expr {  // first op1 e1 op2 e2 ... (chained like Python); ops include "in", "not in"
  CompareExpr(ExprPtr f, int line) : Expr(Kind::Compare, line), first(std::move(f)) {}
  ExprPtr first;
  std::vector<std::pair<std::string, ExprPtr>> rest;
};

struct CondExpr : Expr {  // then if test else otherwise (otherwise optional: undefined)
  CondExpr(ExprPtr t, ExprPtr th, ExprPtr o, int line)
      : Expr(Kind::Cond, line), test(std::move(t)), then(std::move(th)), otherwise(std::move(o)) {}
  ExprPtr test, then, otherwise;
};

struct Stmt {
  enum class Kind {
    Text,
    Print,
    If,
    For,
    Set,
    SetBlock,
    Macro,
    CallBlock,
    FilterBlock,
    With,
    Scope,
    Break,
    Continue
  };
  Stmt(Kind kind, int line) : kind(kind), line(line) {}
  virtual ~Stmt() = default;
  Kind kind;
  int line;
};
using StmtPtr = std::unique_ptr<Stmt>;
using Body = std::vector<StmtPtr>;

// What a set, for or with assigns to: one name, several names (unpacking) or namespace.attribute.
struct Target {
  std::vector<std::string> names;
  bool unpack = false;
  std::string attribute;  // set ns.attribute = ...: names[0] is the namespace
};

struct TextStmt : Stmt {
  TextStmt(std::string t, int line) : Stmt(Kind::Text, line), text(std::move(t)) {}
  std::string text;
};

struct PrintStmt : Stmt {
  PrintStmt(ExprPtr e, int line) : Stmt(Kind::Print, line), expr(std::move(e)) {}
  ExprPtr expr;
};

struct IfStmt : Stmt {
  explicit IfStmt(int line) : Stmt(Kind::If, line) {}
  std::vector<std::pair<ExprPtr, Body>> branches;  // if, elif...
  Body otherwise;
};

struct ForStmt : Stmt {
  explicit ForStmt(int line) : Stmt(Kind::For, line) {}
  Target target;
  ExprPtr iterable, filter;  // filter: "for x in xs if cond" (optional)
  Body body, otherwise;
};

struct SetStmt : Stmt {
  explicit SetStmt(int line) : Stmt(Kind::Set, line) {}
  Target target;
  ExprPtr value;
};

struct SetBlockStmt : Stmt {  // {% set x | filters %}body{% endset %}
  explicit SetBlockStmt(int line) : Stmt(Kind::SetBlock, line) {}
  Target target;
  std::vector<std::unique_ptr<FilterExpr>> filters;
  Body body;
};

struct MacroParam {
  std::string name;
  ExprPtr default_value;  // optional
};

struct MacroStmt : Stmt {
  explicit MacroStmt(int line) : Stmt(Kind::Macro, line) {}
  std::string name;
  std::vector<MacroParam> params;
  Body body;
  // jinja2 accepts extra positional or keyword arguments only when the body uses varargs / kwargs.
  bool uses_varargs = false, uses_kwargs = false;
};

struct CallBlockStmt : Stmt {  // {% call(params) macro(args) %}body{% endcall %}: body is the caller()
  explicit CallBlockStmt(int line) : Stmt(Kind::CallBlock, line), caller(line) {}
  std::unique_ptr<CallExpr> call;
  MacroStmt caller;
};

struct FilterBlockStmt : Stmt {
  explicit FilterBlockStmt(int line) : Stmt(Kind::FilterBlock, line) {}
  std::vector<std::unique_ptr<FilterExpr>> filters;
  Body body;
};

struct WithStmt : Stmt {
  explicit WithStmt(int line) : Stmt(Kind::With, line) {}
  std::vector<std::pair<Target, ExprPtr>> assignments;
  Body body;
};

// A body run in its own scope with nothing else: {% generation %} (transformers' assistant-mask tag).
struct ScopeStmt : Stmt {
  explicit ScopeStmt(int line) : Stmt(Kind::Scope, line) {}
  Body body;
};

struct LoopControlStmt : Stmt {  // {% break %} / {% continue %}
  LoopControlStmt(Kind k, int line) : Stmt(k, line) {}
};

}  // namespace wgllm::tokenizer::jinja
