// Loading Hugging Face tokenizer.json / tokenizer_config.json: the settings taken from each field, on
// small files written here, and clear errors for malformed or unsupported ones.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "core/error.hpp"
#include "support/test_support.hpp"
#include "tokenizer/tokenizer.hpp"
#include "unit/tokenizer/fixtures.hpp"

namespace wgllm::tokenizer {
namespace {

using nlohmann::json;
using Ids = std::vector<int32_t>;

// A minimal byte-level BPE tokenizer.json: tokens "a" "b" "ab" "Ġ" and the merge a+b, as Llama 3 writes it.
json base_json() {
  return json::parse(R"({
    "version": "1.0",
    "added_tokens": [
      {"id": 4, "content": "<|bos|>", "special": true, "lstrip": false, "rstrip": false, "normalized": false},
      {"id": 5, "content": "<|eot_id|>", "special": true},
      {"id": 6, "content": "<tool>", "special": false}
    ],
    "normalizer": null,
    "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
      {"type": "Split", "pattern": {"Regex": "\\p{L}+| ?[^\\s\\p{L}]+|\\s+"}, "behavior": "Isolated", "invert": false},
      {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false}]},
    "post_processor": {"type": "TemplateProcessing",
      "single": [{"SpecialToken": {"id": "<|bos|>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}]},
    "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
    "model": {"type": "BPE", "dropout": null, "unk_token": null, "byte_fallback": false, "ignore_merges": false,
              "vocab": {"a": 0, "b": 1, "ab": 2, "\u0120": 3}, "merges": ["a b"]}
  })");
}

// Writes `tokenizer` (and `config` unless null) into a fresh directory; returns the tokenizer.json path.
std::string write_files(const std::string& name, const json& tokenizer, const json& config = nullptr) {
  const std::string dir = test::temp_dir() + "/" + name;
  std::filesystem::create_directories(dir);
  std::ofstream(dir + "/tokenizer.json") << tokenizer.dump();
  if (!config.is_null()) std::ofstream(dir + "/tokenizer_config.json") << config.dump();
  return dir + "/tokenizer.json";
}

TEST(HfJson, ReadsVocabularyMergesAndSpecialTokens) {
  const auto tok = Tokenizer::from_file(write_files("base", base_json()));
  const Vocab& v = tok->vocab();
  EXPECT_EQ(v.model, Model::Bpe);
  EXPECT_EQ(v.pre, "tokenizer.json");
  EXPECT_EQ(v.merges, (std::vector<Merge>{{0, 1, 2}}));
  EXPECT_EQ(v.types[4], TokenType::Control);
  EXPECT_EQ(v.types[6], TokenType::UserDefined);
  // No tokenizer_config.json: BOS is the template's first token, and the template adds it.
  EXPECT_EQ(v.bos, 4);
  EXPECT_TRUE(v.add_bos);
  EXPECT_EQ(v.eos, -1);
  EXPECT_EQ(v.eot, 5);  // found by its text
  EXPECT_EQ(v.eog_ids, Ids{5});
  EXPECT_EQ(tok->encode("ab a<tool>", true), (Ids{4, 2, 3, 0, 6}));
  EXPECT_EQ(tok->decode(Ids{4, 2, 3, 0, 6}), "ab a<tool>");

  // The merge list's other spelling, and the directory instead of the file.
  json j = base_json();
  j["model"]["merges"] = json::parse(R"([["a", "b"]])");
  EXPECT_EQ(Tokenizer::from_file(std::filesystem::path(write_files("pairs", j)).parent_path().string())
                ->vocab()
                .merges,
            (std::vector<Merge>{{0, 1, 2}}));
}

TEST(HfJson, TokenizerConfigGivesBosEosAndTheirFlags) {
  const json config = json::parse(R"({"bos_token": {"content": "<|bos|>"}, "eos_token": "<|eot_id|>",
                                      "add_bos_token": false, "add_eos_token": true})");
  const Vocab v = vocab_from_hf_json(write_files("config", base_json(), config));
  EXPECT_EQ(v.bos, 4);
  EXPECT_EQ(v.eos, 5);
  EXPECT_FALSE(v.add_bos);
  EXPECT_TRUE(v.add_eos);

  json j = base_json();
  j["post_processor"] = {{"type", "ByteLevel"}};  // no template: nothing is added
  const Vocab bare = vocab_from_hf_json(write_files("bare", j, json::parse(R"({"bos_token": null})")));
  EXPECT_EQ(bare.bos, -1);
  EXPECT_FALSE(bare.add_bos);
}

TEST(HfJson, PreTokenizerSteps) {
  json j = base_json();
  j["pre_tokenizer"] = json::parse(R"({"type": "Sequence", "pretokenizers": [
      {"type": "Digits", "individual_digits": true},
      {"type": "Punctuation", "behavior": "Contiguous"},
      {"type": "Split", "pattern": {"String": "a.b"}, "behavior": "Isolated"},
      {"type": "ByteLevel", "add_prefix_space": false, "use_regex": true}]})");
  const Vocab v = vocab_from_hf_json(write_files("steps", j));
  EXPECT_EQ(v.pre_regexes, (std::vector<std::string>{R"(\p{N})", R"([\p{P}!-/:-@\[-`{-~]+)", R"(a\.b)",
                                                     std::string(kGpt2Regex)}));
}

