// Pre-tokenizers by name (tokenizer.ggml.pre) and the pieces they cut. The reference-vector tests
// (bpe_reference_test.cpp) check most of them through whole tokenizations; here the pieces are worked out
// by hand from each published expression, in particular for Llama 4, for which no reference vectors exist.
#include <gtest/gtest.h>

#include <span>
#include <string>
#include <utility>
#include <vector>

#include "core/utf8.hpp"
#include "support/test_support.hpp"
#include "tokenizer/pre_tokenizer.hpp"

namespace wgllm::tokenizer {
namespace {

using Pieces = std::vector<std::string>;

Pieces split(const std::string& pre, const std::string& text) {
  const auto config = pre_tokenizer_config(pre);
  if (!config) throw std::runtime_error("no pre-tokenizer " + pre);
  std::vector<std::string_view> views;
  PreTokenizer(config->regexes).split(text, views);
  return {views.begin(), views.end()};
}

TEST(PreTokenizer, Llama3) {
  // "12345": digits in threes; " " before digits is alone (\s+ as the last resort); "\n\n" then the
  // spaces: \s+(?!\S) leaves the space before "x" to it.
  EXPECT_EQ(split("llama-bpe", "Hello world's 12345\n\n  x"),
            (Pieces{"Hello", " world", "'s", " ", "123", "45", "\n\n", " ", " x"}));
  EXPECT_EQ(split("llama-bpe", "I'M ok"), (Pieces{"I", "'M", " ok"}));
  EXPECT_EQ(split("llama-bpe", "a...\n\nb"), (Pieces{"a", "...\n\n", "b"}));
  EXPECT_EQ(split("llama3", "x"), Pieces{"x"});
}

TEST(PreTokenizer, Qwen2SplitsEveryDigit) {
  EXPECT_EQ(split("qwen2", "ab 123"), (Pieces{"ab", " ", "1", "2", "3"}));
}

TEST(PreTokenizer, Gpt2) {
  EXPECT_EQ(split("gpt-2", "Hello world's 12345  x!?"),
            (Pieces{"Hello", " world", "'s", " 12345", " ", " x", "!?"}));
  EXPECT_EQ(split("gpt-2", "'S"), (Pieces{"'", "S"}));  // GPT-2's contractions are lower case only
}

TEST(PreTokenizer, StarcoderIsolatesDigitsFirst) {
  EXPECT_EQ(split("starcoder", "x 42"), (Pieces{"x", " ", "4", "2"}));
}

TEST(PreTokenizer, FalconStages) {
  // Punctuation and ASCII symbols first, then GPT-2's expression, then runs of three ASCII digits.
  EXPECT_EQ(split("falcon", "x+=1234567"), (Pieces{"x", "+=", "123", "456", "7"}));
}

TEST(PreTokenizer, DeepSeekCoderStages) {
  EXPECT_EQ(split("deepseek-coder", "ab12 cd\n"), (Pieces{"ab", "1", "2", " cd", "\n"}));
  EXPECT_EQ(split("deepseek-coder", "\xE4\xB8\xAD\xE6\x96\x87!"), (Pieces{"\xE4\xB8\xAD\xE6\x96\x87", "!"}));
}

TEST(PreTokenizer, DeepSeekLlmStages) {
  // Its letter class is Latin, Greek, Cyrillic, ... (not CJK), digits go in runs, trailing spaces alone.
  EXPECT_EQ(split("deepseek-llm", "Hi \xD0\xB6\xD0\xB6 99\n  "),
            (Pieces{"Hi", " \xD0\xB6\xD0\xB6", " ", "99", "\n", "  "}));
}

// Llama 4 (o200k): no reference token ids exist; these pieces follow from the expression.
TEST(PreTokenizer, Llama4) {
  EXPECT_EQ(split("llama4", "HelloWorld camelCase HTTPServer"),
            (Pieces{"Hello", "World", " camel", "Case", " HTTPServer"}));
  EXPECT_EQ(split("llama4", "I'm fine, they'RE"), (Pieces{"I'm", " fine", ",", " they'RE"}));
  EXPECT_EQ(split("llama4", "1234567"), (Pieces{"123", "456", "7"}));
  // One non-letter may lead a word, so "/bar" stays together; a run of them takes its newlines and '/'.
  EXPECT_EQ(split("llama4", "x //\nfoo/bar"), (Pieces{"x", " //\n", "foo", "/bar"}));
  // Marks belong to the word (é written as e + U+0301), in llama.cpp's approximation they would not.
  EXPECT_EQ(split("llama4", "cafe\xCC\x81s ok"), (Pieces{"cafe\xCC\x81s", " ok"}));
  EXPECT_EQ(split("gpt-4o",
                  "\xC3\x89"
                  "cole"),
            Pieces{"\xC3\x89"
                   "cole"});
}

TEST(PreTokenizer, IllFormedBytesAreKeptAsTheyAre) {
  // 0xFF counts as U+FFFD (a symbol) but stays one byte in its piece.
  EXPECT_EQ(split("gpt-2",
                  "a\xFF"
                  "b c\xE2\x82"),
            (Pieces{"a", "\xFF", "b", " c", "\xE2\x82"}));
}

TEST(PreTokenizer, PiecesAlwaysCoverTheText) {
  SCOPED_TRACE(test::seed_note());
  auto rng = test::rng(11);
  const std::vector<std::string> alphabet = {"a",
                                             "Z",
                                             " ",
                                             "  ",
                                             "\n",
                                             "\r\n",
                                             "\t",
                                             "1",
                                             "'s",
                                             "'",
                                             ".",
                                             "!",
                                             "\xC3\xA9",
                                             "\xE4\xB8\xAD",
                                             "\xF0\x9F\xA6\x99",
                                             "\xFF",
                                             "\xE2\x80\x83",
                                             "\xCC\x81",
                                             "\xD9\xA3",
                                             "$"};
  for (const std::string name : {"default", "llama-bpe", "qwen2", "llama4", "gpt-2", "starcoder", "falcon",
                                 "deepseek-llm", "deepseek-coder"}) {
    const auto config = pre_tokenizer_config(name);
    ASSERT_TRUE(config) << name;
    const PreTokenizer pre(config->regexes);
    for (int iter = 0; iter < 200; ++iter) {
      std::string text;
      for (int i = static_cast<int>(rng() % 24); i > 0; --i) text += alphabet[rng() % alphabet.size()];
      std::vector<std::string_view> pieces;
      pre.split(text, pieces);
      std::string joined;
      for (std::string_view p : pieces) {
        ASSERT_FALSE(p.empty()) << name;
        joined += p;
      }
      ASSERT_EQ(joined, text) << name;
    }
  }
}

// The split of `text` by `regexes` with a fresh Regex::match_at for every position: no failed states are
// remembered from one attempt to the next.
Pieces split_without_memory(const std::vector<std::string>& regexes, const std::string& text) {
  std::vector<PackedChar> chars;
  std::vector<size_t> offsets;
  for (size_t pos = 0; pos < text.size();) {
    const utf8::Decoded d = utf8::decode(std::string_view(text).substr(pos));
    chars.push_back(pack_char(d.status == utf8::Status::Valid ? d.cp : utf8::kReplacement));
    offsets.push_back(pos);
    pos += d.length;
  }
  offsets.push_back(text.size());
  std::vector<std::pair<size_t, size_t>> pieces = {{0, chars.size()}}, next;
  for (const std::string& r : regexes) {
    const Regex re(r);
    next.clear();
    for (const auto& [begin, end] : pieces) {
      const std::span<const PackedChar> piece(chars.data() + begin, end - begin);
      size_t last = 0;
      for (size_t pos = 0; pos < piece.size();) {
        const ptrdiff_t m = re.match_at(piece, pos);
        if (m <= static_cast<ptrdiff_t>(pos)) {
          ++pos;
          continue;
        }
        if (last < pos) next.emplace_back(begin + last, begin + pos);
        next.emplace_back(begin + pos, begin + m);
        pos = last = static_cast<size_t>(m);
      }
      if (last < piece.size()) next.emplace_back(begin + last, end);
    }
    pieces.swap(next);
  }
  Pieces out;
  for (const auto& [begin, end] : pieces)
    out.push_back(text.substr(offsets[begin], offsets[end] - offsets[begin]));
  return out;
}

TEST(PreTokenizer, LongRunsStayLinearAndSplitTheSame) {
  // "\s+$" fails at each of these spaces after scanning to the digit: quadratic without the search's
  // memory of failed states (seconds), linear with it.
  const std::string spaces(20000, ' ');
  EXPECT_EQ(split("deepseek-llm", spaces + "5"), (Pieces{spaces, "5"}));

  // Texts with long runs, where attempts take long enough for failed states to be remembered.
  SCOPED_TRACE(test::seed_note());
  auto rng = test::rng(12);
  const std::vector<std::string> units = {" ",        "\n",           "a",  "1", "!", "'",
                                          "\xC3\xA9", "\xE4\xB8\xAD", "\t", "A"};
  for (const std::string name : {"default", "llama-bpe", "qwen2", "llama4", "gpt-2", "starcoder", "falcon",
                                 "deepseek-llm", "deepseek-coder"}) {
    const auto config = pre_tokenizer_config(name);
    for (int iter = 0; iter < 12; ++iter) {
      std::string text;
      for (int run = static_cast<int>(rng() % 6); run >= 0; --run) {
        const std::string& unit = units[rng() % units.size()];
        for (int i = static_cast<int>(rng() % 400); i >= 0; --i) text += unit;
      }
      std::vector<std::string_view> views;
      PreTokenizer(config->regexes).split(text, views);
      ASSERT_EQ(Pieces(views.begin(), views.end()), split_without_memory(config->regexes, text)) << name;
    }
  }
}

TEST(PreTokenizer, UnknownNamesAreListed) {
  EXPECT_FALSE(pre_tokenizer_config("no-such-pre"));
  const std::string names = supported_pre_tokenizers();
  for (const char* n : {"default", "llama-bpe", "qwen2", "deepseek-r1-qwen", "gpt-2", "deepseek-llm",
                        "deepseek-coder", "falcon", "mpt", "starcoder", "refact", "llama4"}) {
    EXPECT_NE(names.find(n), std::string::npos) << n;
    EXPECT_TRUE(pre_tokenizer_config(n)) << n;
  }
  EXPECT_TRUE(pre_tokenizer_config("llama-bpe")->ignore_merges);
  EXPECT_TRUE(pre_tokenizer_config("llama-bpe")->add_bos);
  EXPECT_FALSE(pre_tokenizer_config("qwen2")->add_bos);
}

}  // namespace
}  // namespace wgllm::tokenizer
