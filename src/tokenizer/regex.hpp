// The regular expressions that byte-level BPE tokenizers split text with before merging: the "Split"
// patterns of Hugging Face tokenizer.json files and llama.cpp's per-model lists. Written here rather than
// taken from PCRE2 or std::regex so that it builds for WebAssembly without a C library port, knows the
// Unicode categories of all of Unicode (std::regex knows none), and runs fast on these patterns
// (docs/tokenizer.md has the measurements).
//
// Semantics are those of Oniguruma (Hugging Face tokenizers) and PCRE: leftmost-first alternation,
// greedy quantifiers that backtrack. Supported syntax:
//   alternation |, groups (...) (?:...) (?<name>...), flags (?i) (?-i) (?i:...), lookahead (?=...)
//   (?!...), atomic groups (?>...), quantifiers * + ? {n} {n,} {n,m} with lazy (?) and possessive (+)
//   forms, the end anchor $ (end of the text being split), . (anything but \n), classes [...] [^...]
//   with ranges, escapes \p{..} \P{..} \pL (general categories: L Lu Ll Lt Lm Lo L& M Mn Mc Me N Nd Nl No
//   P Pc Pd Ps Pe Pi Pf Po S Sm Sc Sk So Z Zs Zl Zp C Cc Cf Cs Co Cn), \s \S (White_Space), \d \D (Nd),
//   \w \W (L, M, Nd, Pc), \n \r \t \f \v \e \a \0 \xHH \x{H...} \uHHHH and escaped punctuation.
//   (?i) compares by Unicode simple case folding, so "(?i:s)" also matches U+017F "ſ".
// Anything else (backreferences, lookbehind, ^, \b, scripts like \p{Han}, nested classes) is rejected
// with an Error rather than matched differently, as is an unbounded repetition of something that can
// match the empty string.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include "tokenizer/unicode.hpp"

namespace wgllm::tokenizer {

// A code point of the text being matched together with its unicode::properties byte, so that a class
// test needs no table lookup: value | properties << 24.
using PackedChar = uint32_t;
inline PackedChar pack_char(char32_t cp) {
  return cp | uint32_t{unicode::properties(cp)} << 24;
}

class Regex {
 public:
  // Throws Error(BadInput) naming the pattern and the byte offset of what it cannot accept.
  explicit Regex(std::string_view pattern);

  // The end (an index into `text`) of the match that starts exactly at text[pos], or -1 when no match
  // starts there. Only `text` is visible: $ and lookaheads stop at its end.
  ptrdiff_t match_at(std::span<const PackedChar> text, size_t pos) const;

  // Matches at increasing positions of one text, as a split does. Backtracking can make every failed
  // attempt scan to the end of a long run ("\s+$" at each of 20,000 spaces followed by a digit: 2 s);
  // once an attempt takes long, a search remembers the states (instruction, position) that failed, and
  // later attempts stop where they reach one, which keeps such a text linear. With no captures, whether a
  // state leads to a match does not depend on where the attempt started; the memory is dropped after a
  // match. Inside lookaheads and atomic groups nothing is remembered, so the choices taken there are
  // bounded instead (kMaxInnerSteps, plus kInnerStepsPerChar per character of the text): an expression
  // that backtracks exponentially there, such as (?=(a|a)*b), throws Error(BadInput) naming itself.
  class Search {
   public:
    Search(const Regex& regex, std::span<const PackedChar> text) : regex_(regex), text_(text) {}
    ptrdiff_t match_at(size_t pos);

   private:
    friend class Regex;
    const Regex& regex_;
    std::span<const PackedChar> text_;
    size_t steps_ = 0;                     // choices taken in this attempt
    size_t inner_steps_ = 0;               // choices taken inside lookaheads and atomic groups, all attempts
    bool remember_ = false;                // whether failed states are being recorded
    std::unordered_set<uint64_t> failed_;  // instruction << 32 | position
  };

  const std::string& pattern() const { return pattern_; }

  // A set of code points: those whose properties byte is in `properties`, or that lie in `ranges`;
  // the complement of that when `negated`.
  struct CharSet {
    uint64_t properties = 0;       // bit p: code points whose properties byte is p
    std::vector<char32_t> ranges;  // [2 * n] sorted disjoint inclusive ranges first, last, ...
    bool negated = false;
    uint64_t ascii[2] = {0, 0};  // the answer for code points below 128, negation applied
    bool contains(PackedChar c) const;
  };

  enum class Op : uint8_t { Char, Set, Split, Jump, Look, NegLook, Atomic, End, Match };
  struct Inst {
    Op op;
    bool top_level = false;  // Split: not inside a lookahead or atomic group, so Search may remember it
    uint32_t x = 0;          // Char: the code point; Set: index into sets_; Split/Jump: first choice;
                             // Look/NegLook/Atomic: start of the sub-program (which ends in Match)
    uint32_t y = 0;          // Split: the choice to backtrack to; Look/NegLook/Atomic: where to go on
  };

 private:
  // From instruction pc at text[pos], within `search` (sub-programs too: they count its inner steps).
  ptrdiff_t run(uint32_t pc, std::span<const PackedChar> text, size_t pos, Search* search) const;

  std::string pattern_;
  std::vector<Inst> program_;
  std::vector<CharSet> sets_;
};

}  // namespace wgllm::tokenizer
