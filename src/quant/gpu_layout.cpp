#include "quant/gpu_layout.hpp"

#include <cstring>
#include <string>

#include "core/error.hpp"

namespace wgllm::quant {

bool has_gpu_layout(gguf::TensorType type) {
  using T = gguf::TensorType;
  return type == T::F32 || type == T::F16 || type == T::Q8_0 || type == T::Q4_0;
}

namespace {

void copy_words(std::vector<uint32_t>& dst, const uint8_t* src, uint64_t bytes) {
  dst.assign((bytes + 3) / 4, 0);
  std::memcpy(dst.data(), src, bytes);
}

// Block = f16 scale followed by `quant_bytes` of packed quants (Q8_0: 32, Q4_0: 16).
void split_blocks(GpuLayout& out, const uint8_t* src, uint64_t blocks, uint32_t quant_bytes) {
  const uint32_t block_bytes = 2 + quant_bytes;
  out.quants.assign(blocks * quant_bytes / 4, 0);
  out.scales.assign((blocks + 1) / 2, 0);
  auto* q = reinterpret_cast<uint8_t*>(out.quants.data());
  auto* s = reinterpret_cast<uint16_t*>(out.scales.data());
  for (uint64_t b = 0; b < blocks; ++b) {
    const uint8_t* blk = src + b * block_bytes;
    std::memcpy(&s[b], blk, 2);
    std::memcpy(q + b * quant_bytes, blk + 2, quant_bytes);
  }
}

}  // namespace

GpuLayout repack(gguf::TensorType type, const uint8_t* src, uint64_t rows, uint64_t cols) {
  using T = gguf::TensorType;
  GpuLayout out;
  const uint64_t n = rows * cols;
  switch (type) {
    case T::F32: copy_words(out.quants, src, n * 4); break;
    case T::F16: copy_words(out.quants, src, n * 2); break;
    case T::Q8_0: split_blocks(out, src, n / 32, 32); break;
    case T::Q4_0: split_blocks(out, src, n / 32, 16); break;
    default:
      fail_input("tensor type " + std::string(gguf::type_name(type)) + " has no GPU layout yet");
  }
  return out;
}

}  // namespace wgllm::quant
