// The GPU forward pass against the float64 CPU reference (cpu::ReferenceModel) on the same synthetic GGUF
// file: every position's logits, for each weight type, both kernel variants (subgroup reductions and
// workgroup-memory reductions), and the llama variants stories260K does not exercise (tied LM head, partial
// RoPE, linear RoPE scaling, Llama 3 frequency factors, a context longer than the attention workgroup).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <tuple>

#include "core/error.hpp"
#include "cpu/reference_model.hpp"
#include "quant/codec.hpp"
#include "unit/runtime/runtime_fixtures.hpp"

namespace wgllm::runtime {
namespace {

using gguf::TensorType;

std::vector<float> to_float(const std::vector<double>& v) {
  return {v.begin(), v.end()};
}

// Evaluates `tokens` on the GPU and checks each position's logits against the reference within `tol`. The
// GEMVs take f32 inputs, the reference's arithmetic: int8 activations round each input to 1/254 of its
// chunk's largest value, which these random models' sharp attention amplifies past any tight bound (also
// against a reference quantizing the same way, as an input near a rounding tie may round either way);
// that path is checked by the kernel tests and batch_test's Int8Activations.
void expect_matches_reference(const gguf::GgufFile& file, std::span<const int32_t> tokens, bool subgroups,
                              double tol) {
  const std::vector<std::vector<double>> want = cpu::ReferenceModel(file).forward(tokens);
  const std::vector<std::vector<float>> got =
      test::gpu_logits(file, tokens, ForwardOptions{.use_subgroups = subgroups, .int8_activations = false});
  ASSERT_EQ(got.size(), want.size());
  for (size_t p = 0; p < tokens.size(); ++p) {
    ASSERT_EQ(got[p].size(), want[p].size()) << "position " << p;
    EXPECT_LE(test::relative_error(got[p], want[p]), tol)
        << "position " << p << " (token " << tokens[p] << ")";
  }
}

// A model variant is only covered when it changes the reference's logits: checks that `variant` and
// `plain` differ by far more than the tolerance at the last position.
void expect_variant_matters(const gguf::GgufFile& variant, const gguf::GgufFile& plain,
                            std::span<const int32_t> tokens, double tol) {
  const auto a = cpu::ReferenceModel(variant).forward(tokens).back();
  const auto b = cpu::ReferenceModel(plain).forward(tokens).back();
  EXPECT_GT(test::relative_error(to_float(a), b), 100 * tol);
}

// 12 positions; token 1 comes back at position 7 so that a repeated token at a later position, whose
// logits differ only through attention and RoPE, is among them.
std::vector<int32_t> sequence(uint32_t n_vocab, uint64_t salt) {
  std::vector<int32_t> tokens = test::random_tokens(12, n_vocab, salt);
  tokens[7] = tokens[1];
  return tokens;
}

std::string variant_name(bool subgroups) {
  return subgroups ? "Subgroups" : "WorkgroupMemory";
}

class ForwardByType : public ::testing::TestWithParam<std::tuple<TensorType, bool>> {};

TEST_P(ForwardByType, EveryPositionMatchesTheReference) {
  SCOPED_TRACE(test::seed_note());
  const auto [type, subgroups] = GetParam();
  // The same salt for both variants: they run on the same weights.
  const test::TinyLlama m(test::model_shape(type), 100 + static_cast<uint64_t>(type));
  auto file = m.open(std::string("by-type-") + std::string(gguf::type_name(type)) + ".gguf");
  expect_matches_reference(*file, sequence(m.shape().n_vocab, 1), subgroups, test::tolerance(type));
}

INSTANTIATE_TEST_SUITE_P(Types, ForwardByType,
                         ::testing::Combine(::testing::Values(TensorType::F32, TensorType::F16,
                                                              TensorType::Q8_0, TensorType::Q4_0),
                                            ::testing::Bool()),
                         [](const auto& info) {
                           return std::string(gguf::type_name(std::get<0>(info.param))) +
                                  variant_name(std::get<1>(info.param));
                         });

class ForwardVariants : public ::testing::TestWithParam<bool> {};

// No output.weight: the LM head reads the (quantized) embedding table.
TEST_P(ForwardVariants, TiedOutput) {
  SCOPED_TRACE(test::seed_note());
  test::TinyLlama m(test::model_shape(TensorType::Q8_0), 200);
  auto plain = m.open("untied.gguf");
  m.erase_tensor("output.weight");
  auto tied = m.open("tied.gguf");
  const auto tokens = sequence(m.shape().n_vocab, 2);
  expect_variant_matters(*tied, *plain, tokens, test::tolerance(TensorType::Q8_0));
  expect_matches_reference(*tied, tokens, GetParam(), test::tolerance(TensorType::Q8_0));
}

// Head dim 64 of which RoPE rotates the leading 32, GQA 4 over 2, and a non-default frequency base.
TEST_P(ForwardVariants, PartialRope) {
  SCOPED_TRACE(test::seed_note());
  test::TinyLlamaShape shape = test::model_shape(TensorType::F32);
  shape.n_heads = 4;
  shape.n_kv_heads = 2;
  test::TinyLlama m(shape, 300);
  m.set_f32("llama.rope.freq_base", 500000.0f);
  auto full = m.open("full-rope.gguf");
  m.set_u32("llama.rope.dimension_count", 32);
  auto partial = m.open("partial-rope.gguf");
  ASSERT_EQ(cpu::ReferenceModel(*partial).config().head_dim, 64u);
  ASSERT_EQ(cpu::ReferenceModel(*partial).config().rope_dim, 32u);
  const auto tokens = sequence(m.shape().n_vocab, 3);
  expect_variant_matters(*partial, *full, tokens, test::tolerance(TensorType::F32));
  expect_matches_reference(*partial, tokens, GetParam(), test::tolerance(TensorType::F32));
}

TEST_P(ForwardVariants, LinearRopeScaling) {
  SCOPED_TRACE(test::seed_note());
  test::TinyLlama m(test::model_shape(TensorType::F16), 400);
  auto plain = m.open("unscaled.gguf");
  m.set_string("llama.rope.scaling.type", "linear");
  m.set_f32("llama.rope.scaling.factor", 4.0f);
  auto scaled = m.open("linear-scaled.gguf");
  const auto tokens = sequence(m.shape().n_vocab, 4);
  expect_variant_matters(*scaled, *plain, tokens, test::tolerance(TensorType::F16));
  expect_matches_reference(*scaled, tokens, GetParam(), test::tolerance(TensorType::F16));
}

// Llama 3's rope_freqs.weight: one divisor per rotated pair, here random in [1, 32).
TEST_P(ForwardVariants, RopeFreqFactors) {
  SCOPED_TRACE(test::seed_note());
  test::TinyLlama m(test::model_shape(TensorType::Q4_0), 500);
  auto plain = m.open("no-factors.gguf");
  std::mt19937_64 gen = test::rng(501);
  std::uniform_real_distribution<float> factor(1.0f, 32.0f);
  std::vector<float> factors(16);  // [rope_dim / 2]
  for (float& f : factors) f = factor(gen);
  m.add_values("rope_freqs.weight", TensorType::F32, {16}, factors);
  auto with_factors = m.open("rope-factors.gguf");
  const auto tokens = sequence(m.shape().n_vocab, 5);
  expect_variant_matters(*with_factors, *plain, tokens, test::tolerance(TensorType::Q4_0));
  expect_matches_reference(*with_factors, tokens, GetParam(), test::tolerance(TensorType::Q4_0));
}

// 280 positions: attention runs 256 threads per head, so later positions take more than one pass over the
// cache (two layers are enough for that and keep the test fast). Weights at the default std 0.3 amplify any
// RoPE angle error, so this also guards the rotation's precision at later positions (the angles'
// cos/sin must not be computed in f32 from pos * inv_freq: that exceeded the F32 tolerance past ~200).
TEST_P(ForwardVariants, ContextLongerThanTheAttentionWorkgroup) {
  SCOPED_TRACE(test::seed_note());
  test::TinyLlamaShape shape = test::model_shape(TensorType::F32);
  shape.context = 320;
  shape.n_layers = 2;
  test::TinyLlama m(shape, 600);
  auto file = m.open("long-context.gguf");
  expect_matches_reference(*file, test::random_tokens(280, shape.n_vocab, 6), GetParam(),
                           test::tolerance(TensorType::F32));
}

// q/k/v biases (rope_kv's BIAS) and the attention output's bias (add_bias after Wo), as llama files with
// attention_bias carry them: every layer, N(0, 0.3^2).
TEST_P(ForwardVariants, AttentionBiases) {
  SCOPED_TRACE(test::seed_note());
  test::TinyLlama m(test::model_shape(TensorType::Q8_0), 800);
  auto plain = m.open("no-bias.gguf");
  test::add_biases(m, true);
  auto biased = m.open("bias.gguf");
  ASSERT_TRUE(cpu::ReferenceModel(*biased).config().attn_bias);
  const auto tokens = sequence(m.shape().n_vocab, 8);
  expect_variant_matters(*biased, *plain, tokens, test::tolerance(TensorType::Q8_0));
  expect_matches_reference(*biased, tokens, GetParam(), test::tolerance(TensorType::Q8_0));
}

// qwen2: NEOX RoPE (pairs (i, i + rope_dim / 2)) with q/k/v biases, over whole heads of 32 and over the
// leading 32 dims of heads of 64; the same weights as llama (adjacent pairs) must give other logits.
TEST_P(ForwardVariants, Qwen2NeoxRope) {
  SCOPED_TRACE(test::seed_note());
  for (const uint32_t n_heads : {8u, 4u}) {
    test::TinyLlamaShape shape = test::model_shape(TensorType::F16);
    shape.n_heads = n_heads;
    shape.n_kv_heads = n_heads / 2;
    test::TinyLlama m(shape, 900 + n_heads);
    test::add_biases(m, false);
    m.set_u32("llama.rope.dimension_count", 32);
    auto norm_pairs = m.open("llama-pairs.gguf");
    test::set_arch(m, "qwen2");
    m.set_u32("qwen2.rope.dimension_count", 32);
    auto qwen2 = m.open("qwen2.gguf");
    ASSERT_EQ(cpu::ReferenceModel(*qwen2).config().rope_type, model::RopeType::Neox);
    const auto tokens = sequence(shape.n_vocab, 9);
    expect_variant_matters(*qwen2, *norm_pairs, tokens, test::tolerance(TensorType::F16));
    expect_matches_reference(*qwen2, tokens, GetParam(), test::tolerance(TensorType::F16));
  }
}

// qwen3: per-head RMSNorm of q and k with weights [head_dim] (1 + N(0, 0.3^2)) before NEOX RoPE, which
// here turns the leading 16 of each head's 32 dims.
TEST_P(ForwardVariants, Qwen3QkNorm) {
  SCOPED_TRACE(test::seed_note());
  test::TinyLlama m(test::model_shape(TensorType::Q4_0), 1000);
  const test::TinyLlamaShape& s = m.shape();
  const uint32_t head_dim = s.dim / s.n_heads;
  test::set_arch(m, "qwen3");
  m.set_u32("qwen3.rope.dimension_count", 16);
  for (uint32_t l = 0; l < s.n_layers; ++l) {
    const std::string b = "blk." + std::to_string(l) + ".";
    m.add(b + "attn_q_norm.weight", TensorType::F32, {head_dim}, 1.0f);
    m.add(b + "attn_k_norm.weight", TensorType::F32, {head_dim}, 1.0f);
  }
  auto file = m.open("qwen3.gguf");
  ASSERT_TRUE(cpu::ReferenceModel(*file).config().qk_norm);
  expect_matches_reference(*file, sequence(s.n_vocab, 10), GetParam(), test::tolerance(TensorType::Q4_0));
}

// Mistral's sliding window (llama.attention.sliding_window): a window of 5 over 12 positions; and a window
// of 100 over 280 positions at a context of 320, where decode attention runs over spans of 256 (a window
// straddling the boundary merges two spans, one past it reads only the second).
TEST_P(ForwardVariants, SlidingWindow) {
  SCOPED_TRACE(test::seed_note());
  test::TinyLlama m(test::model_shape(TensorType::F32), 1100);
  auto plain = m.open("no-window.gguf");
  m.set_u32("llama.attention.sliding_window", 5);
  auto windowed = m.open("window.gguf");
  const auto tokens = sequence(m.shape().n_vocab, 11);
  expect_variant_matters(*windowed, *plain, tokens, test::tolerance(TensorType::F32));
  expect_matches_reference(*windowed, tokens, GetParam(), test::tolerance(TensorType::F32));

  test::TinyLlamaShape shape = test::model_shape(TensorType::F32);
  shape.context = 320;
  shape.n_layers = 2;
  test::TinyLlama l(shape, 1101);
  l.set_u32("llama.attention.sliding_window", 100);
  auto file = l.open("long-window.gguf");
  expect_matches_reference(*file, test::random_tokens(280, shape.n_vocab, 12), GetParam(),
                           test::tolerance(TensorType::F32));
}

// Llama 4's attention without experts: chunks of 5 on the RoPE layers, NoPE every 2nd layer with the
// attention temperature from position 2 (temperature_length 3; scale 0.5), and the
// weightless q/k norm after RoPE (use_kq_norm's default without 128 experts). The same weights as plain
// llama give other logits, and so does a temperature scale of 0. Then chunks of 100 over 280 positions at a
// context of 320 (decode attention over spans of 128: chunks straddle span boundaries).
TEST_P(ForwardVariants, Llama4Attention) {
  SCOPED_TRACE(test::seed_note());
  test::TinyLlama m(test::model_shape(TensorType::F32), 1200);
  auto plain = m.open("llama4-as-llama.gguf");
  test::set_arch(m, "llama4");
  m.set_u32("llama4.attention.sliding_window", 5);
  m.set_u32("llama4.no_rope_layer_step", 2);
  m.set_u32("llama4.attention.temperature_length", 3);
  m.set_f32("llama4.attention.temperature_scale", 0.0f);
  auto cold = m.open("llama4-no-temperature.gguf");
  m.set_f32("llama4.attention.temperature_scale", 0.5f);
  auto file = m.open("llama4-attention.gguf");
  const model::LlamaConfig c = cpu::ReferenceModel(*file).config();
  ASSERT_TRUE(c.l2_qk_norm);
  ASSERT_EQ(c.attn_chunk_size, 5u);
  ASSERT_FALSE(c.layer_uses_rope(1));
  const auto tokens = sequence(m.shape().n_vocab, 12);
  expect_variant_matters(*file, *plain, tokens, test::tolerance(TensorType::F32));
  // The temperature's effect at one position can be small (a NoPE head already attending to one key):
  // over all of them it must be large.
  const auto hot = cpu::ReferenceModel(*file).forward(tokens),
             flat = cpu::ReferenceModel(*cold).forward(tokens);
  double effect = 0;
  for (size_t p = 0; p < tokens.size(); ++p)
    effect = std::max(effect, test::relative_error(to_float(hot[p]), flat[p]));
  EXPECT_GT(effect, 100 * test::tolerance(TensorType::F32));
  expect_matches_reference(*file, tokens, GetParam(), test::tolerance(TensorType::F32));
  expect_matches_reference(*cold, tokens, GetParam(), test::tolerance(TensorType::F32));

  test::TinyLlamaShape shape = test::model_shape(TensorType::F32);
  shape.context = 320;
  shape.n_layers = 2;
  test::TinyLlama l(shape, 1201);
  test::set_arch(l, "llama4");
  l.set_u32("llama4.attention.sliding_window", 100);
  l.set_u32("llama4.no_rope_layer_step", 2);
  l.set_u32("llama4.attention.temperature_length", 50);
  auto chunked = l.open("llama4-long-chunks.gguf");
  expect_matches_reference(*chunked, test::random_tokens(280, shape.n_vocab, 13), GetParam(),
                           test::tolerance(TensorType::F32));
}

// qwen3moe: every layer 8 experts of 64 rows, the top 3 by softmax, renormalised (the default) or not;
// experts in f16 and q4_0 (the GEMV's float and staged paths). The same model with renormalisation off
// gives other logits.
TEST_P(ForwardVariants, Qwen3Moe) {
  SCOPED_TRACE(test::seed_note());
  for (const TensorType type : {TensorType::F16, TensorType::Q4_0}) {
    SCOPED_TRACE(gguf::type_name(type));
    test::TinyLlama m(test::model_shape(TensorType::F32), 1300 + static_cast<uint64_t>(type));
    test::set_arch(m, "qwen3moe");
    test::add_experts(m, "qwen3moe", 8, 3, 64, 1, type);
    auto file = m.open("qwen3moe.gguf");
    m.set_bool("qwen3moe.expert_weights_norm", false);
    auto unnormed = m.open("qwen3moe-unnormed.gguf");
    ASSERT_TRUE(cpu::ReferenceModel(*file).config().layer_is_moe(0));
    const auto tokens = sequence(m.shape().n_vocab, 13);
    expect_variant_matters(*file, *unnormed, tokens, test::tolerance(type));
    expect_matches_reference(*file, tokens, GetParam(), test::tolerance(type));
    expect_matches_reference(*unnormed, tokens, GetParam(), test::tolerance(type));
  }
}

// llama4: MoE every 2nd layer (4 experts of 32 rows, top 1 by sigmoid, the weight on the expert's input,
// plus the shared expert), dense layers between, with Llama 4's attention features (chunks of 5, NoPE
// every 4th layer); experts f32 and q8_0.
TEST_P(ForwardVariants, Llama4Moe) {
  SCOPED_TRACE(test::seed_note());
  for (const TensorType type : {TensorType::F32, TensorType::Q8_0}) {
    SCOPED_TRACE(gguf::type_name(type));
    test::TinyLlama m(test::model_shape(TensorType::F32), 1400 + static_cast<uint64_t>(type));
    test::set_arch(m, "llama4");
    test::add_experts(m, "llama4", 4, 1, 32, 2, type);
    m.set_u32("llama4.attention.sliding_window", 5);
    m.set_u32("llama4.attention.temperature_length", 3);
    auto file = m.open("llama4-moe.gguf");
    const model::LlamaConfig c = cpu::ReferenceModel(*file).config();
    ASSERT_TRUE(c.layer_is_moe(1) && !c.layer_is_moe(0) && c.shexp_ffn_dim == 32 && !c.layer_uses_rope(3));
    expect_matches_reference(*file, sequence(m.shape().n_vocab, 14), GetParam(), test::tolerance(type));
  }
}

// Experts split over several bindings (a chunk limit of 3 experts' bytes: chunks of 3, 3 and 2 experts),
// each token's chosen experts found in their chunk. Every other matrix splits too, into many chunks: one
// kernel variant (the adapter's) is enough.
TEST(Forward, ExpertsOverSeveralChunks) {
  SCOPED_TRACE(test::seed_note());
  test::TinyLlama m(test::model_shape(TensorType::F32), 1500);
  test::set_arch(m, "qwen3moe");
  test::add_experts(m, "qwen3moe", 8, 3, 64, 1, TensorType::Q4_0);
  auto file = m.open("qwen3moe-chunks.gguf");
  const gguf::TensorInfo& exps = *file->find_tensor("blk.0.ffn_gate_exps.weight");
  runtime::WeightUpload::Options o;
  o.chunk_limit = 3 * (exps.n_bytes / 8 + 64 * 8);
  runtime::WeightUpload upload(test::device(), o);
  expect_matches_reference(*file, sequence(m.shape().n_vocab, 15), true, test::tolerance(TensorType::Q4_0));
}

INSTANTIATE_TEST_SUITE_P(Kernels, ForwardVariants, ::testing::Bool(),
                         [](const auto& info) { return variant_name(info.param); });

// A context smaller than the model's (`wgllm logits` sizes it to the tokens) gives the same logits.
TEST(Forward, SmallerContextThanTheModel) {
  SCOPED_TRACE(test::seed_note());
  const test::TinyLlama m(test::model_shape(TensorType::F32), 700);
  auto file = m.open("small-context.gguf");
  const auto tokens = sequence(m.shape().n_vocab, 7);
  const auto want = cpu::ReferenceModel(*file).forward(tokens);
  const auto got =
      test::gpu_logits(*file, tokens, ForwardOptions{.n_ctx = static_cast<uint32_t>(tokens.size()) + 1});
  for (size_t p = 0; p < tokens.size(); ++p)
    EXPECT_LE(test::relative_error(got[p], want[p]), test::tolerance(TensorType::F32)) << "position " << p;
}

}  // namespace
}  // namespace wgllm::runtime
