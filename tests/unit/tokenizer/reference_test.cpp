// The tokenizer against other implementations' outputs, on real vocabularies read from GGUF:
//  - llama.cpp's tokenizer tests (testdata/llama.cpp-vocab/*.inp/.out, ids made by Hugging Face
//    transformers with add_special_tokens=False; llama.cpp checks them with add_special=false,
//    parse_special=false),
//  - the test cases of the npm package llama-tokenizer-js (Llama 2 vocabulary, with BOS),
//  - stories260K's vocabulary and llama2.c's reference story.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "core/error.hpp"
#include "gguf/gguf_file.hpp"
#include "gguf/gguf_writer.hpp"
#include "support/test_support.hpp"
#include "tokenizer/tokenizer.hpp"
#include "unit/tokenizer/fixtures.hpp"

namespace wgllm::tokenizer {
namespace {

using Ids = std::vector<int32_t>;

std::unique_ptr<Tokenizer> load(const std::string& path) {
  return Tokenizer::from_gguf(*gguf::GgufFile::open(path));
}

const Tokenizer& llama_spm() {
  static const auto tok = load(test::testdata_path("llama.cpp-vocab/ggml-vocab-llama-spm.gguf"));
  return *tok;
}

class LlamaCppVocab : public testing::TestWithParam<const char*> {};

TEST_P(LlamaCppVocab, MatchesReferenceIdsAndDecodesBack) {
  const std::string path = test::testdata_path(std::string("llama.cpp-vocab/") + GetParam());
  const auto tok = load(path);
  const auto cases = read_vocab_cases(path);
  ASSERT_EQ(cases.size(), 46u);
  for (size_t i = 0; i < cases.size(); ++i) {
    SCOPED_TRACE("case " + std::to_string(i) + ": '" + cases[i].text + "'");
    const Ids ids = tok->encode(cases[i].text, /*add_bos=*/false, /*parse_special=*/false);
    EXPECT_EQ(ids, cases[i].ids);
    EXPECT_EQ(tok->decode(ids), cases[i].text);
    EXPECT_EQ(tok->decode(tok->encode(cases[i].text, /*add_bos=*/true)), cases[i].text);
  }
}

INSTANTIATE_TEST_SUITE_P(Spm, LlamaCppVocab,
                         testing::Values("ggml-vocab-llama-spm.gguf", "ggml-vocab-phi-3.gguf"));

TEST(LlamaTokenizerJs, EncodesWithBosAndDecodes) {
  const auto cases = nlohmann::json::parse(test::read_file(
      test::testdata_path("npm-belladoreai-tokenizer-tests/llama-tokenizer-js_1.2.2_testcases.json")));
  const Tokenizer& tok = llama_spm();
  int encodes = 0, decodes = 0;
  for (const auto& c : cases) {
    // Decode cases with non-default flags follow the package's own conventions (PROVENANCE.txt).
    if (c["op"] == "encode") {
      ASSERT_TRUE(c["add_bos_token"].get<bool>() && c["add_preceding_space"].get<bool>());
      const std::string text = c["input"];
      SCOPED_TRACE("encode '" + text + "'");
      EXPECT_EQ(tok.encode(text, /*add_bos=*/true), c["expected"].get<Ids>());
      ++encodes;
    } else if (c["op"] == "decode" && c["add_bos_token"] == "default(true)") {
      const std::string expected = c["expected"];
      SCOPED_TRACE("decode to '" + expected + "'");
      EXPECT_EQ(tok.decode(c["input"].get<Ids>()), expected);
      ++decodes;
    }
  }
  EXPECT_EQ(encodes, 12);
  EXPECT_EQ(decodes, 12);
}

TEST(LlamaSpmVocab, MetadataAndSpecialTokens) {
  const Tokenizer& tok = llama_spm();
  const Vocab& v = tok.vocab();
  EXPECT_EQ(tok.n_vocab(), 32000);
  EXPECT_EQ(v.bos, 1);
  EXPECT_EQ(v.eos, 2);
  EXPECT_EQ(v.unk, 0);
  EXPECT_EQ(v.eot, -1);
  EXPECT_TRUE(v.add_bos);
  EXPECT_FALSE(v.add_eos);
  EXPECT_TRUE(v.add_space_prefix);
  EXPECT_EQ(v.eog_ids, Ids{2});
  EXPECT_TRUE(tok.is_eog(2));
  EXPECT_FALSE(tok.is_eog(1));

  // "Hello world" is [15043, 3186] in the .out file; control texts only with parse_special, and then the
  // text after them gets the "▁" prefix again (llama.cpp), so "<s>Hello" is [1, 15043].
  EXPECT_EQ(tok.encode("<s>Hello world</s>", false, true), (Ids{1, 15043, 3186, 2}));
  const Ids plain = tok.encode("<s>", false, false);
  EXPECT_EQ(std::count(plain.begin(), plain.end(), 1), 0);
  EXPECT_EQ(tok.decode(plain), "<s>");
  EXPECT_EQ(tok.piece(1), "");
  EXPECT_EQ(tok.piece(1, true), "<s>");
  EXPECT_EQ(tok.piece(13), "\n");  // <0x0A>
  EXPECT_EQ(tok.piece(15043), " Hello");
}

TEST(Phi3Vocab, EndOfTurnTokensAndUserDefinedTokens) {
  const auto tok = load(test::testdata_path("llama.cpp-vocab/ggml-vocab-phi-3.gguf"));
  const Vocab& v = tok->vocab();
  ASSERT_EQ(tok->n_vocab(), 32064);
  ASSERT_EQ(v.tokens[32000], "<|endoftext|>");
  ASSERT_EQ(v.tokens[32007], "<|end|>");
  ASSERT_EQ(v.tokens[32010], "<|user|>");
  EXPECT_EQ(v.eos, 32000);
  EXPECT_EQ(v.pad, 32000);
  EXPECT_EQ(v.eot, 32007);  // <|end|> is found by name, as llama.cpp finds it
  EXPECT_EQ(v.eog_ids, (Ids{32000, 32007}));

  // Phi-3 marks "</s>" user-defined: llama.cpp (like Hugging Face) matches it even without parse_special.
  ASSERT_EQ(v.types[2], TokenType::UserDefined);
  EXPECT_EQ(tok->encode("</s>", false), Ids{2});
  EXPECT_EQ(tok->piece(2), "</s>");

  const Ids special = tok->encode("<|user|>Hi<|end|>", false, true);
  ASSERT_GE(special.size(), 3u);
  EXPECT_EQ(special.front(), 32010);
  EXPECT_EQ(special.back(), 32007);
  EXPECT_EQ(tok->decode(special, /*special=*/true), "<|user|> Hi<|end|>");  // "▁" put back after <|user|>
  const Ids plain = tok->encode("<|user|>Hi<|end|>", false, false);
  EXPECT_EQ(std::count_if(plain.begin(), plain.end(), [](int32_t id) { return id >= 32000; }), 0);
  EXPECT_EQ(tok->decode(plain), "<|user|>Hi<|end|>");
}

TEST(Stories260KVocab, LoadsAndRoundTripsTheReferenceStory) {
  const auto tok = load(test::source_path("models/stories260K.gguf"));
  const Vocab& v = tok->vocab();
  EXPECT_EQ(tok->n_vocab(), 512);
  EXPECT_EQ(v.bos, 1);
  EXPECT_EQ(v.eos, 2);
  EXPECT_EQ(v.unk, 0);
  EXPECT_EQ(v.pad, -1);  // stored as 0xFFFFFFFF
  EXPECT_EQ(v.eog_ids, Ids{2});

  const Ids once = tok->encode("Once upon a time", true);
  ASSERT_GE(once.size(), 2u);
  EXPECT_EQ(once.front(), 1);
  EXPECT_LT(once.size(), 16u);  // merges happened: fewer tokens than characters
  EXPECT_EQ(tok->decode(once), "Once upon a time");

  // The greedy story llama2.c generated with this vocabulary (run.c prints piece by piece after BOS).
  const std::string story =
      test::read_file(test::testdata_path("karpathy-llama2.c/expected_stories260K_t0_n200.txt"));
  const Ids ids = tok->encode(story, true);
  EXPECT_EQ(tok->decode(ids), story);
  StreamDecoder stream(*tok, /*strip_leading_space=*/true);
  std::string streamed;
  for (int32_t id : ids) streamed += stream.push(id);
  streamed += stream.flush();
  EXPECT_EQ(streamed, story);
}

// Malformed tokenizer metadata in otherwise valid GGUF files.
class BadVocabFile : public testing::Test {
 protected:
  gguf::GgufWriter base() const {
    gguf::GgufWriter w;
    w.set_string("tokenizer.ggml.model", "llama");
    w.set_strings("tokenizer.ggml.tokens", {"<unk>", "<s>", "</s>", "<0x41>",
                                            "\xE2\x96\x81"
                                            "a"});
    w.set_float32s("tokenizer.ggml.scores", {0, 0, 0, 0, -1});
    w.set_int32s("tokenizer.ggml.token_type", {2, 3, 3, 6, 1});
    return w;
  }
  void expect_rejected(const gguf::GgufWriter& w, const std::string& name, const std::string& needle) const {
    const std::string path = test::temp_dir() + "/" + name + ".gguf";
    w.write(path);
    const auto file = gguf::GgufFile::open(path);
    try {
      vocab_from_gguf(*file);
      ADD_FAILURE() << name << ": accepted";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::BadInput);
      const std::string message = e.what();
      EXPECT_NE(message.find(needle), std::string::npos) << message;
      EXPECT_NE(message.find(path), std::string::npos) << message;
    }
  }
};

TEST_F(BadVocabFile, ValidBaseLoads) {
  const std::string path = test::temp_dir() + "/good-vocab.gguf";
  base().write(path);
  const auto tok = Tokenizer::from_gguf(*gguf::GgufFile::open(path));
  EXPECT_EQ(tok->encode("aA", true), (Ids{1, 4, 3}));
}

TEST_F(BadVocabFile, Rejected) {
  gguf::GgufWriter w = base();
  w.set_string("tokenizer.ggml.model", "bert");
  expect_rejected(w, "model", "supported: \"llama\", SentencePiece BPE; \"gpt2\", byte-level BPE");

  w = base();
  w.set_float32s("tokenizer.ggml.scores", {0, 0, 0, 0});
  expect_rejected(w, "scores", "tokenizer.ggml.scores has 4 entries");

  w = base();
  w.set_int32s("tokenizer.ggml.token_type", {2, 3, 3, 6, 7});
  expect_rejected(w, "type-value", "tokenizer.ggml.token_type[4] = 7");

  w = base();
  w.set_int32s("tokenizer.ggml.token_type", {2, 3, 3, 6, 6});
  expect_rejected(w, "byte-text", "tokenizer.ggml.tokens[4]");

  w = base();
  w.set_uint32("tokenizer.ggml.bos_token_id", 5);
  expect_rejected(w, "bos", "tokenizer.ggml.bos_token_id = 5");

  w = base();
  w.set_strings("tokenizer.ggml.tokens", {"<unk>", "<s>", "</s>", "<0x41>", "<s>"});
  expect_rejected(w, "duplicate", "repeats tokenizer.ggml.tokens[1]");

  w = gguf::GgufWriter();
  w.set_string("tokenizer.ggml.model", "llama");
  expect_rejected(w, "no-tokens", "tokenizer.ggml.tokens");
}

}  // namespace
}  // namespace wgllm::tokenizer
