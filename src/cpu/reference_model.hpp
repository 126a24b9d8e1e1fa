// A plain, slow, obviously-correct forward pass of every architecture model/llama.hpp reads (llama, llama4,
// qwen2, qwen3, qwen3moe): the oracle that GPU kernels and whole-model runs are compared against. Weights
// are dequantized to f32 once (quant/ reference decoding); every sum, product and activation is a double.
// One token at a time, no batching, no tricks.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "gguf/gguf_file.hpp"
#include "model/llama.hpp"

namespace wgllm::cpu {

struct ReferenceOptions {
  // Every projection over a quantized weight type first quantizes its input to int8 per 32 elements, as
  // the GPU's INT8 paths do (act_quant.wgsl; runtime::ForwardOptions::int8_activations): d = max|x| / 127,
  // x -> d * round(x / d), ties to even. For comparing those paths tightly.
  bool int8_activations = false;
};

class ReferenceModel {
 public:
  // Reads the config and every weight from `file` (which may be closed afterwards). Throws Error(BadInput).
  explicit ReferenceModel(const gguf::GgufFile& file, ReferenceOptions options = {});

  const model::LlamaConfig& config() const { return config_; }

  // Feeds `token` at position(), returns its logits [n_vocab] and advances. Throws Error(BadInput) for a
  // token outside the vocabulary or when the context (context_length positions) is full.
  std::vector<double> step(int32_t token);
  // reset(), then step() over `tokens`: logits [tokens.size()][n_vocab].
  std::vector<std::vector<double>> forward(std::span<const int32_t> tokens);

  void reset();
  int32_t position() const { return position_; }
  // The experts the last step() chose in each layer, best first ([n_layers][n_expert_used]; empty for
  // dense layers): for comparing MoE routing with another implementation.
  const std::vector<std::vector<uint32_t>>& routing() const { return routing_; }

 private:
  // A dequantized weight matrix: w[r * in + c], row r (length `in`) computes output r. Expert tensors
  // [in, out, n_expert] load as one matrix of n_expert * out rows.
  struct Matrix {
    uint32_t in = 0, out = 0;
    std::vector<float> w;
    bool int8 = false;  // inputs quantized first (ReferenceOptions::int8_activations and a quantized type)
  };
  struct Ffn {
    Matrix gate, up, down;  // one FFN, or all experts stacked
  };
  struct Layer {
    std::vector<float> attn_norm, ffn_norm;  // [dim]
    Matrix wq, wk, wv, wo;
    std::vector<float> bq, bk, bv, bo;     // empty when absent
    std::vector<float> q_norm, k_norm;     // [head_dim], empty when absent
    Ffn ffn;                               // dense layers; routed experts in MoE layers
    Matrix router;                         // [dim -> n_expert], MoE layers
    Ffn shared;                            // the shared expert, when there is one
    std::vector<double> k_cache, v_cache;  // [position][kv_dim]
  };

  Matrix load_matrix(const gguf::GgufFile& file, const gguf::TensorInfo& t) const;
  static std::vector<float> load_vector(const gguf::GgufFile& file, const gguf::TensorInfo& t);
  static std::vector<float> load_optional(const gguf::GgufFile& file, const gguf::TensorInfo* t);
  // Rows [first, first + rows) of m (all rows when rows is 0) times x, plus `bias` when not empty.
  static std::vector<double> matvec(const Matrix& m, const std::vector<double>& x, uint32_t first = 0,
                                    uint32_t rows = 0, const std::vector<float>& bias = {});
  // RMSNorm of each `size`-long piece of x, times `weight` when not empty.
  void rmsnorm_inplace(std::vector<double>& x, size_t size, const std::vector<float>& weight) const;
  std::vector<double> rmsnorm(const std::vector<double>& x, const std::vector<float>& weight) const;
  void rope(std::vector<double>& x, uint32_t n_heads) const;
  // SiLU-gated FFN through expert e's rows (e = 0 for a plain FFN) of f.
  static std::vector<double> ffn(const Ffn& f, const std::vector<double>& x, uint32_t e = 0);
  std::vector<double> moe(uint32_t l, const std::vector<double>& x);

  ReferenceOptions options_;
  model::LlamaConfig config_;
  std::vector<float> inv_freq_;  // [rope_dim / 2]
  Matrix token_embd_;
  Matrix output_own_;  // empty when tied: output() is token_embd_
  std::vector<float> output_norm_;
  std::vector<Layer> layers_;
  std::vector<std::vector<uint32_t>> routing_;  // [n_layers][n_expert_used]
  int32_t position_ = 0;

  const Matrix& output() const { return config_.tied_output ? token_embd_ : output_own_; }
};

}  // namespace wgllm::cpu
