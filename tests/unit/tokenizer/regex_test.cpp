// The pre-tokenizers' regular expressions. Expected matches follow from the semantics of PCRE and
// Oniguruma (leftmost-first alternation, backtracking greedy quantifiers), worked out by hand, and from
// the Unicode Character Database's properties of each code point used.
#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <vector>

#include "core/error.hpp"
#include "core/utf8.hpp"
#include "tokenizer/regex.hpp"

namespace wgllm::tokenizer {
namespace {

std::vector<PackedChar> chars(const std::string& text) {
  std::vector<PackedChar> out;
  for (size_t pos = 0; pos < text.size();) {
    const utf8::Decoded d = utf8::decode(std::string_view(text).substr(pos));
    out.push_back(pack_char(d.cp));
    pos += d.length;
  }
  return out;
}

// The number of code points matched at the start of `text`, or nullopt.
std::optional<size_t> match(const std::string& pattern, const std::string& text) {
  const Regex re(pattern);
  const std::vector<PackedChar> c = chars(text);
  const ptrdiff_t end = re.match_at(c, 0);
  if (end < 0) return std::nullopt;
  return static_cast<size_t>(end);
}

TEST(Regex, AlternationIsLeftmostFirstNotLongest) {
  EXPECT_EQ(match("a|ab", "ab"), 1u);
  EXPECT_EQ(match("ab|a", "ab"), 2u);
  EXPECT_EQ(match("x|y", "ab"), std::nullopt);
  EXPECT_EQ(match("", "ab"), 0u);
}

TEST(Regex, QuantifiersBacktrack) {
  EXPECT_EQ(match("a*ab", "aaab"), 4u);
  EXPECT_EQ(match("a+", "aaa"), 3u);
  EXPECT_EQ(match("a+?", "aaa"), 1u);
  EXPECT_EQ(match("a?b", "b"), 1u);
  EXPECT_EQ(match("a??a", "aa"), 1u);
  EXPECT_EQ(match("a{2}", "aaaa"), 2u);
  EXPECT_EQ(match("a{2,}", "aaaa"), 4u);
  EXPECT_EQ(match("a{1,3}", "aaaa"), 3u);
  EXPECT_EQ(match("a{2,3}?", "aaaa"), 2u);
  EXPECT_EQ(match("a{2,3}", "a"), std::nullopt);
  EXPECT_EQ(match("(?:ab)+", "ababa"), 4u);
  EXPECT_EQ(match("a{,2}", "aaa"), 2u);  // {0,2}, as in Oniguruma
  EXPECT_EQ(match("a{x}", "a{x}"), 4u);  // not a quantifier: literal braces
  EXPECT_EQ(match("a{,}", "a{,}"), 4u);
}

TEST(Regex, AtomicGroupsAndPossessiveQuantifiersDoNotGiveBack) {
  EXPECT_EQ(match("a*+a", "aaa"), std::nullopt);
  EXPECT_EQ(match("a*a", "aaa"), 3u);
  EXPECT_EQ(match("(?>a|ab)c", "abc"), std::nullopt);
  EXPECT_EQ(match("(?:a|ab)c", "abc"), 3u);
  EXPECT_EQ(match("a++b", "aab"), 3u);
}

TEST(Regex, LookaheadAndEnd) {
  EXPECT_EQ(match("\\s+(?!\\S)", "   x"), 2u);
  EXPECT_EQ(match("\\s+(?!\\S)", "   "), 3u);
  EXPECT_EQ(match("\\s+(?!\\S)", " x"), std::nullopt);
  EXPECT_EQ(match("a(?=b)", "ab"), 1u);
  EXPECT_EQ(match("a(?=b)", "ac"), std::nullopt);
  EXPECT_EQ(match("\\s+$", "  "), 2u);
  EXPECT_EQ(match("\\s+$", "  x"), std::nullopt);
}

TEST(Regex, CaseInsensitiveUsesSimpleCaseFolding) {
  const std::string contraction = "(?i:'s|'t|'re|'ve|'m|'ll|'d)";
  EXPECT_EQ(match(contraction, "'s"), 2u);
  EXPECT_EQ(match(contraction, "'S"), 2u);
  EXPECT_EQ(match(contraction, "'\xC5\xBF"), 2u);  // U+017F LATIN SMALL LETTER LONG S folds to 's'
  EXPECT_EQ(match(contraction, "'LL"), 3u);
  EXPECT_EQ(match(contraction, "'x"), std::nullopt);
  EXPECT_EQ(match("(?i)k", "\xE2\x84\xAA"), 1u);  // U+212A KELVIN SIGN folds to 'k'
  EXPECT_EQ(match("(?i)[a-c]+", "AbC"), 3u);
  EXPECT_EQ(match("(?i:a)a", "AA"), std::nullopt);  // the flag ends with its group
  EXPECT_EQ(match("(?i)a(?-i)a", "AA"), std::nullopt);
  EXPECT_EQ(match("(?i)a(?-i)a", "Aa"), 2u);
}

TEST(Regex, UnicodeCategoriesBeyondAscii) {
  // \p{L}: é (Ll), ж (Ll), 中 (Lo), U+1D49C MATHEMATICAL SCRIPT CAPITAL A (Lu), ǅ (Lt), ʰ (Lm).
  EXPECT_EQ(match("\\p{L}+", "\xC3\xA9\xD0\xB6\xE4\xB8\xAD\xF0\x9D\x92\x9C\xC7\x85\xCA\xB0!"), 6u);
  // \p{N}: ٣ (U+0663 Nd), Ⅻ (U+216B Nl), ½ (No); not the letter O.
  EXPECT_EQ(match("\\p{N}+", "\xD9\xA3\xE2\x85\xAB\xC2\xBDO"), 3u);
  EXPECT_EQ(match("\\p{Nd}", "\xE2\x85\xAB"), std::nullopt);
  // \p{P}: … (Po), « (Pi), _ (Pc), - (Pd); $ is Sc, + is Sm.
  EXPECT_EQ(match("\\p{P}+", "\xE2\x80\xA6\xC2\xAB_-$"), 4u);
  EXPECT_EQ(match("\\p{S}+", "$+^\xC2\xA9x"), 4u);
  // \s is White_Space: U+0085, U+00A0, U+2028, U+3000; not U+200B ZERO WIDTH SPACE (Cf).
  EXPECT_EQ(match("\\s+", "\xC2\x85\xC2\xA0\xE2\x80\xA8\xE3\x80\x80\xE2\x80\x8B"), 4u);
  EXPECT_EQ(match("\\S", "\xE2\x80\x8B"), 1u);
  // The GPT-2 "other" class: punctuation and symbols, not letters, digits or spaces of any script.
  const std::string other = "[^\\s\\p{L}\\p{N}]+";
  EXPECT_EQ(match(other, "!\xE2\x82\xAC\xF0\x9F\xA6\x99\xC3\xA9"), 3u);  // ! € 🦙, then é
  EXPECT_EQ(match(other, "\xD9\xA3"), std::nullopt);
  EXPECT_EQ(match(other, "\xE3\x80\x80"), std::nullopt);
  EXPECT_EQ(match("\\P{L}+", "12a"), 2u);
  EXPECT_EQ(match("\\p{^L}+", "12a"), 2u);
  EXPECT_EQ(match("\\pL+", "ab1"), 2u);
  EXPECT_EQ(match("[\\p{Lu}\\p{M}]+",
                  "A\xCC\x81"
                  "Bc"),
            3u);                                // A, U+0301 (Mn), B
  EXPECT_EQ(match("\\p{Cn}", "\xCD\xB8"), 1u);  // U+0378 is unassigned
  EXPECT_EQ(match("\\w+", "a_1\xC3\xA9!"), 4u);
  EXPECT_EQ(match("\\d+", "12\xD9\xA3x"), 3u);
}

TEST(Regex, ClassesAndEscapes) {
  EXPECT_EQ(match(".+", "ab\ncd"), 2u);
  EXPECT_EQ(match("[^\\r\\n]+", "ab\rcd"), 2u);
  EXPECT_EQ(match("[]a]+", "a]a["), 3u);
  EXPECT_EQ(match("[\\]\\-]+", "]-]x"), 3u);
  EXPECT_EQ(match("[a-]+", "a-a"), 3u);
  EXPECT_EQ(match("[!-/:-@]+", "!/:@A"), 4u);
  EXPECT_EQ(match("\\x{1F999}\\u00e9\\x41",
                  "\xF0\x9F\xA6\x99\xC3\xA9"
                  "A"),
            3u);
  EXPECT_EQ(match("\\.\\$\\+", ".$+"), 3u);
  EXPECT_EQ(match("\\t\\n\\r\\f\\v", "\t\n\r\f\v"), 5u);
  EXPECT_EQ(match("[\xE4\xB8\x80-\xE9\xBE\xA5]+", "\xE4\xB8\xAD\xE6\x96\x87x"), 2u);  // [一-龥]: 中文
  EXPECT_EQ(match("(a)(?<name>b)(?P<other>c)", "abc"), 3u);  // captures are plain groups here
}

TEST(Regex, UnsupportedOrBrokenPatternsAreClearErrors) {
  const auto rejects = [](const std::string& pattern, const std::string& needle) {
    try {
      Regex re(pattern);
      ADD_FAILURE() << "accepted '" << pattern << "'";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::BadInput);
      const std::string message = e.what();
      EXPECT_NE(message.find(needle), std::string::npos) << message;
      EXPECT_NE(message.find("byte offset"), std::string::npos) << message;
      EXPECT_NE(message.find("'" + utf8::sanitize(pattern) + "'"), std::string::npos) << message;
    }
  };
  rejects("(a", "missing ')'");
  rejects("a)", "unbalanced ')'");
  rejects("[a", "missing ']'");
  rejects("*a", "nothing to repeat");
  rejects("(?<=a)b", "lookbehind");
  rejects("\\p{Han}", "unsupported property");
  rejects("a{3,2}", "m < n");
  rejects("a{1001}", "above 1000");
  rejects("(a*)*", "empty string");
  rejects("(?:)+", "empty string");
  rejects("\\1", "unsupported escape");
  rejects("\\b", "unsupported escape");
  rejects("^a", "^");
  rejects("[[:alpha:]]", "nested");
  rejects("[a&&b]", "intersection");
  rejects("[z-a]", "out of order");
  rejects("\\x{110000}", "hexadecimal");
  rejects("a\xFF", "invalid UTF-8");
  rejects(std::string(200, '(') + "a" + std::string(200, ')'), "nested more than 100 deep");
  rejects("a" + std::string(300, '?'), "quantifiers in a row");
}

}  // namespace
}  // namespace wgllm::tokenizer
