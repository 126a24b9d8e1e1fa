// IEEE binary16 and bfloat16 <-> binary32 conversions, done on bits so they are exact and identical on every
// host and compiler (no dependence on F16C, _Float16 or the FPU rounding mode).
#pragma once

#include <cstdint>

namespace wgllm::quant {

// Exact: every half (subnormals included) is a float. NaN payloads are kept.
float f16_to_f32(uint16_t h);
// Round to nearest, ties to even; overflow -> inf; subnormal halves are produced, not flushed.
// NaN -> sign | 0x7E00 (a quiet NaN), as ggml's portable conversion does.
uint16_t f32_to_f16(float f);

// Exact: bfloat16 is the top half of a float.
float bf16_to_f32(uint16_t h);
// Round to nearest, ties to even; subnormals kept; NaN made quiet (payload's top bits kept), as ggml does.
uint16_t f32_to_bf16(float f);

}  // namespace wgllm::quant
