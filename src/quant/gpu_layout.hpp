// GGUF blocks (Q8_0 34 B, Q4_K 144 B, Q6_K 210 B, ...) are not 4-byte aligned and WGSL has no 8/16-bit
// storage, so each weight matrix is repacked at load into planar arrays of u32 words, as
// src/kernels/matvec.wgsl reads them:
//   quants: the code bits of every 32-element chunk (a Q4_0..Q8_0 block, or an eighth of a K-quant
//           super-block), one plane per kind of bits, each plane chunk after chunk:
//             bytes   (Q8_0)             8 words/chunk: byte e = code of element e (int8 q stored as q + 128)
//             nibbles (Q4_*, Q5_*, Q6_K) 4 words/chunk: word j, byte k = element 4j+k | element 16+4j+k << 4
//             pairs   (Q2_K, Q3_K, Q6_K) 2 words/chunk: word h, bits 8k+2j.. = element 16h+4j+k
//             bits    (Q5_*, Q3_K)       1 word/chunk:  bit 8k+j = element 4j+k (j = 0..7)
//           in that order ([bytes|nibbles][pairs][bits]). Each element's code is its GGUF quant with the
//           nibbles low, then the pair or bit above them (Q6_K: 4 + 2 bits, Q3_K: 2 + 1, Q5: 4 + 1), so
//           that matvec.wgsl rebuilds four codes per word with a few vector bit operations.
//   scales: the blocks' other fields, copied byte for byte, one plane per field group, block after block
//           (the per-type table in gpu_layout.cpp): e.g. Q4_K's first 16 bytes (d, dmin, 12 packed 6-bit
//           scales and mins), or Q6_K's 16 int8 scales, then its f16 d.
// Both arrays are padded to a multiple of 4 words (the kernel reads them as vec4<u32>). The total is the
// file's size plus that padding: no field is widened, and nothing is ever kept as f32. F32, F16 and BF16
// are copied as they are (no scales). The same layout is built on the GPU by kernels/repack.wgsl
// (runtime/gpu_weights.cpp), from the plane description below.
#pragma once

#include <cstdint>
#include <vector>

#include "gguf/tensor_type.hpp"

namespace wgllm::quant {

struct GpuLayout {
  std::vector<uint32_t> quants;  // F32/F16/BF16: the values' bits; quantized: the code planes above
  std::vector<uint32_t> scales;  // quantized: the scale planes above; empty otherwise

  uint64_t bytes() const { return 4 * (quants.size() + scales.size()); }
};

// The planes a quantized type fills, as repack() fills them.
struct PlaneLayout {
  uint32_t chunks_per_block = 1;  // 32-element chunks per block: 1 (legacy) or 8 (K-quants)
  bool bytes = false;             // 8-bit code plane
  bool nibbles = false;           // 4-bit code plane (bits 0-3 of each code)
  int pairs = -1;                 // 2-bit plane holding the code bits from this shift; -1: none
  int bits = -1;                  // 1-bit plane holding the code bit at this shift; -1: none
  struct Field {
    uint32_t offset = 0, bytes = 0;  // a run of bytes in every block, copied into a scale plane of its own
  } scales[2];
};

// Where each plane starts for `blocks` blocks of a type: code planes in words of `quants`, scale planes
// in bytes of `scales`; and both arrays' padded sizes in words.
struct PlaneOffsets {
  uint64_t pairs_at = 0, bits_at = 0;
  uint64_t scales_at[2] = {};
  uint64_t quant_words = 0, scale_words = 0;
};

// Null for types without code planes (F32, F16, BF16) and types without a GPU layout.
const PlaneLayout* plane_layout(gguf::TensorType type);
PlaneOffsets plane_offsets(const PlaneLayout& layout, uint64_t blocks);

// Whether the GPU kernels read `type` (the set that repack() accepts): F32, F16, BF16, Q4_0, Q4_1, Q5_0,
// Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K.
bool has_gpu_layout(gguf::TensorType type);

// Repacks `rows` rows of `cols` elements stored in GGUF's layout at `src`. Throws Error(BadInput) naming the
// type when it has no GPU layout or `cols` is not a whole number of its blocks.
GpuLayout repack(gguf::TensorType type, const uint8_t* src, uint64_t rows, uint64_t cols);

}  // namespace wgllm::quant
