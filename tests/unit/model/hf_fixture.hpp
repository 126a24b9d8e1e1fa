// The Hugging Face fixtures of testdata/hf-fixtures (tools/make_fixtures.py): their token sequences,
// transformers' float32 logits and tokenizations, and the comparison of a model's logits with them.
#pragma once

#include <cmath>
#include <cstring>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "support/test_support.hpp"

namespace wgllm::test {

inline const std::vector<std::string>& hf_fixture_names() {
  static const std::vector<std::string> names = {"llama", "mistral", "qwen2", "qwen3", "qwen3moe", "llama4"};
  return names;
}

struct HfFixture {
  std::string dir;
  uint32_t vocab_size = 0;
  std::string stored_dtype;  // the checkpoint's: float32, float16, bfloat16
  std::vector<std::vector<int32_t>> sequences;
  std::vector<std::vector<std::vector<float>>> logits;  // [sequence][position][vocab]
  struct TokenCase {
    std::string text;
    std::vector<int32_t> ids;
  };
  std::vector<TokenCase> tokenizer;
};

inline HfFixture load_hf_fixture(const std::string& name) {
  HfFixture f;
  f.dir = testdata_path("hf-fixtures/" + name);
  const nlohmann::json e = nlohmann::json::parse(read_file(f.dir + "/expected.json"));
  f.vocab_size = e["vocab_size"].get<uint32_t>();
  f.stored_dtype = e["stored_dtype"].get<std::string>();
  for (size_t s = 0; s < e["sequences"].size(); ++s) {
    f.sequences.push_back(e["sequences"][s].get<std::vector<int32_t>>());
    const std::string raw = read_file(f.dir + "/logits_" + std::to_string(s) + ".f32");
    const size_t n = f.sequences.back().size();
    if (raw.size() != n * f.vocab_size * 4) throw std::runtime_error(name + ": logits file size mismatch");
    std::vector<std::vector<float>> positions(n, std::vector<float>(f.vocab_size));
    for (size_t p = 0; p < n; ++p)
      std::memcpy(positions[p].data(), raw.data() + p * f.vocab_size * 4, f.vocab_size * 4);
    f.logits.push_back(std::move(positions));
  }
  for (const auto& c : e["tokenizer"])
    f.tokenizer.push_back({c["text"].get<std::string>(), c["ids"].get<std::vector<int32_t>>()});
  return f;
}

// ||a - b|| / ||b|| with b the transformers logits (CONTRACTS.md's relative error, reference second).
inline double relative_error_to(const std::vector<double>& a, const std::vector<float>& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < b.size(); ++i) {
    num += (a[i] - b[i]) * (a[i] - b[i]);
    den += double(b[i]) * b[i];
  }
  return std::sqrt(num / den);
}

}  // namespace wgllm::test
