// Internal to quant/: the block codecs of ggml's quantized types and the field access they share.
// codec.cpp dispatches to them; kquants.cpp holds the super-block (QK_K = 256) formats.
//
// Every decoder evaluates ggml's dequantize_row_* expression for each element in ggml's operation order,
// and every encoder follows ggml's quantize_row_*_ref step by step, so that results are bit-identical to
// ggml's portable C code (built without FMA contraction, as this project is: see docs/quantization.md).
#pragma once

#include <bit>
#include <cstdint>

#include "quant/half.hpp"

namespace wgllm::quant::blocks {

// GGUF is little-endian; reading bytes keeps the codecs independent of the host's byte order and alignment.
inline uint16_t load_u16(const uint8_t* p) {
  return static_cast<uint16_t>(p[0] | p[1] << 8);
}
inline void store_u16(uint8_t* p, uint16_t v) {
  p[0] = static_cast<uint8_t>(v);
  p[1] = static_cast<uint8_t>(v >> 8);
}
inline float load_f16(const uint8_t* p) {
  return f16_to_f32(load_u16(p));
}
inline void store_f16(uint8_t* p, float v) {
  store_u16(p, f32_to_f16(v));
}
inline uint32_t load_u32(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) | static_cast<uint32_t>(p[1]) << 8 | static_cast<uint32_t>(p[2]) << 16 |
         static_cast<uint32_t>(p[3]) << 24;
}
inline void store_u32(uint8_t* p, uint32_t v) {
  store_u16(p, static_cast<uint16_t>(v));
  store_u16(p + 2, static_cast<uint16_t>(v >> 16));
}
inline float load_f32(const uint8_t* p) {
  return std::bit_cast<float>(load_u32(p));
}
inline void store_f32(uint8_t* p, float v) {
  store_u32(p, std::bit_cast<uint32_t>(v));
}

// ggml's nearest_int: adding 1.5 * 2^23 leaves v rounded to nearest (ties to even) in the low mantissa
// bits. Exact for |v| < 2^22; beyond that (or for inf/NaN, which the quantizers can produce from
// degenerate blocks) it yields the same wrapped value as ggml, which the callers then clamp.
inline int nearest_int(float v) {
  const int32_t bits = std::bit_cast<int32_t>(v + 12582912.0f);
  return (bits & 0x007FFFFF) - 0x00400000;
}

// ggml's GROUP_MAX_EPS: a (sub-)block whose largest magnitude is below it quantizes as all zero.
constexpr float kGroupMaxEps = 1e-15f;

constexpr int kQK_K = 256;  // elements of a K-quant super-block

// Super-block codecs: decode a block to its 256 elements, encode 256 elements into a block.
void decode_q2_K(const uint8_t* block, float* out);
void encode_q2_K(const float* in, uint8_t* block);
void decode_q3_K(const uint8_t* block, float* out);
void encode_q3_K(const float* in, uint8_t* block);
void decode_q4_K(const uint8_t* block, float* out);
void encode_q4_K(const float* in, uint8_t* block);
void decode_q5_K(const uint8_t* block, float* out);
void encode_q5_K(const float* in, uint8_t* block);
void decode_q6_K(const uint8_t* block, float* out);
void encode_q6_K(const float* in, uint8_t* block);
void decode_q8_K(const uint8_t* block, float* out);
void encode_q8_K(const float* in, uint8_t* block);

}  // namespace wgllm::quant::blocks
