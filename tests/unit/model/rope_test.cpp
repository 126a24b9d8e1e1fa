// rope_inv_freq against the RoPE definition evaluated independently here: theta_i = base^(-2i/d), as
// exp(-2i/d * ln base) in long double, divided by the Llama 3 frequency factor and the linear factor.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>

#include "core/error.hpp"
#include "model/llama.hpp"

namespace wgllm::model {
namespace {

LlamaConfig rope_config(uint32_t rope_dim, float base, float scale) {
  LlamaConfig c;
  c.head_dim = 128;
  c.rope_dim = rope_dim;
  c.rope_freq_base = base;
  c.rope_scale = scale;
  c.rope_scaling = scale == 1.0f ? RopeScaling::None : RopeScaling::Linear;
  return c;
}

void expect_inv_freq(const LlamaConfig& c, const std::vector<float>& factors) {
  const std::vector<float> got = rope_inv_freq(c, factors);
  ASSERT_EQ(got.size(), c.rope_dim / 2);
  for (uint32_t i = 0; i < c.rope_dim / 2; ++i) {
    const long double want =
        std::exp(-2.0L * i / c.rope_dim * std::log(static_cast<long double>(c.rope_freq_base))) /
        (factors.empty() ? 1.0L : factors[i]) / c.rope_scale;
    EXPECT_NEAR(got[i], static_cast<double>(want), 1e-7 * static_cast<double>(want)) << "pair " << i;
  }
}

TEST(RopeInvFreq, PlainLlama) {
  const LlamaConfig c = rope_config(8, 10000.0f, 1.0f);
  const std::vector<float> f = rope_inv_freq(c, {});
  // Hand-checked: 10000^0 = 1, 10000^(-1/4) = 0.1, 10000^(-1/2) = 0.01, 10000^(-3/4) = 0.001.
  EXPECT_FLOAT_EQ(f[0], 1.0f);
  EXPECT_FLOAT_EQ(f[1], 0.1f);
  EXPECT_FLOAT_EQ(f[2], 0.01f);
  EXPECT_FLOAT_EQ(f[3], 0.001f);
  expect_inv_freq(rope_config(128, 10000.0f, 1.0f), {});
  expect_inv_freq(rope_config(64, 500000.0f, 1.0f), {});
}

TEST(RopeInvFreq, LinearScalingDividesByTheFactor) {
  expect_inv_freq(rope_config(128, 10000.0f, 4.0f), {});
  // Positions divided by s: angle p / s * theta_i == p * (theta_i / s).
  const std::vector<float> plain = rope_inv_freq(rope_config(16, 10000.0f, 1.0f), {});
  const std::vector<float> scaled = rope_inv_freq(rope_config(16, 10000.0f, 2.0f), {});
  for (size_t i = 0; i < plain.size(); ++i) EXPECT_FLOAT_EQ(scaled[i], plain[i] / 2) << i;
}

TEST(RopeInvFreq, FrequencyFactorsDividePerPair) {
  std::vector<float> factors(64);
  for (size_t i = 0; i < factors.size(); ++i) factors[i] = 1.0f + 7.0f * static_cast<float>(i) / 63.0f;
  expect_inv_freq(rope_config(128, 500000.0f, 1.0f), factors);
  expect_inv_freq(rope_config(128, 500000.0f, 8.0f), factors);
}

TEST(RopeInvFreq, RejectsAMismatchedFactorCount) {
  EXPECT_THROW(rope_inv_freq(rope_config(8, 10000.0f, 1.0f), std::vector<float>(3, 1.0f)), Error);
}

}  // namespace
}  // namespace wgllm::model
