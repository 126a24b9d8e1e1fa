// A plain, slow, obviously-correct forward pass of the llama architecture: the oracle that GPU kernels and
// whole-model runs are compared against. Weights are dequantized to f32 once (quant/ reference decoding);
// every sum, product and activation is a double. One token at a time, no batching, no tricks.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "gguf/gguf_file.hpp"
#include "model/llama.hpp"

namespace wgllm::cpu {

class ReferenceModel {
 public:
  // Reads the config and every weight from `file` (which may be closed afterwards). Throws Error(BadInput).
  explicit ReferenceModel(const gguf::GgufFile& file);

  const model::LlamaConfig& config() const { return config_; }

  // Feeds `token` at position(), returns its logits [n_vocab] and advances. Throws Error(BadInput) for a
  // token outside the vocabulary or when the context (context_length positions) is full.
  std::vector<double> step(int32_t token);
  // reset(), then step() over `tokens`: logits [tokens.size()][n_vocab].
  std::vector<std::vector<double>> forward(std::span<const int32_t> tokens);

  void reset();
  int32_t position() const { return position_; }

 private:
  // A dequantized weight matrix: w[r * in + c], row r (length `in`) computes output r.
  struct Matrix {
    uint32_t in = 0, out = 0;
    std::vector<float> w;
  };
  struct Layer {
    std::vector<float> attn_norm, ffn_norm;  // [dim]
    Matrix wq, wk, wv, wo, gate, up, down;
    std::vector<double> k_cache, v_cache;  // [position][kv_dim]
  };

  static Matrix load_matrix(const gguf::GgufFile& file, const gguf::TensorInfo& t);
  static std::vector<float> load_vector(const gguf::GgufFile& file, const gguf::TensorInfo& t);
  static std::vector<double> matvec(const Matrix& m, const std::vector<double>& x);
  std::vector<double> rmsnorm(const std::vector<double>& x, const std::vector<float>& weight) const;
  void rope(std::vector<double>& x, uint32_t n_heads) const;

  model::LlamaConfig config_;
  std::vector<float> inv_freq_;  // [rope_dim / 2]
  Matrix token_embd_;
  Matrix output_own_;  // empty when tied: output() is token_embd_
  std::vector<float> output_norm_;
  std::vector<Layer> layers_;
  int32_t position_ = 0;

  const Matrix& output() const { return config_.tied_output ? token_embd_ : output_own_; }
};

}  // namespace wgllm::cpu
