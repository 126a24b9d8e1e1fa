// Random bytes and random Unicode through the byte-level BPE tokenizers, and StreamDecoder on their ids.
// Byte-level BPE spells every byte that has a token, so decode(encode(x)) == x for every input, valid UTF-8
// or not, but for the bytes a vocabulary lacks (Falcon lacks some control characters, StarCoder 0xF1),
// which are left out.
#include <gtest/gtest.h>

#include <array>
#include <string>
#include <vector>

#include "core/utf8.hpp"
#include "support/test_support.hpp"
#include "tokenizer/tokenizer.hpp"
#include "unit/tokenizer/fixtures.hpp"

namespace wgllm::tokenizer {
namespace {

using Ids = std::vector<int32_t>;

std::vector<const Tokenizer*> tokenizers() {
  return {&llama3_json(),
          &qwen3_json(),
          &gguf_vocab("gpt-2"),
          &gguf_vocab("deepseek-llm"),
          &gguf_vocab("deepseek-coder"),
          &gguf_vocab("falcon"),
          &gguf_vocab("starcoder")};
}

// The bytes that some normal token spells on its own; the others are left out of encodings (the unknown
// token, which decodes to nothing, stands for them where the vocabulary has one).
std::array<bool, 256> spellable_bytes(const Tokenizer& tok) {
  std::array<bool, 256> has{};
  for (int32_t id = 0; id < tok.n_vocab(); ++id) {
    const std::string p = tok.piece(id);
    if (p.size() == 1 && tok.vocab().types[id] == TokenType::Normal) has[static_cast<uint8_t>(p[0])] = true;
  }
  return has;
}

std::string spellable(const std::array<bool, 256>& has, const std::string& text) {
  std::string out;
  for (char c : text) {
    if (has[static_cast<uint8_t>(c)]) out += c;
  }
  return out;
}

TEST(BpeFuzz, RandomUnicodeRoundTrips) {
  SCOPED_TRACE(test::seed_note());
  auto rng = test::rng(21);
  for (const Tokenizer* tok : tokenizers()) {
    const std::array<bool, 256> has = spellable_bytes(*tok);
    for (int iter = 0; iter < 150; ++iter) {
      const std::string text = random_unicode(rng, 48, U"\t\n \r'");
      SCOPED_TRACE("text '" + text + "'");
      const Ids ids = tok->encode(text, false);
      expect_ids_in_range(*tok, ids);
      const std::string expected = spellable(has, text);
      ASSERT_EQ(tok->decode(ids), expected);
      ASSERT_EQ(tok->decode(tok->encode(text, true)), expected);
      ASSERT_EQ(tok->decode(tok->encode(text, false, true)), expected);
    }
  }
}

TEST(BpeFuzz, RandomBytesRoundTripExactly) {
  SCOPED_TRACE(test::seed_note());
  auto rng = test::rng(22);
  for (const Tokenizer* tok : tokenizers()) {
    const std::array<bool, 256> has = spellable_bytes(*tok);
    for (int iter = 0; iter < 150; ++iter) {
      std::string bytes(rng() % 64, '\0');
      for (char& c : bytes) c = static_cast<char>(rng() % 256);
      const Ids ids = tok->encode(bytes, false, rng() % 2);
      expect_ids_in_range(*tok, ids);
      ASSERT_EQ(tok->decode(ids), spellable(has, bytes));
    }
  }
}

TEST(BpeFuzz, SpecialTokenTextsMixedIntoText) {
  SCOPED_TRACE(test::seed_note());
  const Tokenizer& tok = llama3_json();
  auto rng = test::rng(23);
  const std::vector<std::string> parts = {"<|eot_id|>", "<|begin_of_text|>", "<|", "|>", " ", "a",
                                          "\n",         "\xF0\x9F"};
  for (int iter = 0; iter < 300; ++iter) {
    std::string text;
    for (int i = static_cast<int>(rng() % 12); i > 0; --i) text += parts[rng() % parts.size()];
    const Ids special = tok.encode(text, true, true);
    expect_ids_in_range(tok, special);
    ASSERT_EQ(tok.decode(special, true), tok.vocab().tokens[128000] + text);
    for (int32_t id : tok.encode(text, false)) {
      ASSERT_LT(id, 128000) << "special token " << id << " from plain text '" << text << "'";
    }
  }
}

TEST(BpeFuzz, StreamDecoderGivesValidUtf8EqualToTheSanitizedDecode) {
  SCOPED_TRACE(test::seed_note());
  auto rng = test::rng(24);
  for (const Tokenizer* tok : {&llama3_json(), &gguf_vocab("gpt-2")}) {
    // The byte-level tokens of single bytes, to split characters often.
    Ids single_bytes;
    for (int32_t id = 0; id < tok->n_vocab(); ++id) {
      if (tok->piece(id).size() == 1) single_bytes.push_back(id);
    }
    ASSERT_EQ(single_bytes.size(), 256u);
    for (int iter = 0; iter < 300; ++iter) {
      Ids ids(rng() % 40);
      for (int32_t& id : ids) {
        id = rng() % 2 ? single_bytes[rng() % single_bytes.size()]
                       : static_cast<int32_t>(rng() % tok->n_vocab());
      }
      StreamDecoder stream(*tok, /*strip_leading_space=*/true);  // nothing to strip in byte-level BPE
      std::string streamed;
      for (int32_t id : ids) {
        const std::string out = stream.push(id);
        ASSERT_TRUE(utf8::is_valid(out));
        streamed += out;
      }
      streamed += stream.flush();
      ASSERT_EQ(streamed, utf8::sanitize(tok->decode(ids)));
    }
  }
}

TEST(BpeFuzz, StreamDecoderHoldsBackSplitCharacters) {
  const Tokenizer& tok = llama3_json();
  // "🦙" is [9468, 99, 247] in Llama 3 (llama3-tokenizer-js's test cases): F0 9F | A6 | 99.
  StreamDecoder stream(tok, false);
  EXPECT_EQ(stream.push(9468), "");
  EXPECT_EQ(stream.push(99), "");
  EXPECT_EQ(stream.push(247), "\xF0\x9F\xA6\x99");
  EXPECT_EQ(stream.push(9906), "Hello");
  EXPECT_EQ(stream.flush(), "");
}

}  // namespace
}  // namespace wgllm::tokenizer
