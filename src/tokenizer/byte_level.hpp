// GPT-2's byte-level alphabet. Byte-level BPE vocabularies spell every byte as one printable character
// (tokenizer.json and GGUF token texts alike): the printable bytes '!'..'~', 0xA1..0xAC and 0xAE..0xFF as
// the code point of the same value, the other 68 bytes as U+0100.. in byte order (' ' is U+0120 "Ġ",
// '\n' U+010A "Ċ"). The BPE merges work on these characters, one per byte of the text.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace wgllm::tokenizer::byte_level {

char32_t char_of(uint8_t byte);
std::optional<uint8_t> byte_of(char32_t c);

// Each byte as its character, in UTF-8.
std::string encode(std::string_view bytes);

// The bytes that a token text spells; nullopt when it has a character outside the alphabet (or is not
// valid UTF-8).
std::optional<std::string> decode(std::string_view text);

}  // namespace wgllm::tokenizer::byte_level
