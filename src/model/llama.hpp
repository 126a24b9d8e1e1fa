// The llama family as GGUF describes it (llama.cpp's metadata keys and tensor names): `llama` (Llama 2/3,
// Mistral), `llama4` (text), `qwen2`, `qwen3` and `qwen3moe`. Hyperparameters, the weight map, and the RoPE
// frequencies that the CPU reference and the GPU runtime both use. docs/models.md lists the keys.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "gguf/gguf_file.hpp"

namespace wgllm::model {

enum class RopeScaling { None, Linear };

// llama.cpp's rope modes: NORM turns adjacent pairs (2i, 2i + 1) of each head (llama, llama4: the converter
// permutes Hugging Face's Q/K rows into this order); NEOX turns (i, i + rope_dim / 2) as Hugging Face does
// (the Qwen family, stored unpermuted).
enum class RopeType { Norm, Neox };

// How the router's logits become expert weights: softmax over all experts, then the top k (qwen3moe);
// or the top k logits, each through a sigmoid (llama4).
enum class ExpertGating { Softmax, Sigmoid };

// What a model needs beyond the plain llama forward pass (Llama 2/3, stories260K). A caller names those
// it runs (from_gguf's `supported`), so that a model needing another one is refused with its name rather
// than run wrong.
enum Feature : uint32_t {
  kAttnBias = 1 << 0,          // attn_{q,k,v,output}.bias
  kQkNorm = 1 << 1,            // per-head RMSNorm of q and k with weights, before RoPE (qwen3)
  kNeoxRope = 1 << 2,          // RopeType::Neox
  kSlidingWindow = 1 << 3,     // sliding-window attention (Mistral)
  kMoe = 1 << 4,               // mixture-of-experts FFN layers
  kNoRopeLayers = 1 << 5,      // layers without RoPE (llama4)
  kChunkedAttention = 1 << 6,  // attention within fixed chunks on RoPE layers (llama4)
  kL2QkNorm = 1 << 7,          // weightless RMS norm of q and k after RoPE (llama4)
  kAttnTemperature = 1 << 8,   // position-dependent q scaling on NoPE layers (llama4)
};
using Features = uint32_t;
constexpr Features kPlainLlama = 0;
constexpr Features kAllFeatures = (1u << 9) - 1;
std::string feature_names(Features features);  // "qkv bias, MoE, ..."

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

  RopeType rope_type = RopeType::Norm;
  bool attn_bias = false;  // blk.N.attn_{q,k,v}.bias present (qwen2; optional elsewhere)
  bool qk_norm = false;    // qwen3, qwen3moe: attn_q_norm / attn_k_norm [head_dim]
  uint32_t sliding_window =
      0;  // llama: a position sees the last sliding_window positions (itself too); 0 = all

  // Mixture of experts.
  uint32_t n_expert = 0;
  uint32_t n_expert_used = 0;
  uint32_t expert_ffn_dim = 0;  // each routed expert's hidden size
  uint32_t shexp_ffn_dim = 0;   // the shared expert's hidden size (llama4); 0 = no shared expert
  uint32_t moe_layer_step = 0;  // layer l is an MoE layer when (l + 1) % moe_layer_step == 0; 0 = none
  ExpertGating expert_gating = ExpertGating::Softmax;
  bool expert_weights_norm = false;       // the chosen experts' softmax weights renormalised to sum 1
  bool expert_weight_before_ffn = false;  // llama4: the weight scales the expert's input, not its output

  // Llama 4's attention (defaults as llama.cpp hard-codes them for llama4 files that do not say).
  uint32_t no_rope_layer_step = 0;  // layer l has no RoPE when (l + 1) % no_rope_layer_step == 0; 0 = none
  uint32_t attn_chunk_size = 0;     // RoPE layers attend only within chunks of this many positions; 0 = none
  bool l2_qk_norm = false;          // RoPE layers: q and k heads RMS-normalised (no weight) after RoPE
  // NoPE layers: q *= 1 + attn_temp_scale * log(floor((pos + 1) / attn_temp_floor) + 1); scale 0 = off.
  float attn_temp_scale = 0;
  uint32_t attn_temp_floor = 0;

