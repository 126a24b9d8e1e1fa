// UTF-8 helpers. Text from users, files and model output is arbitrary bytes; these decide what is a
// character and turn anything else into U+FFFD the way the Unicode standard recommends ("maximal
// subparts", §3.9 / WHATWG), so that a batch and a byte-at-a-time decoder agree on every input.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace wgllm::utf8 {

inline constexpr char32_t kReplacement = 0xFFFD;

// The length a sequence claims from its lead byte alone (1 for ASCII, continuation and invalid bytes).
// Tokenizers split text into "characters" with it, as SentencePiece and llama.cpp do, without validating.
size_t sequence_length(uint8_t lead);

enum class Status {
  Valid,       // `length` bytes form the code point `cp`
  Invalid,     // the first `length` bytes are a maximal subpart of an ill-formed sequence: one U+FFFD
  Incomplete,  // all `length` remaining bytes are a valid prefix of a sequence cut off by the end of input
};

struct Decoded {
  Status status;
  size_t length;    // >= 1 unless the input was empty
  char32_t cp = 0;  // valid only for Status::Valid
};

// Decodes the code point at the start of `s` (which must not be empty).
Decoded decode(std::string_view s);

bool is_valid(std::string_view s);

// `s` with each maximal ill-formed subpart (a truncated sequence at the end included) replaced by U+FFFD.
std::string sanitize(std::string_view s);

// Appends the UTF-8 encoding of `cp` (surrogates and values above U+10FFFF become U+FFFD).
void append(std::string& out, char32_t cp);

}  // namespace wgllm::utf8
