// Weight matrices for the kernel tests that read them (matvec, matmul): random weights quantized by
// quant::quantize_rows or random blocks with extreme scales, repacked by quant::repack and uploaded, beside
// the CPU reference's dequantization (quant::dequantize_row).
#pragma once

#include <cctype>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "kernel_harness.hpp"
#include "quant/codec.hpp"
#include "quant/gpu_layout.hpp"

namespace wgllm::kernels_test {

using gguf::TensorType;

inline const TensorType kQuantTypes[] = {
    TensorType::Q8_0, TensorType::Q4_0, TensorType::Q4_1, TensorType::Q5_0, TensorType::Q5_1,
    TensorType::Q2_K, TensorType::Q3_K, TensorType::Q4_K, TensorType::Q5_K, TensorType::Q6_K};

inline std::string name_of(TensorType type) {
  return std::string(gguf::type_name(type));
}

// The weight-type defines of matvec.wgsl (its header comment).
inline gpu::KernelDefines type_defines(TensorType type) {
  switch (type) {
    case TensorType::F32:
      return {{"WTYPE_F32", "1"}};
    case TensorType::F16:
      return {{"WTYPE_F16", "1"}, {"HALVES", "1"}};
    case TensorType::BF16:
      return {{"WTYPE_BF16", "1"}, {"HALVES", "1"}};
    default: {
      std::string name = name_of(type);
      for (char& c : name) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
      return {{"WTYPE_" + name, "1"}, {"QUANT", "1"}};
    }
  }
}

inline uint32_t block_elements(TensorType type) {
  return gguf::type_traits(static_cast<uint32_t>(type))->block_elements;
}

struct Matrix {
  TensorType type;
  uint32_t rows = 0, cols = 0;
  std::vector<float> w;  // [rows * cols]: the CPU reference's dequantization
  gpu::Buffer quants, scales;
};

inline Matrix upload_matrix(TensorType type, uint32_t rows, uint32_t cols,
                            const std::vector<uint8_t>& gguf_bytes) {
  Matrix m{type, rows, cols, std::vector<float>(size_t(rows) * cols), {}, {}};
  const uint64_t row_bytes = quant::row_bytes(type, cols);
  for (uint32_t r = 0; r < rows; ++r)
    quant::dequantize_row(type, gguf_bytes.data() + r * row_bytes, m.w.data() + size_t(r) * cols, cols);
  quant::GpuLayout packed = quant::repack(type, gguf_bytes.data(), rows, cols);
  m.quants = upload(packed.quants, "weights");
  if (!packed.scales.empty()) m.scales = upload(packed.scales, "scales");
  return m;
}

// Random N(0, 1) weights, quantized; rows 1, 4, 7, ... are tiny, so that F16 values and the f16 block scales
// are f16 subnormals (and F32/BF16 values f32 subnormals): dequantization must keep them, not flush them.
inline Matrix make_matrix(TensorType type, uint32_t rows, uint32_t cols, std::mt19937_64& rng) {
  std::normal_distribution<float> dist(0.f, 1.f);
  const float tiny = type == TensorType::F32 || type == TensorType::BF16 ? 1e-39f : 1e-4f;
  std::vector<float> src(size_t(rows) * cols);  // [rows, cols]
  for (uint32_t r = 0; r < rows; ++r)
    for (uint32_t c = 0; c < cols; ++c) src[size_t(r) * cols + c] = dist(rng) * (r % 3 == 1 ? tiny : 1.f);
  return upload_matrix(type, rows, cols, quant::quantize_rows(type, src.data(), rows, cols));
}

// Byte offsets of the f16 fields (scales, mins) in a block (ggml-common.h).
inline std::vector<uint32_t> half_fields(TensorType type) {
  switch (type) {
    case TensorType::Q4_1:
    case TensorType::Q5_1:
    case TensorType::Q4_K:
    case TensorType::Q5_K:
      return {0, 2};
    case TensorType::Q2_K:
      return {80, 82};
    case TensorType::Q3_K:
      return {108};
    case TensorType::Q6_K:
      return {208};
    default:
      return {0};
  }
}

// Random quantized blocks: random codes and packed sub-block scales, and random finite f16 scales and mins
// of either sign from subnormal to 65504; every fourth block has the extremes of ggml's reference blocks
// (+-65504, the smallest subnormal, -0).
inline Matrix make_random_blocks(TensorType type, uint32_t rows, uint32_t cols, std::mt19937_64& rng) {
  const auto traits = *gguf::type_traits(static_cast<uint32_t>(type));
  std::vector<uint8_t> bytes(quant::row_bytes(type, cols) * rows);
  for (uint8_t& b : bytes) b = static_cast<uint8_t>(rng());
  const uint16_t extremes[] = {0x7BFF, 0xFBFF, 0x0001, 0x8000};
  for (size_t b = 0; b < bytes.size() / traits.block_bytes; ++b) {
    for (uint32_t off : half_fields(type)) {
      uint16_t h = static_cast<uint16_t>(rng());
      if ((h & 0x7C00) == 0x7C00) h ^= 0x4000;  // inf/NaN exponent -> a finite one
      if (b % 4 == 3) h = extremes[(b / 4 + off) % 4];
      std::memcpy(bytes.data() + b * traits.block_bytes + off, &h, 2);
    }
  }
  return upload_matrix(type, rows, cols, bytes);
}

enum class Weights { Quantized, RandomBlocks };

inline Matrix make_weights(Weights weights, TensorType type, uint32_t rows, uint32_t cols,
                           std::mt19937_64& rng) {
  return weights == Weights::Quantized ? make_matrix(type, rows, cols, rng)
                                       : make_random_blocks(type, rows, cols, rng);
}

inline std::string name_of(Weights weights) {
  return weights == Weights::Quantized ? "quantized N(0, 1) weights" : "random blocks";
}

inline std::vector<gpu::BufferSlice> weight_slices(const Matrix& m) {
  std::vector<gpu::BufferSlice> s = {{m.quants}};
  if (m.scales) s.push_back({m.scales});
  return s;
}

}  // namespace wgllm::kernels_test
