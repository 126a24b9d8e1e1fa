// Random-weight llama models of published shapes, generated without a download so that anyone can
// benchmark (`wgllm bench --synthetic llama-3-8b:q4_0`) and, written out with --write-gguf, run another engine
// on the very same weights. Weights are random but non-zero with realistic magnitudes (std ~0.02): quantized
// types get random quants and scales directly, so generating an 8B model costs seconds, not a quantization.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "gguf/gguf_writer.hpp"

namespace wgllm::model {

struct SyntheticShape {
  std::string name;
  uint32_t dim, n_layers, n_heads, n_kv_heads, ffn_dim, n_vocab;
  bool tied_output;
  float rope_freq_base;
};

// Known shapes: llama-3.2-1b, llama-3.2-3b, llama-3-8b, llama-2-7b, tiny (CI smoke test).
const std::vector<SyntheticShape>& synthetic_shapes();
// "SHAPE:TYPE" -> the shape and weight type; Error(BadInput) listing what is known otherwise.
std::pair<SyntheticShape, gguf::TensorType> parse_synthetic(const std::string& spec);

// The whole model as a GGUF writer (tokenizer.ggml.model = "none": benchmarks feed token ids).
gguf::GgufWriter synthetic_model(const SyntheticShape& shape, gguf::TensorType type, uint64_t seed);

}  // namespace wgllm::model
