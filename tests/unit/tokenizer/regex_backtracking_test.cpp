// Expressions that backtrack exponentially inside a lookahead or an atomic group, where the search
// remembers no failed states (found by fuzzing tokenizer.json files, tests/fuzz/fuzz_hf_json.cpp): a
// tokenizer.json holding one made every encode of a text with a run of 30 'a' hang. They now end in an
// Error naming the expression, quickly; the expressions of real tokenizers still split long runs.
#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <vector>

#include "core/error.hpp"
#include "tokenizer/pre_tokenizer.hpp"

namespace wgllm::tokenizer {
namespace {

std::string split_error(const std::string& pattern, const std::string& text) {
  const std::vector<std::string> regexes = {pattern};
  const PreTokenizer pre(regexes);
  std::vector<std::string_view> pieces;
  const auto start = std::chrono::steady_clock::now();
  try {
    pre.split(text, pieces);
    return "";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::BadInput);
    EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(), 10.0)
        << pattern;
    return e.what();
  }
}

TEST(RegexBacktracking, ExponentialLookaheadsAndAtomicGroupsEndInAnError) {
  const std::string run(40, 'a');
  for (const char* pattern : {"(?=(?:a|a)*b)", "(?!(?:a|a)*b)a", "(?=(a|aa)*c)a", "x|(?>(?=(?:a|a)*b))"}) {
    const std::string msg = split_error(pattern, run);
    EXPECT_NE(
        msg.find("the pre-tokenizer expression '" + std::string(pattern) + "' backtracks without bound"),
        std::string::npos)
        << msg;
  }
}

TEST(RegexBacktracking, RealExpressionsSplitLongRuns) {
  const std::string text = std::string(20000, ' ') + "x" + std::string(20000, 'a') + std::string(20000, '1');
  for (const std::string& pattern : {std::string(kGpt2Regex), std::string(R"(\s+(?!\S)|\s+)"),
                                     std::string(R"((?=[A-Z])[A-Za-z]+|\p{N}{1,3}|\s+)")}) {
    const std::vector<std::string> regexes = {pattern};
    std::vector<std::string_view> pieces;
    PreTokenizer(regexes).split(text, pieces);
    std::string joined;
    for (std::string_view p : pieces) joined += p;
    EXPECT_EQ(joined, text) << pattern;
  }
}

}  // namespace
}  // namespace wgllm::tokenizer
