#include "tokenizer/byte_level.hpp"

#include <array>

#include "core/utf8.hpp"

namespace wgllm::tokenizer::byte_level {

namespace {

constexpr bool is_printable(int b) {
  return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
}

struct Alphabet {
  std::array<char32_t, 256> chars;   // byte -> character
  std::array<int16_t, 0x144> bytes;  // character -> byte, -1 for none; every character is below U+0144
  Alphabet() {
    bytes.fill(-1);
    char32_t next = 0x100;
    for (int b = 0; b < 256; ++b) {
      chars[b] = is_printable(b) ? static_cast<char32_t>(b) : next++;
      bytes[chars[b]] = static_cast<int16_t>(b);
    }
  }
};

const Alphabet& alphabet() {
  static const Alphabet a;
  return a;
}

}  // namespace

char32_t char_of(uint8_t byte) {
  return alphabet().chars[byte];
}

std::optional<uint8_t> byte_of(char32_t c) {
  if (c >= alphabet().bytes.size() || alphabet().bytes[c] < 0) return std::nullopt;
  return static_cast<uint8_t>(alphabet().bytes[c]);
}

std::string encode(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size() * 2);
  for (char b : bytes) utf8::append(out, char_of(static_cast<uint8_t>(b)));
  return out;
}

std::optional<std::string> decode(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t pos = 0; pos < text.size();) {
    const utf8::Decoded d = utf8::decode(text.substr(pos));
    if (d.status != utf8::Status::Valid) return std::nullopt;
    const std::optional<uint8_t> b = byte_of(d.cp);
    if (!b) return std::nullopt;
    out += static_cast<char>(*b);
    pos += d.length;
  }
  return out;
}

}  // namespace wgllm::tokenizer::byte_level
