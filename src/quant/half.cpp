#include "quant/half.hpp"

#include <bit>

namespace wgllm::quant {

namespace {

// Rounds `value >> shift` to nearest, ties to even (shift in 1..31).
uint32_t shift_round_even(uint32_t value, uint32_t shift) {
  const uint32_t q = value >> shift;
  const uint32_t rem = value & ((1u << shift) - 1);
  const uint32_t half = 1u << (shift - 1);
  return q + ((rem > half || (rem == half && (q & 1))) ? 1 : 0);
}

}  // namespace

float f16_to_f32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000) << 16;
  const uint32_t exp = (h >> 10) & 0x1F;
  uint32_t mant = h & 0x3FF;
  if (exp == 0x1F) return std::bit_cast<float>(sign | 0x7F800000 | mant << 13);  // inf, NaN
  if (exp != 0) return std::bit_cast<float>(sign | (exp + 127 - 15) << 23 | mant << 13);
  if (mant == 0) return std::bit_cast<float>(sign);
  // Subnormal half: mant * 2^-24. Normalise so the leading 1 becomes the float's implicit bit.
  int32_t e = 127 - 15 + 1;
  while (!(mant & 0x400)) {
    mant <<= 1;
    --e;
  }
  return std::bit_cast<float>(sign | static_cast<uint32_t>(e) << 23 | (mant & 0x3FF) << 13);
}

uint16_t f32_to_f16(float f) {
  const uint32_t x = std::bit_cast<uint32_t>(f);
  const uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000);
  const uint32_t ax = x & 0x7FFFFFFF;
  if (ax > 0x7F800000) return sign | 0x7E00;
  // 65520 = 0x477FF000 lies halfway between the largest half (65504) and 2^16; the tie goes to the even
  // neighbour, 2^16, which overflows. So everything from there up (inf included) becomes inf.
  if (ax >= 0x477FF000) return sign | 0x7C00;
  if (ax >= 0x38800000) {  // >= 2^-14: a normal half. Rebias the exponent, then round away 13 mantissa bits;
                           // a carry out of the mantissa correctly bumps the exponent.
    return sign | static_cast<uint16_t>(shift_round_even(ax - ((127u - 15u) << 23), 13));
  }
  // Subnormal half: the result counts units of 2^-24. A float m * 2^(E-150) (m with its implicit bit)
  // is m * 2^(E-126) such units.
  const uint32_t e = ax >> 23;
  if (e < 102) return sign;  // below 2^-25 (and float subnormals): rounds to zero
  const uint32_t m = (ax & 0x7FFFFF) | 0x800000;
  return sign | static_cast<uint16_t>(shift_round_even(m, 126 - e));
}

float bf16_to_f32(uint16_t h) {
  return std::bit_cast<float>(static_cast<uint32_t>(h) << 16);
}

uint16_t f32_to_bf16(float f) {
  const uint32_t x = std::bit_cast<uint32_t>(f);
  if ((x & 0x7FFFFFFF) > 0x7F800000) return static_cast<uint16_t>((x >> 16) | 0x40);
  // Overflow to inf falls out of the carry into the exponent.
  return static_cast<uint16_t>(shift_round_even(x, 16));
}

}  // namespace wgllm::quant
