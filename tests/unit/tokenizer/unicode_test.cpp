// Unicode properties (tokenizer/unicode.hpp). Expected values are those of the Unicode Character
// Database (UnicodeData.txt, PropList.txt, CaseFolding.txt), one code point of every general category
// and of the ranges UnicodeData.txt gives as First/Last pairs; and the committed tables must equal what
// tools/gen_unicode_tables.py makes from the installed unicode-data package.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "support/test_support.hpp"
#include "tokenizer/unicode.hpp"

namespace wgllm::tokenizer::unicode {
namespace {

TEST(Unicode, GeneralCategories) {
  const std::vector<std::pair<char32_t, Category>> expected = {
      {U'A', Category::Lu},    {U'a', Category::Ll},     {0x01C5, Category::Lt},   {0x02B0, Category::Lm},
      {0x05D0, Category::Lo},  {0x0301, Category::Mn},   {0x0903, Category::Mc},   {0x20DD, Category::Me},
      {U'7', Category::Nd},    {0x0663, Category::Nd},   {0x2160, Category::Nl},   {0x00BD, Category::No},
      {U'_', Category::Pc},    {U'-', Category::Pd},     {U'(', Category::Ps},     {U')', Category::Pe},
      {0x00AB, Category::Pi},  {0x00BB, Category::Pf},   {U'!', Category::Po},     {0x2026, Category::Po},
      {U'+', Category::Sm},    {U'$', Category::Sc},     {0x20AC, Category::Sc},   {U'^', Category::Sk},
      {0x00A9, Category::So},  {0x1F999, Category::So},  {U' ', Category::Zs},     {0x3000, Category::Zs},
      {0x2028, Category::Zl},  {0x2029, Category::Zp},   {0x0000, Category::Cc},   {0x0085, Category::Cc},
      {0x200B, Category::Cf},  {0xD800, Category::Cs},   {0xDFFF, Category::Cs},   {0xE000, Category::Co},
      {0x0378, Category::Cn},  {0xFFFF, Category::Cn},   {0x4E00, Category::Lo},   {0x9FA5, Category::Lo},
      {0xAC00, Category::Lo},  {0xD7A3, Category::Lo},   {0x20000, Category::Lo},  {0x2A6DF, Category::Lo},
      {0xF0000, Category::Co}, {0x10FFFD, Category::Co}, {0x10FFFF, Category::Cn}, {0x110000, Category::Cn},
      {0x1D49C, Category::Lu}, {0xFFFD, Category::So},
  };
  for (const auto& [cp, cat] : expected) {
    EXPECT_EQ(static_cast<int>(category(cp)), static_cast<int>(cat))
        << std::hex << "U+" << static_cast<uint32_t>(cp);
  }
}

TEST(Unicode, WhiteSpaceIsExactlyPropListsSet) {
  const std::vector<char32_t> expected = {
      0x09,   0x0A,   0x0B,   0x0C,   0x0D,   0x20,   0x85,   0xA0,   0x1680, 0x2000, 0x2001, 0x2002, 0x2003,
      0x2004, 0x2005, 0x2006, 0x2007, 0x2008, 0x2009, 0x200A, 0x2028, 0x2029, 0x202F, 0x205F, 0x3000};
  std::vector<char32_t> found;
  for (char32_t cp = 0; cp < 0x110000; ++cp) {
    if (is_white_space(cp)) found.push_back(cp);
  }
  EXPECT_EQ(found, expected);
}

TEST(Unicode, SimpleCaseFolding) {
  EXPECT_EQ(simple_fold(U'A'), U'a');
  EXPECT_EQ(simple_fold(U'a'), U'a');
  EXPECT_EQ(simple_fold(0x017F), U's');    // LATIN SMALL LETTER LONG S (C)
  EXPECT_EQ(simple_fold(0x212A), U'k');    // KELVIN SIGN (C)
  EXPECT_EQ(simple_fold(0x1E9E), 0x00DF);  // CAPITAL SHARP S: the S entry, not the full F one
  EXPECT_EQ(simple_fold(0x03A3), 0x03C3);  // Σ -> σ, and ς -> σ
  EXPECT_EQ(simple_fold(0x03C2), 0x03C3);
  EXPECT_EQ(case_variants(U's'), (std::vector<char32_t>{U'S', U's', 0x017F}));
  EXPECT_EQ(case_variants(0x212A), (std::vector<char32_t>{U'K', U'k', 0x212A}));
  EXPECT_EQ(case_variants(0x03C3), (std::vector<char32_t>{0x03A3, 0x03C2, 0x03C3}));
  EXPECT_EQ(case_variants(U'1'), std::vector<char32_t>{U'1'});
  EXPECT_EQ(case_variants_of_range(U'a', U'z').size(), 28u);  // A-Z, U+017F, U+212A
}

TEST(Unicode, CommittedTablesMatchARegenerationFromUnicodeData) {
  const std::string ucd = "/usr/share/unicode";
  if (!std::filesystem::exists(ucd + "/UnicodeData.txt") ||
      std::system("python3 --version >/dev/null 2>&1") != 0) {
    GTEST_SKIP() << "needs Debian's unicode-data package and python3";
  }
  const std::string regenerated = test::temp_dir() + "/unicode_tables.cpp";
  const std::string command = "python3 " + test::source_path("tools/gen_unicode_tables.py") + " --ucd " +
                              ucd + " --out " + regenerated;
  ASSERT_EQ(std::system(command.c_str()), 0) << command;
  EXPECT_TRUE(test::read_file(regenerated) ==
              test::read_file(test::source_path("src/tokenizer/unicode_tables.cpp")))
      << "src/tokenizer/unicode_tables.cpp differs from the output of: " << command;
}

}  // namespace
}  // namespace wgllm::tokenizer::unicode
