// Weight matrices on the GPU in the repacked layout of quant/gpu_layout.hpp. A matrix larger than the
// adapter's maxStorageBufferBindingSize is split by rows into chunks that each fit one binding.
#pragma once

#include <cstdint>
#include <vector>

#include "gguf/gguf_file.hpp"
#include "gpu/device.hpp"

namespace wgllm::runtime {

struct GpuMatrix {
  gguf::TensorType type;
  uint32_t rows = 0;   // outputs
  uint32_t cols = 0;   // inputs (GGUF's ne[0])
  uint64_t bytes = 0;  // the tensor's size in the file
  struct Chunk {
    gpu::Buffer quants;
    gpu::Buffer scales;  // empty for F32/F16/BF16
    uint32_t first_row = 0;
    uint32_t rows = 0;
  };
  std::vector<Chunk> chunks;

  uint64_t gpu_bytes() const;  // all chunks' buffers: the file's size plus a few bytes of padding per chunk
};

// Throws Error(BadInput) naming the file, the tensor and its type when no GPU kernel reads the type.
GpuMatrix upload_matrix(gpu::Device& device, const gguf::GgufFile& file, const gguf::TensorInfo& tensor);
gpu::Buffer upload_f32(gpu::Device& device, const gguf::GgufFile& file, const gguf::TensorInfo& tensor);

// The defines that select a matrix's weight type in matvec.wgsl.
gpu::KernelDefines weight_defines(gguf::TensorType type);

}  // namespace wgllm::runtime
