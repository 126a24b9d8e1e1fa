// The rules of llama.cpp's SentencePiece tokenizer (src/llama-vocab.cpp: llm_tokenizer_spm_session,
// tokenizer_st_partition, token_to_piece), checked on a small vocabulary built in memory. Each expected
// id list is worked out by hand from those rules, as the comments show.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "core/error.hpp"
#include "tokenizer/tokenizer.hpp"

namespace wgllm::tokenizer {
namespace {

using Ids = std::vector<int32_t>;

constexpr int32_t kUnk = 0, kBos = 1, kEos = 2;
int32_t byte_id(uint8_t b) {
  return 3 + b;
}  // <0x00>..<0xFF> are ids 3..258
constexpr int32_t kSpace = 259, kA = 260, kB = 261, kC = 262, kAB = 263, kBC = 264, kSpaceA = 265,
                  kUser = 266, kCtl = 267, kAA = 268, kUnused = 269, kSpaceB = 270, kLtS = 271;

Vocab toy_vocab() {
  Vocab v;
  const auto add = [&](std::string text, float score, TokenType type) {
    v.tokens.push_back(std::move(text));
    v.scores.push_back(score);
    v.types.push_back(type);
  };
  add("<unk>", 0, TokenType::Unknown);
  add("<s>", 0, TokenType::Control);
  add("</s>", 0, TokenType::Control);
  static const char* hex = "0123456789ABCDEF";
  for (int b = 0; b < 256; ++b) add(std::string("<0x") + hex[b >> 4] + hex[b & 15] + ">", 0, TokenType::Byte);
  add("\xE2\x96\x81", -1, TokenType::Normal);  // "▁"
  add("a", -10, TokenType::Normal);
  add("b", -10, TokenType::Normal);
  add("c", -10, TokenType::Normal);
  add("ab", -2, TokenType::Normal);
  add("bc", -1, TokenType::Normal);
  add("\xE2\x96\x81"
      "a",
      -3, TokenType::Normal);
  add("<|user|>", 0, TokenType::UserDefined);
  add("<|ctl|>", 0, TokenType::Control);
  add("aa", -1, TokenType::Normal);
  add("zz", 0, TokenType::Unused);
  add("\xE2\x96\x81"
      "b",
      -30, TokenType::Normal);
  add("<s", -5, TokenType::Normal);
  v.bos = kBos;
  v.eos = kEos;
  v.unk = kUnk;
  v.eog_ids = {kEos, kCtl};
  return v;
}

Ids bytes_of(std::string_view s) {
  Ids ids;
  for (char c : s) ids.push_back(byte_id(static_cast<uint8_t>(c)));
  return ids;
}

Ids concat(std::initializer_list<Ids> parts) {
  Ids out;
  for (const Ids& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

TEST(SpmRules, HighestScoreMergesFirst) {
  const Tokenizer tok(toy_vocab());
  // "▁abc": pairs ▁a (-3), ab (-2), bc (-1). bc merges first, which kills ab; then ▁a; "▁abc" is no token.
  EXPECT_EQ(tok.encode("abc", false), (Ids{kSpaceA, kBC}));
  // "▁ab": ab (-2) beats ▁a (-3); "▁ab" is no token, so ▁ stays alone.
  EXPECT_EQ(tok.encode("ab", false), (Ids{kSpace, kAB}));
}

TEST(SpmRules, EqualScoresMergeLeftmostFirst) {
  Vocab v = toy_vocab();
  v.add_space_prefix = false;
  const Tokenizer tok(std::move(v));
  // "aaa": aa@0 and aa@1 tie; the left one merges, the right pair dies.
  EXPECT_EQ(tok.encode("aaa", false), (Ids{kAA, kA}));
  EXPECT_EQ(tok.encode("aaaa", false), (Ids{kAA, kAA}));
  EXPECT_EQ(tok.encode("ab", false), (Ids{kAB}));
}

TEST(SpmRules, SpacePrefixAndEscapedSpaces) {
  const Tokenizer tok(toy_vocab());
  EXPECT_EQ(tok.encode("", false), Ids{});
  EXPECT_EQ(tok.encode("", true), Ids{kBos});
  EXPECT_EQ(tok.encode("a", true), (Ids{kBos, kSpaceA}));
  // " a b" becomes "▁▁a▁b": ▁a (-3) merges, then ▁b (-30); "▁▁" and "a▁" are no tokens.
  EXPECT_EQ(tok.encode(" a b", false), (Ids{kSpace, kSpaceA, kSpaceB}));

  Vocab v = toy_vocab();
  v.add_space_prefix = false;
  const Tokenizer bare(std::move(v));
  EXPECT_EQ(bare.encode("a b", false), (Ids{kA, kSpaceB}));
}

TEST(SpmRules, UnknownCharactersFallBackToBytes) {
  const Tokenizer tok(toy_vocab());
  // "é" is not in the vocabulary: its UTF-8 bytes.
  EXPECT_EQ(tok.encode("\xC3\xA9", false), concat({{kSpace}, bytes_of("\xC3\xA9")}));
  // A lead byte claims its sequence length without validation (as llama.cpp's unicode_len_utf8 does), so
  // "\xC3" swallows the "a" after it and both become bytes.
  EXPECT_EQ(tok.encode("\xC3"
                       "ab",
                       false),
            concat({{kSpace},
                    bytes_of("\xC3"
                             "a"),
                    {kB}}));
  // A truncated sequence at the end is one short symbol.
  EXPECT_EQ(tok.encode("a\xF0\x9F", false), concat({{kSpaceA}, bytes_of("\xF0\x9F")}));
  // Merging never produces a control token: "<s" + ">" would spell "<s>" (llama.cpp would merge it into
  // BOS), but only the ids BOS and parse_special make control tokens.
  EXPECT_EQ(tok.encode("<s>", false), (Ids{kSpace, kLtS, byte_id('>')}));
}

TEST(SpmRules, WithoutByteTokensUnknownCharactersBecomeUnk) {
  Vocab v;
  v.tokens = {"<unk>", "<s>", "</s>", "\xE2\x96\x81", "x"};
  v.scores = {0, 0, 0, -1, -1};
  v.types = {TokenType::Unknown, TokenType::Control, TokenType::Control, TokenType::Normal,
             TokenType::Normal};
  v.unk = 0, v.bos = 1, v.eos = 2;
  const Tokenizer tok(v);
  EXPECT_EQ(tok.encode("x\xC3\xA9", false), (Ids{3, 4, 0, 0}));

  v.unk = -1;
  const Tokenizer no_unk(v);
  EXPECT_THROW(no_unk.encode("\xC3\xA9", false), Error);
}

TEST(SpmRules, SpecialTokensInText) {
  const Tokenizer tok(toy_vocab());
  // User-defined tokens are always matched; the text after any special token gets the "▁" prefix again.
  EXPECT_EQ(tok.encode("a<|user|>b", false), (Ids{kSpaceA, kUser, kSpaceB}));
  EXPECT_EQ(tok.encode("<|user|>a", false), (Ids{kUser, kSpaceA}));
  // Control tokens only with parse_special.
  EXPECT_EQ(tok.encode("<|ctl|>", false, true), (Ids{kCtl}));
  EXPECT_EQ(tok.encode("<|ctl|>", false, false), concat({{kSpace}, bytes_of("<|"), {kC}, bytes_of("tl|>")}));
  EXPECT_EQ(tok.encode("<s>a</s>", true, true), (Ids{kBos, kBos, kSpaceA, kEos}));
  EXPECT_EQ(tok.encode("ab<|ctl|>", false, true), (Ids{kSpace, kAB, kCtl}));
}

TEST(SpmRules, AddEosFollowsTheVocabulary) {
  Vocab v = toy_vocab();
  v.add_eos = true;
  const Tokenizer tok(std::move(v));
  EXPECT_EQ(tok.encode("a", true), (Ids{kBos, kSpaceA, kEos}));
  EXPECT_EQ(tok.encode("a", false), (Ids{kSpaceA}));

  Vocab w = toy_vocab();
  w.add_bos = false;
  EXPECT_EQ(Tokenizer(std::move(w)).encode("a", true), (Ids{kSpaceA}));
}

TEST(SpmRules, Pieces) {
  const Tokenizer tok(toy_vocab());
  EXPECT_EQ(tok.piece(kSpaceA), " a");
  EXPECT_EQ(tok.piece(byte_id('\n')), "\n");
  EXPECT_EQ(tok.piece(byte_id(0xC3)), "\xC3");
  EXPECT_EQ(tok.piece(kBos), "");
  EXPECT_EQ(tok.piece(kBos, true), "<s>");
  EXPECT_EQ(tok.piece(kUnk), "");
  EXPECT_EQ(tok.piece(kUnk, true), "<unk>");
  EXPECT_EQ(tok.piece(kUser), "<|user|>");
  EXPECT_EQ(tok.piece(kUnused, true), "");
  EXPECT_THROW(tok.piece(-1), Error);
  EXPECT_THROW(tok.piece(tok.n_vocab()), Error);
}

TEST(SpmRules, DecodeRemovesTheAddedSpaceOnce) {
  const Tokenizer tok(toy_vocab());
  EXPECT_EQ(tok.decode(Ids{kSpaceA, kBC}), "abc");
  EXPECT_EQ(tok.decode(Ids{kBos, kSpaceA, kBC}), "abc");  // BOS prints nothing, so " a" is the first piece
  EXPECT_EQ(tok.decode(Ids{kBos, kSpaceA}, true), "<s> a");
  EXPECT_EQ(tok.decode(Ids{kSpace, kSpace, kA}), " a");
  EXPECT_EQ(tok.decode(Ids{kA, kSpaceA}), "a a");

  Vocab v = toy_vocab();
  v.add_space_prefix = false;
  EXPECT_EQ(Tokenizer(std::move(v)).decode(Ids{kSpaceA}), " a");
}

TEST(SpmRules, EndOfGeneration) {
  const Tokenizer tok(toy_vocab());
  EXPECT_TRUE(tok.is_eog(kEos));
  EXPECT_TRUE(tok.is_eog(kCtl));
  EXPECT_FALSE(tok.is_eog(kBos));
  EXPECT_FALSE(tok.is_eog(-1));
}

TEST(SpmRules, InconsistentVocabulariesAreRejected) {
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
  v.scores.pop_back();
  rejects(v, "tokenizer.ggml.scores");
  v = toy_vocab();
  v.types.push_back(TokenType::Normal);
  rejects(v, "tokenizer.ggml.token_type");
  v = toy_vocab();
  v.types[kA] = static_cast<TokenType>(9);
  rejects(v, "tokenizer.ggml.token_type[260]");
  v = toy_vocab();
  v.tokens[kB] = "a";
  rejects(v, "repeats tokenizer.ggml.tokens[260]");
  v = toy_vocab();
  v.tokens[kC] = "";
  rejects(v, "tokenizer.ggml.tokens[262] is empty");
  v = toy_vocab();
  v.types[kA] = TokenType::Byte;
  rejects(v, "<0xAB>");
  v = toy_vocab();
  v.bos = 5000;
  rejects(v, "tokenizer.ggml.bos_token_id = 5000");
  v = toy_vocab();
  v.bos = -1;
  rejects(v, "add_bos_token");
  v = toy_vocab();
  v.eog_ids = {kEos, 9999};
  rejects(v, "9999");
  rejects(Vocab{}, "empty");
}

}  // namespace
}  // namespace wgllm::tokenizer
