#include "quant/codec.hpp"

#include <algorithm>
#include <bit>
#include <cmath>

#include "core/error.hpp"

namespace wgllm::quant {

namespace {

using gguf::TensorType;

// GGUF is little-endian; reading bytes keeps the codecs independent of the host's byte order and alignment.
uint16_t load_u16(const uint8_t* p) {
  return static_cast<uint16_t>(p[0] | p[1] << 8);
}
void store_u16(uint8_t* p, uint16_t v) {
  p[0] = static_cast<uint8_t>(v);
  p[1] = static_cast<uint8_t>(v >> 8);
}

// One block: `decode` writes the block's elements, `encode` reads them (block geometry from type_traits).
// Scaled formats derive their scale from the block's values, so they need finite input.
struct Codec {
  TensorType type;
  void (*decode)(const uint8_t* block, float* out);
  void (*encode)(const float* in, uint8_t* block);
  bool needs_finite;
};

void decode_f32(const uint8_t* b, float* out) {
  *out = std::bit_cast<float>(static_cast<uint32_t>(b[0] | b[1] << 8 | b[2] << 16) |
                              static_cast<uint32_t>(b[3]) << 24);
}
void encode_f32(const float* in, uint8_t* b) {
  const uint32_t u = std::bit_cast<uint32_t>(*in);
  store_u16(b, static_cast<uint16_t>(u));
  store_u16(b + 2, static_cast<uint16_t>(u >> 16));
}

void decode_f16(const uint8_t* b, float* out) {
  *out = f16_to_f32(load_u16(b));
}
void encode_f16(const float* in, uint8_t* b) {
  store_u16(b, f32_to_f16(*in));
}

void decode_bf16(const uint8_t* b, float* out) {
  *out = bf16_to_f32(load_u16(b));
}
void encode_bf16(const float* in, uint8_t* b) {
  store_u16(b, f32_to_bf16(*in));
}

// block_q8_0 { ggml_half d; int8_t qs[32]; }: x[j] = qs[j] * d.
constexpr int kQK8_0 = 32;

void decode_q8_0(const uint8_t* b, float* out) {
  const float d = f16_to_f32(load_u16(b));
  for (int j = 0; j < kQK8_0; ++j) out[j] = static_cast<float>(static_cast<int8_t>(b[2 + j])) * d;
}

// quantize_row_q8_0_ref: d = amax / 127, q = roundf(x / d) (ties away from zero), with x / d computed as
// x * (1 / d) in float like ggml, so the bytes match llama.cpp's.
void encode_q8_0(const float* x, uint8_t* b) {
  float amax = 0.0f;
  for (int j = 0; j < kQK8_0; ++j) amax = std::max(amax, std::fabs(x[j]));
  const float d = amax / 127;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  store_u16(b, f32_to_f16(d));
  for (int j = 0; j < kQK8_0; ++j) {
    const float q = x[j] * id;
    b[2 + j] = static_cast<uint8_t>(static_cast<int8_t>(std::round(q)));
  }
}

// block_q4_0 { ggml_half d; uint8_t qs[16]; }: byte j holds element j in its low nibble and element j + 16
// in its high nibble; x = (q - 8) * d.
constexpr int kQK4_0 = 32;

void decode_q4_0(const uint8_t* b, float* out) {
  const float d = f16_to_f32(load_u16(b));
  for (int j = 0; j < kQK4_0 / 2; ++j) {
    out[j] = static_cast<float>((b[2 + j] & 0x0F) - 8) * d;
    out[j + kQK4_0 / 2] = static_cast<float>((b[2 + j] >> 4) - 8) * d;
  }
}

// quantize_row_q4_0_ref: d = max / -8 where max is the (first) element of largest magnitude, sign kept, so
// that element maps exactly to q = 0 and the range [-8, 7] is used asymmetrically in its favour. Elements
// of the opposite sign beyond 7|d| clamp to 15. Truncating x / d + 8.5 rounds half up; the operand is
// always >= 0.5, so truncation is floor.
void encode_q4_0(const float* x, uint8_t* b) {
  float amax = 0.0f;
  float max = 0.0f;
  for (int j = 0; j < kQK4_0; ++j) {
    if (amax < std::fabs(x[j])) {
      amax = std::fabs(x[j]);
      max = x[j];
    }
  }
  const float d = max / -8;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  store_u16(b, f32_to_f16(d));
  auto nibble = [id](float v) {
    const float shifted = v * id + 8.5f;
    return static_cast<uint8_t>(std::min(15, static_cast<int>(shifted)));
  };
  for (int j = 0; j < kQK4_0 / 2; ++j) {
    b[2 + j] = static_cast<uint8_t>(nibble(x[j]) | nibble(x[j + kQK4_0 / 2]) << 4);
  }
}

constexpr Codec kCodecs[] = {
    {TensorType::F32, decode_f32, encode_f32, false},    {TensorType::F16, decode_f16, encode_f16, false},
    {TensorType::BF16, decode_bf16, encode_bf16, false}, {TensorType::Q8_0, decode_q8_0, encode_q8_0, true},
    {TensorType::Q4_0, decode_q4_0, encode_q4_0, true},
};

const Codec* find_codec(TensorType type) {
  for (const Codec& c : kCodecs) {
    if (c.type == type) return &c;
  }
  return nullptr;
}

std::string describe(TensorType type) {
  return std::string(gguf::type_name(type)) + " (type " + std::to_string(static_cast<uint32_t>(type)) + ")";
}

// The codec of `type` and its block geometry, after checking that `n` elements are whole blocks.
struct Plan {
  const Codec* codec;
  gguf::TypeTraits traits;
  int64_t blocks;
};

Plan plan(const char* op, TensorType type, int64_t n) {
  const Codec* codec = find_codec(type);
  if (!codec) {
    fail_input(std::string(op) + ": tensor type " + describe(type) +
               " is not supported (supported: " + supported_type_names() + ")");
  }
  const gguf::TypeTraits traits = *gguf::type_traits(static_cast<uint32_t>(type));
  if (n < 0 || n % traits.block_elements != 0) {
    fail_input(std::string(op) + ": " + std::to_string(n) + " elements of " + describe(type) +
               " is not a whole number of " + std::to_string(traits.block_elements) + "-element blocks");
  }
  return {codec, traits, n / traits.block_elements};
}

}  // namespace

bool is_supported(TensorType type) {
  return find_codec(type) != nullptr;
}

std::string supported_type_names() {
  std::string names;
  for (const Codec& c : kCodecs) {
    if (!names.empty()) names += ", ";
    names += gguf::type_name(c.type);
  }
  return names;
}

uint64_t row_bytes(TensorType type, int64_t n) {
  const Plan p = plan("row_bytes", type, n);
  return static_cast<uint64_t>(p.blocks) * p.traits.block_bytes;
}

void dequantize_row(TensorType type, const uint8_t* src, float* dst, int64_t n) {
  const Plan p = plan("dequantize_row", type, n);
  for (int64_t i = 0; i < p.blocks; ++i) {
    p.codec->decode(src + i * p.traits.block_bytes, dst + i * p.traits.block_elements);
  }
}

std::vector<uint8_t> quantize_rows(TensorType type, const float* src, int64_t rows, int64_t row_len) {
  const Plan p = plan("quantize_rows", type, row_len);
  if (rows < 0) fail_input("quantize_rows: negative row count " + std::to_string(rows));
  const int64_t blocks = rows * p.blocks;
  if (p.codec->needs_finite) {
    const int64_t n = rows * row_len;
    for (int64_t i = 0; i < n; ++i) {
      if (!std::isfinite(src[i])) {
        fail_input("quantize_rows: element " + std::to_string(i) + " (row " + std::to_string(i / row_len) +
                   ") is " + std::to_string(src[i]) + "; " + describe(type) + " needs finite values");
      }
    }
  }
  std::vector<uint8_t> out(static_cast<size_t>(blocks) * p.traits.block_bytes);
  // Rows are whole blocks, so all rows together are one run of blocks.
  for (int64_t i = 0; i < blocks; ++i) {
    p.codec->encode(src + i * p.traits.block_elements, out.data() + i * p.traits.block_bytes);
  }
  return out;
}

}  // namespace wgllm::quant
