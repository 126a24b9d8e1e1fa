// Block codecs against blocks built by hand from ggml's block definitions (ggml-common.h) and the rounding
// rules of quantize_row_*_ref (ggml-quants.c), and quantization error against bounds derived from the
// formats.
#include "quant/codec.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>
#include <random>

#include "core/error.hpp"
#include "support/test_support.hpp"

namespace wgllm::quant {
namespace {

using gguf::TensorType;
using ::testing::AllOf;
using ::testing::HasSubstr;

constexpr uint16_t kHalfOneHalf = 0x3800;       // +0.5 in binary16
constexpr uint16_t kHalfMinusOneHalf = 0xB800;  // -0.5

std::vector<float> decode(TensorType type, const std::vector<uint8_t>& bytes, int64_t n) {
  std::vector<float> out(static_cast<size_t>(n));
  dequantize_row(type, bytes.data(), out.data(), n);
  return out;
}

std::vector<float> gaussian(size_t n, uint64_t salt, float stddev = 1.0f) {
  auto gen = test::rng(salt);
  std::normal_distribution<float> dist(0.0f, stddev);
  std::vector<float> v(n);
  for (float& x : v) x = dist(gen);
  return v;
}

TEST(Q8_0, DecodesAHandBuiltBlock) {
  // d = 0.5, qs[j] = 8j - 128: int8 from -128 to 120.
  std::vector<uint8_t> block = {kHalfOneHalf & 0xFF, kHalfOneHalf >> 8};
  for (int j = 0; j < 32; ++j) block.push_back(static_cast<uint8_t>(static_cast<int8_t>(8 * j - 128)));
  ASSERT_EQ(block.size(), 34u);
  const std::vector<float> got = decode(TensorType::Q8_0, block, 32);
  for (int j = 0; j < 32; ++j) EXPECT_EQ(got[j], (8 * j - 128) * 0.5f) << j;
}

TEST(Q8_0, QuantizesAHandBuiltBlockRoundingHalfAwayFromZero) {
  // amax = 63.5 makes d = 63.5 / 127 = 0.5 exactly, so x / d = 2x with no rounding: x = 0.25 gives a tie
  // (0.5), which roundf takes away from zero.
  std::vector<float> x(32, 0.0f);
  const float values[] = {63.5f, -63.5f, 0.25f, -0.25f, 1.25f, -1.25f, 0.75f, 10.0f, -0.2f};
  const int8_t expected[] = {127, -127, 1, -1, 3, -3, 2, 20, 0};
  std::copy(std::begin(values), std::end(values), x.begin());
  const std::vector<uint8_t> bytes = quantize_rows(TensorType::Q8_0, x.data(), 1, 32);
  ASSERT_EQ(bytes.size(), 34u);
  EXPECT_EQ(bytes[0] | bytes[1] << 8, kHalfOneHalf);
  for (size_t j = 0; j < 32; ++j) {
    const int8_t want = j < std::size(expected) ? expected[j] : 0;
    EXPECT_EQ(static_cast<int8_t>(bytes[2 + j]), want) << j;
  }
}

TEST(Q4_0, DecodesAHandBuiltBlockLowNibblesFirst) {
  // Byte j holds element j (low nibble, q = j) and element j + 16 (high nibble, q = 15 - j).
  for (uint16_t d_bits : {kHalfOneHalf, kHalfMinusOneHalf}) {
    const float d = d_bits == kHalfOneHalf ? 0.5f : -0.5f;
    std::vector<uint8_t> block = {static_cast<uint8_t>(d_bits & 0xFF), static_cast<uint8_t>(d_bits >> 8)};
    for (int j = 0; j < 16; ++j) block.push_back(static_cast<uint8_t>(j | (15 - j) << 4));
    const std::vector<float> got = decode(TensorType::Q4_0, block, 32);
    for (int j = 0; j < 16; ++j) {
      EXPECT_EQ(got[j], (j - 8) * d) << j;
      EXPECT_EQ(got[j + 16], (15 - j - 8) * d) << j + 16;
    }
  }
}

TEST(Q4_0, QuantizesAHandBuiltBlock) {
  // x = (k - 8) * 0.5 for k = 0..15, twice: the largest magnitude is -4, so d = -4 / -8 = 0.5 and q = k.
  std::vector<float> x(32);
  for (int j = 0; j < 32; ++j) x[j] = (j % 16 - 8) * 0.5f;
  std::vector<uint8_t> bytes = quantize_rows(TensorType::Q4_0, x.data(), 1, 32);
  ASSERT_EQ(bytes.size(), 18u);
  EXPECT_EQ(bytes[0] | bytes[1] << 8, kHalfOneHalf);
  for (int j = 0; j < 16; ++j) EXPECT_EQ(bytes[2 + j], j | j << 4) << j;
  EXPECT_EQ(decode(TensorType::Q4_0, bytes, 32), x);
}

TEST(Q4_0, ScaleTakesTheSignOfTheFirstLargestElement) {
  // +4 first: d = 4 / -8 = -0.5. +4 -> q = -8 + 8.5 -> 0; -3.5 -> 7 + 8.5 -> 15; -4 (same magnitude,
  // later, so not the max) -> 8 + 8.5 = 16.5 -> clamped to 15, decoding to 7 * -0.5 = -3.5.
  std::vector<float> x(32, 0.0f);
  x[0] = 4.0f;
  x[1] = -3.5f;
  x[17] = -4.0f;
  x[2] = 0.3f;  // 0.3 / -0.5 = -0.6 -> 7.9 -> 7
  x[3] = 0.2f;  // -0.4 -> 8.1 -> 8
  std::vector<uint8_t> bytes = quantize_rows(TensorType::Q4_0, x.data(), 1, 32);
  EXPECT_EQ(bytes[0] | bytes[1] << 8, kHalfMinusOneHalf);
  EXPECT_EQ(bytes[2 + 0], 0x80);  // element 0: q 0; element 16 (zero): q 8
  EXPECT_EQ(bytes[2 + 1], 0xFF);  // element 1: q 15; element 17: clamped 15
  EXPECT_EQ(bytes[2 + 2], 0x87);
  EXPECT_EQ(bytes[2 + 3], 0x88);
  const std::vector<float> y = decode(TensorType::Q4_0, bytes, 32);
  EXPECT_EQ(y[0], 4.0f);
  EXPECT_EQ(y[1], -3.5f);
  EXPECT_EQ(y[17], -3.5f);
  EXPECT_EQ(y[2], 0.5f);
  EXPECT_EQ(y[3], 0.0f);
}

TEST(QuantizedFormats, ZeroBlocksEncodeAZeroScale) {
  const std::vector<float> x(64, 0.0f);
  const std::vector<uint8_t> q8 = quantize_rows(TensorType::Q8_0, x.data(), 2, 32);
  EXPECT_EQ(q8, std::vector<uint8_t>(68, 0));
  // Q4_0's d = max / -8 = 0 / -8 is -0 in float, stored as the half -0 (0x8000), as ggml stores it.
  const std::vector<uint8_t> q4 = quantize_rows(TensorType::Q4_0, x.data(), 2, 32);
  const uint8_t q4_block[18] = {0x00, 0x80, 0x88, 0x88, 0x88, 0x88, 0x88, 0x88, 0x88,
                                0x88, 0x88, 0x88, 0x88, 0x88, 0x88, 0x88, 0x88, 0x88};
  for (size_t i = 0; i < q4.size(); ++i) EXPECT_EQ(q4[i], q4_block[i % 18]) << i;
  EXPECT_EQ(decode(TensorType::Q4_0, q4, 64), x);
}

// |x - y| <= d/2 per element, widened by what the format adds: the stored scale is f16(d), not d (each
// of up to `qmax` steps is off by |f16(d) - d|), and x * (1/d) is a float product (a few ulps of qmax).
void expect_error_within_format_bounds(TensorType type, const std::vector<float>& x, int64_t row_len) {
  const int64_t rows = static_cast<int64_t>(x.size()) / row_len;
  const std::vector<uint8_t> bytes = quantize_rows(type, x.data(), rows, row_len);
  ASSERT_EQ(bytes.size(), rows * row_bytes(type, row_len));
  const std::vector<float> y = decode(type, bytes, static_cast<int64_t>(x.size()));
  for (size_t b = 0; b < x.size() / 32; ++b) {
    double amax = 0, max = 0;
    for (size_t j = b * 32; j < b * 32 + 32; ++j) {
      if (std::fabs(x[j]) > amax) {
        amax = std::fabs(x[j]);
        max = x[j];
      }
    }
    const bool q8 = type == TensorType::Q8_0;
    const double d = q8 ? amax / 127 : max / -8;
    const double d_stored = f16_to_f32(f32_to_f16(static_cast<float>(d)));
    const double qmax = q8 ? 127 : 8;
    const double slack = qmax * std::fabs(d_stored - d) + 1e-4 * std::fabs(d);
    for (size_t j = b * 32; j < b * 32 + 32; ++j) {
      // Q4_0 reaches only 7 steps on the side opposite `max`; beyond 7.5 steps an element is clamped.
      const bool clamped = !q8 && x[j] / d > 7.5;
      const double bound = (clamped ? std::fabs(d) : std::fabs(d) / 2) + slack;
      ASSERT_LE(std::fabs(static_cast<double>(y[j]) - x[j]), bound)
          << "element " << j << " x=" << x[j] << " y=" << y[j] << " d=" << d;
    }
  }
}

TEST(QuantizedFormats, GaussianErrorWithinFormatBounds) {
  SCOPED_TRACE(test::seed_note());
  for (TensorType type : {TensorType::Q8_0, TensorType::Q4_0}) {
    SCOPED_TRACE(std::string(gguf::type_name(type)));
    expect_error_within_format_bounds(type, gaussian(64 * 256, 2), 256);
    expect_error_within_format_bounds(type, gaussian(32 * 64, 3, 1e-3f), 64);
    expect_error_within_format_bounds(type, gaussian(32 * 64, 4, 300.0f), 32);
  }
}

TEST(PlainFormats, RowsRoundTripThroughBytes) {
  const std::vector<float> x = {1.0f, -2.5f, 65504.0f, 0.1f, std::ldexp(1.0f, -24), -0.0f};
  const std::vector<uint8_t> f32 = quantize_rows(TensorType::F32, x.data(), 2, 3);
  ASSERT_EQ(f32.size(), 24u);
  EXPECT_EQ(f32[0] | f32[1] << 8 | f32[2] << 16 | f32[3] << 24, 0x3F800000);  // little-endian 1.0f
  EXPECT_EQ(decode(TensorType::F32, f32, 6), x);

  const std::vector<uint8_t> f16 = quantize_rows(TensorType::F16, x.data(), 1, 6);
  ASSERT_EQ(f16.size(), 12u);
  EXPECT_EQ(f16[0] | f16[1] << 8, 0x3C00);
  const std::vector<float> y = decode(TensorType::F16, f16, 6);
  for (size_t i = 0; i < x.size(); ++i) EXPECT_EQ(y[i], f16_to_f32(f32_to_f16(x[i]))) << i;
  EXPECT_EQ(y[3], 0.0999755859375f);  // 0x2E66, the half nearest 0.1

  const std::vector<uint8_t> bf16 = quantize_rows(TensorType::BF16, x.data(), 3, 2);
  ASSERT_EQ(bf16.size(), 12u);
  EXPECT_EQ(bf16[2] | bf16[3] << 8, 0xC020);  // -2.5
  EXPECT_EQ(decode(TensorType::BF16, bf16, 6)[1], -2.5f);
}

TEST(Codec, RowBytesFollowsBlockGeometry) {
  EXPECT_EQ(row_bytes(TensorType::F32, 7), 28u);
  EXPECT_EQ(row_bytes(TensorType::F16, 7), 14u);
  EXPECT_EQ(row_bytes(TensorType::BF16, 7), 14u);
  EXPECT_EQ(row_bytes(TensorType::Q8_0, 96), 3u * 34);
  EXPECT_EQ(row_bytes(TensorType::Q4_0, 96), 3u * 18);
  EXPECT_EQ(row_bytes(TensorType::Q4_K, 512), 2u * 144);
  for (TensorType t :
       {TensorType::Q4_0, TensorType::Q4_1, TensorType::Q5_0, TensorType::Q5_1, TensorType::Q2_K,
        TensorType::Q3_K, TensorType::Q4_K, TensorType::Q5_K, TensorType::Q6_K, TensorType::Q8_K}) {
    EXPECT_TRUE(is_supported(t)) << gguf::type_name(t);
  }
  for (TensorType t : {TensorType::IQ2_XXS, TensorType::IQ4_NL, TensorType::IQ4_XS, TensorType::TQ1_0,
                       TensorType::TQ2_0, TensorType::MXFP4, TensorType::Q8_1, TensorType::I8}) {
    EXPECT_FALSE(is_supported(t)) << gguf::type_name(t);
  }
}

TEST(Codec, RejectsUnsupportedTypesAndPartialBlocks) {
  std::vector<uint8_t> bytes(1024);
  std::vector<float> out(256);
  try {
    dequantize_row(TensorType::IQ4_XS, bytes.data(), out.data(), 256);
    FAIL() << "expected an Error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::BadInput);
    EXPECT_THAT(e.what(), HasSubstr("iq4_xs"));
    EXPECT_THAT(e.what(), HasSubstr("q6_K"));  // lists what is supported
  }
  for (TensorType t : {TensorType::IQ2_XXS, TensorType::TQ2_0, TensorType::MXFP4}) {
    try {
      quantize_rows(t, out.data(), 1, 256, "tensor 'blk.3.ffn_up.weight'");
      FAIL() << "expected an Error";
    } catch (const Error& e) {
      EXPECT_THAT(e.what(), HasSubstr(std::string(gguf::type_name(t))));
      EXPECT_THAT(e.what(), HasSubstr("blk.3.ffn_up.weight"));
    }
  }
  try {
    dequantize_row(TensorType::Q8_0, bytes.data(), out.data(), 48);
    FAIL() << "expected an Error";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("48"));
    EXPECT_THAT(e.what(), HasSubstr("32"));
  }
  EXPECT_THROW(quantize_rows(TensorType::Q4_0, out.data(), 2, 40), Error);
  EXPECT_THROW(row_bytes(TensorType::F32, -1), Error);
}

TEST(Codec, QuantizingNonFiniteValuesIsAnError) {
  std::vector<float> x(64, 1.0f);
  x[40] = std::numeric_limits<float>::quiet_NaN();
  try {
    quantize_rows(TensorType::Q8_0, x.data(), 2, 32);
    FAIL() << "expected an Error";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("element 40"));
  }
  x[40] = std::numeric_limits<float>::infinity();
  EXPECT_THROW(quantize_rows(TensorType::Q4_0, x.data(), 2, 32), Error);
  EXPECT_NO_THROW(quantize_rows(TensorType::F16, x.data(), 2, 32));  // f16 has inf
}

