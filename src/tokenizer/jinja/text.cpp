#include "tokenizer/jinja/text.hpp"

#include <algorithm>

#include "core/utf8.hpp"
#include "tokenizer/jinja/template_error.hpp"

namespace wgllm::tokenizer::jinja::text {

namespace {

char32_t code_point(std::string_view c) {
  utf8::Decoded d = utf8::decode(c);
  return d.status == utf8::Status::Valid ? d.cp : utf8::kReplacement;
}

bool in_set(std::string_view c, const std::vector<std::string_view>& set) {
  return std::find(set.begin(), set.end(), c) != set.end();
}

bool is_ascii_letter(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}
char to_upper(char c) {
  return c >= 'a' && c <= 'z' ? static_cast<char>(c - 'a' + 'A') : c;
}
char to_lower(char c) {
  return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
}

}  // namespace

bool is_space(char32_t cp) {
  if (cp <= 0x20) return cp == 0x20 || (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x1F);
  return cp == 0x85 || cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 ||
         cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

std::vector<std::string_view> chars(std::string_view s) {
  std::vector<std::string_view> out;
  out.reserve(s.size());
  while (!s.empty()) {
    size_t n = static_cast<unsigned char>(s[0]) < 0x80 ? 1 : utf8::decode(s).length;
    out.push_back(s.substr(0, n));
    s.remove_prefix(n);
  }
  return out;
}

size_t length(std::string_view s) {
  size_t n = 0;
  while (!s.empty()) {
    s.remove_prefix(static_cast<unsigned char>(s[0]) < 0x80 ? 1 : utf8::decode(s).length);
    ++n;
  }
  return n;
}

std::string strip(std::string_view s, bool left, bool right, const std::string* strip_chars) {
  std::vector<std::string_view> cs = chars(s);
  std::vector<std::string_view> set;
  if (strip_chars) set = chars(*strip_chars);
  auto strippable = [&](std::string_view c) {
    return strip_chars ? in_set(c, set) : is_space(code_point(c));
  };
  size_t begin = 0, end = cs.size();
  if (left)
    while (begin < end && strippable(cs[begin])) ++begin;
  if (right)
    while (end > begin && strippable(cs[end - 1])) --end;
  if (begin == end) return {};
  const char* first = cs[begin].data();
  const char* last = cs[end - 1].data() + cs[end - 1].size();
  return std::string(first, last);
}

std::vector<std::string> split(std::string_view s, const std::string* sep, int64_t maxsplit,
                               bool from_right) {
  std::vector<std::string> parts;
  if (sep) {
    if (sep->empty()) fail("ValueError: empty separator");
    if (!from_right) {
      size_t pos = 0;
      while (maxsplit < 0 || static_cast<int64_t>(parts.size()) < maxsplit) {
        size_t at = s.find(*sep, pos);
        if (at == std::string_view::npos) break;
        parts.emplace_back(s.substr(pos, at - pos));
        pos = at + sep->size();
      }
      parts.emplace_back(s.substr(pos));
      return parts;
    }
    size_t end = s.size();
    while (maxsplit < 0 || static_cast<int64_t>(parts.size()) < maxsplit) {
      if (end < sep->size()) break;
      size_t at = s.rfind(*sep, end - sep->size());
      if (at == std::string_view::npos) break;
      parts.emplace_back(s.substr(at + sep->size(), end - at - sep->size()));
      end = at;
    }
    parts.emplace_back(s.substr(0, end));
    std::reverse(parts.begin(), parts.end());
    return parts;
  }
  // Runs of whitespace separate; leading and trailing whitespace gives no empty parts. With a limit, the
  // rest of the string is the last part, its whitespace kept on the far side.
  std::vector<std::string_view> cs = chars(s);
  auto space = [&](size_t i) { return is_space(code_point(cs[i])); };
  auto join = [&](size_t b, size_t e) {
    return b == e ? std::string() : std::string(cs[b].data(), cs[e - 1].data() + cs[e - 1].size());
  };
  if (!from_right) {
    size_t i = 0, n = cs.size();
    while (true) {
      while (i < n && space(i)) ++i;
      if (i == n) break;
      if (maxsplit >= 0 && static_cast<int64_t>(parts.size()) == maxsplit) {
        parts.push_back(join(i, n));
        break;
      }
      size_t b = i;
      while (i < n && !space(i)) ++i;
      parts.push_back(join(b, i));
    }
    return parts;
  }
  size_t i = cs.size();
  while (true) {
    while (i > 0 && space(i - 1)) --i;
    if (i == 0) break;
    if (maxsplit >= 0 && static_cast<int64_t>(parts.size()) == maxsplit) {
      parts.push_back(join(0, i));
      break;
    }
    size_t e = i;
    while (i > 0 && !space(i - 1)) --i;
    parts.push_back(join(i, e));
  }
  std::reverse(parts.begin(), parts.end());
  return parts;
}

std::vector<std::string> splitlines(std::string_view s) {
  std::vector<std::string> lines;
  std::vector<std::string_view> cs = chars(s);
  std::string line;
  for (size_t i = 0; i < cs.size(); ++i) {
    char32_t cp = code_point(cs[i]);
    bool brk = cp == '\n' || cp == '\r' || cp == 0x0B || cp == 0x0C || cp == 0x1C || cp == 0x1D ||
               cp == 0x1E || cp == 0x85 || cp == 0x2028 || cp == 0x2029;
    if (!brk) {
      line += cs[i];
      continue;
    }
    if (cp == '\r' && i + 1 < cs.size() && cs[i + 1] == "\n") ++i;
    lines.push_back(std::move(line));
    line.clear();
  }
  if (!line.empty()) lines.push_back(std::move(line));
  return lines;
}

std::string replace(std::string_view s, std::string_view old, std::string_view with, int64_t count) {
  std::string out;
  int64_t done = 0;
  if (old.empty()) {
    // Python inserts `with` before every character and at the end.
    std::vector<std::string_view> cs = chars(s);
    for (std::string_view c : cs) {
      if (count < 0 || done < count) {
        out += with;
        ++done;
      }
      out += c;
    }
    if (count < 0 || done < count) out += with;
    return out;
  }
  size_t pos = 0;
  while (count < 0 || done < count) {
    size_t at = s.find(old, pos);
    if (at == std::string_view::npos) break;
    out.append(s.substr(pos, at - pos));
    out.append(with);
    pos = at + old.size();
    ++done;
  }
  out.append(s.substr(pos));
  return out;
}

std::string upper(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = to_upper(c);
  return out;
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = to_lower(c);
  return out;
}

std::string capitalize(std::string_view s) {
  std::string out = lower(s);
  if (!out.empty()) out[0] = to_upper(out[0]);
  return out;
}

std::string title(std::string_view s) {
  std::string out(s);
  bool prev_cased = false;
  for (char& c : out) {
    bool letter = is_ascii_letter(c);
    c = letter ? (prev_cased ? to_lower(c) : to_upper(c)) : c;
    // Non-ASCII bytes belong to letters in most scripts that have case; treating them as cased keeps
    // "élan" -> "élan" rather than "éLan".
    prev_cased = letter || static_cast<unsigned char>(c) >= 0x80;
  }
  return out;
}

std::string title_words(std::string_view s) {
  std::string out;
  bool word_start = true;
  for (std::string_view c : chars(s)) {
    bool separator = c == "-" || c == "(" || c == "{" || c == "[" || c == "<" || is_space(code_point(c));
    if (separator) {
      out += c;
      word_start = true;
    } else if (word_start) {
      out += upper(c);
      word_start = false;
    } else {
      out += lower(c);
    }
  }
  return out;
}

}  // namespace wgllm::tokenizer::jinja::text
