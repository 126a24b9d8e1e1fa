#include "tokenizer/regex.hpp"

#include <algorithm>
#include <optional>

#include "core/error.hpp"
#include "core/utf8.hpp"

namespace wgllm::tokenizer {

namespace {

using unicode::Category;

constexpr int kMaxRepeat = 1000;          // largest n in {n}, {n,m}
constexpr size_t kMaxProgram = 1u << 20;  // instructions, after {n,m} copies
constexpr int kMaxNesting = 100;          // groups in groups, quantifiers on quantifiers (recursion depth)
constexpr uint64_t kWhiteSpaceProperties = 0xFFFFFFFF00000000ull;  // every properties byte with bit 5 set
static_assert(unicode::kPropertyValues == 64 && unicode::kWhiteSpaceBit == 0x20);

uint32_t category_bit(Category c) {
  return 1u << static_cast<int>(c);
}

// Properties bytes whose category is in `categories` (a bit per Category), with or without White_Space.
uint64_t properties_of(uint32_t categories) {
  return uint64_t{categories} | uint64_t{categories} << 32;
}

// The general category names of \p{...}: single categories and their one-letter groups.
std::optional<uint32_t> category_set(std::string_view name) {
  static constexpr std::string_view kNames[] = {"Cn", "Lu", "Ll", "Lt", "Lm", "Lo", "Mn", "Mc", "Me", "Nd",
                                                "Nl", "No", "Pc", "Pd", "Ps", "Pe", "Pi", "Pf", "Po", "Sm",
                                                "Sc", "Sk", "So", "Zs", "Zl", "Zp", "Cc", "Cf", "Cs", "Co"};
  static_assert(std::size(kNames) == unicode::kCategoryCount);
  uint32_t set = 0;
  for (int c = 0; c < unicode::kCategoryCount; ++c) {
    const std::string_view n = kNames[c];
    if (n == name || (name.size() == 1 && n[0] == name[0])) set |= 1u << c;
  }
  if (name == "L&" || name == "LC")
    set = category_bit(Category::Lu) | category_bit(Category::Ll) | category_bit(Category::Lt);
  if (set == 0 || name.size() > 2) return std::nullopt;
  return set;
}

// Sorts and merges the set's ranges and fills in its ASCII answers.
void finish(Regex::CharSet& set) {
  std::vector<std::pair<char32_t, char32_t>> ranges;  // [n] first, last
  for (size_t i = 0; i < set.ranges.size(); i += 2) ranges.emplace_back(set.ranges[i], set.ranges[i + 1]);
  std::sort(ranges.begin(), ranges.end());
  set.ranges.clear();
  for (const auto& [first, last] : ranges) {
    if (!set.ranges.empty() && first <= set.ranges.back() + 1) {
      set.ranges.back() = std::max(set.ranges.back(), last);
    } else {
      set.ranges.push_back(first);
      set.ranges.push_back(last);
    }
  }
  set.ascii[0] = set.ascii[1] = 0;
  for (char32_t cp = 0; cp < 128; ++cp) {
    bool in = (set.properties >> unicode::properties(cp) & 1) != 0;
    for (size_t i = 0; i < set.ranges.size() && !in; i += 2)
      in = cp >= set.ranges[i] && cp <= set.ranges[i + 1];
    if (in != set.negated) set.ascii[cp >> 6] |= uint64_t{1} << (cp & 63);
  }
}

struct Node {
  enum class Kind { Empty, Char, Set, Concat, Alt, Repeat, Look, NegLook, Atomic, End };
  Kind kind = Kind::Empty;
  char32_t cp = 0;        // Char
  uint32_t set = 0;       // Set: index into the regex's sets
  std::vector<int> kids;  // Concat, Alt: in order; Repeat, Look, NegLook, Atomic: one
  int min = 0, max = 0;   // Repeat; max < 0: unbounded
  bool greedy = true;     // Repeat
};

// Recursive descent over the pattern's code points, building Nodes; then Nodes become instructions.
class Compiler {
 public:
  Compiler(std::string_view pattern, std::vector<Regex::Inst>& program, std::vector<Regex::CharSet>& sets)
      : pattern_(pattern), program_(program), sets_(sets) {
    for (size_t pos = 0; pos < pattern.size();) {
      const utf8::Decoded d = utf8::decode(pattern.substr(pos));
      if (d.status != utf8::Status::Valid) fail_at(pos, "invalid UTF-8");
      chars_.push_back(d.cp);
      offsets_.push_back(pos);
      pos += d.length;
    }
    offsets_.push_back(pattern.size());
  }

