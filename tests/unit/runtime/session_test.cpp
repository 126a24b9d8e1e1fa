// The step-driven Session: greedy generation on the GPU (sampler included) against the CPU reference's
// argmax, bad requests, and the per-step GPU work (one submit, a 4-byte read-back, a fixed dispatch list).
#include "runtime/session.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "cpu/reference_model.hpp"
#include "unit/runtime/runtime_fixtures.hpp"

namespace wgllm::runtime {
namespace {

using gguf::TensorType;
using test::expect_bad_input;

// Whether the reference's argmax is certain at the tolerance: CONTRACTS.md compares greedy tokens only where
// the top-2 margin is at least 10x the tolerance. The tolerance is a relative error over the whole logits
// vector, so the margin is measured against ||logits||_2: an error within tolerance moves the two leading
// logits by at most tol * ||logits||_2 together.
struct Argmax {
  int32_t id;
  bool certain;
};
Argmax reference_argmax(const std::vector<double>& logits, double tol) {
  std::vector<double> sorted = logits;
  std::partial_sort(sorted.begin(), sorted.begin() + 2, sorted.end(), std::greater<>());
  double norm = 0;
  for (double v : logits) norm += v * v;
  const int32_t id = static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
  return {id, sorted[0] - sorted[1] >= 10 * tol * std::sqrt(norm)};
}

class Greedy : public ::testing::TestWithParam<bool> {};

// prefill + step with temperature 0, run ahead (every step submitted before the first id is read), against
// the reference fed the GPU's own tokens: up to the first uncertain position this is exactly the
// reference's greedy sequence; past it, each certain position is still checked in the GPU's context.
TEST_P(Greedy, GenerationFollowsTheReferenceArgmax) {
  SCOPED_TRACE(test::seed_note());
  const test::TinyLlama m(test::model_shape(TensorType::F32), 900);
  auto file = m.open("greedy.gguf");
  const double tol = test::tolerance(TensorType::F32);
  const std::vector<int32_t> prompt = test::random_tokens(5, m.shape().n_vocab, 9);
  constexpr int kNew = 32;

  Forward forward(test::device(), *file, ForwardOptions{.use_subgroups = GetParam()});
  Session session(forward, SamplingParams{.temperature = 0});
  std::vector<gpu::ReadTicket> tickets = {session.prefill(prompt)};
  for (int i = 1; i < kNew; ++i) tickets.push_back(session.step());
  EXPECT_EQ(session.position(), prompt.size() + kNew - 1);
  std::vector<int32_t> generated;
  for (gpu::ReadTicket t : tickets) generated.push_back(session.id_of(t));

  cpu::ReferenceModel reference(*file);
  std::vector<double> logits = reference.forward(prompt).back();
  int certain = 0;
  for (int i = 0; i < kNew; ++i) {
    const Argmax want = reference_argmax(logits, tol);
    if (want.certain) {
      ++certain;
      EXPECT_EQ(generated[i], want.id) << "new token " << i;
    }
    if (i + 1 < kNew) logits = reference.step(generated[i]);
  }
  // With logits N(0, ~5^2) over 500 ids an uncertain position is rare (a few percent); a run where most are
  // uncertain would mean flat logits, i.e. a fixture that tests nothing.
  EXPECT_GE(certain, kNew / 2);
}

INSTANTIATE_TEST_SUITE_P(Kernels, Greedy, ::testing::Bool(),
                         [](const auto& info) { return info.param ? "Subgroups" : "WorkgroupMemory"; });

// A model whose context is 16 positions.
class SessionLimits : public ::testing::Test {
 protected:
  void SetUp() override {
    test::TinyLlamaShape shape = test::model_shape(TensorType::F32);
    shape.context = 16;
    file_ = test::TinyLlama(shape, 1000).open("context16.gguf");
    forward_ = std::make_unique<Forward>(test::device(), *file_);
  }
  std::unique_ptr<gguf::GgufFile> file_;
  std::unique_ptr<Forward> forward_;
};

TEST_F(SessionLimits, PromptLongerThanTheContextIsBadInput) {
  ASSERT_EQ(forward_->n_ctx(), 16u);
  Session session(*forward_, SamplingParams{.temperature = 0});
  expect_bad_input([&] { session.prefill(std::vector<int32_t>(17, 3)); }, "context");
  expect_bad_input([&] { session.prefill({}); }, "no tokens");
  EXPECT_EQ(session.position(), 0u);
  // A prompt that fills the context exactly fits: its last token's logits still sample one more token.
  session.id_of(session.prefill(std::vector<int32_t>(16, 3)));
  EXPECT_EQ(session.position(), 16u);
  EXPECT_TRUE(session.context_full());
  expect_bad_input([&] { session.step(); }, "full");
}

TEST_F(SessionLimits, TokenOutsideTheVocabularyIsBadInput) {
  Session session(*forward_, SamplingParams{.temperature = 0});
  expect_bad_input([&] { session.prefill(std::vector<int32_t>{1, 500, 2}); }, "500");
  expect_bad_input([&] { session.prefill(std::vector<int32_t>{-1}); }, "-1");
  expect_bad_input([&] { session.evaluate(500); }, "500");
  expect_bad_input([&] { session.evaluate(-7); }, "-7");
  EXPECT_EQ(session.position(), 0u);
  // The session is still usable: the vocabulary's last id is fine.
  EXPECT_EQ(test::floats_of(test::device().wait(session.evaluate(499))).size(), 500u);
}

TEST_F(SessionLimits, FullContextIsBadInput) {
  Session session(*forward_, SamplingParams{.temperature = 0});
  gpu::ReadTicket t = session.prefill(std::vector<int32_t>(15, 4));
  gpu::ReadTicket last = session.step();
  session.id_of(t);
  session.id_of(last);
  EXPECT_EQ(session.position(), 16u);
  EXPECT_TRUE(session.context_full());
  expect_bad_input([&] { session.step(); }, "full");
  expect_bad_input([&] { session.evaluate(4); }, "full");
  expect_bad_input([&] { session.prefill(std::vector<int32_t>{4}); }, "context");
  EXPECT_EQ(session.position(), 16u);
}

// A mixture-of-experts model keeps the same contract: the routing (router GEMV, top k, the chosen experts'
// GEMVs, combine) stays on the GPU, so a step is still one submit and a 4-byte read-back.
TEST(SessionStats, MixtureOfExpertsStepsNeverReadTheRouting) {
  SCOPED_TRACE(test::seed_note());
  test::TinyLlama m(test::model_shape(TensorType::F32), 1150);
  test::set_arch(m, "qwen3moe");
  test::add_experts(m, "qwen3moe", 8, 3, 64, 1, TensorType::Q4_0);
  auto file = m.open("stats-moe.gguf");
  ASSERT_TRUE(cpu::ReferenceModel(*file).config().layer_is_moe(0));
  gpu::Device& device = test::device();
  Forward forward(device, *file, ForwardOptions{.max_batch = 4});
  Session session(forward, SamplingParams{.seed = 7});
  const std::vector<int32_t> prompt = {5, 6, 7};
  gpu::ReadTicket t = session.prefill(prompt);
  for (int i = 0; i < 3; ++i) {
    const gpu::DeviceStats before = device.stats();
    gpu::ReadTicket next = session.step();
    const gpu::DeviceStats after = device.stats();
    EXPECT_EQ(after.submits - before.submits, 1u);
    EXPECT_EQ(after.bytes_read_back - before.bytes_read_back, 4u);
    EXPECT_EQ(after.dispatches - before.dispatches, forward.dispatches_per_token(true));
    session.id_of(t);
    t = next;
  }
  session.id_of(t);
}

// The hot path's contract (ARCHITECTURE.md): a step records the fixed dispatch list into one command
// buffer, submits once, reads back the 4-byte id, writes only the pass's metadata, and creates no GPU
// memory. The prompt runs in passes of max_batch tokens, one submit each.
TEST(SessionStats, OneStepIsOneSubmitAndFourBytesReadBack) {
  SCOPED_TRACE(test::seed_note());
  const test::TinyLlama m(test::model_shape(TensorType::Q4_0), 1100);
  auto file = m.open("stats.gguf");
  gpu::Device& device = test::device();
  Forward forward(device, *file, ForwardOptions{.max_batch = 4});
  // The sampler: its parts' reduction, then the merge and draw.
  EXPECT_EQ(forward.dispatches_per_token(true), forward.dispatches_per_token(false) + 2);
  Session session(forward, SamplingParams{.seed = 7});

  const std::vector<int32_t> prompt = {5, 6, 7, 8, 9, 10, 11};  // passes of 4 and 3 tokens
  gpu::DeviceStats before = device.stats();
  gpu::ReadTicket t = session.prefill(prompt);
  gpu::DeviceStats after = device.stats();
  EXPECT_EQ(after.submits - before.submits, 2u);
  EXPECT_EQ(after.bytes_read_back - before.bytes_read_back, 4u);
  EXPECT_EQ(after.dispatches - before.dispatches,
            forward.dispatches(4, 0, false) + forward.dispatches(3, 1, true));

  for (int i = 0; i < 3; ++i) {
    const uint64_t allocated = device.allocated_bytes();
    before = device.stats();
    gpu::ReadTicket next = session.step();
    after = device.stats();
    EXPECT_EQ(after.submits - before.submits, 1u);
    EXPECT_EQ(after.bytes_read_back - before.bytes_read_back, 4u);
    EXPECT_EQ(after.dispatches - before.dispatches, forward.dispatches_per_token(true));
    // The pass header, one token and one sampling row.
    EXPECT_LE(after.bytes_written - before.bytes_written, 16 + sizeof(GpuToken) + sizeof(GpuRow));
    EXPECT_EQ(device.allocated_bytes(), allocated);
    const int32_t id = session.id_of(t);
    EXPECT_GE(id, 0);
    EXPECT_LT(id, 500);
    t = next;
  }
  session.id_of(t);
}

}  // namespace
}  // namespace wgllm::runtime
