// The GPU memory a model will take, computed from its file and the forward pass's sizes before anything is
// allocated, and checked against what the device can hold, so that a model too large for the GPU fails at
// once with the bytes needed and available instead of partway through the upload.
//
// What WebGPU tells about memory: per-buffer limits only (maxBufferSize, maxStorageBufferBindingSize);
// neither the device's memory nor what is free. Dawn adds the adapter's memory heaps (the feature
// adapter-properties-memory-heaps, on Vulkan, D3D12 and Metal), and the Vulkan loader tells the
// device-local heap sizes directly; browsers expose neither. Where the memory is unknown, only the
// per-buffer limit is checked, and an allocation the device refuses is reported by Device::buffer.
#pragma once

#include <cstdint>
#include <string>

#include "gguf/gguf_file.hpp"
#include "model/llama.hpp"

namespace wgllm::runtime {

// The sizes Forward resolves from its options (ForwardOptions: 0 there means a default; here every value
// is the resolved one).
struct MemoryShape {
  uint32_t n_ctx = 0;       // positions per KV-cache slot
  uint32_t n_seq = 1;       // KV-cache slots
  uint32_t max_batch = 1;   // tokens per pass
  uint32_t max_logits = 1;  // logits rows per pass
};

// Split attention (attention.wgsl's SPANS) at a context of n_ctx positions: a GEMV pass splits each
// token's keys into spans of `span` positions, `count` of them covering n_ctx. A span is 128 keys (half the
// kernel's 256-key tile: more workgroups at depth, each shorter), longer past 64 spans so that the
// partials stay small at long contexts.
struct AttentionSpans {
  uint32_t span = 0;
  uint32_t count = 1;
};
AttentionSpans attention_spans(uint32_t n_ctx);

// Split attention's partials for `tokens` tokens of a pass: every (token, head, span)'s output, max and
// sum, n_heads * spans * (head_dim + 2) f32 per token. None with one span, where nothing is split.
uint64_t attention_partials_bytes(const model::LlamaConfig& config, uint32_t n_ctx, uint32_t tokens);

struct MemoryPlan {
  uint64_t weights = 0;   // every tensor of the file, as stored there (GPU layouts add a few bytes a chunk)
  uint64_t kv_cache = 0;  // K and V of every layer: 2 * n_layers * n_seq * n_ctx * kv_dim f32
  // Per-pass buffers for max_batch tokens, the logits rows, the RoPE tables, and split attention's partials
  // (Forward keeps those of kMaxWidth tokens: longer passes attend in chunks of that many).
  uint64_t activations = 0;
  uint64_t largest_buffer = 0;  // the largest buffer that is not a weight (weights are split to fit)
  MemoryShape shape;
  uint64_t total() const { return weights + kv_cache + activations; }
};

MemoryPlan plan_memory(const gguf::GgufFile& file, const model::LlamaConfig& config,
                       const MemoryShape& shape);

// What the device can hold.
struct DeviceMemory {
  uint64_t max_buffer_size = 0;  // the adapter's maxBufferSize
  uint64_t memory_bytes = 0;     // the device's memory (its largest device-local heap); 0 = unknown
};

// Throws Error(BadInput) naming `what` (the model file), the bytes needed by part and the bytes available,
// and what to reduce, when the plan's total exceeds the device's memory (when known) or its largest buffer
// exceeds maxBufferSize.
void check_memory(const MemoryPlan& plan, const DeviceMemory& device, const std::string& what);

}  // namespace wgllm::runtime
