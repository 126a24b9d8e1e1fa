// StreamDecoder, and random inputs through encode/decode, on the Llama 2 and stories260K vocabularies.
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "core/utf8.hpp"
#include "gguf/gguf_file.hpp"
#include "support/test_support.hpp"
#include "tokenizer/tokenizer.hpp"
#include "unit/tokenizer/fixtures.hpp"

namespace wgllm::tokenizer {
namespace {

using Ids = std::vector<int32_t>;

const Tokenizer& llama_spm() {
  static const auto tok = Tokenizer::from_gguf(
      *gguf::GgufFile::open(test::testdata_path("llama.cpp-vocab/ggml-vocab-llama-spm.gguf")));
  return *tok;
}

const Tokenizer& stories260k() {
  static const auto tok =
      Tokenizer::from_gguf(*gguf::GgufFile::open(test::source_path("models/stories260K.gguf")));
  return *tok;
}

const std::string kReplacement = "\xEF\xBF\xBD";

TEST(StreamDecoder, HoldsBackAMultiByteCharacterUntilComplete) {
  const Tokenizer& tok = llama_spm();
  // "🦙" is F0 9F A6 99, which Llama 2 spells with byte tokens (ggml-vocab-llama-spm.gguf.out, case 18).
  const Ids llama = {243, 162, 169, 156};
  ASSERT_EQ(tok.vocab().tokens[243], "<0xF0>");
  StreamDecoder stream(tok, false);
  EXPECT_EQ(stream.push(llama[0]), "");
  EXPECT_EQ(stream.push(llama[1]), "");
  EXPECT_EQ(stream.push(llama[2]), "");
  EXPECT_EQ(stream.push(llama[3]), "\xF0\x9F\xA6\x99");
  EXPECT_EQ(stream.flush(), "");
}

TEST(StreamDecoder, BrokenSequencesBecomeReplacementCharacters) {
  const Tokenizer& tok = llama_spm();
  StreamDecoder stream(tok, false);
  EXPECT_EQ(stream.push(243), "");                         // F0, waiting for more
  EXPECT_EQ(stream.push(15043), kReplacement + " Hello");  // " Hello" cannot continue it
  EXPECT_EQ(stream.push(243), "");
  EXPECT_EQ(stream.push(162), "");
  EXPECT_EQ(stream.flush(), kReplacement);         // the text ended inside a character
  EXPECT_EQ(stream.push(3 + 0xFF), kReplacement);  // 0xFF never starts a character
}

TEST(StreamDecoder, StripsTheLeadingSpaceOfTheFirstPiece) {
  const Tokenizer& tok = llama_spm();
  StreamDecoder stripped(tok, true);
  EXPECT_EQ(stripped.push(1), "");  // BOS prints nothing
  EXPECT_EQ(stripped.push(15043), "Hello");
  EXPECT_EQ(stripped.push(3186), " world");

  StreamDecoder kept(tok, false);
  EXPECT_EQ(kept.push(15043), " Hello");
}

TEST(StreamDecoder, RandomIdsGiveValidUtf8EqualToTheSanitizedDecode) {
  SCOPED_TRACE(test::seed_note());
  const Tokenizer& tok = llama_spm();
  auto rng = test::rng(2);
  for (int iter = 0; iter < 500; ++iter) {
    Ids ids(rng() % 40);
    // Mostly byte tokens (ids 3..258), so that characters are split and broken often.
    for (int32_t& id : ids) id = rng() % 2 ? 3 + static_cast<int32_t>(rng() % 256) : rng() % tok.n_vocab();
    StreamDecoder stream(tok, tok.vocab().add_space_prefix);
    std::string streamed;
    for (int32_t id : ids) {
      const std::string out = stream.push(id);
      ASSERT_TRUE(utf8::is_valid(out));
      streamed += out;
    }
    streamed += stream.flush();
    ASSERT_EQ(streamed, utf8::sanitize(tok.decode(ids)));
  }
}

TEST(TokenizerFuzz, RandomUnicodeRoundTrips) {
  SCOPED_TRACE(test::seed_note());
  auto rng = test::rng(3);
  for (const Tokenizer* tok : {&llama_spm(), &stories260k()}) {
    for (int iter = 0; iter < 300; ++iter) {
      const std::string text = random_unicode(rng, 40, U"\t\n  ", U'\u2581');
      SCOPED_TRACE("text '" + text + "'");
      const Ids ids = tok->encode(text, false);
      expect_ids_in_range(*tok, ids);
      ASSERT_EQ(tok->decode(ids), text);
      ASSERT_EQ(tok->decode(tok->encode(text, true)), text);
    }
  }
}

TEST(TokenizerFuzz, RandomBytesNeverFail) {
  SCOPED_TRACE(test::seed_note());
  auto rng = test::rng(4);
  for (const Tokenizer* tok : {&llama_spm(), &stories260k()}) {
    for (int iter = 0; iter < 300; ++iter) {
      std::string bytes(rng() % 48, '\0');
      for (char& c : bytes) c = static_cast<char>(rng() % 256);
      expect_ids_in_range(*tok, tok->encode(bytes, true, rng() % 2));

      // Without spaces the bytes come back exactly. (A space after a broken sequence is escaped to "▁",
      // whose bytes the broken sequence may swallow; like llama.cpp, they then decode as those bytes.)
      for (char& c : bytes) {
        if (c == ' ') c = 'x';
      }
      for (size_t m; (m = bytes.find("\xE2\x96\x81")) != std::string::npos;) bytes[m] = 'x';
      const Ids ids = tok->encode(bytes, false);
      expect_ids_in_range(*tok, ids);
      ASSERT_EQ(tok->decode(ids), bytes);
    }
  }
}

TEST(TokenizerFuzz, SpecialTokenTextsMixedIntoText) {
  SCOPED_TRACE(test::seed_note());
  const Tokenizer& tok = llama_spm();
  auto rng = test::rng(5);
  const std::vector<std::string> parts = {"<s>", "</s>", "<unk>", "<", "s>", " ", "a", "\xF0\x9F", "\n"};
  for (int iter = 0; iter < 300; ++iter) {
    std::string text;
    for (int i = static_cast<int>(rng() % 12); i > 0; --i) text += parts[rng() % parts.size()];
    const Ids special = tok.encode(text, true, true);
    expect_ids_in_range(tok, special);
    const Ids plain = tok.encode(text, false, false);
    for (int32_t id : plain)
      ASSERT_TRUE(id > 2) << "control token " << id << " from plain text '" << text << "'";
  }
}

}  // namespace
}  // namespace wgllm::tokenizer