  void compile() {
    const int root = parse_alternation();
    if (!at_end()) fail("unbalanced ')'");
    emit(root);
    push({Regex::Op::Match});
  }

 private:
  [[noreturn]] void fail_at(size_t byte_offset, const std::string& problem) const {
    fail_input("regular expression '" + utf8::sanitize(pattern_) + "': " + problem + " at byte offset " +
               std::to_string(byte_offset));
  }
  [[noreturn]] void fail(const std::string& problem) const { fail_at(offsets_[pos_], problem); }

  bool at_end() const { return pos_ >= chars_.size(); }
  char32_t peek(size_t ahead = 0) const { return pos_ + ahead < chars_.size() ? chars_[pos_ + ahead] : 0; }
  bool has(size_t ahead) const { return pos_ + ahead < chars_.size(); }
  char32_t next() {
    if (at_end()) fail("unexpected end");
    return chars_[pos_++];
  }
  bool accept(char32_t c) {
    if (at_end() || chars_[pos_] != c) return false;
    ++pos_;
    return true;
  }

  int add(Node n) {
    nodes_.push_back(std::move(n));
    return static_cast<int>(nodes_.size() - 1);
  }
  int add_set(Regex::CharSet s) {
    finish(s);
    sets_.push_back(std::move(s));
    return add({.kind = Node::Kind::Set, .set = static_cast<uint32_t>(sets_.size() - 1)});
  }

  int parse_alternation() {
    std::vector<int> alternatives = {parse_sequence()};
    while (accept('|')) alternatives.push_back(parse_sequence());
    if (alternatives.size() == 1) return alternatives[0];
    return add({.kind = Node::Kind::Alt, .kids = std::move(alternatives)});
  }

  int parse_sequence() {
    std::vector<int> items;
    const bool case_insensitive = case_insensitive_;
    while (!at_end() && peek() != '|' && peek() != ')') {
      if (const int item = parse_repetition(); item >= 0) items.push_back(item);
    }
    case_insensitive_ = case_insensitive;  // an inline (?i) lasts to the end of its alternative
    if (items.size() == 1) return items[0];
    return add({.kind = items.empty() ? Node::Kind::Empty : Node::Kind::Concat, .kids = std::move(items)});
  }

  // -1 for an inline flag group like "(?i)", which matches nothing itself.
  int parse_repetition() {
    int atom = parse_atom();
    if (atom < 0) return atom;
    for (int stacked = 0;; ++stacked) {
      if (stacked > kMaxNesting) fail("more than " + std::to_string(kMaxNesting) + " quantifiers in a row");
      const size_t start = pos_;
      int min, max;
      if (accept('*')) {
        min = 0, max = -1;
      } else if (accept('+')) {
        min = 1, max = -1;
      } else if (accept('?')) {
        min = 0, max = 1;
      } else if (!parse_braces(min, max)) {
        return atom;
      }
      bool greedy = true, possessive = false;
      if (accept('?')) {
        greedy = false;
      } else if (accept('+')) {
        possessive = true;
      }
      if (max < 0 && nullable(atom)) {
        fail_at(offsets_[start], "unbounded repetition of an expression that can match the empty string");
      }
      atom = add({.kind = Node::Kind::Repeat, .kids = {atom}, .min = min, .max = max, .greedy = greedy});
      if (possessive) atom = add({.kind = Node::Kind::Atomic, .kids = {atom}});
    }
  }