// The chunked, threaded encoder behind `wgllm quantize` and `wgllm convert` writes what quantize_rows writes
// for the whole tensor at once, whatever the chunk size and thread count, and reports every element once.
TEST(Codec, ParallelQuantizingEqualsQuantizingTheWholeTensor) {
  constexpr int64_t kRows = 37, kRowLen = 256;
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(kRows * kRowLen));
  for (float& v : x) v = normal(rng);
  for (const TensorType type : {TensorType::Q4_0, TensorType::Q4_K, TensorType::Q6_K, TensorType::F16}) {
    const std::vector<uint8_t> whole = quantize_rows(type, x.data(), kRows, kRowLen);
    for (const int64_t chunk_elements : {1, 512, 2560, 1 << 20}) {
      for (const unsigned threads : {1u, 3u, 8u}) {
        std::atomic<uint64_t> reported{0};
        const std::vector<uint8_t> parallel = quantize_rows_parallel(
            type, kRows, kRowLen, chunk_elements, threads,
            [&](int64_t first, int64_t n, float* out) {
              std::copy_n(x.begin() + first * kRowLen, n * kRowLen, out);
            },
            [&](uint64_t elements) { reported += elements; });
        EXPECT_TRUE(parallel == whole) << gguf::type_name(type) << " chunk " << chunk_elements << " threads "
                                       << threads;
        EXPECT_EQ(reported.load(), static_cast<uint64_t>(kRows * kRowLen));
      }
    }
  }
}

// An error names the element and row as counted from the tensor's first row, not the chunk's; an error the
// source throws reaches the caller.
TEST(Codec, ParallelQuantizingNamesTheTensorsRowOfABadValue) {
  constexpr int64_t kRows = 100, kRowLen = 32;
  std::vector<float> x(static_cast<size_t>(kRows * kRowLen), 1.0f);
  x[57 * kRowLen + 5] = std::numeric_limits<float>::quiet_NaN();
  auto source = [&](int64_t first, int64_t n, float* out) {
    std::copy_n(x.begin() + first * kRowLen, n * kRowLen, out);
  };
  try {
    quantize_rows_parallel(TensorType::Q8_0, kRows, kRowLen, 8 * kRowLen, 3, source, nullptr, "tensor 't'");
    FAIL() << "expected an Error";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), AllOf(HasSubstr("tensor 't'"), HasSubstr("element 1829 (row 57)")));
  }
  auto failing = [](int64_t first, int64_t, float*) {
    if (first >= 40) fail_input("cannot read row " + std::to_string(first));
  };
  EXPECT_THROW(quantize_rows_parallel(TensorType::F16, kRows, kRowLen, kRowLen, 4, failing, nullptr), Error);
}

}  // namespace
}  // namespace wgllm::quant
