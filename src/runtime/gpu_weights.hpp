// Weight matrices on the GPU in the repacked layout of quant/gpu_layout.hpp. A matrix larger than the
// adapter's maxStorageBufferBindingSize is split by rows into chunks that each fit one binding.
//
// A quantized matrix is repacked either on the CPU (quant::repack, then one write per buffer) or on the GPU:
// its GGUF blocks are written unchanged into a small scratch buffer, piece by piece, and kernels/repack.wgsl
// builds the same layout in the matrix's buffers. The GPU path is what the browser needs (its weights go
// from the file to the GPU without passing through wasm memory); docs/perf.md compares the two natively.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
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
// Without a WeightUpload alive on the calling thread, quantized matrices are repacked on the CPU.
// group_rows > 1 (the experts of a mixture-of-experts tensor, [in, rows, n_expert]): chunks hold whole
// groups of that many rows, so that a kernel finds each expert in one binding; an expert larger than a
// binding is refused, naming the tensor.
GpuMatrix upload_matrix(gpu::Device& device, const gguf::GgufFile& file, const gguf::TensorInfo& tensor,
                        uint32_t group_rows = 1);
// Matrices of one type and width stacked by rows into one (q|k|v, gate|up: one GEMV reads them all, one
// dispatch instead of several); nullopt when they differ in type or width or do not fit one binding.
std::optional<GpuMatrix> upload_stacked(gpu::Device& device, const gguf::GgufFile& file,
                                        std::span<const gguf::TensorInfo* const> tensors);
gpu::Buffer upload_f32(gpu::Device& device, const gguf::GgufFile& file, const gguf::TensorInfo& tensor);
// F32 tensors one after another in one buffer (small per-layer vectors that one kernel binding reads).
gpu::Buffer upload_f32s(gpu::Device& device, const gguf::GgufFile& file,
                        std::span<const gguf::TensorInfo* const> tensors);

// The defines that select a matrix's weight type in matvec.wgsl.
gpu::KernelDefines weight_defines(gguf::TensorType type);

// How a model's weights reach the GPU while it loads. While one is alive, upload_matrix and upload_f32
// calls on the same thread follow it, so the code that builds a model (Forward's constructor) is the same
// for every path. Not thread-safe; one per thread at a time.
class WeightUpload {
 public:
  struct Options {
    // Repack quantized matrices with kernels/repack.wgsl, else with quant::repack. Unset: on the GPU unless
    // the adapter is a CPU (software Vulkan), where the CPU path loads faster (docs/quantization.md).
    std::optional<bool> gpu_repack;
    // Only allocate the buffers and list the pieces of the file that go into them (pieces()), for a host
    // that streams the file itself (the browser). Implies gpu_repack.
    bool deferred = false;
    uint64_t scratch_bytes = 16ull << 20;  // the GPU path's staging buffer for raw blocks (rounded to blocks)
    uint64_t chunk_limit =
        0;  // split matrices into chunks of at most this many bytes; 0: the adapter's limit
  };
  WeightUpload(gpu::Device& device, const Options& options);
  ~WeightUpload();
  WeightUpload(const WeightUpload&) = delete;
  WeightUpload& operator=(const WeightUpload&) = delete;
  // Whether one is alive on the calling thread (a host that streams the file itself set it up).
  static bool active();

  // Bytes [file_offset, file_offset + size) of the GGUF file, written unchanged into `dst` at `dst_offset`
  // (the scratch buffer, or a matrix's own buffer for F32/F16/BF16). Sizes are whole words except where a
  // tensor ends; a writer pads those with zero bytes to the next word.
  struct Piece {
    uint64_t file_offset = 0;
    uint64_t size = 0;
    gpu::Buffer dst;
    uint64_t dst_offset = 0;
  };
  // Deferred: every piece so far, in file order (a host streaming the file sequentially takes them in
  // turn). The scratch is shared: write a piece only after finish() of the one before.
  const std::vector<Piece>& pieces();
  // After piece i's bytes are in place: records its repack, if it has one, and submits.
  void finish(size_t piece);

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace wgllm::runtime
