// The block formats as ggml-common.h defines them, element by element: for element e of a block, the grid
// of values its block can give it (value(q) = a * q + c for integer q in [qlo, qhi]) and the q it holds.
// Written independently of src/quant (per-element bit positions instead of loops over packed bytes), for
// tests that decode by the definition and for error bounds that need each element's grid.
#pragma once

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "gguf/tensor_type.hpp"
#include "quant/half.hpp"

namespace wgllm::quant::spec {

struct Grid {
  float a = 0;          // step between adjacent values
  float c = 0;          // offset (affine formats only)
  bool affine = false;  // value = a * q + c; otherwise a * q with q signed
  int q = 0;            // the element's own quant
  int qlo = 0, qhi = 0;
  // In ggml's evaluation order, so the result is bit-identical to dequantize_row_*.
  float value(int qq) const { return affine ? a * static_cast<float>(qq) + c : a * static_cast<float>(qq); }
  float value() const { return value(q); }
  float lo() const { return a >= 0 ? value(qlo) : value(qhi); }
  float hi() const { return a >= 0 ? value(qhi) : value(qlo); }
};

inline float half_at(const uint8_t* b) {
  return f16_to_f32(static_cast<uint16_t>(b[0] | b[1] << 8));
}
inline int bit(const uint8_t* bytes, int byte, int bit_index) {
  return (bytes[byte] >> bit_index) & 1;
}
// Element e of a 32-element nibble array: byte e % 16, low nibble for e < 16.
inline int nibble32(const uint8_t* qs, int e) {
  return e < 16 ? qs[e] & 0xF : qs[e - 16] >> 4;
}
// Element e of a K-quant 2-bit array: byte 32 * (e / 128) + e % 32, bits 2 * ((e % 128) / 32).
inline int crumb256(const uint8_t* qs, int e) {
  return (qs[32 * (e / 128) + e % 32] >> (2 * ((e % 128) / 32))) & 3;
}
// Element e of a K-quant nibble array: byte 32 * (e / 64) + e % 32, high nibble when e % 64 >= 32.
inline int nibble256(const uint8_t* qs, int e) {
  return (qs[32 * (e / 64) + e % 32] >> ((e % 64) >= 32 ? 4 : 0)) & 0xF;
}

// q4_K/q5_K: the 6-bit scale (which = 0) or min (which = 1) of 32-element sub-block j, from scales[12].
inline int k4_six_bit(const uint8_t* s, int j, int which) {
  if (j < 4) return s[j + 4 * which] & 63;
  const int low = which == 0 ? s[j + 4] & 0xF : s[j + 4] >> 4;
  const int high = s[j - 4 + 4 * which] >> 6;
  return low | high << 4;
}

inline Grid grid(gguf::TensorType type, const uint8_t* b, int e) {
  using T = gguf::TensorType;
  Grid g;
  switch (type) {
    case T::Q8_0:  // { f16 d; int8 qs[32] }
      g = {half_at(b), 0, false, static_cast<int8_t>(b[2 + e]), -128, 127};
      break;
    case T::Q4_0:  // { f16 d; u8 qs[16] }: (q - 8) d
      g = {half_at(b), 0, false, nibble32(b + 2, e) - 8, -8, 7};
      break;
    case T::Q4_1:  // { f16 d; f16 m; u8 qs[16] }: q d + m
      g = {half_at(b), half_at(b + 2), true, nibble32(b + 4, e), 0, 15};
      break;
    case T::Q5_0:  // { f16 d; u8 qh[4]; u8 qs[16] }: (q - 16) d, fifth bit = bit e of qh
      g = {half_at(b), 0, false, (nibble32(b + 6, e) | bit(b + 2, e / 8, e % 8) << 4) - 16, -16, 15};
      break;
    case T::Q5_1:  // { f16 d; f16 m; u8 qh[4]; u8 qs[16] }: q d + m
      g = {half_at(b), half_at(b + 2), true, nibble32(b + 8, e) | bit(b + 4, e / 8, e % 8) << 4, 0, 31};
      break;
    case T::Q2_K: {  // { u8 scales[16]; u8 qs[64]; f16 d; f16 dmin }: d (sc & 15) q - dmin (sc >> 4)
      const uint8_t sc = b[e / 16];
      g = {half_at(b + 80) * (sc & 0xF), -(half_at(b + 82) * (sc >> 4)), true, crumb256(b + 16, e), 0, 3};
      break;
    }
    case T::Q3_K: {  // { u8 hmask[32]; u8 qs[64]; u8 scales[12]; f16 d }: d (s - 32) (q - 4 * !hbit)
      const int j = e / 16;
      const uint8_t* s = b + 96;
      const int scale6 = (j < 8 ? s[j] & 0xF : s[j - 8] >> 4) | ((s[8 + j % 4] >> (2 * (j / 4))) & 3) << 4;
      const int q = crumb256(b + 32, e) - (bit(b, e % 32, e / 32) ? 0 : 4);
      g = {half_at(b + 108) * (scale6 - 32), 0, false, q, -4, 3};
      break;
    }
    case T::Q4_K:  // { f16 d; f16 dmin; u8 scales[12]; u8 qs[128] }: d sc q - dmin m
      g = {half_at(b) * k4_six_bit(b + 4, e / 32, 0),
           -(half_at(b + 2) * k4_six_bit(b + 4, e / 32, 1)),
           true,
           nibble256(b + 16, e),
           0,
           15};
      break;
    case T::Q5_K:  // { f16 d; f16 dmin; u8 scales[12]; u8 qh[32]; u8 qs[128] }: fifth bit = bit e / 32 of
                   // qh[e % 32]
      g = {half_at(b) * k4_six_bit(b + 4, e / 32, 0),
           -(half_at(b + 2) * k4_six_bit(b + 4, e / 32, 1)),
           true,
           nibble256(b + 48, e) | bit(b + 16, e % 32, e / 32) << 4,
           0,
           31};
      break;
    case T::Q6_K: {  // { u8 ql[128]; u8 qh[64]; int8 scales[16]; f16 d }: d sc (q - 32)
      const int h = e / 128, k = (e % 128) / 32, l = e % 32;
      const int low = (b[64 * h + 32 * (k & 1) + l] >> (k >= 2 ? 4 : 0)) & 0xF;
      const int high = (b[128 + 32 * h + l] >> (2 * k)) & 3;
      g = {
          half_at(b + 208) * static_cast<int8_t>(b[192 + e / 16]), 0, false, (low | high << 4) - 32, -32, 31};
      break;
    }
    case T::Q8_K: {  // { f32 d; int8 qs[256]; int16 bsums[16] }
      float d;
      std::memcpy(&d, b, 4);
      g = {d, 0, false, static_cast<int8_t>(b[4 + e]), -128, 127};
      break;
    }
    default:
      break;
  }
  return g;
}

// How far a decoded element y may be from its input x, given its block's grid g: half a step, or the
// distance to the grid's nearer end for inputs outside it, plus the drift of the stored scale: encoders
// derive the step in f32 and store it as f16 (relative error <= 2^-11), and a level q steps from zero
// moves by q such errors (2^-11 of the offset too, for Q4_1/Q5_1's f16 min).
inline double error_bound(const Grid& g, double x) {
  const double step = std::fabs(static_cast<double>(g.a));
  const double lo = g.lo(), hi = g.hi();
  const double outside = std::max(0.0, std::max(lo - x, x - hi));
  const double drift = std::max(std::abs(g.qlo), std::abs(g.qhi)) * step * 0x1p-11 + std::fabs(g.c) * 0x1p-11;
  return std::max(step / 2, outside) + drift + 1e-6 * std::fabs(x);
}

}  // namespace wgllm::quant::spec
