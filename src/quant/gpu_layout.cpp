#include "quant/gpu_layout.hpp"

#include <algorithm>
#include <array>
#include <cstring>
#include <string>
#include <thread>
#include <utility>

#include "core/error.hpp"
#include "quant/blocks.hpp"

namespace wgllm::quant {

namespace {

using blocks::load_u32;
using gguf::TensorType;

// Per type: the codes of one block (each element's unsigned quant, as in the element formulas of
// docs/quantization.md) as code words: word i holds the codes of elements 4i..4i+3, one per byte, so each
// is made by one shift and mask of a GGUF word. Field offsets are ggml-common.h's; kquants.cpp describes
// where each element's bits sit.
struct Format {
  TensorType type;
  PlaneLayout layout;
  void (*codes)(const uint8_t* block, uint32_t* words);
};

constexpr uint32_t kLow1 = 0x01010101, kLow2 = 0x03030303, kLow4 = 0x0F0F0F0F;

// Bits 4i..4i+3 of v, one per byte.
uint32_t spread_bits(uint32_t v, uint32_t i) {
  return (((v >> (4 * i)) & 0xF) * 0x00204081) & kLow1;  // bit n -> bit 8n: the shifted copies never overlap
}

// Legacy 32-element blocks: byte i of the nibbles holds element i (low) and i + 16 (high); Q5's fifth
// bits are bit e of a little-endian u32.
void nibble_codes(const uint8_t* qs, uint32_t* w) {
  for (uint32_t i = 0; i < 4; ++i) {
    const uint32_t v = load_u32(qs + 4 * i);
    w[i] = v & kLow4;
    w[i + 4] = (v >> 4) & kLow4;
  }
}
void add_fifth_bits(uint32_t qh, uint32_t* w) {
  for (uint32_t i = 0; i < 8; ++i) w[i] |= spread_bits(qh, i) << 4;
}

void codes_q8_0(const uint8_t* b, uint32_t* w) {
  for (uint32_t i = 0; i < 8; ++i) w[i] = load_u32(b + 2 + 4 * i) ^ 0x80808080;  // int8 q -> q + 128
}
void codes_q4_0(const uint8_t* b, uint32_t* w) {
  nibble_codes(b + 2, w);
}
void codes_q4_1(const uint8_t* b, uint32_t* w) {
  nibble_codes(b + 4, w);
}
void codes_q5_0(const uint8_t* b, uint32_t* w) {
  nibble_codes(b + 6, w);
  add_fifth_bits(load_u32(b + 2), w);
}
void codes_q5_1(const uint8_t* b, uint32_t* w) {
  nibble_codes(b + 8, w);
  add_fifth_bits(load_u32(b + 4), w);
}

// K-quant super-blocks of 256 elements; i = word (elements 4i..4i+3), m = i % 8 (the word within a run of
// 32). The 2-bit fields of q2_K/q3_K: element e at byte 32 (e / 128) + e % 32, bits 2 ((e % 128) / 32).
uint32_t crumbs(const uint8_t* qs, uint32_t i) {
  return (load_u32(qs + 32 * (i / 32) + 4 * (i % 8)) >> (2 * ((i % 32) / 8))) & kLow2;
}
// The nibbles of q4_K/q5_K: element e at byte 32 (e / 64) + e % 32, the high nibble when e % 64 >= 32.
uint32_t k_nibbles(const uint8_t* qs, uint32_t i) {
  return (load_u32(qs + 32 * (i / 16) + 4 * (i % 8)) >> (4 * ((i % 16) / 8))) & kLow4;
}
// q3_K's hmask and q5_K's qh: element e's bit is bit e / 32 of byte e % 32.
uint32_t high_bits(const uint8_t* bits, uint32_t i) {
  return (load_u32(bits + 4 * (i % 8)) >> (i / 8)) & kLow1;
}

void codes_q2_K(const uint8_t* b, uint32_t* w) {
  for (uint32_t i = 0; i < 64; ++i) w[i] = crumbs(b + 16, i);
}
void codes_q3_K(const uint8_t* b, uint32_t* w) {
  for (uint32_t i = 0; i < 64; ++i) w[i] = crumbs(b + 32, i) | high_bits(b, i) << 2;  // x = d sc (code - 4)
}
void codes_q4_K(const uint8_t* b, uint32_t* w) {
  for (uint32_t i = 0; i < 64; ++i) w[i] = k_nibbles(b + 16, i);
}
void codes_q5_K(const uint8_t* b, uint32_t* w) {
  for (uint32_t i = 0; i < 64; ++i) w[i] = k_nibbles(b + 48, i) | high_bits(b + 16, i) << 4;
}
// q6_K, with k = (e % 128) / 32: low 4 bits from byte 64 (e / 128) + 32 (k & 1) + e % 32 (the high nibble
// when k >= 2), top 2 bits from byte 128 + 32 (e / 128) + e % 32 at bit 2k.
void codes_q6_K(const uint8_t* b, uint32_t* w) {
  for (uint32_t i = 0; i < 64; ++i) {
    const uint32_t half = i / 32, k = (i % 32) / 8, m = i % 8;
    const uint32_t low = (load_u32(b + 64 * half + 32 * (k & 1) + 4 * m) >> (4 * (k / 2))) & kLow4;
    const uint32_t high = (load_u32(b + 128 + 32 * half + 4 * m) >> (2 * k)) & kLow2;
    w[i] = low | high << 4;
  }
}

// Scale fields: legacy types d (and m); q2_K its 16 scale bytes, then d and dmin; q3_K its 12 packed scale
// bytes, then d; q4_K and q5_K their first 16 bytes (d, dmin, 12 packed scales and mins); q6_K its 16 int8
// scales, then d.
constexpr uint32_t K = 8;  // chunks per K-quant super-block
constexpr Format kFormats[] = {
    {TensorType::Q8_0, {.bytes = true, .scales = {{0, 2}}}, codes_q8_0},
    {TensorType::Q4_0, {.nibbles = true, .scales = {{0, 2}}}, codes_q4_0},
    {TensorType::Q4_1, {.nibbles = true, .scales = {{0, 4}}}, codes_q4_1},
    {TensorType::Q5_0, {.nibbles = true, .bits = 4, .scales = {{0, 2}}}, codes_q5_0},
    {TensorType::Q5_1, {.nibbles = true, .bits = 4, .scales = {{0, 4}}}, codes_q5_1},
    {TensorType::Q2_K, {.chunks_per_block = K, .pairs = 0, .scales = {{0, 16}, {80, 4}}}, codes_q2_K},
    {TensorType::Q3_K,
     {.chunks_per_block = K, .pairs = 0, .bits = 2, .scales = {{96, 12}, {108, 2}}},
     codes_q3_K},
    {TensorType::Q4_K, {.chunks_per_block = K, .nibbles = true, .scales = {{0, 16}}}, codes_q4_K},
    {TensorType::Q5_K, {.chunks_per_block = K, .nibbles = true, .bits = 4, .scales = {{0, 16}}}, codes_q5_K},
    {TensorType::Q6_K,
     {.chunks_per_block = K, .nibbles = true, .pairs = 4, .scales = {{192, 16}, {208, 2}}},
     codes_q6_K},
};

const Format* find_format(TensorType type) {
  for (const Format& f : kFormats)
    if (f.type == type) return &f;
  return nullptr;
}

uint64_t padded_words(uint64_t bytes) {
  return (bytes + 15) / 16 * 4;
}

// The planes of one chunk from its 8 code words c (gpu_layout.hpp; the inverse of matvec.wgsl's unpacking).
void put_nibbles(const uint32_t* c, uint32_t* dst) {
  for (uint32_t j = 0; j < 4; ++j) dst[j] = (c[j] & kLow4) | (c[j + 4] & kLow4) << 4;
}
void put_pairs(const uint32_t* c, int shift, uint32_t* dst) {
  for (uint32_t h = 0; h < 2; ++h) {
    uint32_t v = 0;
    for (uint32_t j = 0; j < 4; ++j) v |= ((c[4 * h + j] >> shift) & kLow2) << (2 * j);
    dst[h] = v;
  }
}
uint32_t bit_word(const uint32_t* c, int shift) {
  uint32_t v = 0;
  for (uint32_t j = 0; j < 8; ++j) v |= ((c[j] >> shift) & kLow1) << j;
  return v;
}

// Blocks [first, end) of src into the planes (a template per format, so that its code and plane functions
// inline: repacking runs at load, over every weight of the model). Indexed by format, not templated on a
// reference to it, which clang before 18 does not accept for an array element.
template <size_t I>
void fill_blocks(const uint8_t* src, uint32_t block_bytes, const PlaneOffsets& o, uint64_t first,
                 uint64_t end, uint32_t* q, uint8_t* scales) {
  constexpr const Format& F = kFormats[I];
  constexpr PlaneLayout p = F.layout;
  constexpr uint32_t chunks_per_block = p.chunks_per_block;
  uint32_t codes[64];  // [block_elements / 4]
  for (uint64_t b = first; b < end; ++b) {
    const uint8_t* block = src + b * block_bytes;
    F.codes(block, codes);
    for (uint32_t i = 0; i < chunks_per_block; ++i) {
      const uint64_t g = b * chunks_per_block + i;
      const uint32_t* c = codes + 8 * i;
      if constexpr (p.bytes) std::memcpy(q + 8 * g, c, 32);
      if constexpr (p.nibbles) put_nibbles(c, q + 4 * g);
      if constexpr (p.pairs >= 0) put_pairs(c, p.pairs, q + o.pairs_at + 2 * g);
      if constexpr (p.bits >= 0) q[o.bits_at + g] = bit_word(c, p.bits);
    }
    for (int i = 0; i < 2; ++i)
      std::memcpy(scales + o.scales_at[i] + b * p.scales[i].bytes, block + p.scales[i].offset,
                  p.scales[i].bytes);
  }
}

using FillBlocks = void (*)(const uint8_t*, uint32_t, const PlaneOffsets&, uint64_t, uint64_t, uint32_t*,
                            uint8_t*);

template <size_t... I>
constexpr std::array<FillBlocks, sizeof...(I)> fill_functions(std::index_sequence<I...>) {
  return {&fill_blocks<I>...};
}
constexpr auto kFillBlocks = fill_functions(std::make_index_sequence<std::size(kFormats)>());

GpuLayout repack_blocks(const Format& f, const gguf::TypeTraits& traits, const uint8_t* src,
                        uint64_t blocks) {
  const PlaneOffsets o = plane_offsets(f.layout, blocks);
  GpuLayout out;
  out.quants.assign(o.quant_words, 0);
  out.scales.assign(o.scale_words, 0);
  const FillBlocks fill = kFillBlocks[&f - kFormats];
  auto run = [&](uint64_t first, uint64_t end) {
    fill(src, traits.block_bytes, o, first, end, out.quants.data(),
         reinterpret_cast<uint8_t*>(out.scales.data()));
  };
  // Large matrices are split over the cores: blocks write disjoint words.
  constexpr uint64_t kBlocksPerThread = 1 << 16;
  const uint64_t threads = std::min<uint64_t>({std::max(1u, std::thread::hardware_concurrency()), 16,
                                               (blocks + kBlocksPerThread - 1) / kBlocksPerThread});
  std::vector<std::thread> pool;
  for (uint64_t t = 1; t < threads; ++t)
    pool.emplace_back(run, blocks * t / threads, blocks * (t + 1) / threads);
  run(0, blocks / threads);
  for (std::thread& t : pool) t.join();
  return out;
}

void copy_words(std::vector<uint32_t>& dst, const uint8_t* src, uint64_t bytes) {
  dst.assign((bytes + 3) / 4, 0);
  std::memcpy(dst.data(), src, bytes);
}

}  // namespace

const PlaneLayout* plane_layout(gguf::TensorType type) {
  const Format* f = find_format(type);
  return f ? &f->layout : nullptr;
}

PlaneOffsets plane_offsets(const PlaneLayout& p, uint64_t blocks) {
  const uint64_t chunks = blocks * p.chunks_per_block;
  PlaneOffsets o;
  o.pairs_at = chunks * (p.bytes ? 8 : p.nibbles ? 4 : 0);
  o.bits_at = o.pairs_at + (p.pairs >= 0 ? 2 * chunks : 0);
  const uint64_t code_words = o.bits_at + (p.bits >= 0 ? chunks : 0);
  uint64_t scale_bytes = 0;
  for (int i = 0; i < 2; ++i) {
    o.scales_at[i] = scale_bytes;
    scale_bytes += blocks * p.scales[i].bytes;
  }
  o.quant_words = padded_words(4 * code_words);
  o.scale_words = padded_words(scale_bytes);
  return o;
}

bool has_gpu_layout(gguf::TensorType type) {
  return type == TensorType::F32 || type == TensorType::F16 || type == TensorType::BF16 ||
         find_format(type) != nullptr;
}

GpuLayout repack(gguf::TensorType type, const uint8_t* src, uint64_t rows, uint64_t cols) {
  if (!has_gpu_layout(type))
    fail_input("tensor type " + std::string(gguf::type_name(type)) + " has no GPU layout");
  const gguf::TypeTraits traits = *gguf::type_traits(static_cast<uint32_t>(type));
  if (cols % traits.block_elements != 0)
    fail_input("rows of " + std::to_string(cols) + " elements are not whole " + std::string(traits.name) +
               " blocks of " + std::to_string(traits.block_elements));
  const uint64_t n = rows * cols;
  if (const Format* f = find_format(type)) return repack_blocks(*f, traits, src, n / traits.block_elements);
  GpuLayout out;
  copy_words(out.quants, src, n * traits.block_bytes);  // F32, F16, BF16: one element per block
  return out;
}

}  // namespace wgllm::quant
