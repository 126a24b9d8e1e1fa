// Forward over batches of tokens: prompt chunks crossing pass boundaries and decode passes over several
// slots at different positions against the float64 CPU reference; batch invariance (a sequence's logits
// have the same bits alone and in any batch); passes sharing a command buffer; bad passes (a full KV slot
// among them) are clear errors that never wrap.
#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <tuple>

#include "cpu/reference_model.hpp"
#include "unit/cli/wgllm_process.hpp"
#include "unit/runtime/runtime_fixtures.hpp"

namespace wgllm::runtime {
namespace {

using gguf::TensorType;
using test::expect_bad_input;

// Records `ids` into `slot` from position `pos` in passes of max_batch tokens; with `logits`, every token's
// logits are computed and returned (max_logits >= max_batch).
std::vector<std::vector<float>> prefill(Forward& forward, uint32_t slot, uint32_t pos,
                                        std::span<const int32_t> ids, bool logits) {
  std::vector<std::vector<float>> out;
  for (size_t first = 0; first < ids.size(); first += forward.max_batch()) {
    const size_t n = std::min<size_t>(forward.max_batch(), ids.size() - first);
    std::vector<PassToken> pass;
    for (size_t i = 0; i < n; ++i)
      pass.push_back({slot, pos + static_cast<uint32_t>(first + i), ids[first + i], logits});
    forward.record(pass);
    if (logits)
      for (auto& row : test::read_rows(forward, static_cast<uint32_t>(n))) out.push_back(std::move(row));
  }
  return out;
}

class BatchedForward : public ::testing::TestWithParam<std::tuple<TensorType, bool>> {
 protected:
  TensorType type() const { return std::get<0>(GetParam()); }
  bool subgroups() const { return std::get<1>(GetParam()); }
};

// Three sequences in slots 1, 0, 2 (prompts of 12, 7 and 3 tokens in passes of 5: chunks end mid-prompt),
// every prompt position's logits, then decode passes holding one token of each sequence at its own position.
TEST_P(BatchedForward, PromptChunksAndMultiSlotPassesMatchTheReference) {
  SCOPED_TRACE(test::seed_note());
  const test::TinyLlama m(test::model_shape(type()), 1200 + static_cast<uint64_t>(type()));
  auto file = m.open("batched.gguf");
  const double tol = test::tolerance(type());
  // f32 GEMV inputs: compared with the reference (forward_test's expect_matches_reference says why).
  Forward forward(test::device(), *file,
                  ForwardOptions{.n_ctx = 32,
                                 .n_seq = 3,
                                 .max_batch = 5,
                                 .max_logits = 5,
                                 .use_subgroups = subgroups(),
                                 .int8_activations = false});
  const uint32_t slots[] = {1, 0, 2};
  const size_t lengths[] = {12, 7, 3};
  std::vector<std::vector<int32_t>> prompts;
  std::vector<std::unique_ptr<cpu::ReferenceModel>> refs;
  std::vector<std::vector<double>> next;  // each reference's logits at its last position
  for (int s = 0; s < 3; ++s) {
    SCOPED_TRACE("sequence " + std::to_string(s));
    prompts.push_back(test::random_tokens(lengths[s], m.shape().n_vocab, 10 + s));
    refs.push_back(std::make_unique<cpu::ReferenceModel>(*file));
    const auto want = refs[s]->forward(prompts[s]);
    const auto got = prefill(forward, slots[s], 0, prompts[s], true);
    ASSERT_EQ(got.size(), want.size());
    for (size_t p = 0; p < got.size(); ++p)
      EXPECT_LE(test::relative_error(got[p], want[p]), tol) << "position " << p;
    next.push_back(want.back());
  }
  const std::vector<int32_t> fed = test::random_tokens(12, m.shape().n_vocab, 20);
  for (int step = 0; step < 4; ++step) {
    SCOPED_TRACE("decode pass " + std::to_string(step));
    std::vector<PassToken> pass;
    for (int s = 0; s < 3; ++s)
      pass.push_back({slots[s], static_cast<uint32_t>(lengths[s] + step), fed[3 * step + s], true});
    forward.record(pass);
    const auto got = test::read_rows(forward, 3);
    for (int s = 0; s < 3; ++s)
      EXPECT_LE(test::relative_error(got[s], refs[s]->step(fed[3 * step + s])), tol) << "sequence " << s;
  }
}

// One sequence's logits: run alone (prompt chunks, then one-token decode passes from position `prompt_len`)
// and again in decode passes of `sizes` tokens beside other sequences (slot s's prompt `other_len(s)` tokens)
// at other positions, at the first, a middle and the last place of the pass. Every bit must agree.
void check_invariance(const test::TinyLlama& m, bool subgroups, uint32_t n_ctx, uint32_t prompt_len,
                      const std::vector<uint32_t>& sizes,
                      const std::function<uint32_t(uint32_t)>& other_len) {
  auto file = m.open("invariance.gguf");
  constexpr uint32_t kSlots = 17, kSteps = 3;
  Forward forward(
      test::device(), *file,
      ForwardOptions{.n_ctx = n_ctx, .n_seq = kSlots, .max_batch = 6, .use_subgroups = subgroups});
  const uint32_t vocab = m.shape().n_vocab;
  const std::vector<int32_t> prompt = test::random_tokens(prompt_len, vocab, 30);
  const std::vector<int32_t> fed = test::random_tokens(kSteps, vocab, 31);

  auto run_alone = [&] {
    prefill(forward, 0, 0, prompt, false);
    std::vector<std::vector<float>> out;
    for (uint32_t i = 0; i < kSteps; ++i) {
      const PassToken t{0, static_cast<uint32_t>(prompt.size()) + i, fed[i], true};
      forward.record({&t, 1});
      out.push_back(test::read_rows(forward, 1)[0]);
    }
    return out;
  };
  const std::vector<std::vector<float>> alone = run_alone();
  for (uint32_t s = 1; s < kSlots; ++s)
    prefill(forward, s, 0, test::random_tokens(other_len(s), vocab, 40 + s), false);

  for (uint32_t size : sizes) {
    for (uint32_t place : {0u, size / 2, size - 1}) {
      SCOPED_TRACE("pass of " + std::to_string(size) + " tokens, the sequence at " + std::to_string(place));
      prefill(forward, 0, 0, prompt, false);  // the same prompt passes again: the same K/V
      for (uint32_t i = 0; i < kSteps; ++i) {
        std::vector<PassToken> pass;
        for (uint32_t s = 1; s < size;
             ++s)  // other slots at positions of their own, with tokens of their own
          pass.push_back({s, other_len(s) + i, static_cast<int32_t>((7 * s + 13 * i) % vocab), true});
        pass.insert(pass.begin() + place,
                    PassToken{0, static_cast<uint32_t>(prompt.size()) + i, fed[i], true});
        forward.record(pass);
        const auto rows = test::read_rows(forward, size);
        EXPECT_EQ(rows[place], alone[i]) << "decode step " << i;
      }
    }
  }
}

// Decode passes of 2, 4, 5 and 17 tokens (batch widths 2, 4, 8 and two tiles of 16); the others' prompts
// are 3..19 tokens.
TEST_P(BatchedForward, ASequenceHasTheSameLogitsBitsAloneAndInAnyBatch) {
  SCOPED_TRACE(test::seed_note());
  const test::TinyLlama m(test::model_shape(type()), 1300 + static_cast<uint64_t>(type()));
  check_invariance(m, subgroups(), 48, 9, {2, 4, 5, 17}, [](uint32_t s) { return 2 + s; });
}

// Split attention (spans of 256 keys at a context of 512): the sequence decodes positions 255..257, across
// the first span boundary, beside sequences short and long (slot 1 past the boundary: the pass runs two
// spans and the merge while alone the first step runs one), in one chunk of 16 and in two (17 tokens).
TEST_P(BatchedForward, SplitAttentionKeepsTheBitsAcrossSpanBoundaries) {
  SCOPED_TRACE(test::seed_note());
  const test::TinyLlama m(test::model_shape(type()), 1400 + static_cast<uint64_t>(type()));
  check_invariance(m, subgroups(), 512, 255, {2, 17}, [](uint32_t s) { return s == 1 ? 300 : 2 + s; });
}

// A one-token decode step fuses work into its GEMVs' epilogues that passes of several tokens leave to
// kernels of their own: on a model whose FFN is wide enough (gate|up 12288 rows), quantized weights run
// gate|up in workgroups of 512 that leave down's int8 input themselves (matvec.wgsl's GLU, where
// batched passes run silu_mul), and q|k|v rotates q and k into the caches (ROPE_KV, as the batched GEMVs
// do; the prompt's passes of 6 too). Every bit must still agree.
TEST_P(BatchedForward, FusedDecodeEpiloguesKeepTheBits) {
  SCOPED_TRACE(test::seed_note());
  test::TinyLlamaShape shape = test::model_shape(type());
  shape.dim = 128;
  shape.n_layers = 1;
  shape.n_heads = 4;
  shape.n_kv_heads = 2;
  shape.ffn_dim = 6144;
  const test::TinyLlama m(shape, 1500 + static_cast<uint64_t>(type()));
  check_invariance(m, subgroups(), 48, 9, {2, 5}, [](uint32_t s) { return 2 + s; });
}

INSTANTIATE_TEST_SUITE_P(TypesAndKernels, BatchedForward,
                         ::testing::Combine(::testing::Values(TensorType::F32, TensorType::Q4_0),
                                            ::testing::Bool()),
                         [](const auto& info) {
                           return std::string(gguf::type_name(std::get<0>(info.param))) +
                                  (std::get<1>(info.param) ? "Subgroups" : "WorkgroupMemory");
                         });

// A prompt in passes of more than kMaxWidth tokens goes through the prefill GEMM (matmul.wgsl): for F32
// weights its f32 path, within the F32 tolerance of the reference at every position (the pass of 40 ends
// mid-prompt; the 13 after it take the GEMM too).
TEST(PrefillGemm, F32PathMatchesTheReference) {
  SCOPED_TRACE(test::seed_note());
  const test::TinyLlama m(test::model_shape(TensorType::F32), 1250);
  auto file = m.open("prefill-f32.gguf");
  Forward forward(test::device(), *file, ForwardOptions{.n_ctx = 64, .max_batch = 40, .max_logits = 40});
  const std::vector<int32_t> prompt = test::random_tokens(57, m.shape().n_vocab, 25);
  const auto want = cpu::ReferenceModel(*file).forward(prompt);
  const auto got = prefill(forward, 0, 0, prompt, true);
  for (size_t p = 0; p < prompt.size(); ++p)
    EXPECT_LE(test::relative_error(got[p], want[p]), test::tolerance(TensorType::F32)) << "position " << p;
}

// The INT8 GEMM's prompt passes on a model quantized throughout (Q4_0: ffn_down too, whose int8 input
// silu_mul writes itself, with no quantize_act) against the batched GEMV on the same int8 activations.
// They differ in f32 summation orders (GEMM, prefill attention), which now and then move an input across a
// quantization tie (a step of 1/127 of its chunk's largest value), and these fixtures' sharp attention
// amplifies that: measured 0.017-0.057 over 30 seeds. Stale down inputs (silu_mul left out of the prompt
// passes) give 1.56-1.58, as would another token's codes.
TEST(PrefillGemm, Int8PathAgreesWithTheGemv) {
  SCOPED_TRACE(test::seed_note());
  const test::TinyLlama m(test::model_shape(TensorType::Q4_0), 1260);
  auto file = m.open("prefill-q4_0.gguf");
  const std::vector<int32_t> prompt = test::random_tokens(57, m.shape().n_vocab, 26);
  std::vector<std::vector<std::vector<float>>> got;
  for (const bool gemm : {true, false}) {
    Forward forward(test::device(), *file,
                    ForwardOptions{.n_ctx = 64, .max_batch = 40, .max_logits = 40, .prefill_matmul = gemm});
    got.push_back(prefill(forward, 0, 0, prompt, true));
  }
  ASSERT_EQ(got[0].size(), prompt.size());
  ASSERT_EQ(got[1].size(), prompt.size());
  for (size_t p = 0; p < prompt.size(); ++p)
    EXPECT_LE(test::relative_error(got[0][p], got[1][p]), 0.25) << "position " << p;
}

// For quantized weights the prefill GEMM and the decode GEMV take int8 activations (per 32 elements, as
// llama.cpp's q8_1; ForwardOptions::int8_activations), checked on a model with trained weights: stories260K
// quantized to q8_0 by `wgllm quantize` (its ffn_down stays f16: those projections take the f32 paths).
// Against the reference that quantizes the same inputs the same way, every path stays within 1e-2
// (measured 3.8e-3: an input whose f32 value lies within the GPU's rounding error of a quantization tie
// may round the other way, a step of 1/127 of its chunk's largest value, which dim 64 makes large).
// Against the unquantized reference, each projection's inputs carry a rounding error of up to
// 1/254 of their chunk's largest value (dim 64: two chunks per vector); measured over the 64 positions
// the logits stay within 3.2 % (bound 5 %), and the GEMV with f32 inputs keeps 1e-3. (The random-weight
// fixtures' attention is too sharp for such a bound: their scores reach tens, and the softmax turns 1 %
// input errors into 10 %.)
TEST(Int8Activations, BoundedAgainstTheReferenceAndTightAgainstItsQuantization) {
  const std::string path = test::temp_dir() + "/stories260K-prefill-q8_0.gguf";
  const test::Process q =
      test::run_wgllm({"quantize", test::source_path("models/stories260K.gguf"), path, "q8_0"});
  ASSERT_EQ(q.exit_code, 0) << q.command << "\n" << q.err;
  auto file = gguf::GgufFile::open(path);
  std::vector<int32_t> prompt = {1};  // BOS, then the reference's greedy tokens
  cpu::ReferenceModel reference(*file);
  std::vector<std::vector<double>> want = {reference.forward(prompt).back()};
  while (prompt.size() < 64) {
    prompt.push_back(
        static_cast<int32_t>(std::max_element(want.back().begin(), want.back().end()) - want.back().begin()));
    want.push_back(reference.step(prompt.back()));
  }
  // want[p] is the reference after prompt[0..p], one for each of the 64 positions the passes compute.
  ASSERT_EQ(want.size(), prompt.size());
  const auto want_int8 = cpu::ReferenceModel(*file, {.int8_activations = true}).forward(prompt);
  struct Path {
    const char* name;
    bool gemm, int8;
  };
  for (const Path& path :
       {Path{"GEMM", true, true}, Path{"GEMV", false, true}, Path{"GEMV f32", false, false}}) {
    SCOPED_TRACE(path.name);
    Forward forward(test::device(), *file,
                    ForwardOptions{.n_ctx = 64,
                                   .max_batch = 64,
                                   .max_logits = 64,
                                   .prefill_matmul = path.gemm,
                                   .int8_activations = path.int8});
    const auto got = prefill(forward, 0, 0, prompt, true);
    ASSERT_EQ(got.size(), want.size());
    double worst = 0, worst_int8 = 0;
    for (size_t p = 0; p < prompt.size(); ++p) {
      worst = std::max(worst, test::relative_error(got[p], want[p]));
      worst_int8 = std::max(worst_int8, test::relative_error(got[p], want_int8[p]));
    }
    if (path.int8) {
      EXPECT_LE(worst_int8, 1e-2);
      EXPECT_LE(worst, 5e-2);
      EXPECT_GT(worst, 1e-4) << "the int8 activations should show";
    } else {
      EXPECT_LE(worst, test::tolerance(TensorType::Q8_0));
    }
  }
}

// More passes than a command buffer's staging regions, recorded before one wait: the prompts of three
// slots in passes of 4, then a decode pass over all of them, whose logits match the reference.
TEST(BatchedForwardSubmits, ManyPassesBeforeOneSubmit) {
  SCOPED_TRACE(test::seed_note());
  const test::TinyLlama m(test::model_shape(TensorType::Q8_0), 1400);
  auto file = m.open("passes.gguf");
  // f32 GEMV inputs: compared with the reference (forward_test's expect_matches_reference says why).
  Forward forward(test::device(), *file,
                  ForwardOptions{.n_ctx = 32, .n_seq = 3, .max_batch = 4, .int8_activations = false});
  gpu::Device& device = test::device();
  const gpu::DeviceStats before = device.stats();
  std::vector<std::vector<int32_t>> prompts;
  std::vector<PassToken> pass;
  std::vector<std::vector<double>> want;
  for (uint32_t s = 0; s < 3; ++s) {
    prompts.push_back(test::random_tokens(6 + s, m.shape().n_vocab, 50 + s));
    for (size_t first = 0; first < prompts[s].size(); first += 4) {
      std::vector<PassToken> chunk;
      for (size_t i = first; i < std::min(first + 4, prompts[s].size()); ++i)
        chunk.push_back({s, static_cast<uint32_t>(i), prompts[s][i], false});
      forward.record(chunk);
    }
    cpu::ReferenceModel ref(*file);
    ref.forward(prompts[s]);
    want.push_back(ref.step(static_cast<int32_t>(s + 1)));
    pass.push_back({s, static_cast<uint32_t>(prompts[s].size()), static_cast<int32_t>(s + 1), true});
  }
  forward.record(pass);
  const auto got = test::read_rows(forward, 3);
  // 7 passes: one submit in between (the staging regions ran out) and the read-back's.
  EXPECT_EQ(device.stats().submits - before.submits, 2u);
  for (uint32_t s = 0; s < 3; ++s)
    EXPECT_LE(test::relative_error(got[s], want[s]), test::tolerance(TensorType::Q8_0)) << "slot " << s;
}

TEST(BatchedForwardErrors, BadPassesAreClearErrors) {
  test::TinyLlamaShape shape = test::model_shape(TensorType::F32);
  const test::TinyLlama m(shape, 1500);
  auto file = m.open("errors.gguf");
  Forward forward(test::device(), *file, ForwardOptions{.n_ctx = 16, .n_seq = 2, .max_batch = 4});
  const PassToken ok{1, 15, 3, true};
  forward.record({&ok, 1});  // the last position of a slot is fine
  const PassToken past{1, 16, 3, true};
  expect_bad_input(
      [&] {
        forward.record({&past, 1});
      },
      "position 16 of slot 1 is outside the context of 16 tokens");
  const PassToken slot{2, 0, 3, false};
  expect_bad_input([&] { forward.record({&slot, 1}); }, "slot 2");
  const PassToken id{0, 0, 500, false};
  expect_bad_input([&] { forward.record({&id, 1}); }, "500");
  const std::vector<PassToken> five(5, PassToken{0, 0, 1, false});
  expect_bad_input([&] { forward.record(five); }, "1 to 4 tokens");
  expect_bad_input([&] { forward.record({}); }, "1 to 4 tokens");
  const std::vector<PassToken> three_rows = {{0, 0, 1, true}, {1, 0, 1, true}, {0, 1, 1, true}};
  expect_bad_input([&] { forward.record(three_rows); }, "at most 2 logits rows");
  const std::vector<PassToken> same_slot = {{0, 0, 1, true}, {0, 1, 1, true}};
  const std::vector<RowSampling> two(2);
  expect_bad_input([&] { forward.record(same_slot, two); }, "one row per slot");
  expect_bad_input([&] { forward.record(same_slot, std::span<const RowSampling>(two).first(1)); }, "1 rows");
  // Nothing was recorded by the failed calls: the device still works.
  forward.record({&ok, 1});
  EXPECT_EQ(test::read_rows(forward, 1)[0].size(), 500u);
}

}  // namespace
}  // namespace wgllm::runtime