  // {n} {n,} {n,m}; anything else starting with '{' is a literal '{', as in PCRE and Oniguruma.
  bool parse_braces(int& min, int& max) {
    if (peek() != '{') return false;
    size_t i = 1;
    const auto number = [&](int& out) {
      const size_t first = i;
      out = 0;
      while (has(i) && peek(i) >= '0' && peek(i) <= '9') {
        out = std::min(out * 10 + static_cast<int>(peek(i) - '0'), kMaxRepeat + 1);
        ++i;
      }
      return i > first;
    };
    // {,m} is {0,m}, as in Oniguruma.
    const bool has_min = number(min);
    max = min;
    if (peek(i) == ',') {
      ++i;
      if (!number(max)) {
        if (!has_min) return false;
        max = -1;
      }
    } else if (!has_min) {
      return false;
    }
    if (peek(i) != '}') return false;
    if (min > kMaxRepeat || max > kMaxRepeat) fail("repetition count above " + std::to_string(kMaxRepeat));
    if (max >= 0 && max < min) fail("repetition {n,m} with m < n");
    pos_ += i + 1;
    return true;
  }

  int parse_atom() {
    const char32_t c = next();
    switch (c) {
      case '(':
        return parse_group();
      case '[':
        return parse_class();
      case '.': {
        Regex::CharSet any;
        any.ranges = {'\n', '\n'};
        any.negated = true;
        return add_set(std::move(any));
      }
      case '\\':
        return parse_escape();
      case '$':
        return add({.kind = Node::Kind::End});
      case '^':
        --pos_;
        fail("the anchor ^ is not supported");
      case ')':
        --pos_;
        fail("unbalanced ')'");
      case '*':
      case '+':
      case '?':
        --pos_;
        fail("nothing to repeat");
      default:
        return literal(c);
    }
  }

  int literal(char32_t c) {
    if (case_insensitive_) {
      const std::vector<char32_t> variants = unicode::case_variants(c);
      if (variants.size() > 1) {
        Regex::CharSet set;
        for (char32_t v : variants) add_range(set, v, v);
        return add_set(std::move(set));
      }
    }
    return add({.kind = Node::Kind::Char, .cp = c});
  }

  int parse_group() {
    if (++group_depth_ > kMaxNesting)
      fail("groups nested more than " + std::to_string(kMaxNesting) + " deep");
    const bool outer_case_insensitive = case_insensitive_;
    Node::Kind kind = Node::Kind::Empty;  // Empty: a plain group
    if (accept('?')) {
      if (accept(':')) {
      } else if (accept('=')) {
        kind = Node::Kind::Look;
      } else if (accept('!')) {
        kind = Node::Kind::NegLook;
      } else if (accept('>')) {
        kind = Node::Kind::Atomic;
      } else if (peek() == '<' && (peek(1) == '=' || peek(1) == '!')) {
        fail("lookbehind is not supported");
      } else if (accept('<') || (accept('P') && accept('<'))) {
        while (!at_end() && peek() != '>') ++pos_;
        if (!accept('>')) fail("unterminated group name");
      } else {
        // Flags: (?i) (?-i) (?i:...) (?-i:...)
        bool on = true;
        for (;;) {
          if (accept('-')) {
            on = false;
          } else if (accept('i')) {
            case_insensitive_ = on;
          } else {
            break;
          }
        }
        if (accept(')')) {
          --group_depth_;
          return -1;  // the flag lasts to the end of the enclosing alternative
        }
        if (!accept(':')) fail("unsupported group syntax");
      }
    }
    const int inner = parse_alternation();
    if (!accept(')')) fail("missing ')'");
    case_insensitive_ = outer_case_insensitive;
    --group_depth_;
    if (kind == Node::Kind::Empty) return inner;
    return add({.kind = kind, .kids = {inner}});
  }

  // After "\" outside a class.
  int parse_escape() {
    Regex::CharSet set;
    if (parse_class_escape(set)) return add_set(std::move(set));
    return literal(parse_char_escape());
  }

