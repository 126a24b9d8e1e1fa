// The rules of byte-level BPE (Hugging Face tokenizers' BPE model, llama.cpp's llm_tokenizer_bpe), checked
// on a small vocabulary built in memory, and GPT-2's byte alphabet. Each expected id list is worked out by
// hand from those rules, as the comments show.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "core/error.hpp"
#include "gguf/gguf_file.hpp"
#include "gguf/gguf_writer.hpp"
#include "support/test_support.hpp"
#include "tokenizer/byte_level.hpp"
#include "tokenizer/tokenizer.hpp"

namespace wgllm::tokenizer {
namespace {

using Ids = std::vector<int32_t>;

TEST(ByteLevel, Gpt2Alphabet) {
  // GPT-2's bytes_to_unicode: printable bytes stay, the others take U+0100.. in byte order.
  EXPECT_EQ(byte_level::char_of('!'), U'!');
  EXPECT_EQ(byte_level::char_of(0xE9), 0xE9);
  EXPECT_EQ(byte_level::char_of(0x00), 0x100);
  EXPECT_EQ(byte_level::char_of('\n'), 0x10A);  // "Ċ"
  EXPECT_EQ(byte_level::char_of(' '), 0x120);   // "Ġ"
  EXPECT_EQ(byte_level::char_of(0x7F), 0x121);
  EXPECT_EQ(byte_level::char_of(0xA0), 0x142);
  EXPECT_EQ(byte_level::char_of(0xAD), 0x143);
  for (int b = 0; b < 256; ++b)
    EXPECT_EQ(byte_level::byte_of(byte_level::char_of(static_cast<uint8_t>(b))), b);
  EXPECT_FALSE(byte_level::byte_of(0x144));
  EXPECT_FALSE(byte_level::byte_of(0x2581));
  EXPECT_EQ(byte_level::encode(" a\n"),
            "\xC4\xA0"
            "a\xC4\x8A");
  EXPECT_EQ(byte_level::decode("\xC4\xA0hello"), " hello");
  EXPECT_FALSE(byte_level::decode("\xE2\x96\x81x"));  // "▁x"
  EXPECT_FALSE(byte_level::decode("\xC4"));
}

constexpr int32_t kAB = 256, kBC = 257, kABC = 258, kAA = 259, kAAAA = 260, kXYZ = 261, kEnd = 262,
                  kUser = 263, kBos = 264, kOdd = 265;

// Tokens 0..255 spell the byte of the same value; merges, by rank: b+c, a+b, a+bc, a+a, aa+aa.
Vocab toy_vocab() {
  Vocab v;
  v.model = Model::Bpe;
  v.add_space_prefix = false;
  v.add_bos = false;
  const auto add = [&](const std::string& text, TokenType type) {
    v.tokens.push_back(text);
    v.types.push_back(type);
    v.scores.push_back(0);
  };
  for (int b = 0; b < 256; ++b)
    add(byte_level::encode(std::string(1, static_cast<char>(b))), TokenType::Normal);
  for (const char* t : {"ab", "bc", "abc", "aa", "aaaa", "xyz"}) add(t, TokenType::Normal);
  add("<|end|>", TokenType::Control);
  add("<u>", TokenType::UserDefined);
  add("<s>", TokenType::Control);
  add("\xE2\x96\x81odd",
      TokenType::Normal);  // outside the byte alphabet: never merged to, decodes as written
  v.merges = {{'b', 'c', kBC}, {'a', 'b', kAB}, {'a', kBC, kABC}, {'a', 'a', kAA}, {kAA, kAA, kAAAA}};
  v.pre_regexes = {std::string(kGpt2Regex)};
  v.bos = kBos;
  v.eos = kEnd;
  v.eog_ids = {kEnd};
  return v;
}

TEST(BpeRules, LowestRankMergesFirst) {
  const Tokenizer tok(toy_vocab());
  // "abc": b+c (rank 0) before a+b (rank 1), then a+bc.
  EXPECT_EQ(tok.encode("abc", false), Ids{kABC});
  Vocab v = toy_vocab();
  std::swap(v.merges[0], v.merges[1]);  // now a+b first: "ab" + "c", and nothing merges those
  EXPECT_EQ(Tokenizer(std::move(v)).encode("abc", false), (Ids{kAB, 'c'}));
}

TEST(BpeRules, EqualRanksMergeLeftmostFirst) {
  const Tokenizer tok(toy_vocab());
  EXPECT_EQ(tok.encode("aaa", false), (Ids{kAA, 'a'}));
  EXPECT_EQ(tok.encode("aaaa", false), Ids{kAAAA});
  // a+a at 0, then a+a at 2 (the pair at 1 died), then aa+aa.
  EXPECT_EQ(tok.encode("aaaaa", false), (Ids{kAAAA, 'a'}));
}

TEST(BpeRules, IgnoreMergesTakesWholePieces) {
  EXPECT_EQ(Tokenizer(toy_vocab()).encode("xyz", false), (Ids{'x', 'y', 'z'}));
  Vocab v = toy_vocab();
  v.ignore_merges = true;
  const Tokenizer tok(std::move(v));
  EXPECT_EQ(tok.encode("xyz", false), Ids{kXYZ});
  EXPECT_EQ(tok.encode("xyzxyz", false), (Ids{'x', 'y', 'z', 'x', 'y', 'z'}));
}

TEST(BpeRules, MergesStayInsidePreTokenizerPieces) {
  const Tokenizer tok(toy_vocab());
  // GPT-2's expression cuts "ab ab" into "ab" and " ab"; "b a" never meet.
  EXPECT_EQ(tok.encode("ab ab", false), (Ids{kAB, ' ', kAB}));
  EXPECT_EQ(tok.decode(Ids{kAB, ' ', kAB}), "ab ab");
}

TEST(BpeRules, SpecialTokens) {
  const Tokenizer tok(toy_vocab());
  EXPECT_EQ(tok.encode("a<|end|>", false, true), (Ids{'a', kEnd}));
  const Ids plain = tok.encode("a<|end|>", false);
  EXPECT_EQ(std::count(plain.begin(), plain.end(), kEnd), 0);
  EXPECT_EQ(tok.decode(plain), "a<|end|>");
  EXPECT_EQ(tok.encode("<u>x", false), (Ids{kUser, 'x'}));  // user-defined: always
  EXPECT_EQ(tok.encode("", true), Ids{});                   // add_bos is false

  Vocab v = toy_vocab();
  v.add_bos = v.add_eos = true;
  EXPECT_EQ(Tokenizer(std::move(v)).encode("a", true), (Ids{kBos, 'a', kEnd}));
}

TEST(BpeRules, Pieces) {
  const Tokenizer tok(toy_vocab());
  EXPECT_EQ(tok.piece(' '), " ");
  EXPECT_EQ(tok.piece(0xC3), "\xC3");
  EXPECT_EQ(tok.piece(kAB), "ab");
  EXPECT_EQ(tok.piece(kEnd), "");
  EXPECT_EQ(tok.piece(kEnd, true), "<|end|>");
  EXPECT_EQ(tok.piece(kUser), "<u>");
  EXPECT_EQ(tok.piece(kOdd), "\xE2\x96\x81odd");
  EXPECT_EQ(tok.encode("\xE2\x96\x81odd", false), (Ids{0xE2, 0x96, 0x81, 'o', 'd', 'd'}));
  EXPECT_THROW(tok.piece(tok.n_vocab()), Error);
}

TEST(BpeRules, BytesWithoutTokensBecomeUnknownOrAreLeftOut) {
  Vocab v = toy_vocab();
  v.tokens[0xFF] = "[no byte]";  // no token spells byte 0xFF any more
  EXPECT_EQ(Tokenizer(v).encode("a\xFF"
                                "ab",
                                false),
            (Ids{'a', kAB}));
  v.unk = kOdd;
  EXPECT_EQ(Tokenizer(std::move(v))
                .encode("\xFF"
                        "ab",
                        false),
            (Ids{kOdd, kAB}));
}

TEST(BpeRules, InconsistentVocabulariesAreRejected) {
  const auto rejects = [](Vocab v, const std::string& needle) {
    try {
      Tokenizer tok(std::move(v));
      ADD_FAILURE() << "accepted; expected an error mentioning " << needle;
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::BadInput);
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  Vocab v = toy_vocab();
  v.merges[1].result = kBC;
  rejects(v, "tokenizer.ggml.merges[1]: 'a' + 'b' is not 'bc'");
  v = toy_vocab();
  v.merges[0].left = 9999;
  rejects(v, "tokenizer.ggml.merges[0] token id = 9999");
  v = toy_vocab();
  v.pre_regexes = {"(unclosed"};
  rejects(v, "regular expression '(unclosed'");
}

// Byte-level vocabularies in otherwise valid GGUF files.
class BadBpeFile : public testing::Test {
 protected:
  gguf::GgufWriter base() const {
    gguf::GgufWriter w;
    w.set_string("tokenizer.ggml.model", "gpt2");
    w.set_string("tokenizer.ggml.pre", "gpt-2");
    w.set_strings("tokenizer.ggml.tokens", {"a", "b", "ab", "\xC4\xA0"});
    w.set_int32s("tokenizer.ggml.token_type", {1, 1, 1, 1});
    w.set_strings("tokenizer.ggml.merges", {"a b"});
    return w;
  }
  std::string write(const gguf::GgufWriter& w, const std::string& name) const {
    const std::string path = test::temp_dir() + "/" + name + ".gguf";
    w.write(path);
    return path;
  }
  void expect_rejected(const gguf::GgufWriter& w, const std::string& name, const std::string& needle) const {
    const std::string path = write(w, name);
    try {
      vocab_from_gguf(*gguf::GgufFile::open(path));
      ADD_FAILURE() << name << ": accepted";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::BadInput);
      const std::string message = e.what();
      EXPECT_NE(message.find(needle), std::string::npos) << message;
      EXPECT_NE(message.find(path), std::string::npos) << message;
    }
  }
};

TEST_F(BadBpeFile, ValidBaseLoads) {
  const auto tok = Tokenizer::from_file(write(base(), "good-bpe"));
  EXPECT_EQ(tok->encode("ab a", true), (Ids{2, 3, 0}));  // no BOS: none is named and gpt-2 adds none
  EXPECT_EQ(tok->vocab().bos, -1);
  EXPECT_EQ(tok->decode(Ids{2, 3, 0}), "ab a");
}

TEST_F(BadBpeFile, Rejected) {
  gguf::GgufWriter w = base();
  w.set_string("tokenizer.ggml.pre", "no-such-pre");
  expect_rejected(
      w, "pre",
      "tokenizer.ggml.pre = 'no-such-pre' is not a supported pre-tokenizer (supported: default, llama-bpe");

  w = base();
  w.set_strings("tokenizer.ggml.merges", {"ab"});
  expect_rejected(w, "merge-space", "tokenizer.ggml.merges[0] = 'ab' is not two tokens separated by a space");

  w = base();
  w.set_strings("tokenizer.ggml.merges", {"a b", "b c"});
  expect_rejected(w, "merge-token", "tokenizer.ggml.merges[1] = 'b c': 'c' is not a token");

  w = base();
  w.set_strings("tokenizer.ggml.merges", {"b a"});
  expect_rejected(w, "merge-result", "tokenizer.ggml.merges[0] = 'b a': 'ba' is not a token");

  w = gguf::GgufWriter();
  w.set_string("tokenizer.ggml.model", "gpt2");
  w.set_strings("tokenizer.ggml.tokens", {"a"});
  expect_rejected(w, "no-merges", "tokenizer.ggml.merges");
}

}  // namespace
}  // namespace wgllm::tokenizer