TEST(HfJson, BadFilesAreClearErrors) {
  struct Case {
    std::string name;
    std::function<void(json&)> change;
    std::string needle;
  };
  const std::vector<Case> cases = {
      {"type", [](json& j) { j["model"]["type"] = "WordPiece"; },
       "model.type = \"WordPiece\" is not supported"},
      {"no-vocab", [](json& j) { j["model"].erase("vocab"); }, "model.vocab is missing"},
      {"bad-id", [](json& j) { j["model"]["vocab"]["a"] = -3; }, "model.vocab[\"a\"] = -3 is not a token id"},
      {"merge-token", [](json& j) { j["model"]["merges"] = {"a c"}; },
       "model.merges[0] = 'c' is not a token"},
      {"merge-result", [](json& j) { j["model"]["merges"] = {"b a"}; }, "model.merges[0] merged = 'ba'"},
      {"merge-form", [](json& j) { j["model"]["merges"] = {"a b c"}; },
       "is not two tokens separated by a space"},
      {"same-id", [](json& j) { j["added_tokens"][0]["id"] = 1; },
       "gives id 1 to '<|bos|>', which is already 'b'"},
      {"wild-id", [](json& j) { j["added_tokens"][2]["id"] = 2000000000; }, "far beyond the 7 tokens"},
      {"no-model", [](json& j) { j.erase("model"); }, ": model is missing"},
      {"fallback", [](json& j) { j["model"]["byte_fallback"] = true; }, "model.byte_fallback"},
      {"suffix", [](json& j) { j["model"]["end_of_word_suffix"] = "</w>"; }, "model.end_of_word_suffix"},
      {"normalizer",
       [](json& j) {
         j["normalizer"] = {{"type", "Lowercase"}};
       },
       "normalizer"},
      {"metaspace",
       [](json& j) {
         j["pre_tokenizer"] = {{"type", "Metaspace"}};
       },
       "pre_tokenizer.type = \"Metaspace\" is not a supported pre-tokenizer"},
      {"behavior", [](json& j) { j["pre_tokenizer"]["pretokenizers"][0]["behavior"] = "Removed"; },
       "pre_tokenizer.pretokenizers[0].behavior = \"Removed\" is not supported"},
      {"prefix", [](json& j) { j["pre_tokenizer"]["pretokenizers"][1]["add_prefix_space"] = true; },
       "pre_tokenizer.pretokenizers[1].add_prefix_space"},
      {"decoder",
       [](json& j) {
         j["decoder"] = {{"type", "Metaspace"}};
       },
       "only byte-level BPE"},
      {"template", [](json& j) { j["post_processor"]["single"][0]["SpecialToken"]["id"] = "<nope>"; },
       "'<nope>' is not a token"},
  };
  for (const Case& c : cases) {
    json j = base_json();
    c.change(j);
    const std::string path = write_files(c.name, j);
    try {
      Tokenizer::from_hf_json(path);
      ADD_FAILURE() << c.name << ": accepted";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::BadInput);
      const std::string message = e.what();
      EXPECT_NE(message.find(c.needle), std::string::npos) << c.name << ": " << message;
      EXPECT_NE(message.find(path), std::string::npos) << c.name << ": " << message;
    }
  }

  // A pattern the matcher cannot run is reported when the tokenizer is built.
  json j = base_json();
  j["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = "(?<=a)b";
  EXPECT_THROW(Tokenizer::from_hf_json(write_files("lookbehind", j)), Error);

  const std::string not_json = test::temp_dir() + "/not-json/tokenizer.json";
  std::filesystem::create_directories(std::filesystem::path(not_json).parent_path());
  std::ofstream(not_json) << "{\"model\": ";
  EXPECT_THROW(vocab_from_hf_json(not_json), Error);
  EXPECT_THROW(vocab_from_hf_json(test::temp_dir() + "/missing/tokenizer.json"), Error);
  const json config_not_bool = json::parse(R"({"add_bos_token": "yes"})");
  EXPECT_THROW(vocab_from_hf_json(write_files("config-type", base_json(), config_not_bool)), Error);
}

}  // namespace
}  // namespace wgllm::tokenizer