  // \p \P \s \S \d \D \w \W: adds their code points to `set` and returns true; else consumes nothing.
  bool parse_class_escape(Regex::CharSet& set) {
    const char32_t c = peek();
    uint64_t props = 0;
    switch (c) {
      case 'p':
      case 'P': {
        ++pos_;
        std::string name;
        bool negate = c == 'P';
        if (accept('{')) {
          if (accept('^')) negate = !negate;
          while (!at_end() && peek() != '}') name += static_cast<char>(next() & 0x7F);
          if (!accept('}')) fail("unterminated \\p{...}");
        } else {
          name = static_cast<char>(next() & 0x7F);
        }
        const std::optional<uint32_t> categories = category_set(name);
        if (!categories) {
          fail("unsupported property \\p{" + name +
               "} (supported: general categories such as L, Lu, N, Nd, P, S, Z, C)");
        }
        props = properties_of(*categories);
        if (negate) props = ~props;
        break;
      }
      case 's':
        props = kWhiteSpaceProperties;
        break;
      case 'S':
        props = ~kWhiteSpaceProperties;
        break;
      case 'd':
      case 'D':
        props = properties_of(category_bit(Category::Nd));
        if (c == 'D') props = ~props;
        break;
      case 'w':
      case 'W':
        props = properties_of(*category_set("L") | *category_set("M") | category_bit(Category::Nd) |
                              category_bit(Category::Pc));
        if (c == 'W') props = ~props;
        break;
      default:
        return false;
    }
    if (c != 'p' && c != 'P') ++pos_;
    set.properties |= props;
    return true;
  }

  // After "\": one code point.
  char32_t parse_char_escape() {
    const char32_t c = next();
    const auto hex = [&](size_t max_digits, bool braced) {
      char32_t value = 0;
      size_t digits = 0;
      while (digits < max_digits && !at_end()) {
        const char32_t h = peek();
        int v = h >= '0' && h <= '9'   ? h - '0'
                : h >= 'a' && h <= 'f' ? h - 'a' + 10
                : h >= 'A' && h <= 'F' ? h - 'A' + 10
                                       : -1;
        if (v < 0) break;
        value = value * 16 + static_cast<char32_t>(v);
        ++pos_, ++digits;
      }
      if (digits == 0 || (braced && !accept('}')) || value > 0x10FFFF) fail("bad hexadecimal escape");
      return value;
    };
    switch (c) {
      case 'n':
        return '\n';
      case 'r':
        return '\r';
      case 't':
        return '\t';
      case 'f':
        return '\f';
      case 'v':
        return '\v';
      case 'e':
        return 0x1B;
      case 'a':
        return 0x07;
      case '0':
        return 0;
      case 'x':
        return accept('{') ? hex(8, true) : hex(2, false);
      case 'u':
        return hex(4, false);
      default:
        break;
    }
    if (c < 0x80 && ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))) {
      --pos_;
      fail(std::string("unsupported escape \\") + static_cast<char>(c));
    }
    return c;  // escaped punctuation (or any other character) stands for itself
  }

  int parse_class() {
    Regex::CharSet set;
    set.negated = accept('^');
    bool first = true;
    while (first || peek() != ']') {
      if (at_end()) fail("missing ']'");
      first = false;
      char32_t lo;
      const char32_t c = next();
      if (c == '[') {
        --pos_;
        fail("nested classes and [:name:] are not supported");
      }
      if (c == '&' && peek() == '&') {
        --pos_;
        fail("class intersection && is not supported");
      }
      if (c == '\\') {
        if (parse_class_escape(set)) continue;
        lo = parse_char_escape();
      } else {
        lo = c;
      }
      char32_t hi = lo;
      if (peek() == '-' && has(1) && peek(1) != ']') {
        ++pos_;
        const char32_t h = next();
        if (h == '\\') {
          Regex::CharSet probe;
          if (parse_class_escape(probe)) fail("a range cannot end with a class escape");
          hi = parse_char_escape();
        } else {
          hi = h;
        }
        if (hi < lo) fail("range out of order");
      }
      add_range(set, lo, hi);
    }
    ++pos_;  // ']'
    return add_set(std::move(set));
  }

  // Adds [lo, hi] (and under (?i) the case variants of its code points) to the set's ranges.
  void add_range(Regex::CharSet& set, char32_t lo, char32_t hi) const {
    set.ranges.push_back(lo);
    set.ranges.push_back(hi);
    if (!case_insensitive_) return;
    for (char32_t v : unicode::case_variants_of_range(lo, hi)) {
      set.ranges.push_back(v);
      set.ranges.push_back(v);
    }
  }

