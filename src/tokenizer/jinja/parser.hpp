// Recursive-descent parser for the Jinja subset chat templates use, with jinja2's grammar and operator
// precedence (parser.py): or < and < not < comparisons/in < + - < ~ < * / // % < ** < unary - + <
// postfix (. [] ()) < filters and tests. Unknown filters and tests are syntax errors where jinja2 reports
// them when it compiles the template (outside {% if %} branches and inline ifs, where they fail only if
// they run).
#pragma once

#include <vector>

#include "tokenizer/jinja/ast.hpp"
#include "tokenizer/jinja/lexer.hpp"

namespace wgllm::tokenizer::jinja {

// Nesting deeper than this (blocks in blocks, parentheses, operators) is refused: it bounds the recursion
// of the parser and of the interpreter that walks the tree.
inline constexpr int kMaxNesting = 200;

// Throws TemplateError with the line of the offending token.
Body parse(const std::vector<Token>& tokens);

}  // namespace wgllm::tokenizer::jinja
