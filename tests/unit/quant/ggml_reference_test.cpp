// Bit-exactness against ggml itself: testdata/ggml-quants holds the output of llama.cpp's prebuilt ggml
// (quantize_row_*_ref on Gaussian, heavy-tailed and edge-case rows; dequantize_row_* on random blocks with
// extreme scales). See that folder's PROVENANCE.txt.
#include <gtest/gtest.h>

#include <bit>
#include <cstring>

#include "quant/codec.hpp"
#include "support/test_support.hpp"

namespace wgllm::quant {
namespace {

using gguf::TensorType;

template <class T>
std::vector<T> load(const std::string& name) {
  const std::string bytes = test::read_file(test::testdata_path("ggml-quants/" + name));
  std::vector<T> out(bytes.size() / sizeof(T));
  std::memcpy(out.data(), bytes.data(), out.size() * sizeof(T));
  return out;
}

const TensorType kQuantTypes[] = {TensorType::Q4_0, TensorType::Q4_1, TensorType::Q5_0, TensorType::Q5_1,
                                  TensorType::Q8_0, TensorType::Q2_K, TensorType::Q3_K, TensorType::Q4_K,
                                  TensorType::Q5_K, TensorType::Q6_K, TensorType::Q8_K};

// The first differing block, for a readable failure.
std::string first_difference(const std::vector<uint8_t>& got, const std::vector<uint8_t>& want,
                             uint32_t block) {
  for (size_t i = 0; i < std::min(got.size(), want.size()); ++i) {
    if (got[i] != want[i]) {
      return "first difference in block " + std::to_string(i / block) + " (input row " +
             std::to_string(i / block * 256 / block) + "), byte " + std::to_string(i % block);
    }
  }
  return "sizes differ: " + std::to_string(got.size()) + " vs " + std::to_string(want.size());
}

TEST(GgmlReference, QuantizersAreBitIdenticalToGgmlRef) {
  const std::vector<float> x = load<float>("inputs.f32");
  ASSERT_EQ(x.size() % 256, 0u);
  for (TensorType type : kQuantTypes) {
    const std::string name(gguf::type_name(type));
    SCOPED_TRACE(name);
    const std::vector<uint8_t> want = load<uint8_t>(name + ".quant");
    const std::vector<uint8_t> got = quantize_rows(type, x.data(), static_cast<int64_t>(x.size() / 256), 256);
    const uint32_t block = gguf::type_traits(static_cast<uint32_t>(type))->block_bytes;
    EXPECT_TRUE(got == want) << first_difference(got, want, block);
  }
}

TEST(GgmlReference, DecodersAreBitIdenticalToGgmlOnRandomBlocks) {
  for (TensorType type : kQuantTypes) {
    const std::string name(gguf::type_name(type));
    SCOPED_TRACE(name);
    const std::vector<uint8_t> blocks = load<uint8_t>(name + ".blocks");
    const std::vector<float> want = load<float>(name + ".blocks.f32");
    std::vector<float> got(want.size());
    dequantize_row(type, blocks.data(), got.data(), static_cast<int64_t>(got.size()));
    for (size_t i = 0; i < got.size(); ++i) {
      // Bits, not values: -0 and NaN payloads count too.
      ASSERT_EQ(std::bit_cast<uint32_t>(got[i]), std::bit_cast<uint32_t>(want[i]))
          << "element " << i << ": " << got[i] << " vs ggml's " << want[i];
    }
  }
}

}  // namespace
}  // namespace wgllm::quant
