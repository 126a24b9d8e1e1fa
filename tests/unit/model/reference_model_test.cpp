// The CPU reference forward pass. The oracle: greedy decoding of stories260K reproduces llama2.c's text
// (testdata/karpathy-llama2.c, produced by upstream run.c from the same weights). The rest checks the
// parts stories260K does not exercise against equivalent models built another way.
#include "cpu/reference_model.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>

#include "core/error.hpp"
#include "support/test_support.hpp"
#include "tokenizer/tokenizer.hpp"
#include "unit/model/tiny_llama.hpp"

namespace wgllm::cpu {
namespace {

using gguf::TensorType;
using ::testing::HasSubstr;

int32_t argmax(const std::vector<double>& v) {
  return static_cast<int32_t>(std::max_element(v.begin(), v.end()) - v.begin());
}

TEST(ReferenceModel, Stories260KGreedyMatchesLlama2c) {
  auto file = gguf::GgufFile::open(test::source_path("models/stories260K.gguf"));
  ReferenceModel model(*file);
  const auto tokenizer = tokenizer::Tokenizer::from_gguf(*file);
  // llama2.c prints each piece with "▁" as a space and byte tokens as bytes, dropping the leading space
  // of the first piece after BOS.
  tokenizer::StreamDecoder decoder(*tokenizer, /*strip_leading_space=*/true);
  // run.c's -n 200 counts positions: pos runs 0..199, feeding BOS first, each pass printing the token it
  // predicts, and stops early only when that token is BOS.
  constexpr int kBos = 1;
  int32_t token = kBos;
  std::string text;
  for (int pos = 0; pos < 200; ++pos) {
    token = argmax(model.step(token));
    if (token == kBos) break;
    text += decoder.push(token);
  }
  text += decoder.flush();
  EXPECT_EQ(model.position(), 200);
  const std::string expected =
      test::read_file(test::testdata_path("karpathy-llama2.c/expected_stories260K_t0_n200.txt"));
  EXPECT_EQ(text, expected);
}

TEST(ReferenceModel, ForwardRestartsAndMatchesStepByStep) {
  test::TinyLlama m;
  auto file = m.open("forward.gguf");
  ReferenceModel model(*file);
  const std::vector<int32_t> tokens = {3, 17, 0, 47, 3};
  const std::vector<std::vector<double>> all = model.forward(tokens);
  ASSERT_EQ(all.size(), tokens.size());
  EXPECT_EQ(model.position(), 5);
  model.reset();
  EXPECT_EQ(model.position(), 0);
  for (size_t i = 0; i < tokens.size(); ++i) {
    const std::vector<double> logits = model.step(tokens[i]);
    ASSERT_EQ(logits.size(), 48u);
    EXPECT_EQ(logits, all[i]) << i;
  }
  EXPECT_EQ(model.forward(tokens), all);  // forward() resets first
  // Token 3 again at position 4 attends to its context, so its logits differ from position 0's.
  EXPECT_NE(all[0], all[4]);
}

TEST(ReferenceModel, RejectsBadTokensAndAFullContext) {
  test::TinyLlama m({.context = 3});
  auto file = m.open("small-context.gguf");
  ReferenceModel model(*file);
  EXPECT_THAT([&] { model.step(48); }, ::testing::ThrowsMessage<Error>(HasSubstr("48")));
  EXPECT_THROW(model.step(-1), Error);
  EXPECT_EQ(model.position(), 0);
  for (int i = 0; i < 3; ++i) model.step(i);
  EXPECT_THAT([&] { model.step(0); }, ::testing::ThrowsMessage<Error>(HasSubstr("context")));
}

// A missing output.weight means the LM head is token_embd: same logits as a file that stores a copy.
TEST(ReferenceModel, TiedOutputEqualsAnExplicitCopy) {
  test::TinyLlama m({}, 11);
  m.add_bytes("output.weight", TensorType::F32, {32, 48}, m.bytes("token_embd.weight"));
  auto copied = m.open("copied-output.gguf");
  m.erase_tensor("output.weight");
  auto tied = m.open("tied-output.gguf");
  const std::vector<int32_t> tokens = {5, 6, 7};
  EXPECT_EQ(ReferenceModel(*tied).forward(tokens), ReferenceModel(*copied).forward(tokens));
}

// Llama 3's per-pair factors and linear scaling both divide the frequencies: factors all s == linear s.
TEST(ReferenceModel, RopeFreqFactorsActLikeLinearScaling) {
  test::TinyLlama m({}, 12);
  m.add_values("rope_freqs.weight", TensorType::F32, {4}, std::vector<float>(4, 3.0f));
  auto factors = m.open("rope-factors.gguf");
  m.erase_tensor("rope_freqs.weight");
  m.set_f32("llama.rope.scaling.factor", 3.0f);
  auto linear = m.open("rope-linear.gguf");
  m.erase_key("llama.rope.scaling.factor");
  auto plain = m.open("rope-plain.gguf");
  const std::vector<int32_t> tokens = {1, 2, 3, 4};
  const auto with_factors = ReferenceModel(*factors).forward(tokens);
  const auto with_linear = ReferenceModel(*linear).forward(tokens);
  for (size_t p = 0; p < tokens.size(); ++p) {
    EXPECT_LT(test::relative_error(std::vector<float>(with_factors[p].begin(), with_factors[p].end()),
                                   with_linear[p]),
              1e-6)
        << p;
  }
  EXPECT_NE(ReferenceModel(*plain).forward(tokens)[3], with_linear[3]);  // the scaling does something
}

// Grouped-query attention: query head h reads KV head h / (n_heads / n_kv_heads). A model with 2 KV heads
// must equal one with 4 whose K/V rows repeat each KV head for the two query heads that share it.
TEST(ReferenceModel, GroupedQueryAttentionEqualsRepeatedKvHeads) {
  test::TinyLlama gqa({.n_kv_heads = 2}, 13);
  test::TinyLlama mha({.n_kv_heads = 4}, 13);
  for (int l = 0; l < 2; ++l) {
    for (const char* w : {"attn_k.weight", "attn_v.weight"}) {
      const std::string name = "blk." + std::to_string(l) + "." + w;
      const std::vector<uint8_t>& kv = gqa.bytes(name);  // [32, 2 heads * 8] f32: 16 rows of 128 bytes
      std::vector<uint8_t> repeated;
      for (int kv_head = 0; kv_head < 2; ++kv_head) {
        const auto head = kv.begin() + kv_head * 8 * 128;
        for (int copy = 0; copy < 2; ++copy) repeated.insert(repeated.end(), head, head + 8 * 128);
      }
      mha.add_bytes(name, TensorType::F32, {32, 32}, repeated);
    }
    for (const char* w : {"attn_norm.weight", "attn_q.weight", "attn_output.weight", "ffn_norm.weight",
                          "ffn_gate.weight", "ffn_up.weight", "ffn_down.weight"}) {
      const std::string name = "blk." + std::to_string(l) + "." + w;
      std::vector<uint64_t> dims = {32, 32};
      if (std::string(w).find("norm") != std::string::npos) dims = {32};
      if (std::string(w).starts_with("ffn_gate") || std::string(w).starts_with("ffn_up")) dims = {32, 64};
      if (std::string(w).starts_with("ffn_down")) dims = {64, 32};
      mha.add_bytes(name, TensorType::F32, dims, gqa.bytes(name));
    }
  }
  for (const char* name : {"token_embd.weight", "output.weight"}) {
    mha.add_bytes(name, TensorType::F32, {32, 48}, gqa.bytes(name));
  }
  mha.add_bytes("output_norm.weight", TensorType::F32, {32}, gqa.bytes("output_norm.weight"));
  const std::vector<int32_t> tokens = {9, 8, 7, 6};
  const auto a = ReferenceModel(*gqa.open("gqa.gguf")).forward(tokens);
  const auto b = ReferenceModel(*mha.open("mha.gguf")).forward(tokens);
  for (size_t p = 0; p < tokens.size(); ++p) {
    EXPECT_LT(test::relative_error(std::vector<float>(a[p].begin(), a[p].end()), b[p]), 1e-6) << p;
  }
}

// Quantized weights are decoded by quant/'s reference: a Q8_0 model computes exactly what an f32 model
// holding the decoded values computes.
TEST(ReferenceModel, QuantizedWeightsEqualTheirDecodedF32) {
  for (TensorType type : {TensorType::Q8_0, TensorType::Q4_0, TensorType::F16, TensorType::BF16}) {
    SCOPED_TRACE(std::string(gguf::type_name(type)));
    test::TinyLlama q({.weight_type = type}, 14);
    test::TinyLlama f({.weight_type = TensorType::F32}, 14);
    auto qfile = q.open("quantized.gguf");
    for (const gguf::TensorInfo& t : qfile->tensors()) {
      std::vector<float> decoded(t.n_elements);
      quant::dequantize_row(t.type, qfile->tensor_bytes(t).data(), decoded.data(),
                            static_cast<int64_t>(t.n_elements));
      f.add_values(t.name, TensorType::F32, t.dims, decoded);
    }
    const std::vector<int32_t> tokens = {2, 4, 8};
    EXPECT_EQ(ReferenceModel(*qfile).forward(tokens),
              ReferenceModel(*f.open("decoded.gguf")).forward(tokens));
  }
}

}  // namespace
}  // namespace wgllm::cpu
