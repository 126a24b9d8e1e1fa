// `wgllm bench` on the GPU-less machine (a smoke test of the benchmark, not a measurement): every test
// llama-bench's flags ask for appears with a speed and the copy-kernel ceiling, the aggregate decode of
// several sequences through the Batcher, the GPU time of a step and of the prompt's pass by kernel, the
// synthetic model written for other engines, and bad specs.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "gguf/gguf_file.hpp"
#include "support/test_support.hpp"
#include "unit/cli/wgllm_process.hpp"

namespace wgllm::cli {
namespace {

using test::run_wgllm;
using ::testing::HasSubstr;

TEST(Bench, JsonHasEveryTestTheCeilingAndTheWrittenModel) {
  const std::string gguf_path = test::temp_dir() + "/bench-tiny.gguf";
  const test::Process p = run_wgllm({"bench", "--synthetic", "tiny:q4_0", "--write-gguf", gguf_path, "-p",
                                     "32", "-n", "8", "-r", "1", "-o", "json", "--parallel", "1,3"});
  ASSERT_EQ(p.exit_code, 0) << p.command << "\n" << p.err;
  const nlohmann::json out = nlohmann::json::parse(p.out);
  std::vector<std::string> tests;
  for (const auto& r : out.at("results")) {
    tests.push_back(r.at("test").get<std::string>());
    EXPECT_GT(r.at("avg_ts").get<double>(), 0) << r.dump();
    EXPECT_GT(r.at("copy_gbps").get<double>(), 0) << r.dump();
    EXPECT_EQ(r.at("samples_ts").size(), 1u);
    if (tests.back() == "tg8") {
      EXPECT_GT(r.at("achieved_gbps").get<double>(), 0);
    }
  }
  EXPECT_EQ(tests, (std::vector<std::string>{"pp32", "tg8", "tg8 x1 (aggregate)", "tg8 x3 (aggregate)"}));
  // GPU time by kernel class of one decode step, and of one step of the widest batch (lavapipe has
  // timestamp queries): a batched step's attention and sampler run for every sequence.
  const nlohmann::json& single = out.at("gpu_us_per_token_by_kernel");
  ASSERT_TRUE(out.contains("parallel_step")) << out.dump();
  const nlohmann::json& batched = out.at("parallel_step");
  EXPECT_EQ(batched.at("sequences").get<int>(), 3);
  for (const char* kernel : {"attention", "sample", "matvec Q4_0"}) {
    EXPECT_GT(single.value(kernel, 0.0), 0) << kernel << " in " << single.dump();
    EXPECT_GT(batched.at("gpu_us_by_kernel").value(kernel, 0.0), 0) << kernel << " in " << batched.dump();
  }
  EXPECT_GE(batched.at("gpu_us_of_dispatches").size(), 16u);
  // And of the prompt's pass: 32 tokens go through the tiled GEMM on int8 activations and the prefill
  // attention kernel.
  ASSERT_TRUE(out.contains("prompt_pass")) << out.dump();
  const nlohmann::json& prompt = out.at("prompt_pass");
  EXPECT_EQ(prompt.at("tokens").get<int>(), 32);
  for (const char* kernel : {"matmul Q4_0", "quantize_act", "attention_prefill", "sample"})
    EXPECT_GT(prompt.at("gpu_us_by_kernel").value(kernel, 0.0), 0) << kernel << " in " << prompt.dump();
  EXPECT_EQ(prompt.at("gpu_us_by_kernel").value("attention", 0.0), 0) << prompt.dump();

  // The very weights benchmarked, as a standard GGUF of the shape asked for: dim 256, 4 layers, vocab 1024.
  auto file = gguf::GgufFile::open(gguf_path);
  const gguf::TensorInfo* embd = file->find_tensor("token_embd.weight");
  ASSERT_NE(embd, nullptr);
  EXPECT_EQ(embd->type, gguf::TensorType::Q4_0);
  EXPECT_EQ(embd->dims, (std::vector<uint64_t>{256, 1024}));
  EXPECT_NE(file->find_tensor("blk.3.ffn_down.weight"), nullptr);
  EXPECT_EQ(file->find_tensor("blk.4.ffn_down.weight"), nullptr);
}

// At depth 130 a decode step's attention runs over two spans of keys and then merges them: the merge is a
// class of its own in the breakdown.
TEST(Bench, DecodeAtDepthShowsAttentionsMergeApart) {
  const test::Process p = run_wgllm(
      {"bench", "--synthetic", "tiny:q4_0", "-p", "0", "-n", "2", "-d", "130", "-r", "1", "-o", "json"});
  ASSERT_EQ(p.exit_code, 0) << p.command << "\n" << p.err;
  const nlohmann::json out = nlohmann::json::parse(p.out);
  const nlohmann::json& step = out.at("gpu_us_per_token_by_kernel");
  EXPECT_GT(step.value("attention", 0.0), 0) << step.dump();
  EXPECT_GT(step.value("attention merge", 0.0), 0) << step.dump();
}

TEST(Bench, MarkdownTableAsLlamaBench) {
  const test::Process p = run_wgllm({"bench", "--synthetic", "tiny:q8_0", "-p", "16", "-n", "4", "-r", "2"});
  ASSERT_EQ(p.exit_code, 0) << p.command << "\n" << p.err;
  EXPECT_THAT(p.out, HasSubstr("| model | size | backend | test | t/s | GB/s | % of copy"));
  EXPECT_THAT(p.out, HasSubstr("| tiny q8_0 (synthetic) |"));
  EXPECT_THAT(p.out, HasSubstr("| pp16 |"));
  EXPECT_THAT(p.out, HasSubstr("| tg4 |"));
}

TEST(Bench, UnknownShapeNamesTheKnownOnes) {
  const test::Process p = run_wgllm({"bench", "--synthetic", "llama-9000:q4_0", "-r", "1"});
  EXPECT_EQ(p.exit_code, 2) << p.err;
  EXPECT_THAT(p.err, HasSubstr("llama-9000"));
  EXPECT_THAT(p.err, HasSubstr("llama-3-8b"));
}

}  // namespace
}  // namespace wgllm::cli
