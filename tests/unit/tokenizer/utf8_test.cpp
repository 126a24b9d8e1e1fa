// core/utf8 (tested here: the tokenizer is its main user and core has no test binary of its own).
// Expected replacements come from the Unicode Standard, chapter 3.9, "U+FFFD Substitution of Maximal
// Subparts" (Tables 3-8 to 3-11), which WHATWG's decoder and Python's errors="replace" also follow.
#include <gtest/gtest.h>

#include <string>

#include "core/utf8.hpp"
#include "support/test_support.hpp"

namespace wgllm::utf8 {
namespace {

const std::string R = "\xEF\xBF\xBD";  // U+FFFD

TEST(Utf8, SanitizeFollowsUnicodeMaximalSubparts) {
  // Table 3-8: a truncated 4-byte, a truncated 3-byte and a truncated 2-byte sequence, lone continuations.
  EXPECT_EQ(sanitize("\x61\xF1\x80\x80\xE1\x80\xC2\x62\x80\x63\x80\xBF\x64"),
            "a" + R + R + R + "b" + R + "c" + R + R + "d");
  // Table 3-9: non-shortest forms, one U+FFFD per byte.
  EXPECT_EQ(sanitize("\xC0\xAF\xE0\x80\xBF\xF0\x81\x82\x41"), R + R + R + R + R + R + R + R + "A");
  // Table 3-10: surrogates.
  EXPECT_EQ(sanitize("\xED\xA0\x80\xED\xBF\xBF\xED\xAF\x41"), R + R + R + R + R + R + R + R + "A");
  // Table 3-11: beyond U+10FFFF and bytes that never occur.
  EXPECT_EQ(sanitize("\xF4\x91\x92\x93\xFF\x41\x80\xBF\x42"), R + R + R + R + R + "A" + R + R + "B");
  // Table 3-12: truncated sequences.
  EXPECT_EQ(sanitize("\xE1\x80\xE2\xF0\x91\x92\xF1\xBF\x41"), R + R + R + R + "A");
}

TEST(Utf8, DecodeReportsLengthsAndCodePoints) {
  EXPECT_EQ(decode("A").cp, U'A');
  const Decoded euro = decode("\xE2\x82\xAC!");
  EXPECT_EQ(euro.status, Status::Valid);
  EXPECT_EQ(euro.length, 3u);
  EXPECT_EQ(euro.cp, U'\u20AC');
  const Decoded llama = decode("\xF0\x9F\xA6\x99");
  EXPECT_EQ(llama.status, Status::Valid);
  EXPECT_EQ(llama.cp, U'\U0001F999');

  EXPECT_EQ(decode("\xF0\x9F\xA6").status, Status::Incomplete);
  EXPECT_EQ(decode("\xF0\x9F\xA6").length, 3u);
  EXPECT_EQ(decode("\xF0\x9F\x41").status, Status::Invalid);
  EXPECT_EQ(decode("\xF0\x9F\x41").length, 2u);
  EXPECT_EQ(decode("\xC1\xBF").status, Status::Invalid);  // overlong
  EXPECT_EQ(decode("\xC1\xBF").length, 1u);
  EXPECT_EQ(decode("\xF4\x90\x80\x80").length, 1u);  // above U+10FFFF
}

TEST(Utf8, ValidityAndEncoding) {
  EXPECT_TRUE(is_valid(""));
  EXPECT_TRUE(is_valid("plain ASCII, \xC3\xA9t\xC3\xA9, \xE2\x96\x81, \xF0\x9F\x98\x81"));
  EXPECT_FALSE(is_valid("\xC3"));
  EXPECT_FALSE(is_valid("\xED\xA0\x80"));

  std::string s;
  for (char32_t cp : {U'\x24', U'\xA2', U'\u20AC', U'\U00010348'}) append(s, cp);
  EXPECT_EQ(s, "\x24\xC2\xA2\xE2\x82\xAC\xF0\x90\x8D\x88");  // the examples of RFC 3629 / Wikipedia
  std::string surrogate;
  append(surrogate, 0xD800);
  EXPECT_EQ(surrogate, R);

  // What SentencePiece and llama.cpp use to split text into characters.
  EXPECT_EQ(sequence_length('a'), 1u);
  EXPECT_EQ(sequence_length(0x80), 1u);
  EXPECT_EQ(sequence_length(0xC3), 2u);
  EXPECT_EQ(sequence_length(0xE2), 3u);
  EXPECT_EQ(sequence_length(0xF0), 4u);
  EXPECT_EQ(sequence_length(0xFF), 4u);
}

TEST(Utf8, RandomCodePointsRoundTripAndRandomBytesSanitizeToValid) {
  SCOPED_TRACE(test::seed_note());
  auto rng = test::rng(1);
  for (int iter = 0; iter < 2000; ++iter) {
    std::string text;
    std::u32string cps;
    const int n = static_cast<int>(rng() % 16);
    for (int i = 0; i < n; ++i) {
      char32_t cp = static_cast<char32_t>(rng() % 0x110000);
      if (cp >= 0xD800 && cp <= 0xDFFF) cp -= 0x800;
      cps += cp;
      append(text, cp);
    }
    ASSERT_TRUE(is_valid(text));
    ASSERT_EQ(sanitize(text), text);
    std::u32string back;
    for (size_t pos = 0; pos < text.size();) {
      const Decoded d = decode(std::string_view(text).substr(pos));
      back += d.cp;
      pos += d.length;
    }
    ASSERT_EQ(back, cps);

    std::string bytes(rng() % 24, '\0');
    for (char& c : bytes) c = static_cast<char>(rng() % 256);
    ASSERT_TRUE(is_valid(sanitize(bytes)));
  }
}

}  // namespace
}  // namespace wgllm::utf8
