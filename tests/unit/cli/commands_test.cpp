// The other subcommands (info, devices, logits) and the exit codes of CONTRACTS.md (0 success, 2 bad usage
// or bad input file), with `wgllm` run as a subprocess.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <nlohmann/json.hpp>
#include <regex>

#include "cpu/reference_model.hpp"
#include "gguf/gguf_file.hpp"
#include "tokenizer/tokenizer.hpp"
#include "unit/cli/wgllm_process.hpp"

namespace wgllm::cli {
namespace {

using test::run_wgllm;

std::string stories260k() {
  return test::source_path("models/stories260K.gguf");
}

size_t count_lines(const std::string& s) {
  return static_cast<size_t>(std::count(s.begin(), s.end(), '\n'));
}

TEST(ExitCodes, HelpIsSuccess) {
  for (const std::vector<std::string>& args : std::vector<std::vector<std::string>>{
           {"--help"}, {"run", "--help"}, {"info", "--help"}, {"devices", "--help"}, {"logits", "--help"}}) {
    const test::Process p = run_wgllm(args);
    EXPECT_EQ(p.exit_code, 0) << p.command << "\n" << p.err;
    EXPECT_NE(p.out.find("Usage:"), std::string::npos) << p.command << "\n" << p.out;
  }
}

// Bad usage: exit 2, nothing on stdout, one line on stderr.
TEST(ExitCodes, BadUsageIsTwoWithOneLine) {
  const std::vector<std::vector<std::string>> cases = {
      {},                                   // no subcommand
      {"--no-such-flag"},                   // unknown flag before the subcommand
      {"run", "--temp", "abc"},             // not a number
      {"run", "--top-p", "2"},              // out of range
      {"run", "-n"},                        // missing value
      {"info"},                             // missing file argument
      {"logits"},                           // neither --ids nor --prompt
      {"logits", "--ids", "1", "-p", "x"},  // both
      {"logits", "--ids", "1,x"},           // not a token id
  };
  for (const auto& args : cases) {
    const test::Process p = run_wgllm(args);
    EXPECT_EQ(p.exit_code, 2) << p.command << "\n" << p.err;
    EXPECT_EQ(p.out, "") << p.command;
    EXPECT_EQ(count_lines(p.err), 1u) << p.command << "\n" << p.err;
  }
  const test::Process unknown = run_wgllm({"run", "--no-such-flag"});
  EXPECT_EQ(unknown.exit_code, 2);
  EXPECT_EQ(count_lines(unknown.err), 1u) << unknown.err;
  EXPECT_NE(unknown.err.find("--no-such-flag"), std::string::npos) << unknown.err;
}

TEST(ExitCodes, MissingModelFileIsTwo) {
  const std::string missing = test::temp_dir() + "/no-such-model.gguf";
  for (const std::vector<std::string>& args : std::vector<std::vector<std::string>>{
           {"run", "-m", missing}, {"logits", "-m", missing, "--ids", "1"}}) {
    const test::Process p = run_wgllm(args);
    EXPECT_EQ(p.exit_code, 2) << p.command << "\n" << p.err;
    EXPECT_NE(p.err.find(missing), std::string::npos) << p.err;
  }
  const test::Process info = run_wgllm({"info", missing});
  EXPECT_EQ(info.exit_code, 2) << info.err;
  EXPECT_NE(info.err.find(missing), std::string::npos) << info.err;
}

// A file that is not GGUF, and one cut off inside its header: bad input files (2), the message naming the
// file, for every command that opens a model.
TEST(ExitCodes, CorruptGgufIsTwoAndNamesTheFile) {
  const std::string garbage =
      test::write_temp_file("garbage.gguf", {'n', 'o', 't', 0x00, 0xff, 'g', 'g', 'u', 'f'});
  const std::string truncated =
      test::write_temp_file("truncated.gguf", {'G', 'G', 'U', 'F', 3, 0, 0, 0, 2, 0});
  for (const std::string& path : {garbage, truncated}) {
    for (const std::vector<std::string>& args : std::vector<std::vector<std::string>>{
             {"run", "-m", path, "-n", "1"}, {"logits", "-m", path, "--ids", "1"}, {"info", path}}) {
      const test::Process p = run_wgllm(args);
      EXPECT_EQ(p.exit_code, 2) << p.command << "\n" << p.err;
      EXPECT_NE(p.err.find(path), std::string::npos) << p.command << "\n" << p.err;
      EXPECT_EQ(p.out, "") << p.command;
    }
  }
}

TEST(Info, ShowsArchitectureTensorCountAndShapes) {
  const test::Process p = run_wgllm({"info", stories260k()});
  ASSERT_EQ(p.exit_code, 0) << p.err;
  EXPECT_TRUE(std::regex_search(p.out, std::regex(R"(general\.architecture\s+string\s+"llama")"))) << p.out;
  EXPECT_TRUE(std::regex_search(p.out, std::regex(R"(\b48 tensors\b)"))) << p.out;
  // The reader's view of the same file (the gguf layer, tested against other writers' files).
  auto file = gguf::GgufFile::open(stories260k());
  EXPECT_EQ(file->tensors().size(), 48u);
  const gguf::TensorInfo* embd = file->find_tensor("token_embd.weight");
  ASSERT_NE(embd, nullptr);
  ASSERT_EQ(embd->dims.size(), 2u);
  const std::string row = "token_embd.weight\\s+" + std::string(gguf::type_name(embd->type)) + "\\s+\\[" +
                          std::to_string(embd->dims[0]) + " x " + std::to_string(embd->dims[1]) + "\\]";
  EXPECT_TRUE(std::regex_search(p.out, std::regex(row))) << row << "\n" << p.out;
  EXPECT_EQ(embd->dims[0], 64u);
  EXPECT_EQ(embd->dims[1], 512u);
}

TEST(Devices, ListsAnAdapterWithABackend) {
  const test::Process p = run_wgllm({"devices"});
  ASSERT_EQ(p.exit_code, 0) << p.err;
  EXPECT_TRUE(std::regex_search(p.out, std::regex(R"(^\[0\] \S)"))) << p.out;
  EXPECT_TRUE(std::regex_search(p.out, std::regex(R"(backend (vulkan|opengles|metal|d3d12|webgpu)\b)")))
      << p.out;
}

std::vector<std::vector<float>> parse_logits(const std::string& json_text) {
  const nlohmann::json j = nlohmann::json::parse(json_text);  // all of stdout: nothing else is there
  std::vector<std::vector<float>> out;
  for (const auto& position : j) {
    std::vector<float> row;
    for (const auto& v : position) row.push_back(v.get<float>());
    out.push_back(row);
  }
  return out;
}

// `logits` against the CPU reference, per position, and -o's raw f32 equal to the JSON numbers (printed with
// 9 significant digits, which round-trip an f32 exactly).
TEST(Logits, MatchTheReferenceAsJsonAndAsRawF32) {
  const std::vector<int32_t> ids = {1, 400, 50};
  const test::Process json = run_wgllm({"logits", "--ids", "1,400,50"});
  ASSERT_EQ(json.exit_code, 0) << json.err;
  const std::vector<std::vector<float>> got = parse_logits(json.out);
  ASSERT_EQ(got.size(), 3u);

  auto file = gguf::GgufFile::open(stories260k());
  const auto want = cpu::ReferenceModel(*file).forward(ids);
  for (size_t p = 0; p < ids.size(); ++p) {
    ASSERT_EQ(got[p].size(), 512u) << "position " << p;
    EXPECT_LE(test::relative_error(got[p], want[p]), 1e-4) << "position " << p;
  }

  const std::string raw_path = test::temp_dir() + "/logits.f32";
  const test::Process raw = run_wgllm({"logits", "--ids", "1,400,50", "-o", raw_path});
  ASSERT_EQ(raw.exit_code, 0) << raw.err;
  EXPECT_EQ(raw.out, "");
  const std::string bytes = test::read_file(raw_path);
  ASSERT_EQ(bytes.size(), 3u * 512 * 4);
  for (size_t p = 0; p < 3; ++p) {
    std::vector<float> row(512);
    std::memcpy(row.data(), bytes.data() + p * 512 * 4, 512 * 4);
    EXPECT_EQ(row, got[p]) << "position " << p;
  }
}

// -p tokenizes as `run` does (BOS added): one row per token of the tokenizer's encoding.
TEST(Logits, PromptIsTokenizedWithBos) {
  const std::string prompt = "Once upon a time";
  const test::Process p = run_wgllm({"logits", "-p", prompt});
  ASSERT_EQ(p.exit_code, 0) << p.err;
  auto file = gguf::GgufFile::open(stories260k());
  const std::vector<int32_t> ids = tokenizer::Tokenizer::from_gguf(*file)->encode(prompt, /*add_bos=*/true);
  ASSERT_EQ(ids.front(), 1);
  const auto want = cpu::ReferenceModel(*file).forward(ids);
  const auto got = parse_logits(p.out);
  ASSERT_EQ(got.size(), ids.size());
  for (size_t i = 0; i < ids.size(); ++i)
    EXPECT_LE(test::relative_error(got[i], want[i]), 1e-4) << "position " << i;
}

}  // namespace
}  // namespace wgllm::cli