  uint32_t q_dim() const { return n_heads * head_dim; }
  uint32_t kv_dim() const { return n_kv_heads * head_dim; }
  bool layer_uses_rope(uint32_t l) const {
    return no_rope_layer_step == 0 || (l + 1) % no_rope_layer_step != 0;
  }
  bool layer_is_moe(uint32_t l) const { return moe_layer_step != 0 && (l + 1) % moe_layer_step == 0; }
  bool layer_is_chunked(uint32_t l) const { return attn_chunk_size != 0 && layer_uses_rope(l); }
  // The first position that position `pos` attends to in layer l (chunking, sliding window).
  uint32_t attention_start(uint32_t l, uint32_t pos) const;
  // The factor of q on layer l at position `pos` (1 but on NoPE layers with temperature tuning).
  double attention_temperature(uint32_t l, uint32_t pos) const;
  Features features() const;

  // Reads and validates the hyperparameters. Throws Error(BadInput) naming the file and key, or naming the
  // features the model needs beyond `supported`.
  static LlamaConfig from_gguf(const gguf::GgufFile& file, Features supported = kPlainLlama);
};

// Shapes in ggml order [in, out]: row r of the stored data (length `in`) computes output r. Expert
// tensors are [in, out, n_expert]: expert e's matrix is rows e * out .. (e + 1) * out - 1.
struct LayerWeights {
  const gguf::TensorInfo* attn_norm;  // [dim], f32
  const gguf::TensorInfo* wq;         // [dim, n_heads * head_dim]
  const gguf::TensorInfo* wk;         // [dim, n_kv_heads * head_dim]
  const gguf::TensorInfo* wv;         // [dim, n_kv_heads * head_dim]
  const gguf::TensorInfo* wo;         // [n_heads * head_dim, dim]
  const gguf::TensorInfo* ffn_norm;   // [dim], f32
  const gguf::TensorInfo* ffn_gate;   // [dim, ffn_dim]; null in MoE layers
  const gguf::TensorInfo* ffn_up;     // [dim, ffn_dim]; null in MoE layers
  const gguf::TensorInfo* ffn_down;   // [ffn_dim, dim]; null in MoE layers
  // Biases (f32; all null unless config.attn_bias; bo may be null on its own).
  const gguf::TensorInfo* bq = nullptr;           // [n_heads * head_dim]
  const gguf::TensorInfo* bk = nullptr;           // [n_kv_heads * head_dim]
  const gguf::TensorInfo* bv = nullptr;           // [n_kv_heads * head_dim]
  const gguf::TensorInfo* bo = nullptr;           // [dim]
  const gguf::TensorInfo* attn_q_norm = nullptr;  // [head_dim], f32 (config.qk_norm)
  const gguf::TensorInfo* attn_k_norm = nullptr;  // [head_dim], f32 (config.qk_norm)
  // MoE layers.
  const gguf::TensorInfo* ffn_gate_inp = nullptr;    // [dim, n_expert]: the router
  const gguf::TensorInfo* ffn_gate_exps = nullptr;   // [dim, expert_ffn_dim, n_expert]
  const gguf::TensorInfo* ffn_up_exps = nullptr;     // [dim, expert_ffn_dim, n_expert]
  const gguf::TensorInfo* ffn_down_exps = nullptr;   // [expert_ffn_dim, dim, n_expert]
  const gguf::TensorInfo* ffn_gate_shexp = nullptr;  // [dim, shexp_ffn_dim] (config.shexp_ffn_dim > 0)
  const gguf::TensorInfo* ffn_up_shexp = nullptr;    // [dim, shexp_ffn_dim]
  const gguf::TensorInfo* ffn_down_shexp = nullptr;  // [shexp_ffn_dim, dim]
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
