// f16/bf16 conversions against values derived from the IEEE 754 binary16 definition and bfloat16's
// (the top 16 bits of a binary32), never against our own output.
#include "quant/half.hpp"

#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <limits>

#include "support/test_support.hpp"

namespace wgllm::quant {
namespace {

// binary16 from its definition: (-1)^s * 2^(e-15) * (1 + m/1024), subnormals 2^-14 * m/1024.
double f16_by_definition(uint16_t h) {
  const int s = h >> 15, e = (h >> 10) & 0x1F, m = h & 0x3FF;
  const double mag = e == 0 ? std::ldexp(m, -24) : std::ldexp(1024 + m, e - 25);
  return s ? -mag : mag;
}

bool f16_is_nan(uint16_t h) {
  return (h & 0x7C00) == 0x7C00 && (h & 0x3FF) != 0;
}

TEST(Half, F16HandCheckedValues) {
  EXPECT_EQ(f16_to_f32(0x3C00), 1.0f);
  EXPECT_EQ(f16_to_f32(0xC000), -2.0f);
  EXPECT_EQ(f16_to_f32(0x7BFF), 65504.0f);
  EXPECT_EQ(f16_to_f32(0x0001), std::ldexp(1.0f, -24));     // smallest subnormal
  EXPECT_EQ(f16_to_f32(0x03FF), std::ldexp(1023.0f, -24));  // largest subnormal
  EXPECT_EQ(f16_to_f32(0x0400), std::ldexp(1.0f, -14));     // smallest normal
  EXPECT_EQ(f16_to_f32(0x3555), 0.333251953125f);
  EXPECT_EQ(f16_to_f32(0x3BFF), 1.0f - std::ldexp(1.0f, -11));
  EXPECT_EQ(f16_to_f32(0x7C00), std::numeric_limits<float>::infinity());
  EXPECT_EQ(f16_to_f32(0xFC00), -std::numeric_limits<float>::infinity());
  EXPECT_TRUE(std::isnan(f16_to_f32(0x7E00)));
  EXPECT_TRUE(std::isnan(f16_to_f32(0xFC01)));
  const float neg_zero = f16_to_f32(0x8000);
  EXPECT_EQ(neg_zero, 0.0f);
  EXPECT_TRUE(std::signbit(neg_zero));

  EXPECT_EQ(f32_to_f16(1.0f), 0x3C00);
  EXPECT_EQ(f32_to_f16(-2.0f), 0xC000);
  EXPECT_EQ(f32_to_f16(65504.0f), 0x7BFF);
  EXPECT_EQ(f32_to_f16(-0.0f), 0x8000);
  EXPECT_EQ(f32_to_f16(std::numeric_limits<float>::infinity()), 0x7C00);
  EXPECT_EQ(f32_to_f16(-std::numeric_limits<float>::infinity()), 0xFC00);
  EXPECT_TRUE(f16_is_nan(f32_to_f16(std::numeric_limits<float>::quiet_NaN())));
  EXPECT_TRUE(f16_is_nan(f32_to_f16(std::bit_cast<float>(0x7F800001u))));  // signalling NaN stays NaN
}

TEST(Half, F16RoundsToNearestEven) {
  const float ulp1 = std::ldexp(1.0f, -10);                                // spacing of halves in [1, 2)
  EXPECT_EQ(f32_to_f16(1.0f + ulp1 / 2), 0x3C00);                          // tie -> even (down)
  EXPECT_EQ(f32_to_f16(1.0f + 3 * ulp1 / 2), 0x3C02);                      // tie -> even (up)
  EXPECT_EQ(f32_to_f16(1.0f + ulp1 / 2 + std::ldexp(1.0f, -20)), 0x3C01);  // just above the tie
  EXPECT_EQ(f32_to_f16(65519.0f), 0x7BFF);
  EXPECT_EQ(f32_to_f16(65520.0f), 0x7C00);  // tie between 65504 and 2^16 -> even -> overflow
  EXPECT_EQ(f32_to_f16(-1e6f), 0xFC00);
  // Subnormal results: units of 2^-24.
  EXPECT_EQ(f32_to_f16(std::ldexp(1.0f, -24)), 0x0001);
  EXPECT_EQ(f32_to_f16(std::ldexp(1.0f, -25)), 0x0000);  // tie between 0 and 1 unit -> 0
  EXPECT_EQ(f32_to_f16(std::nextafter(std::ldexp(1.0f, -25), 1.0f)), 0x0001);
  EXPECT_EQ(f32_to_f16(std::ldexp(3.0f, -25)), 0x0002);   // 1.5 units -> 2
  EXPECT_EQ(f32_to_f16(std::ldexp(5.0f, -25)), 0x0002);   // 2.5 units -> 2
  EXPECT_EQ(f32_to_f16(-std::ldexp(7.0f, -25)), 0x8004);  // 3.5 units -> 4
  EXPECT_EQ(f32_to_f16(std::ldexp(2047.0f, -25)),
            0x0400);  // 1023.5 units -> carries into the smallest normal
  EXPECT_EQ(f32_to_f16(std::numeric_limits<float>::denorm_min()), 0x0000);
  EXPECT_EQ(f32_to_f16(-std::numeric_limits<float>::denorm_min()), 0x8000);
}

TEST(Half, EveryF16PatternMatchesTheDefinitionAndRoundTrips) {
  for (uint32_t h = 0; h <= 0xFFFF; ++h) {
    const uint16_t bits = static_cast<uint16_t>(h);
    const float f = f16_to_f32(bits);
    if (f16_is_nan(bits)) {
      EXPECT_TRUE(std::isnan(f)) << std::hex << h;
      continue;
    }
    if ((bits & 0x7FFF) == 0x7C00) {
      EXPECT_TRUE(std::isinf(f)) << std::hex << h;
    } else {
      EXPECT_EQ(static_cast<double>(f), f16_by_definition(bits)) << std::hex << h;
    }
    EXPECT_EQ(std::signbit(f), (bits & 0x8000) != 0) << std::hex << h;
    ASSERT_EQ(f32_to_f16(f), bits) << std::hex << h;
  }
}

// Random floats across the half range: the result must be the nearest half by the definition, ties to
// the even pattern.
TEST(Half, F16RandomFloatsRoundToTheNearestHalf) {
  SCOPED_TRACE(test::seed_note());
  auto gen = test::rng(1);
  std::uniform_int_distribution<uint32_t> exp_dist(127 - 26, 127 + 15);
  std::uniform_int_distribution<uint32_t> mant_dist(0, 0x7FFFFF);
  for (int i = 0; i < 200000; ++i) {
    const uint32_t bits = (gen() & 1) << 31 | exp_dist(gen) << 23 | mant_dist(gen);
    const float f = std::bit_cast<float>(bits);
    const uint16_t h = f32_to_f16(f);
    const double x = std::fabs(static_cast<double>(f));
    const uint16_t mag = h & 0x7FFF;
    ASSERT_EQ((h & 0x8000) != 0, std::signbit(f)) << f;
    if (mag == 0x7C00) {  // overflow: only from 65520 up
      ASSERT_GE(x, 65520.0) << f;
      continue;
    }
    const double err = std::fabs(f16_by_definition(mag) - x);
    if (mag > 0) {
      ASSERT_LE(err, std::fabs(f16_by_definition(mag - 1) - x)) << f;
    }
    const double err_up = mag < 0x7BFF ? std::fabs(f16_by_definition(mag + 1) - x) : INFINITY;
    ASSERT_LE(err, err_up) << f;
    if (err == err_up || (mag > 0 && err == std::fabs(f16_by_definition(mag - 1) - x))) {
      ASSERT_EQ(mag & 1, 0) << "tie not to even: " << f;
    }
#ifdef __FLT16_MAX__
    // The compiler's own conversion is another implementation of the same rounding.
    ASSERT_EQ(std::bit_cast<uint16_t>(static_cast<_Float16>(f)), h) << f;
#endif
  }
}

TEST(Half, Bf16HandCheckedValues) {
  EXPECT_EQ(bf16_to_f32(0x3F80), 1.0f);
  EXPECT_EQ(bf16_to_f32(0xC000), -2.0f);
  EXPECT_EQ(bf16_to_f32(0x0001), std::ldexp(1.0f, -133));  // subnormal, kept
  EXPECT_EQ(bf16_to_f32(0x7F80), std::numeric_limits<float>::infinity());
  EXPECT_EQ(f32_to_bf16(1.0f), 0x3F80);
  EXPECT_EQ(f32_to_bf16(std::bit_cast<float>(0x3F808000u)), 0x3F80);  // tie -> even
  EXPECT_EQ(f32_to_bf16(std::bit_cast<float>(0x3F818000u)), 0x3F82);  // tie -> even
  EXPECT_EQ(f32_to_bf16(std::bit_cast<float>(0x3F808001u)), 0x3F81);
  EXPECT_EQ(f32_to_bf16(std::bit_cast<float>(0x0000C000u)), 0x0001);  // subnormal rounds, not flushed
  EXPECT_EQ(f32_to_bf16(std::numeric_limits<float>::max()), 0x7F80);  // overflow -> inf
  EXPECT_EQ(f32_to_bf16(-0.0f), 0x8000);
  EXPECT_EQ(f32_to_bf16(std::bit_cast<float>(0x7F800001u)), 0x7FC0);  // NaN made quiet
}

TEST(Half, EveryBf16PatternRoundTrips) {
  for (uint32_t h = 0; h <= 0xFFFF; ++h) {
    const uint16_t bits = static_cast<uint16_t>(h);
    const float f = bf16_to_f32(bits);
    EXPECT_EQ(std::bit_cast<uint32_t>(f), h << 16);
    if (std::isnan(f)) continue;
    ASSERT_EQ(f32_to_bf16(f), bits) << std::hex << h;
  }
}

}  // namespace
}  // namespace wgllm::quant
