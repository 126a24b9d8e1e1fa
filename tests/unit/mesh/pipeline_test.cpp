// Pipeline stages in one process (the --devices path, and StageRunner directly) on synthetic models: a
// model split into stages computes the same bits as on one device (prompt chunks cut into micro-batches
// across a stage boundary, decode passes over several slots), mesh::Pipeline's greedy tokens equal
// runtime::Batcher's for requests joining and leaving at different steps, its logits equal Session's bit
// for bit, a slot finished while its passes are on their way is reused cleanly, and passes really overlap.
#include <gtest/gtest.h>

#include "mesh/mesh.hpp"
#include "mesh/plan.hpp"
#include "mesh/stage_runner.hpp"
#include "runtime/batcher.hpp"
#include "unit/runtime/runtime_fixtures.hpp"

namespace wgllm::mesh {
namespace {

using gguf::TensorType;
using test::expect_bad_input;
using test::floats_of;
using test::generate;
using test::kGreedy;

// Token i of a pass over positions [first, first + n) of slot 0, every one with logits.
Pass prompt_pass(std::span<const int32_t> ids, uint32_t first, uint32_t n) {
  Pass p;
  for (uint32_t i = first; i < first + n; ++i) p.tokens.push_back({0, i, ids[i], true});
  return p;
}

// Runs passes through `runners` in order, all sent before the first is awaited; returns each result.
std::vector<Result> through(std::vector<StageRunner*> runners, std::vector<Pass> passes) {
  for (Pass& p : passes) runners[0]->run(std::move(p));
  std::vector<Result> out;
  while (out.size() < passes.size()) {
    for (size_t k = 0; k < runners.size(); ++k)
      while (std::optional<StageRunner::Output> o = runners[k]->poll()) {
        if (Pass* next = std::get_if<Pass>(&*o))
          runners[k + 1]->run(std::move(*next));
        else
          out.push_back(std::get<Result>(*o));
      }
  }
  return out;
}

class StageSplit : public ::testing::TestWithParam<TensorType> {};

// One Forward over all 4 layers vs layers 0-1 and 2-3 on their own Forwards (each holding only its layers):
// a 40-token prompt in one pass vs micro-batches of 17 and 23 (both through the prefill GEMM), then a
// decode pass over two slots.
void expect_stages_compute_the_bits_of_one_device(const test::TinyLlama& m) {
  auto file = m.open("stage-split.gguf");
  const runtime::ForwardOptions o{.n_ctx = 64, .n_seq = 2, .max_batch = 48, .max_logits = 40};
  const std::vector<int32_t> prompt = test::random_tokens(40, m.shape().n_vocab, 21);
  const std::vector<int32_t> other = test::random_tokens(1, m.shape().n_vocab, 22);
  const uint32_t vocab = m.shape().n_vocab;

  gpu::Device& device = test::device();
  std::vector<std::vector<float>> whole;  // [passes][rows * vocab]
  {
    runtime::Forward f(device, *file, o);
    std::vector<runtime::PassToken> tokens;
    for (uint32_t i = 0; i < 40; ++i) tokens.push_back({0, i, prompt[i], true});
    f.record(tokens);
    gpu::ReadTicket t = device.read(f.logits(), 0, 40ull * vocab * 4);
    device.submit();
    whole.push_back(floats_of(device.wait(t)));
    const runtime::PassToken decode[] = {{0, 40, 7, true}, {1, 0, other[0], true}};
    f.record(decode);
    t = device.read(f.logits(), 0, 2ull * vocab * 4);
    device.submit();
    whole.push_back(floats_of(device.wait(t)));
  }
  runtime::ForwardOptions first = o, second = o;
  first.last_layer = 2;
  second.first_layer = 2;
  StageRunner a(device, *file, first), b(device, *file, second);
  // Each stage uploaded only its layers (and the embeddings or the head).
  const ModelSizes sizes = model_sizes(*file, a.forward().config(), 64, 2);
  EXPECT_EQ(a.forward().weight_bytes(), sizes.embedding_bytes + sizes.layer_bytes[0] + sizes.layer_bytes[1]);
  EXPECT_EQ(b.forward().weight_bytes(), sizes.layer_bytes[2] + sizes.layer_bytes[3] + sizes.head_bytes);
  Pass decode;
  decode.tokens = {{0, 40, 7, true}, {1, 0, other[0], true}};
  const std::vector<Result> split =
      through({&a, &b}, {prompt_pass(prompt, 0, 17), prompt_pass(prompt, 17, 23), decode});
  ASSERT_EQ(split.size(), 3u);
  for (const Result& r : split) EXPECT_EQ(r.kind, Result::kLogits);
  std::vector<float> prompt_rows = floats_of(split[0].logits);
  const std::vector<float> rest = floats_of(split[1].logits);
  prompt_rows.insert(prompt_rows.end(), rest.begin(), rest.end());
  ASSERT_EQ(prompt_rows.size(), whole[0].size());
  EXPECT_TRUE(prompt_rows == whole[0]) << "the prompt's logits differ from one device's";
  EXPECT_TRUE(floats_of(split[2].logits) == whole[1]) << "the decode pass's logits differ from one device's";
}

TEST_P(StageSplit, StagesComputeTheBitsOfOneDevice) {
  SCOPED_TRACE(test::seed_note());
  expect_stages_compute_the_bits_of_one_device(test::TinyLlama(test::model_shape(GetParam()), 2100));
}

// llama4 with mixture-of-experts layers 1 and 3 (one in each stage, each stage routing its own) and its
// NoPE layer 3.
TEST(StageSplit, MixtureOfExperts) {
  SCOPED_TRACE(test::seed_note());
  test::TinyLlama m(test::model_shape(TensorType::Q8_0), 2200);
  test::set_arch(m, "llama4");
  test::add_experts(m, "llama4", 4, 2, 64, 2, TensorType::Q8_0);
  expect_stages_compute_the_bits_of_one_device(m);
}

INSTANTIATE_TEST_SUITE_P(Types, StageSplit,
                         ::testing::Values(TensorType::F32, TensorType::Q4_0, TensorType::Q8_0),
                         [](const auto& info) { return std::string(gguf::type_name(info.param)); });

// --devices 0,0,...: stages on separate devices of the test machine's adapter.
std::unique_ptr<Mesh> local_mesh(const std::string& path, size_t stages, runtime::ForwardOptions o,
                                 uint32_t micro_batch = 0) {
  MeshOptions mo;
  mo.model_path = path;
  mo.forward = o;
  mo.devices.assign(stages, 0);
  mo.pipeline.micro_batch = micro_batch;
  return Mesh::start(mo);
}

TEST(MeshPipeline, GreedyTokensEqualTheBatchersWhileRequestsComeAndGo) {
  SCOPED_TRACE(test::seed_note());
  const test::TinyLlama m(test::model_shape(TensorType::Q4_0), 2200);
  const std::string path = m.write("pipeline-greedy.gguf");
  auto file = gguf::GgufFile::open(path);
  const runtime::ForwardOptions o{.n_ctx = 64, .n_seq = 4};
  std::vector<std::vector<int32_t>> prompts;
  std::vector<size_t> want;
  const size_t lengths[] = {3, 20, 40, 17, 45, 8};
  for (size_t i = 0; i < std::size(lengths); ++i) {
    prompts.push_back(test::random_tokens(lengths[i], m.shape().n_vocab, 220 + i));
    want.push_back(6 + i % 4);
  }
  const std::vector<int> arrivals = {0, 0, 1, 2, 2, 7};
  std::vector<std::vector<int32_t>> expected;
  {
    runtime::Forward forward(test::device(), *file, o);
    runtime::Batcher batcher(forward);
    expected = generate(batcher, prompts, want, arrivals);
  }
  // Micro-batches of 17: the 40- and 45-token prompts go in two pieces, each through the prefill GEMM.
  std::unique_ptr<Mesh> mesh = local_mesh(path, 3, o, 17);
  const auto got = generate(mesh->pipeline(), prompts, want, arrivals);
  for (size_t i = 0; i < prompts.size(); ++i) EXPECT_EQ(got[i], expected[i]) << "request " << i;
  EXPECT_GT(mesh->pipeline().stats().most_in_flight, 1u) << "no two passes were ever on their way at once";
}

class MeshLogits : public ::testing::TestWithParam<TensorType> {};

TEST_P(MeshLogits, EqualOneDevicesBitForBit) {
  SCOPED_TRACE(test::seed_note());
  const test::TinyLlama m(test::model_shape(GetParam()), 2300);
  const std::string path = m.write("pipeline-logits.gguf");
  auto file = gguf::GgufFile::open(path);
  const std::vector<int32_t> tokens = test::random_tokens(37, m.shape().n_vocab, 23);
  const std::vector<std::vector<float>> expected = test::gpu_logits(*file, tokens, {.n_ctx = 64});
  std::unique_ptr<Mesh> mesh = local_mesh(path, 2, {.n_ctx = 64, .max_logits = 16});
  const std::vector<std::vector<float>> got = mesh->pipeline().logits(tokens);
  ASSERT_EQ(got.size(), expected.size());
  for (size_t p = 0; p < got.size(); ++p) EXPECT_TRUE(got[p] == expected[p]) << "position " << p;
  EXPECT_GT(mesh->pipeline().stats().most_in_flight, 1u);
}

INSTANTIATE_TEST_SUITE_P(Types, MeshLogits, ::testing::Values(TensorType::F32, TensorType::Q4_0),
                         [](const auto& info) { return std::string(gguf::type_name(info.param)); });

// One slot: a request finished while its prompt's micro-batches are on their way leaves nothing behind for
// the next one in the slot (their results are dropped; their KV-cache writes come before the new ones).
TEST(MeshPipeline, ASlotFinishedMidPromptIsReusedCleanly) {
  SCOPED_TRACE(test::seed_note());
  const test::TinyLlama m(test::model_shape(TensorType::F32), 2400);
  const std::string path = m.write("pipeline-reuse.gguf");
  auto file = gguf::GgufFile::open(path);
  const runtime::ForwardOptions o{.n_ctx = 64, .n_seq = 1};
  const std::vector<int32_t> first = test::random_tokens(50, m.shape().n_vocab, 24);
  const std::vector<int32_t> second = test::random_tokens(30, m.shape().n_vocab, 25);
  std::vector<int32_t> expected;
  {
    runtime::Forward forward(test::device(), *file, o);
    runtime::Batcher batcher(forward);
    expected = generate(batcher, {second}, {8}, {0})[0];
  }
  std::unique_ptr<Mesh> mesh = local_mesh(path, 2, o, 17);
  Pipeline& p = mesh->pipeline();
  const auto started = p.start(first, kGreedy);
  ASSERT_TRUE(started);
  p.step();  // the first micro-batch came back; the others are most likely still on their way
  p.finish(started->slot);
  EXPECT_EQ(generate(p, {second}, {8}, {0})[0], expected);
}

// Six decoding sequences on three stages go in groups of two, one group per stage.
TEST(MeshPipeline, DecodingSequencesGoInOneGroupPerStage) {
  SCOPED_TRACE(test::seed_note());
  const test::TinyLlama m(test::model_shape(TensorType::F32), 2500);
  const std::string path = m.write("pipeline-groups.gguf");
  std::unique_ptr<Mesh> mesh = local_mesh(path, 3, {.n_ctx = 64, .n_seq = 6});
  Pipeline& p = mesh->pipeline();
  for (int i = 0; i < 6; ++i)
    ASSERT_TRUE(p.start(test::random_tokens(4, m.shape().n_vocab, 250 + i), kGreedy));
  // Their prompts finish one by one; within a few rounds the sequences have settled into three groups.
  size_t settled = 0;
  while (settled < 36) settled += p.step().size();
  const Pipeline::Stats before = p.stats();
  size_t tokens = 0;
  while (tokens < 60) tokens += p.step().size();
  const Pipeline::Stats after = p.stats();
  const uint64_t passes = after.passes - before.passes, sent = after.tokens - before.tokens;
  EXPECT_EQ(sent, 2 * passes) << passes << " passes carried " << sent << " tokens";
  EXPECT_EQ(after.most_in_flight, 6u);
  for (uint32_t s = 0; s < 6; ++s) p.finish(s);
}

TEST(MeshPipeline, BadRequestsAreClearErrors) {
  const test::TinyLlama m(test::model_shape(TensorType::F32), 2600);
  const std::string path = m.write("pipeline-errors.gguf");
  std::unique_ptr<Mesh> mesh = local_mesh(path, 2, {.n_ctx = 16});
  Pipeline& p = mesh->pipeline();
  expect_bad_input([&] { p.start({}, kGreedy); }, "no tokens");
  expect_bad_input([&] { p.start(std::vector<int32_t>(16, 1), kGreedy); }, "leaves no room");
  expect_bad_input([&] { p.start(std::vector<int32_t>{1, 500}, kGreedy); }, "outside the vocabulary");
  expect_bad_input(
      [&] {
        MeshOptions mo;
        mo.model_path = path;
        mo.devices = {0, 0};
        mo.split = {1, 2};
        Mesh::start(mo);
      },
      "--split covers 3 layers but the model has 4");
}

}  // namespace
}  // namespace wgllm::mesh
