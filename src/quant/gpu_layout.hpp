// GGUF blocks (Q8_0 34 B, Q4_0 18 B) are not 4-byte aligned and WGSL has no 8/16-bit storage, so each
// weight matrix is repacked at load into planar arrays of u32 words: the packed quants in one, the f16
// block scales (two per word) in another. Bytes keep GGUF's order inside a block, so the GPU decodes
// exactly what the CPU reference decodes; the total stays the file's size (plus word padding).
#pragma once

#include <cstdint>
#include <vector>

#include "gguf/tensor_type.hpp"

namespace wgllm::quant {

struct GpuLayout {
  std::vector<uint32_t> quants;  // F32: the floats' bits; F16: two halves per word; Q*: packed quants
  std::vector<uint32_t> scales;  // Q8_0/Q4_0: one f16 per block, two per word; empty otherwise
};

// Whether the GPU kernels read `type` (the set that repack() accepts).
bool has_gpu_layout(gguf::TensorType type);

// Repacks `rows` rows of `cols` elements stored in GGUF's layout at `src`. Throws Error naming the type
// when it has no GPU layout.
GpuLayout repack(gguf::TensorType type, const uint8_t* src, uint64_t rows, uint64_t cols);

}  // namespace wgllm::quant