  bool nullable(int n) const {
    const Node& node = nodes_[n];
    switch (node.kind) {
      case Node::Kind::Char:
      case Node::Kind::Set:
        return false;
      case Node::Kind::Concat:
        return std::all_of(node.kids.begin(), node.kids.end(), [&](int k) { return nullable(k); });
      case Node::Kind::Alt:
        return std::any_of(node.kids.begin(), node.kids.end(), [&](int k) { return nullable(k); });
      case Node::Kind::Repeat:
        return node.min == 0 || nullable(node.kids[0]);
      case Node::Kind::Atomic:
        return nullable(node.kids[0]);
      case Node::Kind::Empty:
      case Node::Kind::Look:
      case Node::Kind::NegLook:
      case Node::Kind::End:
        return true;
    }
    return true;
  }

  uint32_t here() const { return static_cast<uint32_t>(program_.size()); }
  uint32_t push_split() { return push({Regex::Op::Split, sub_program_depth_ == 0}); }
  uint32_t push(Regex::Inst inst) {
    if (program_.size() >= kMaxProgram) fail_at(pattern_.size(), "expression too large");
    program_.push_back(inst);
    return here() - 1;
  }

  void emit(int n) {
    const Node& node = nodes_[n];
    switch (node.kind) {
      case Node::Kind::Empty:
        return;
      case Node::Kind::Char:
        push({Regex::Op::Char, false, node.cp});
        return;
      case Node::Kind::Set:
        push({Regex::Op::Set, false, node.set});
        return;
      case Node::Kind::End:
        push({Regex::Op::End});
        return;
      case Node::Kind::Concat:
        for (int k : node.kids) emit(k);
        return;
      case Node::Kind::Alt: {
        std::vector<uint32_t> exits;
        for (size_t i = 0; i < node.kids.size(); ++i) {
          const bool last = i + 1 == node.kids.size();
          const uint32_t split = last ? 0 : push_split();
          emit(node.kids[i]);
          if (last) break;
          exits.push_back(push({Regex::Op::Jump}));
          program_[split].x = split + 1;
          program_[split].y = here();
        }
        for (uint32_t e : exits) program_[e].x = here();
        return;
      }
      case Node::Kind::Repeat: {
        for (int i = 0; i < node.min; ++i) emit(node.kids[0]);
        const auto choose = [&](uint32_t split, uint32_t body, uint32_t out) {
          program_[split].x = node.greedy ? body : out;
          program_[split].y = node.greedy ? out : body;
        };
        if (node.max < 0) {
          const uint32_t split = push_split();
          emit(node.kids[0]);
          push({Regex::Op::Jump, false, split});
          choose(split, split + 1, here());
          return;
        }
        std::vector<uint32_t> splits;
        for (int i = node.min; i < node.max; ++i) {
          splits.push_back(push_split());
          emit(node.kids[0]);
        }
        for (uint32_t s : splits) choose(s, s + 1, here());
        return;
      }
      case Node::Kind::Look:
      case Node::Kind::NegLook:
      case Node::Kind::Atomic: {
        const Regex::Op op = node.kind == Node::Kind::Look      ? Regex::Op::Look
                             : node.kind == Node::Kind::NegLook ? Regex::Op::NegLook
                                                                : Regex::Op::Atomic;
        const uint32_t at = push({op});
        ++sub_program_depth_;
        emit(node.kids[0]);
        --sub_program_depth_;
        push({Regex::Op::Match});
        program_[at].x = at + 1;
        program_[at].y = here();
        return;
      }
    }
  }

  std::string_view pattern_;
  std::vector<char32_t> chars_;  // [n] the pattern's code points
  std::vector<size_t> offsets_;  // [n + 1] their byte offsets, for error messages
  size_t pos_ = 0;
  bool case_insensitive_ = false;
  int group_depth_ = 0;        // groups open where the parser is
  int sub_program_depth_ = 0;  // lookaheads and atomic groups around what is being emitted
  std::vector<Node> nodes_;
  std::vector<Regex::Inst>& program_;
  std::vector<Regex::CharSet>& sets_;
};

}  // namespace

