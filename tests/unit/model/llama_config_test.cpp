// Hyperparameters and the weight map: stories260K against its PROVENANCE facts, writer-made files for the
// defaults, fallbacks and every rejection.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>

#include "core/error.hpp"
#include "model/llama.hpp"
#include "support/test_support.hpp"
#include "unit/model/tiny_llama.hpp"

namespace wgllm::model {
namespace {

using gguf::TensorType;
using test::TinyLlama;
using test::TinyLlamaShape;
using ::testing::AllOf;
using ::testing::HasSubstr;

// The message of the Error that `fn` throws (BadInput), or a failure.
template <typename Fn>
std::string error_of(Fn&& fn) {
  try {
    fn();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::BadInput) << e.what();
    return e.what();
  }
  ADD_FAILURE() << "expected an Error";
  return "";
}

std::string config_error(const TinyLlama& m) {
  auto file = m.open("bad-config.gguf");
  return error_of([&] { LlamaConfig::from_gguf(*file); });
}

std::string map_error(const TinyLlama& m) {
  auto file = m.open("bad-map.gguf");
  const LlamaConfig c = LlamaConfig::from_gguf(*file);
  return error_of([&] { LlamaWeights::map(*file, c); });
}

// Facts from models/PROVENANCE.txt (llama.cpp's convert-llama2c-to-ggml output of Karpathy's stories260K).
TEST(LlamaConfig, Stories260K) {
  auto file = gguf::GgufFile::open(test::source_path("models/stories260K.gguf"));
  const LlamaConfig c = LlamaConfig::from_gguf(*file);
  EXPECT_EQ(c.arch, "llama");
  EXPECT_EQ(c.n_vocab, 512u);
  EXPECT_EQ(c.dim, 64u);
  EXPECT_EQ(c.n_layers, 5u);
  EXPECT_EQ(c.n_heads, 8u);
  EXPECT_EQ(c.n_kv_heads, 4u);
  EXPECT_EQ(c.head_dim, 8u);
  EXPECT_EQ(c.ffn_dim, 172u);
  EXPECT_EQ(c.context_length, 2048u);
  EXPECT_EQ(c.rope_dim, 8u);
  EXPECT_EQ(c.rms_eps, 1e-5f);
  EXPECT_EQ(c.rope_freq_base, 10000.0f);
  EXPECT_EQ(c.rope_scaling, RopeScaling::None);
  EXPECT_EQ(c.rope_scale, 1.0f);
  EXPECT_FALSE(c.tied_output);  // output.weight is present (a copy of token_embd)

  const LlamaWeights w = LlamaWeights::map(*file, c);
  ASSERT_EQ(w.layers.size(), 5u);
  EXPECT_EQ(w.token_embd->name, "token_embd.weight");
  EXPECT_EQ(w.token_embd->dims, (std::vector<uint64_t>{64, 512}));
  EXPECT_EQ(w.output->name, "output.weight");
  EXPECT_NE(w.output, w.token_embd);
  EXPECT_EQ(w.output_norm->dims, (std::vector<uint64_t>{64}));
  EXPECT_EQ(w.rope_freqs, nullptr);
  EXPECT_TRUE(w.rope_freq_factors.empty());
  const LayerWeights& l4 = w.layers[4];
  EXPECT_EQ(l4.attn_norm->name, "blk.4.attn_norm.weight");
  EXPECT_EQ(l4.wq->dims, (std::vector<uint64_t>{64, 64}));
  EXPECT_EQ(l4.wk->dims, (std::vector<uint64_t>{64, 32}));
  EXPECT_EQ(l4.wv->dims, (std::vector<uint64_t>{64, 32}));
  EXPECT_EQ(l4.wo->dims, (std::vector<uint64_t>{64, 64}));
  EXPECT_EQ(l4.ffn_gate->dims, (std::vector<uint64_t>{64, 172}));
  EXPECT_EQ(l4.ffn_up->dims, (std::vector<uint64_t>{64, 172}));
  EXPECT_EQ(l4.ffn_down->dims, (std::vector<uint64_t>{172, 64}));
  EXPECT_EQ(l4.ffn_down->name, "blk.4.ffn_down.weight");
  for (const LayerWeights& l : w.layers) EXPECT_EQ(l.wq->type, TensorType::F32);
}

TEST(LlamaConfig, DefaultsForOptionalKeys) {
  TinyLlama m;
  m.erase_key("llama.attention.head_count_kv");
  auto file = m.open("defaults.gguf");
  const LlamaConfig c = LlamaConfig::from_gguf(*file);
  EXPECT_EQ(c.n_kv_heads, c.n_heads);  // no GQA unless stated
  EXPECT_EQ(c.head_dim, 8u);           // dim / n_heads
  EXPECT_EQ(c.rope_dim, 8u);           // the whole head
  EXPECT_EQ(c.rope_freq_base, 10000.0f);
  EXPECT_EQ(c.rope_scaling, RopeScaling::None);
  EXPECT_EQ(c.rope_scale, 1.0f);
  EXPECT_EQ(c.n_vocab, 48u);  // no vocab_size, no tokens: token_embd's dims[1]
  EXPECT_FALSE(c.tied_output);
}

TEST(LlamaConfig, ExplicitKeysOverrideDefaults) {
  TinyLlama m({.dim = 32, .n_heads = 4, .n_kv_heads = 2});
  m.set_u32("llama.attention.key_length", 16);  // head_dim 16: q_dim = 64 != dim
  m.set_u32("llama.attention.value_length", 16);
  m.set_u32("llama.rope.dimension_count", 6);
  m.set_f32("llama.rope.freq_base", 500000.0f);
  m.set_u32("llama.vocab_size", 48);
  for (int l = 0; l < 2; ++l) {
    const std::string b = "blk." + std::to_string(l) + ".";
    m.add(b + "attn_q.weight", TensorType::F32, {32, 64});
    m.add(b + "attn_k.weight", TensorType::F32, {32, 32});
    m.add(b + "attn_v.weight", TensorType::F32, {32, 32});
    m.add(b + "attn_output.weight", TensorType::F32, {64, 32});
  }
  auto file = m.open("explicit.gguf");
  const LlamaConfig c = LlamaConfig::from_gguf(*file);
  EXPECT_EQ(c.head_dim, 16u);
  EXPECT_EQ(c.q_dim(), 64u);
  EXPECT_EQ(c.kv_dim(), 32u);
  EXPECT_EQ(c.rope_dim, 6u);
  EXPECT_EQ(c.rope_freq_base, 500000.0f);
  EXPECT_NO_THROW(LlamaWeights::map(*file, c));
}

TEST(LlamaConfig, VocabSizeFromKeyThenTokensThenEmbedding) {
  TinyLlama m;
  std::vector<std::string> tokens(48);
  for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = "t" + std::to_string(i);
  m.set_strings("tokenizer.ggml.tokens", tokens);
  EXPECT_EQ(LlamaConfig::from_gguf(*m.open("vocab-tokens.gguf")).n_vocab, 48u);
  m.set_u32("llama.vocab_size", 47);  // the key wins (and then disagrees with the tensors)
  auto file = m.open("vocab-key.gguf");
  const LlamaConfig c = LlamaConfig::from_gguf(*file);
  EXPECT_EQ(c.n_vocab, 47u);
  EXPECT_THAT(error_of([&] { LlamaWeights::map(*file, c); }),
              AllOf(HasSubstr("token_embd.weight"), HasSubstr("47"), HasSubstr("48")));
}

TEST(LlamaConfig, TiedOutputReusesTokenEmbedding) {
  TinyLlama m;
  m.erase_tensor("output.weight");
  auto file = m.open("tied.gguf");
  const LlamaConfig c = LlamaConfig::from_gguf(*file);
  EXPECT_TRUE(c.tied_output);
  const LlamaWeights w = LlamaWeights::map(*file, c);
  EXPECT_EQ(w.output, w.token_embd);
}

TEST(LlamaConfig, RopeScaling) {
  TinyLlama m;
  m.set_string("llama.rope.scaling.type", "linear");
  m.set_f32("llama.rope.scaling.factor", 4.0f);
  LlamaConfig c = LlamaConfig::from_gguf(*m.open("linear.gguf"));
  EXPECT_EQ(c.rope_scaling, RopeScaling::Linear);
  EXPECT_EQ(c.rope_scale, 4.0f);

  m.erase_key("llama.rope.scaling.type");  // llama.cpp: a factor without a type is linear
  c = LlamaConfig::from_gguf(*m.open("factor-only.gguf"));
  EXPECT_EQ(c.rope_scaling, RopeScaling::Linear);
  EXPECT_EQ(c.rope_scale, 4.0f);

  m.set_f32("llama.rope.scaling.factor", 0.0f);  // llama.cpp: 0 means unscaled
  c = LlamaConfig::from_gguf(*m.open("factor-zero.gguf"));
  EXPECT_EQ(c.rope_scaling, RopeScaling::None);
  EXPECT_EQ(c.rope_scale, 1.0f);

  m.erase_key("llama.rope.scaling.factor");  // files older than rope.scaling.*
  m.set_f32("llama.rope.scale_linear", 2.0f);
  c = LlamaConfig::from_gguf(*m.open("scale-linear.gguf"));
  EXPECT_EQ(c.rope_scaling, RopeScaling::Linear);
  EXPECT_EQ(c.rope_scale, 2.0f);

  m.set_string("llama.rope.scaling.type", "yarn");
  EXPECT_THAT(config_error(m),
              AllOf(HasSubstr("llama.rope.scaling.type"), HasSubstr("yarn"), HasSubstr("linear")));
  m.set_string("llama.rope.scaling.type", "linear");
  m.set_f32("llama.rope.scaling.factor", -2.0f);
  EXPECT_THAT(config_error(m), HasSubstr("llama.rope.scaling.factor"));
}

TEST(LlamaConfig, RopeFreqFactorsFromTensor) {
  TinyLlama m;
  m.add_values("rope_freqs.weight", TensorType::F32, {4}, {1.0f, 2.0f, 4.0f, 8.0f});
  auto file = m.open("rope-freqs.gguf");
  const LlamaConfig c = LlamaConfig::from_gguf(*file);
  const LlamaWeights w = LlamaWeights::map(*file, c);
  ASSERT_NE(w.rope_freqs, nullptr);
  EXPECT_EQ(w.rope_freq_factors, (std::vector<float>{1.0f, 2.0f, 4.0f, 8.0f}));

  m.add_values("rope_freqs.weight", TensorType::F32, {4}, {1.0f, 0.0f, 4.0f, 8.0f});
  EXPECT_THAT(map_error(m), AllOf(HasSubstr("rope_freqs.weight[1]"), HasSubstr("positive")));
  m.add_values("rope_freqs.weight", TensorType::F32, {8}, std::vector<float>(8, 1.0f));
  EXPECT_THAT(map_error(m), HasSubstr("rope_freqs.weight"));
  m.add_values("rope_freqs.weight", TensorType::F16, {4}, std::vector<float>(4, 1.0f));
  EXPECT_THAT(map_error(m), AllOf(HasSubstr("rope_freqs.weight"), HasSubstr("f16")));
}

TEST(LlamaConfig, RejectsOtherArchitectures) {
  TinyLlama m;
  m.set_string("general.architecture", "falcon");
  EXPECT_THAT(config_error(m), AllOf(HasSubstr("general.architecture"), HasSubstr("falcon"),
                                     HasSubstr("llama, llama4, qwen2, qwen3, qwen3moe")));
}

TEST(LlamaConfig, RejectsBadHyperparameters) {
  struct Case {
    const char* key;
    uint32_t value;
    const char* expect;  // besides the key
  };
  for (const Case& bad : {
           Case{"llama.attention.head_count", 0, "0"},
           Case{"llama.embedding_length", 0, "0"},
           Case{"llama.block_count", 0, "0"},
           Case{"llama.context_length", 0, "0"},
           Case{"llama.attention.head_count", 5, "32"},    // 32 % 5
           Case{"llama.attention.head_count_kv", 3, "4"},  // 4 % 3
           Case{"llama.attention.head_count_kv", 8, "8"},  // more KV heads than heads
           Case{"llama.rope.dimension_count", 7, "even"},  // odd
           Case{"llama.rope.dimension_count", 10, "8"},    // > head_dim
           Case{"llama.attention.key_length", 0, "0"},
           Case{"llama.attention.value_length", 4, "8"},
       }) {
    SCOPED_TRACE(std::string(bad.key) + " = " + std::to_string(bad.value));
    TinyLlama m;
    m.set_u32(bad.key, bad.value);
    EXPECT_THAT(config_error(m),
                AllOf(HasSubstr(bad.key), HasSubstr(bad.expect), HasSubstr("bad-config.gguf")));
  }
  TinyLlama m;
  m.set_f32("llama.attention.layer_norm_rms_epsilon", -1e-5f);
  EXPECT_THAT(config_error(m), HasSubstr("layer_norm_rms_epsilon"));
  m.set_f32("llama.attention.layer_norm_rms_epsilon", NAN);
  EXPECT_THAT(config_error(m), HasSubstr("layer_norm_rms_epsilon"));
  m.set_f32("llama.attention.layer_norm_rms_epsilon", 1e-5f);
  m.set_f32("llama.rope.freq_base", 0.0f);
  EXPECT_THAT(config_error(m), HasSubstr("llama.rope.freq_base"));
}

TEST(LlamaConfig, RejectsMissingRequiredKeys) {
  for (const char* key :
       {"general.architecture", "llama.embedding_length", "llama.block_count", "llama.attention.head_count",
        "llama.feed_forward_length", "llama.context_length", "llama.attention.layer_norm_rms_epsilon"}) {
    SCOPED_TRACE(key);
    TinyLlama m;
    m.erase_key(key);
    EXPECT_THAT(config_error(m), HasSubstr(key));
  }
}

TEST(LlamaWeights, RejectsMissingTensors) {
  for (const char* name :
       {"token_embd.weight", "output_norm.weight", "blk.0.attn_norm.weight", "blk.1.attn_q.weight",
        "blk.1.attn_k.weight", "blk.0.attn_v.weight", "blk.0.attn_output.weight", "blk.1.ffn_norm.weight",
        "blk.0.ffn_gate.weight", "blk.1.ffn_up.weight", "blk.1.ffn_down.weight"}) {
    SCOPED_TRACE(name);
    TinyLlama m;
    m.set_u32("llama.vocab_size", 48);  // so that the config does not need token_embd
    m.erase_tensor(name);
    EXPECT_THAT(map_error(m), HasSubstr(name));
  }
}

TEST(LlamaWeights, RejectsWrongShapesNamingBothShapes) {
  TinyLlama m;
  m.add("blk.1.ffn_up.weight", TensorType::F32, {32, 65});
  EXPECT_THAT(map_error(m), AllOf(HasSubstr("blk.1.ffn_up.weight"), HasSubstr("64"), HasSubstr("65")));
  TinyLlama transposed;
  transposed.add("blk.0.ffn_down.weight", TensorType::F32, {32, 64});
  EXPECT_THAT(map_error(transposed), HasSubstr("blk.0.ffn_down.weight"));
  TinyLlama norm;
  norm.add("blk.0.attn_norm.weight", TensorType::F32, {32, 1});
  EXPECT_THAT(map_error(norm), HasSubstr("blk.0.attn_norm.weight"));
}

TEST(LlamaWeights, AcceptsEverySupportedWeightType) {
  for (TensorType type : supported_weight_types()) {
    SCOPED_TRACE(std::string(gguf::type_name(type)));
    // 256-wide, so that every K-quant's super-blocks fit the rows.
    TinyLlama m({.dim = 256,
                 .n_layers = 2,
                 .n_heads = 4,
                 .n_kv_heads = 2,
                 .ffn_dim = 256,
                 .n_vocab = 8,
                 .weight_type = type});
    auto file = m.open("typed.gguf");
    const LlamaConfig c = LlamaConfig::from_gguf(*file);
    const LlamaWeights w = LlamaWeights::map(*file, c);
    EXPECT_EQ(w.layers[1].ffn_down->type, type);
    EXPECT_EQ(w.token_embd->type, type);
  }
}

TEST(LlamaWeights, RejectsUnsupportedTypesNamingTensorAndType) {
  // iq2_xxs blocks hold 256 elements (66 bytes): a 256-wide model.
  TinyLlama m({.dim = 256, .n_layers = 1, .n_heads = 4, .n_kv_heads = 4, .ffn_dim = 256, .n_vocab = 8});
  m.add_bytes("blk.0.ffn_gate.weight", TensorType::IQ2_XXS, {256, 256}, std::vector<uint8_t>(66 * 256, 0));
  EXPECT_THAT(map_error(m), AllOf(HasSubstr("blk.0.ffn_gate.weight"), HasSubstr("iq2_xxs")));

  TinyLlama norm;
  norm.add("blk.1.ffn_norm.weight", TensorType::F16, {32});
  EXPECT_THAT(map_error(norm), AllOf(HasSubstr("blk.1.ffn_norm.weight"), HasSubstr("f16"), HasSubstr("f32")));
}

}  // namespace
}  // namespace wgllm::model
