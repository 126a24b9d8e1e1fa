#include "core/utf8.hpp"

namespace wgllm::utf8 {

size_t sequence_length(uint8_t lead) {
  if (lead < 0xC0) return 1;
  if (lead < 0xE0) return 2;
  if (lead < 0xF0) return 3;
  return 4;
}

Decoded decode(std::string_view s) {
  const auto byte = [&](size_t i) { return static_cast<uint8_t>(s[i]); };
  const uint8_t lead = byte(0);
  if (lead < 0x80) return {Status::Valid, 1, lead};

  // Unicode Table 3-7: the lead byte fixes the length and the range of the second byte (which excludes
  // overlongs, surrogates and code points above U+10FFFF); later bytes are plain continuations.
  size_t need = 0;
  uint8_t lo = 0x80, hi = 0xBF;
  char32_t cp = 0;
  if (lead >= 0xC2 && lead <= 0xDF) {
    need = 2, cp = lead & 0x1F;
  } else if (lead >= 0xE0 && lead <= 0xEF) {
    need = 3, cp = lead & 0x0F;
    if (lead == 0xE0) lo = 0xA0;
    if (lead == 0xED) hi = 0x9F;
  } else if (lead >= 0xF0 && lead <= 0xF4) {
    need = 4, cp = lead & 0x07;
    if (lead == 0xF0) lo = 0x90;
    if (lead == 0xF4) hi = 0x8F;
  } else {
    return {Status::Invalid, 1};
  }

  for (size_t i = 1; i < need; ++i) {
    if (i == s.size()) return {Status::Incomplete, i};
    const uint8_t b = byte(i);
    if (b < lo || b > hi) return {Status::Invalid, i};
    cp = cp << 6 | (b & 0x3F);
    lo = 0x80, hi = 0xBF;
  }
  return {Status::Valid, need, cp};
}

bool is_valid(std::string_view s) {
  for (size_t pos = 0; pos < s.size();) {
    const Decoded d = decode(s.substr(pos));
    if (d.status != Status::Valid) return false;
    pos += d.length;
  }
  return true;
}

std::string sanitize(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t pos = 0; pos < s.size();) {
    const Decoded d = decode(s.substr(pos));
    if (d.status == Status::Valid) {
      out.append(s.substr(pos, d.length));
    } else {
      append(out, kReplacement);
    }
    pos += d.length;
  }
  return out;
}

void append(std::string& out, char32_t cp) {
  if ((cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF) cp = kReplacement;
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | cp >> 6);
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | cp >> 12);
    out += static_cast<char>(0x80 | (cp >> 6 & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | cp >> 18);
    out += static_cast<char>(0x80 | (cp >> 12 & 0x3F));
    out += static_cast<char>(0x80 | (cp >> 6 & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

}  // namespace wgllm::utf8