bool Regex::CharSet::contains(PackedChar c) const {
  const char32_t cp = c & 0xFFFFFF;
  if (cp < 128) return (ascii[cp >> 6] >> (cp & 63) & 1) != 0;
  bool in = (properties >> (c >> 24) & 1) != 0;
  if (!in && !ranges.empty()) {
    // The last range start <= cp, found among the starts (even positions).
    size_t lo = 0, hi = ranges.size() / 2;
    while (lo < hi) {
      const size_t mid = (lo + hi) / 2;
      if (ranges[2 * mid] <= cp) {
        lo = mid + 1;
      } else {
        hi = mid;
      }
    }
    in = lo > 0 && cp <= ranges[2 * (lo - 1) + 1];
  }
  return in != negated;
}

Regex::Regex(std::string_view pattern) : pattern_(pattern) {
  Compiler(pattern_, program_, sets_).compile();
}

ptrdiff_t Regex::match_at(std::span<const PackedChar> text, size_t pos) const {
  return Search(*this, text).match_at(pos);
}

namespace {
// Choices an attempt may take before its search starts remembering failed states: enough for any word
// of ordinary text, so that only pathological runs pay for the bookkeeping.
constexpr size_t kStepsBeforeRemembering = 256;
// Choices a search may take inside lookaheads and atomic groups (see Regex::Search). The expressions of
// real tokenizers take none or a few per character; an exponential one exceeds this within a second.
constexpr size_t kMaxInnerSteps = size_t{1} << 20;
constexpr size_t kInnerStepsPerChar = 64;

struct Backtrack {
  uint32_t pc;
  size_t pos;
};
}  // namespace

ptrdiff_t Regex::Search::match_at(size_t pos) {
  steps_ = 0;
  const ptrdiff_t end = regex_.run(0, text_, pos, this);
  if (end >= 0) {
    // Attempts after a match start at or after its end; states it left on its way may succeed then.
    failed_.clear();
    remember_ = false;
  }
  return end;
}

ptrdiff_t Regex::run(uint32_t pc, std::span<const PackedChar> text, size_t pos, Search* search) const {
  // One stack per thread, shared by the nested runs of lookaheads and atomic groups: each run pops only
  // what it pushed. Reusing it keeps a match attempt free of allocations.
  thread_local std::vector<Backtrack> stack;
  const size_t base = stack.size();
  for (;;) {
    const Inst& in = program_[pc];
    switch (in.op) {
      case Op::Char:
        if (pos < text.size() && (text[pos] & 0xFFFFFF) == in.x) {
          ++pos, ++pc;
          continue;
        }
        break;
      case Op::Set:
        if (pos < text.size() && sets_[in.x].contains(text[pos])) {
          ++pos, ++pc;
          continue;
        }
        break;
      case Op::Split:
        if (in.top_level) {
          // Revisiting a state means its first visit failed: a success would have ended the attempt,
          // and a loop that comes back without consuming is rejected when compiling.
          if (search->remember_ && !search->failed_.insert(uint64_t{pc} << 32 | pos).second) break;
          if (++search->steps_ > kStepsBeforeRemembering) search->remember_ = true;
        } else if (const size_t limit = kMaxInnerSteps + kInnerStepsPerChar * text.size();
                   ++search->inner_steps_ > limit) {
          fail_input("the pre-tokenizer expression '" + pattern_ + "' backtracks without bound inside a " +
                     "lookahead or atomic group (more than " + std::to_string(limit) +
                     " choices on a text of " + std::to_string(text.size()) + " characters)");
        }
        stack.push_back({in.y, pos});
        pc = in.x;
        continue;
      case Op::Jump:
        pc = in.x;
        continue;
      case Op::Look:
      case Op::NegLook:
        if ((run(in.x, text, pos, search) >= 0) == (in.op == Op::Look)) {
          pc = in.y;
          continue;
        }
        break;
      case Op::Atomic: {
        const ptrdiff_t end = run(in.x, text, pos, search);
        if (end >= 0) {
          pos = static_cast<size_t>(end);
          pc = in.y;
          continue;
        }
        break;
      }
      case Op::End:
        if (pos == text.size()) {
          ++pc;
          continue;
        }
        break;
      case Op::Match:
        stack.resize(base);
        return static_cast<ptrdiff_t>(pos);
    }
    if (stack.size() == base) return -1;
    pc = stack.back().pc;
    pos = stack.back().pos;
    stack.pop_back();
  }
}

}  // namespace wgllm::tokenizer
