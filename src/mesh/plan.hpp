// The stage plan: which consecutive layers each pipeline stage holds. Every rank computes the same plan
// from the same inputs (the model file, every rank's report, the flags), so it is never sent.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "gguf/gguf_file.hpp"
#include "model/llama.hpp"

namespace wgllm::mesh {

// What a stage's rank (or, with --devices, a local adapter) reports at start.
struct Peer {
  std::string where;          // "rank 2 on HOST" (MPI_Get_processor_name), or "adapter 1" (--devices)
  std::string device;         // the adapter's name
  std::string backend;        // "vulkan", ...
  uint64_t memory_bytes = 0;  // the device's memory; 0 = unknown
};

// The bytes a model's parts take on a device (the file's tensor sizes; the GPU layouts are within a few
// percent of them) and in the KV cache.
struct ModelSizes {
  std::vector<uint64_t> layer_bytes;  // [n_layers] blk.N.* weights
  uint64_t embedding_bytes = 0;       // token_embd (first stage)
  uint64_t head_bytes = 0;            // output_norm and output, or token_embd again when tied (last stage)
  uint64_t shared_bytes = 0;          // every other tensor (e.g. rope_freqs), on every stage
  uint64_t kv_bytes_per_layer = 0;    // K and V of every slot and position, f32
};
ModelSizes model_sizes(const gguf::GgufFile& file, const model::LlamaConfig& config, uint32_t n_ctx,
                       uint32_t n_seq);

struct Stage {
  uint32_t first_layer = 0, last_layer = 0;  // layers [first_layer, last_layer)
  uint64_t weight_bytes = 0;                 // its layers, plus embeddings (first) and head (last)
  uint64_t kv_bytes = 0;
  uint64_t bytes() const { return weight_bytes + kv_bytes; }
};

// One stage per peer. `split` (layers per stage, e.g. {10, 6}) decides when given; otherwise each stage's
// share of the bytes follows its peer's share of the memory (equal shares when some peer's is unknown).
// Throws Error(BadInput) for a split that does not cover the layers or has the wrong count, for more
// peers than layers, and for a stage that does not fit its peer's memory (naming stage, rank and host).
std::vector<Stage> plan_stages(const ModelSizes& sizes, std::span<const Peer> peers,
                               std::span<const uint32_t> split = {});

// "10,6" -> {10, 6}. Throws Error(BadInput) naming the flag for anything but positive integers.
std::vector<uint32_t> parse_split(const std::string& text);

// The plan as printed at start: a header line and one line per stage.
std::string describe_plan(std::span<const Stage> stages, std::span<const Peer> peers,
                          const std::string& model, const model::LlamaConfig& config);

}  // namespace wgllm::mesh
