// Python str semantics on UTF-8: a str is a sequence of code points, so len(), indexing, slicing and
// reversal count code points; strip() and split() use str.isspace(). An ill-formed byte sequence (which
// a Python str cannot hold) counts as one character per maximal subpart and is kept as it is.
// Case mapping is ASCII-only: chat templates change the case of role names and keywords, not of
// arbitrary text.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace wgllm::tokenizer::jinja::text {

bool is_space(char32_t cp);  // Python's str.isspace() for one code point

std::vector<std::string_view> chars(std::string_view s);  // the characters, as views into s
size_t length(std::string_view s);

// str.strip / lstrip / rstrip; `chars` == nullptr strips whitespace.
std::string strip(std::string_view s, bool left, bool right, const std::string* chars = nullptr);
// str.split(sep=None) / str.split(sep) with maxsplit (-1: no limit); rsplit when from_right.
std::vector<std::string> split(std::string_view s, const std::string* sep, int64_t maxsplit, bool from_right);
std::vector<std::string> splitlines(std::string_view s);  // str.splitlines() without keepends
std::string replace(std::string_view s, std::string_view old, std::string_view with, int64_t count);

std::string upper(std::string_view s);
std::string lower(std::string_view s);
std::string capitalize(std::string_view s);   // str.capitalize()
std::string title(std::string_view s);        // str.title()
std::string title_words(std::string_view s);  // jinja2's title filter: words split at "-", space, ( { [ <

}  // namespace wgllm::tokenizer::jinja::text
