// The `llama` architecture as GGUF describes it (llama.cpp's metadata keys and tensor names):
// hyperparameters, the weight map, and the RoPE frequencies that the CPU reference and the GPU runtime both
// use.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "gguf/gguf_file.hpp"

namespace wgllm::model {

enum class RopeScaling { None, Linear };

struct LlamaConfig {
  std::string arch;  // general.architecture
  uint32_t n_vocab = 0;
  uint32_t dim = 0;  // embedding length
  uint32_t n_layers = 0;
  uint32_t n_heads = 0;
  uint32_t n_kv_heads = 0;
  uint32_t head_dim = 0;  // dim / n_heads unless llama.attention.key_length says otherwise
  uint32_t ffn_dim = 0;
  uint32_t context_length = 0;
  uint32_t rope_dim = 0;  // leading dims of each head that RoPE rotates (even, <= head_dim)
  float rms_eps = 0;
  float rope_freq_base = 10000;
  float rope_scale = 1;  // linear scaling: positions are divided by this factor
  RopeScaling rope_scaling = RopeScaling::None;
  bool tied_output = false;  // output.weight absent: the LM head reuses token_embd

  uint32_t q_dim() const { return n_heads * head_dim; }
  uint32_t kv_dim() const { return n_kv_heads * head_dim; }

  // Reads and validates the hyperparameters. Throws Error(BadInput) naming the file and key.
  static LlamaConfig from_gguf(const gguf::GgufFile& file);
};

// Shapes in ggml order [in, out]: row r of the stored data (length `in`) computes output r.
struct LayerWeights {
  const gguf::TensorInfo* attn_norm;  // [dim], f32
  const gguf::TensorInfo* wq;         // [dim, n_heads * head_dim]
  const gguf::TensorInfo* wk;         // [dim, n_kv_heads * head_dim]
  const gguf::TensorInfo* wv;         // [dim, n_kv_heads * head_dim]
  const gguf::TensorInfo* wo;         // [n_heads * head_dim, dim]
  const gguf::TensorInfo* ffn_norm;   // [dim], f32
  const gguf::TensorInfo* ffn_gate;   // [dim, ffn_dim]
  const gguf::TensorInfo* ffn_up;     // [dim, ffn_dim]
  const gguf::TensorInfo* ffn_down;   // [ffn_dim, dim]
};

struct LlamaWeights {
  const gguf::TensorInfo* token_embd;    // [dim, n_vocab]: row t is token t's embedding
  const gguf::TensorInfo* output_norm;   // [dim], f32
  const gguf::TensorInfo* output;        // [dim, n_vocab]; == token_embd when tied
  const gguf::TensorInfo* rope_freqs;    // [rope_dim / 2], f32, or null (Llama 3 "llama3" rope scaling)
  std::vector<float> rope_freq_factors;  // [rope_dim / 2] from rope_freqs; empty = all 1
  std::vector<LayerWeights> layers;      // [n_layers]

  // Finds every tensor and checks its shape and type. Throws Error(BadInput) naming the tensor, the
  // expected and actual dims, or the type.
  static LlamaWeights map(const gguf::GgufFile& file, const LlamaConfig& config);
};

// The tensor types a weight matrix may have (norms and rope_freqs must be f32).
std::span<const gguf::TensorType> supported_weight_types();

// Angular frequency of each rotated pair i in [0, rope_dim / 2):
// rope_freq_base^(-2i / rope_dim) / freq_factors[i] / rope_scale (linear scaling; 1 otherwise).
// The angle at position p is p * inv_freq[i]. `freq_factors` is empty or has rope_dim / 2 entries.
std::vector<float> rope_inv_freq(const LlamaConfig& config, std::span<const float> freq_factors);

}  // namespace wgllm::model
