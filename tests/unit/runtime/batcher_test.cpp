// runtime::Batcher (continuous batching over KV-cache slots): stories260K's greedy text equals llama2.c's
// for sequences prefilled in chunks and decoded together; a greedy request gives the same tokens alone
// and batched; prompt-prefix reuse (cached tokens reported, the same logits as a full recompute within
// tolerance); the context limit; bad requests; one submit and one read-back per step.
#include "runtime/batcher.hpp"

#include <gtest/gtest.h>

#include "cpu/reference_model.hpp"
#include "tokenizer/tokenizer.hpp"
#include "unit/runtime/runtime_fixtures.hpp"

namespace wgllm::runtime {
namespace {

using gguf::TensorType;
using test::expect_bad_input;
using test::generate;
using test::kGreedy;

// llama2.c's greedy text from BOS; the CPU reference's greedy ids give the same text (checked), so
// prompts of BOS and the first k of those ids must continue with the rest of them.
TEST(BatcherStories, ChunkedPrefillAndBatchedDecodeGiveLlama2cText) {
  auto file = gguf::GgufFile::open(test::stories260k_path());
  const auto tok = tokenizer::Tokenizer::from_gguf(*file);
  constexpr size_t kTokens = 200;
  const std::string expected = test::llama2c_story();
  auto text_of = [&](const std::vector<int32_t>& ids) { return test::text_of(*tok, ids, true); };
  const std::vector<int32_t> ids =
      test::reference_greedy(*file, std::vector<int32_t>{tok->vocab().bos}, kTokens);
  ASSERT_EQ(text_of(ids), expected);

  Forward forward(test::device(), *file, ForwardOptions{.n_ctx = 256, .n_seq = 4, .max_batch = 7});
  Batcher batcher(forward);
  const std::vector<size_t> given = {0, 20, 57, 100};  // prompt tokens after BOS: chunks of 7 end mid-prompt
  std::vector<std::vector<int32_t>> prompts;
  std::vector<size_t> want;
  for (size_t k : given) {
    std::vector<int32_t> p = {tok->vocab().bos};
    p.insert(p.end(), ids.begin(), ids.begin() + static_cast<long>(k));
    prompts.push_back(p);
    want.push_back(kTokens - k);
  }
  const auto got = generate(batcher, prompts, want, {0, 0, 3, 10});
  for (size_t r = 0; r < given.size(); ++r) {
    SCOPED_TRACE("prompt of BOS and " + std::to_string(given[r]) + " tokens");
    std::vector<int32_t> all(ids.begin(), ids.begin() + static_cast<long>(given[r]));
    all.insert(all.end(), got[r].begin(), got[r].end());
    EXPECT_EQ(text_of(all), expected);
  }
}

class BatcherGreedy : public ::testing::TestWithParam<bool> {};

// Eight greedy requests with prompts of 3..24 tokens, each alone and then all together (joining at
// different steps, leaving when done): the same tokens, whatever runs beside them.
TEST_P(BatcherGreedy, SameTokensAloneAndBatched) {
  SCOPED_TRACE(test::seed_note());
  const test::TinyLlama m(test::model_shape(TensorType::Q4_0), 1600);
  auto file = m.open("batcher-greedy.gguf");
  Forward forward(test::device(), *file,
                  ForwardOptions{.n_ctx = 64, .n_seq = 8, .max_batch = 8, .use_subgroups = GetParam()});
  std::vector<std::vector<int32_t>> prompts;
  std::vector<size_t> want;
  for (size_t i = 0; i < 8; ++i) {
    prompts.push_back(test::random_tokens(3 + 3 * i, m.shape().n_vocab, 60 + i));
    want.push_back(6 + i % 3);
  }
  std::vector<std::vector<int32_t>> alone;
  {
    Batcher batcher(forward);
    for (size_t i = 0; i < prompts.size(); ++i)
      alone.push_back(generate(batcher, {prompts[i]}, {want[i]}, {0})[0]);
  }
  Batcher batcher(forward);
  const auto together = generate(batcher, prompts, want, {0, 0, 0, 1, 2, 2, 5, 9});
  for (size_t i = 0; i < prompts.size(); ++i) EXPECT_EQ(together[i], alone[i]) << "request " << i;
}

INSTANTIATE_TEST_SUITE_P(Kernels, BatcherGreedy, ::testing::Bool(),
                         [](const auto& info) { return info.param ? "Subgroups" : "WorkgroupMemory"; });

// A follow-up that extends a finished conversation reuses its slot's cache: the cached tokens are the
// prompt and the generated tokens that were fed back (not the last sampled one), and the continuation's
// logits are those of a full recompute within tolerance (checked through the Forward directly).
TEST(BatcherPrefix, FollowUpReusesTheCachedPrefix) {
  SCOPED_TRACE(test::seed_note());
  const test::TinyLlama m(test::model_shape(TensorType::F32), 1700);
  auto file = m.open("prefix.gguf");
  Forward forward(test::device(), *file, ForwardOptions{.n_ctx = 64, .n_seq = 3, .max_batch = 4});
  Batcher batcher(forward);
  const uint32_t vocab = m.shape().n_vocab;
  const std::vector<int32_t> first = test::random_tokens(10, vocab, 70);
  const std::vector<int32_t> other = test::random_tokens(6, vocab, 71);
  // Another conversation in another slot, so that the choice of slot matters.
  const auto busy = batcher.start(other, kGreedy);
  ASSERT_TRUE(busy);
  EXPECT_EQ(busy->cached_tokens, 0u);
  const auto started = batcher.start(first, kGreedy);
  ASSERT_TRUE(started);
  std::vector<int32_t> reply;
  while (reply.size() < 5)
    for (const auto& s : batcher.step())
      if (s.slot == started->slot) reply.push_back(s.token);
  batcher.finish(started->slot);
  batcher.finish(busy->slot);

  // The follow-up: the first prompt, four fed tokens of the reply, and new tokens.
  std::vector<int32_t> follow = first;
  follow.insert(follow.end(), reply.begin(), reply.begin() + 4);
  const std::vector<int32_t> fresh = test::random_tokens(5, vocab, 72);
  follow.insert(follow.end(), fresh.begin(), fresh.end());
  const auto again = batcher.start(follow, kGreedy);
  ASSERT_TRUE(again);
  EXPECT_EQ(again->slot, started->slot);
  EXPECT_EQ(again->cached_tokens, first.size() + 4);
  std::vector<int32_t> continued;
  while (continued.empty())
    for (const auto& s : batcher.step()) continued.push_back(s.token);
  batcher.finish(again->slot);

  // The whole follow-up again: only its last token is recomputed (its logits are needed).
  const auto repeat = batcher.start(follow, kGreedy);
  ASSERT_TRUE(repeat);
  EXPECT_EQ(repeat->slot, started->slot);
  EXPECT_EQ(repeat->cached_tokens, follow.size() - 1);
  batcher.finish(repeat->slot);

  // The logits behind `continued`: the reused slot's cache (the first conversation's positions, then the
  // follow-up's new tokens) with the last token run again, against a full recompute by the reference.
  const auto want = cpu::ReferenceModel(*file).forward(follow).back();
  const PassToken last{started->slot, static_cast<uint32_t>(follow.size() - 1), follow.back(), true};
  forward.record({&last, 1});
  gpu::ReadTicket t = forward.device().read(forward.logits(), 0, uint64_t(vocab) * 4);
  forward.device().submit();
  const std::vector<float> got = test::floats_of(forward.device().wait(t));
  EXPECT_LE(test::relative_error(got, want), test::tolerance(TensorType::F32));
}

// A prompt that shares only its first token with a finished conversation (as every prompt shares BOS) takes
// an unused slot instead of evicting that conversation's cache, which its follow-up then reuses.
TEST(BatcherPrefix, AShortShareDoesNotEvictAConversation) {
  const test::TinyLlama m(test::model_shape(TensorType::F32), 1750);
  auto file = m.open("prefix-evict.gguf");
  Forward forward(test::device(), *file, ForwardOptions{.n_ctx = 32, .n_seq = 2, .max_batch = 4});
  Batcher batcher(forward);
  const uint32_t vocab = m.shape().n_vocab;
  const std::vector<int32_t> conversation = test::random_tokens(10, vocab, 75);
  const auto first = batcher.start(conversation, kGreedy);
  ASSERT_TRUE(first);
  while (batcher.step().empty()) {
  }
  batcher.finish(first->slot);

  std::vector<int32_t> other = test::random_tokens(4, vocab, 76);
  other.insert(other.begin(), conversation[0]);
  const auto second = batcher.start(other, kGreedy);
  ASSERT_TRUE(second);
  EXPECT_NE(second->slot, first->slot);
  EXPECT_EQ(second->cached_tokens, 0u);
  batcher.finish(second->slot);

  std::vector<int32_t> follow = conversation;
  follow.push_back(3);
  follow.push_back(4);
  const auto third = batcher.start(follow, kGreedy);
  ASSERT_TRUE(third);
  EXPECT_EQ(third->slot, first->slot);
  EXPECT_EQ(third->cached_tokens, conversation.size());
}

// A context of 16: a prompt of 10 leaves room for 7 sampled tokens (the 7th can no longer be fed back);
// the step that samples it says so, and a sequence left running past it is an error.
TEST(BatcherLimits, ContextFullIsReportedOnTheLastToken) {
  test::TinyLlamaShape shape = test::model_shape(TensorType::F32);
  const test::TinyLlama m(shape, 1800);
  auto file = m.open("batcher-limits.gguf");
  Forward forward(test::device(), *file, ForwardOptions{.n_ctx = 16, .n_seq = 2, .max_batch = 4});
  Batcher batcher(forward);
  EXPECT_EQ(batcher.slots(), 2u);
  EXPECT_EQ(batcher.context_size(), 16u);
  EXPECT_EQ(batcher.vocab_size(), 500u);
  const auto s = batcher.start(test::random_tokens(10, 500, 80), kGreedy);
  ASSERT_TRUE(s);
  std::vector<Generator::Sampled> got;
  while (got.empty() || !got.back().context_full)
    for (const auto& x : batcher.step()) got.push_back(x);
  EXPECT_EQ(got.size(), 7u);
  for (size_t i = 0; i + 1 < got.size(); ++i) EXPECT_FALSE(got[i].context_full) << i;
  expect_bad_input([&] { batcher.step(); }, "filled its context of 16 tokens");
  batcher.finish(s->slot);
  EXPECT_FALSE(batcher.busy());
  EXPECT_TRUE(batcher.step().empty());
}

TEST(BatcherLimits, BadRequests) {
  test::TinyLlamaShape shape = test::model_shape(TensorType::F32);
  const test::TinyLlama m(shape, 1900);
  auto file = m.open("batcher-bad.gguf");
  Forward forward(test::device(), *file, ForwardOptions{.n_ctx = 16, .n_seq = 2, .max_batch = 4});
  Batcher batcher(forward);
  expect_bad_input([&] { batcher.start({}, kGreedy); }, "no tokens");
  expect_bad_input([&] { batcher.start(std::vector<int32_t>{1, 500}, kGreedy); }, "500");
  expect_bad_input([&] { batcher.start(std::vector<int32_t>{-2}, kGreedy); }, "-2");
  expect_bad_input([&] { batcher.start(std::vector<int32_t>(16, 1), kGreedy); }, "16 tokens leaves no room");
  EXPECT_FALSE(batcher.busy());
  ASSERT_TRUE(batcher.start(std::vector<int32_t>(15, 1), kGreedy));
  ASSERT_TRUE(batcher.start(std::vector<int32_t>{2}, kGreedy));
  EXPECT_FALSE(batcher.start(std::vector<int32_t>{3}, kGreedy)) << "every slot is busy";
  expect_bad_input([&] { batcher.finish(2); }, "slot 2");
}

// Each step: one submit, and the sampled ids of all slots read back once (4 bytes per slot).
TEST(BatcherStats, OneSubmitAndOneReadBackPerStep) {
  const test::TinyLlama m(test::model_shape(TensorType::Q4_0), 2000);
  auto file = m.open("batcher-stats.gguf");
  gpu::Device& device = test::device();
  Forward forward(device, *file, ForwardOptions{.n_ctx = 32, .n_seq = 3, .max_batch = 4});
  Batcher batcher(forward);
  ASSERT_TRUE(batcher.start(test::random_tokens(3, 500, 90), SamplingParams{.seed = 1}));
  ASSERT_TRUE(batcher.start(test::random_tokens(9, 500, 91), SamplingParams{.temperature = 0}));
  for (int i = 0; i < 6; ++i) {
    const gpu::DeviceStats before = device.stats();
    batcher.step();
    const gpu::DeviceStats after = device.stats();
    EXPECT_EQ(after.submits - before.submits, 1u) << "step " << i;
    EXPECT_EQ(after.bytes_read_back - before.bytes_read_back, 3u * 4) << "step " << i;
  }
}

}  // namespace
}  // namespace wgllm::runtime
