#include "tokenizer/jinja/lexer.hpp"

#include <cerrno>
#include <charconv>
#include <cstdlib>

#include "core/utf8.hpp"
#include "tokenizer/jinja/template_error.hpp"
#include "tokenizer/jinja/text.hpp"

namespace wgllm::tokenizer::jinja {

namespace {

bool ascii_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}
bool is_digit(char c) {
  return c >= '0' && c <= '9';
}
bool name_start(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}
bool name_char(char c) {
  return name_start(c) || is_digit(c);
}

// "\r\n" and "\r" become "\n"; one trailing newline goes (keep_trailing_newline=False).
std::string normalize(std::string_view source) {
  std::string out;
  out.reserve(source.size());
  for (size_t i = 0; i < source.size(); ++i) {
    if (source[i] == '\r') {
      out += '\n';
      if (i + 1 < source.size() && source[i + 1] == '\n') ++i;
    } else {
      out += source[i];
    }
  }
  if (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

bool only_space(std::string_view s) {
  for (std::string_view c : text::chars(s)) {
    utf8::Decoded d = utf8::decode(c);
    if (d.status != utf8::Status::Valid || !text::is_space(d.cp)) return false;
  }
  return true;
}

class Lexer {
 public:
  explicit Lexer(std::string_view source) : src_(normalize(source)) {}

  std::vector<Token> run() {
    while (pos_ < src_.size()) {
      size_t open = find_opener(pos_);
      if (open == std::string::npos) {
        emit_text(src_.substr(pos_), line_);
        advance(src_.size());
        break;
      }
      char kind = src_[open + 1];
      size_t after = open + 2;
      char sign = 0;
      if (after < src_.size() && (src_[after] == '-' || src_[after] == '+')) sign = src_[after++];
      size_t raw_end = kind == '%' ? match_raw_begin(after) : std::string::npos;

      emit_text(strip_before(src_.substr(pos_, open - pos_), sign, kind != '{'), line_);
      advance(open);
      if (kind == '#') {
        comment(after);
      } else if (raw_end != std::string::npos) {
        line_starting_ = src_[raw_end - 1] == '\n';
        advance(raw_end);
        raw_body();
      } else {
        tag(kind == '%', after);
      }
    }
    tokens_.push_back({TokenType::End, {}, line_});
    return std::move(tokens_);
  }

 private:
  size_t find_opener(size_t from) const {
    for (size_t i = src_.find('{', from); i != std::string::npos; i = src_.find('{', i + 1))
      if (i + 1 < src_.size() && (src_[i + 1] == '{' || src_[i + 1] == '%' || src_[i + 1] == '#')) return i;
    return std::string::npos;
  }

  // The text before a tag, after "-" stripping or lstrip_blocks (only for {% and {#, unless "+").
  std::string strip_before(std::string text, char sign, bool block_or_comment) const {
    if (sign == '-') return text::strip(text, false, true);
    if (sign == '+' || !block_or_comment) return text;
    size_t line_start = text.rfind('\n');
    line_start = line_start == std::string::npos ? 0 : line_start + 1;
    if ((line_start > 0 || line_starting_) && line_start < text.size() &&
        only_space(std::string_view(text).substr(line_start)))
      text.resize(line_start);
    return text;
  }

  // Where the tag closing a block ends, given the position of its "+%}", "-%}" or "%}".
  size_t block_end(size_t at) const {
    if (src_[at] == '+') return at + 3;
    if (src_[at] == '-') return skip_space(at + 3);
    size_t end = at + 2;
    return end < src_.size() && src_[end] == '\n' ? end + 1 : end;  // trim_blocks
  }

  // The length of the whitespace character at i (as Python's \s), 0 if there is none.
  size_t space_at(size_t i) const {
    if (i >= src_.size()) return 0;
    if (static_cast<unsigned char>(src_[i]) < 0x80)
      return ascii_space(src_[i]) || (src_[i] >= 0x1c && src_[i] <= 0x1f);
    utf8::Decoded d = utf8::decode(std::string_view(src_).substr(i));
    return d.status == utf8::Status::Valid && text::is_space(d.cp) ? d.length : 0;
  }

  size_t skip_space(size_t i) const {
    while (size_t n = space_at(i)) i += n;
    return i;
  }

  bool at(size_t i, std::string_view s) const { return src_.compare(i, s.size(), s) == 0; }

  // "{% raw %}" (its end takes no trim_blocks newline); returns where it ends, npos if this is no raw tag.
  size_t match_raw_begin(size_t after) const {
    size_t i = skip_space(after);
    if (!at(i, "raw")) return std::string::npos;
    i = skip_space(i + 3);
    if (at(i, "-%}")) return skip_space(i + 3);
    if (at(i, "%}")) return i + 2;
    return std::string::npos;
  }

  void raw_body() {
    int start_line = line_;
    for (size_t open = src_.find("{%", pos_); open != std::string::npos; open = src_.find("{%", open + 1)) {
      size_t i = open + 2;
      char sign = 0;
      if (i < src_.size() && (src_[i] == '-' || src_[i] == '+')) sign = src_[i++];
      i = skip_space(i);
      if (!at(i, "endraw")) continue;
      i = skip_space(i + 6);
      if (!at(i, "+%}") && !at(i, "-%}") && !at(i, "%}")) continue;
      emit_text(strip_before(src_.substr(pos_, open - pos_), sign, true), start_line);
      size_t end = block_end(i);
      line_starting_ = src_[end - 1] == '\n';
      advance(end);
      return;
    }
    fail("syntax error: missing end of raw directive", start_line);
  }

  // The comment ends at the first "#}"; a "-" or "+" right before it is its whitespace sign.
  void comment(size_t after) {
    size_t i = src_.find("#}", after);
    if (i == std::string::npos) fail("syntax error: missing end of comment tag", line_);
    char sign = i > after ? src_[i - 1] : 0;
    size_t end = i + 2;
    if (sign == '-') {
      end = skip_space(end);
    } else if (sign != '+' && end < src_.size() && src_[end] == '\n') {
      ++end;  // trim_blocks
    }
    line_starting_ = src_[end - 1] == '\n';
    advance(end);
  }

  void tag(bool block, size_t after) {
    tokens_.push_back({block ? TokenType::BlockBegin : TokenType::VarBegin, {}, line_});
    advance(after);
    std::string brackets;  // open (, [ and { whose close is still to come: inside them "}}" is not an end
    while (true) {
      if (pos_ >= src_.size())
        fail(
            std::string("syntax error: unexpected end of template, expected '") + (block ? "%}" : "}}") + "'",
            line_);
      if (brackets.empty()) {
        size_t end = std::string::npos;
        if (block && (at(pos_, "+%}") || at(pos_, "-%}") || at(pos_, "%}"))) {
          end = block_end(pos_);
        } else if (!block && at(pos_, "-}}")) {
          end = skip_space(pos_ + 3);
        } else if (!block && at(pos_, "}}")) {
          end = pos_ + 2;
        }
        if (end != std::string::npos) {
          tokens_.push_back({block ? TokenType::BlockEnd : TokenType::VarEnd, {}, line_});
          line_starting_ = src_[end - 1] == '\n';
          advance(end);
          return;
        }
      }
      char c = src_[pos_];
      if (size_t n = space_at(pos_)) {
        advance(pos_ + n);
      } else if (is_digit(c)) {
        number();
      } else if (name_start(c)) {
        size_t e = pos_;
        while (e < src_.size() && name_char(src_[e])) ++e;
        tokens_.push_back({TokenType::Name, src_.substr(pos_, e - pos_), line_});
        advance(e);
      } else if (c == '\'' || c == '"') {
        string_literal(c);
      } else {
        operator_token(brackets);
      }
    }
  }

  void operator_token(std::string& brackets) {
    static const char* two[] = {"//", "**", "==", "!=", ">=", "<="};
    for (const char* op : two) {
      if (at(pos_, op)) {
        tokens_.push_back({TokenType::Operator, op, line_});
        advance(pos_ + 2);
        return;
      }
    }
    char c = src_[pos_];
    if (std::string_view("+-/*%~[](){}><=.:|,;").find(c) == std::string_view::npos)
      fail(std::string("syntax error: unexpected character '") + c + "'", line_);
    if (c == '(' || c == '[' || c == '{') brackets += c;
    if (c == ')' || c == ']' || c == '}') {
      char open = c == ')' ? '(' : (c == ']' ? '[' : '{');
      if (brackets.empty() || brackets.back() != open)
        fail(std::string("syntax error: unexpected '") + c + "'", line_);
      brackets.pop_back();
    }
    tokens_.push_back({TokenType::Operator, std::string(1, c), line_});
    advance(pos_ + 1);
  }

  // (\d+_)*\d+ : digits with single underscores between them; returns the end, or `i` if none.
  size_t digit_group(size_t i) const {
    size_t e = i;
    while (e < src_.size() && is_digit(src_[e])) {
      while (e < src_.size() && is_digit(src_[e])) ++e;
      if (e + 1 < src_.size() && src_[e] == '_' && is_digit(src_[e + 1])) ++e;
    }
    return e;
  }

  void number() {
    auto clean = [](std::string s) {
      std::erase(s, '_');
      return s;
    };
    size_t start = pos_;
    // Floats first, as jinja2 tries them first; a digit right after "." (foo.0) is an integer index.
    if (start == 0 || src_[start - 1] != '.') {
      size_t e = digit_group(start);
      size_t f = e;
      if (f + 1 < src_.size() && src_[f] == '.' && is_digit(src_[f + 1])) f = digit_group(f + 1);
      size_t x = f;
      if (x < src_.size() && (src_[x] == 'e' || src_[x] == 'E')) {
        size_t y = x + 1;
        if (y < src_.size() && (src_[y] == '+' || src_[y] == '-')) ++y;
        size_t z = digit_group(y);
        if (z > y) x = z;
      }
      if (x > e) {
        std::string text = clean(src_.substr(start, x - start));
        Token t{TokenType::Float, text, line_};
        t.real = std::strtod(text.c_str(), nullptr);
        tokens_.push_back(std::move(t));
        advance(x);
        return;
      }
    }
    int base = 10;
    size_t digits = start, e;
    if (src_[start] == '0' && start + 1 < src_.size() &&
        std::string_view("bBoOxX").find(src_[start + 1]) != std::string_view::npos) {
      char p = static_cast<char>(src_[start + 1] | 0x20);
      base = p == 'b' ? 2 : (p == 'o' ? 8 : 16);
      digits = start + 2;
      auto ok = [&](char c) {
        int v = is_digit(c) ? c - '0' : ((c | 0x20) >= 'a' && (c | 0x20) <= 'f' ? (c | 0x20) - 'a' + 10 : 99);
        return v < base;
      };
      e = digits;
      while (e < src_.size() && (ok(src_[e]) || (src_[e] == '_' && e + 1 < src_.size() && ok(src_[e + 1]))))
        ++e;
      if (e == digits) fail("syntax error: invalid integer literal", line_);
    } else if (src_[start] == '0') {
      e = start + 1;
      while (e < src_.size() &&
             (src_[e] == '0' || (src_[e] == '_' && e + 1 < src_.size() && src_[e + 1] == '0')))
        ++e;
    } else {
      e = start + 1;
      while (e < src_.size() &&
             (is_digit(src_[e]) || (src_[e] == '_' && e + 1 < src_.size() && is_digit(src_[e + 1]))))
        ++e;
    }
    std::string text = clean(src_.substr(digits, e - digits));
    Token t{TokenType::Integer, src_.substr(start, e - start), line_};
    auto r = std::from_chars(text.data(), text.data() + text.size(), t.integer, base);
    if (r.ec != std::errc()) fail("integer literal " + t.value + " exceeds the 64-bit range", line_);
    tokens_.push_back(std::move(t));
    advance(e);
  }

  // Escapes as Python's "unicode-escape" codec decodes them, which is what jinja2 applies.
  void string_literal(char quote) {
    int start_line = line_;
    std::string value;
    size_t i = pos_ + 1;
    auto hex = [&](size_t from, int count) -> char32_t {
      char32_t v = 0;
      for (int k = 0; k < count; ++k) {
        char c = from + k < src_.size() ? src_[from + k] : 0;
        int d = is_digit(c) ? c - '0' : ((c | 0x20) >= 'a' && (c | 0x20) <= 'f' ? (c | 0x20) - 'a' + 10 : -1);
        if (d < 0) fail("syntax error: truncated \\x, \\u or \\U escape in a string", start_line);
        v = v * 16 + static_cast<char32_t>(d);
      }
      return v;
    };
    while (true) {
      if (i >= src_.size())
        fail(std::string("syntax error: unterminated string starting with ") + quote, start_line);
      char c = src_[i];
      if (c == quote) break;
      if (c != '\\') {
        value += c;
        ++i;
        continue;
      }
      if (i + 1 >= src_.size())
        fail(std::string("syntax error: unterminated string starting with ") + quote, start_line);
      char e = src_[i + 1];
      i += 2;
      switch (e) {
        case '\n':
          break;
        case '\\':
          value += '\\';
          break;
        case '\'':
          value += '\'';
          break;
        case '"':
          value += '"';
          break;
        case 'a':
          value += '\a';
          break;
        case 'b':
          value += '\b';
          break;
        case 'f':
          value += '\f';
          break;
        case 'n':
          value += '\n';
          break;
        case 'r':
          value += '\r';
          break;
        case 't':
          value += '\t';
          break;
        case 'v':
          value += '\v';
          break;
        case 'x':
          utf8::append(value, hex(i, 2));
          i += 2;
          break;
        case 'u':
          utf8::append(value, hex(i, 4));
          i += 4;
          break;
        case 'U': {
          char32_t cp = hex(i, 8);
          if (cp > 0x10FFFF) fail("syntax error: \\U escape out of range in a string", start_line);
          utf8::append(value, cp);
          i += 8;
          break;
        }
        default:
          if (e >= '0' && e <= '7') {
            char32_t v = static_cast<char32_t>(e - '0');
            for (int k = 0; k < 2 && i < src_.size() && src_[i] >= '0' && src_[i] <= '7'; ++k)
              v = v * 8 + (src_[i++] - '0');
            utf8::append(value, v);
          } else {
            value += '\\';
            value += e;
          }
      }
    }
    tokens_.push_back({TokenType::String, std::move(value), start_line});
    advance(i + 1);
  }

  void emit_text(std::string text, int line) {
    if (!text.empty()) tokens_.push_back({TokenType::Text, std::move(text), line});
  }

  void advance(size_t to) {
    for (size_t i = pos_; i < to; ++i) line_ += src_[i] == '\n';
    pos_ = to;
  }

  std::string src_;
  size_t pos_ = 0;
  int line_ = 1;
  bool line_starting_ = true;  // the previous match ended a line: lstrip_blocks may strip at the start
  std::vector<Token> tokens_;
};

}  // namespace

std::vector<Token> lex(std::string_view source) {
  return Lexer(source).run();
}

}  // namespace wgllm::tokenizer::jinja
