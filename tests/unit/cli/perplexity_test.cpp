// `wgllm perplexity` as a subprocess on stories260K, against the same computation done here from the float64
// CPU reference's logits (cpu::ReferenceModel) with llama.cpp's windowing: non-overlapping windows of n_ctx
// tokens, BOS in each window's first position, the second half of each window scored.
#include <gtest/gtest.h>

#include <cmath>
#include <regex>
#include <string>

#include "cpu/reference_model.hpp"
#include "gguf/gguf_file.hpp"
#include "tokenizer/tokenizer.hpp"
#include "unit/cli/wgllm_process.hpp"

namespace wgllm::cli {
namespace {

using test::run_wgllm;

// A text the model did not write greedily (llama2.c's sample at temperature 1), so that the scored tokens'
// probabilities vary.
std::string text_path() {
  return test::testdata_path("karpathy-llama2.c/expected_stories260K_t1.0_p0.9_s133742_n256.txt");
}

double nll(const std::vector<double>& logits, int32_t token) {
  double max = logits[0];
  for (double v : logits) max = std::max(max, v);
  double sum = 0;
  for (double v : logits) sum += std::exp(v - max);
  return max + std::log(sum) - logits[token];
}

struct Estimate {
  std::vector<double> running;  // after each window
  double ppl = 0, error = 0;
};

Estimate reference_estimate(uint32_t n_ctx) {
  auto file = gguf::GgufFile::open(test::source_path("models/stories260K.gguf"));
  auto tok = tokenizer::Tokenizer::from_gguf(*file);
  const std::vector<int32_t> tokens = tok->encode(test::read_file(text_path()), /*add_bos=*/true);
  cpu::ReferenceModel model(*file);
  Estimate e;
  double sum = 0, sum2 = 0;
  int count = 0;
  for (size_t w = 0; w < tokens.size() / n_ctx; ++w) {
    std::vector<int32_t> window(tokens.begin() + w * n_ctx, tokens.begin() + (w + 1) * n_ctx);
    window[0] = tok->vocab().bos;
    const std::vector<std::vector<double>> logits = model.forward(window);
    for (uint32_t k = n_ctx / 2; k + 1 < n_ctx; ++k) {
      const double v = nll(logits[k], window[k + 1]);
      sum += v;
      sum2 += v * v;
      ++count;
    }
    e.running.push_back(std::exp(sum / count));
  }
  const double mean = sum / count;
  e.ppl = std::exp(mean);
  e.error = std::sqrt((sum2 / count - mean * mean) / (count - 1)) * e.ppl;
  return e;
}

TEST(Perplexity, EqualsTheReferenceWithLlamaCppsWindows) {
  constexpr uint32_t kCtx = 64;
  const test::Process p = run_wgllm({"perplexity", "-f", text_path(), "-c", std::to_string(kCtx)});
  ASSERT_EQ(p.exit_code, 0) << p.command << "\n" << p.err;
  const Estimate want = reference_estimate(kCtx);
  ASSERT_GE(want.running.size(), 3u) << "the text should fill several windows";

  // stdout: "[1]a,[2]b,...\nFinal estimate: PPL = X +/- Y\n", 4 and 5 decimals.
  std::smatch m;
  ASSERT_TRUE(std::regex_match(
      p.out, m, std::regex(R"(((?:\[\d+\][0-9.]+,)+)\nFinal estimate: PPL = ([0-9.]+) \+/- ([0-9.]+)\n)")))
      << p.out;
  const double ppl = std::stod(m[2]), error = std::stod(m[3]);
  EXPECT_NEAR(ppl, want.ppl, 1e-3 * want.ppl + 5e-5);
  EXPECT_NEAR(error, want.error, 1e-3 * want.error + 5e-6);
  const std::string progress = m[1];
  const std::regex entry(R"(\[(\d+)\]([0-9.]+),)");
  size_t i = 0;
  for (auto it = std::sregex_iterator(progress.begin(), progress.end(), entry); it != std::sregex_iterator();
       ++it, ++i) {
    ASSERT_LT(i, want.running.size());
    EXPECT_EQ(std::stoul((*it)[1]), i + 1);
    EXPECT_NEAR(std::stod((*it)[2]), want.running[i], 1e-3 * want.running[i] + 5e-5) << "window " << i + 1;
  }
  EXPECT_EQ(i, want.running.size());
}

TEST(Perplexity, TooShortATextIsBadInput) {
  const test::Process p = run_wgllm({"perplexity", "-f", text_path(), "-c", "512"});
  EXPECT_EQ(p.exit_code, 2);
  EXPECT_NE(p.err.find("needs at least 1024"), std::string::npos) << p.err;
  EXPECT_EQ(p.out, "");
}

}  // namespace
}  // namespace wgllm::cli
