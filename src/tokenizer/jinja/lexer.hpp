// Splits template source into tokens the way jinja2's lexer does with the settings transformers uses
// for chat templates (trim_blocks, lstrip_blocks, keep_trailing_newline=False): newlines are normalized
// to "\n", one trailing newline is dropped, "{%- -%}" / "{{- -}}" / "{#- -#}" strip whitespace, a block
// tag or comment alone on its line takes its indentation and its newline with it, "{%+" and "+%}" opt
// out. Comments vanish and {% raw %} bodies become text.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace wgllm::tokenizer::jinja {

enum class TokenType {
  Text,
  VarBegin,
  VarEnd,
  BlockBegin,
  BlockEnd,
  Name,
  String,
  Integer,
  Float,
  Operator,
  End
};

struct Token {
  TokenType type;
  std::string value;  // text, name, decoded string literal or operator
  int line;
  int64_t integer = 0;
  double real = 0;
};

// Throws TemplateError (with the line) for an unterminated tag, comment or string and unknown characters.
std::vector<Token> lex(std::string_view source);

}  // namespace wgllm::tokenizer::jinja
