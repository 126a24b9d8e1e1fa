#include "cpu/reference_model.hpp"

#include <algorithm>
#include <cmath>
#include <string>

#include "core/error.hpp"
#include "quant/codec.hpp"

namespace wgllm::cpu {

ReferenceModel::ReferenceModel(const gguf::GgufFile& file) : config_(model::LlamaConfig::from_gguf(file)) {
  const model::LlamaWeights weights = model::LlamaWeights::map(file, config_);
  inv_freq_ = model::rope_inv_freq(config_, weights.rope_freq_factors);
  token_embd_ = load_matrix(file, *weights.token_embd);
  if (!config_.tied_output) output_own_ = load_matrix(file, *weights.output);
  output_norm_ = load_vector(file, *weights.output_norm);
  for (const model::LayerWeights& lw : weights.layers) {
    layers_.push_back(Layer{
        .attn_norm = load_vector(file, *lw.attn_norm),
        .ffn_norm = load_vector(file, *lw.ffn_norm),
        .wq = load_matrix(file, *lw.wq),
        .wk = load_matrix(file, *lw.wk),
        .wv = load_matrix(file, *lw.wv),
        .wo = load_matrix(file, *lw.wo),
        .gate = load_matrix(file, *lw.ffn_gate),
        .up = load_matrix(file, *lw.ffn_up),
        .down = load_matrix(file, *lw.ffn_down),
    });
  }
}

ReferenceModel::Matrix ReferenceModel::load_matrix(const gguf::GgufFile& file, const gguf::TensorInfo& t) {
  Matrix m;
  m.in = static_cast<uint32_t>(t.dims[0]);
  m.out = static_cast<uint32_t>(t.dims[1]);
  m.w = load_vector(file, t);
  return m;
}

std::vector<float> ReferenceModel::load_vector(const gguf::GgufFile& file, const gguf::TensorInfo& t) {
  // dims[0] is a whole number of blocks (the reader checks), so the whole tensor is one run of blocks.
  std::vector<float> v(t.n_elements);
  quant::dequantize_row(t.type, file.tensor_bytes(t).data(), v.data(), static_cast<int64_t>(t.n_elements));
  return v;
}

std::vector<double> ReferenceModel::matvec(const Matrix& m, const std::vector<double>& x) {
  std::vector<double> y(m.out);
  for (uint32_t r = 0; r < m.out; ++r) {
    const float* row = m.w.data() + static_cast<size_t>(r) * m.in;
    double sum = 0;
    for (uint32_t c = 0; c < m.in; ++c) sum += static_cast<double>(row[c]) * x[c];
    y[r] = sum;
  }
  return y;
}

std::vector<double> ReferenceModel::rmsnorm(const std::vector<double>& x,
                                            const std::vector<float>& weight) const {
  double sum_sq = 0;
  for (double v : x) sum_sq += v * v;
  const double scale = 1.0 / std::sqrt(sum_sq / static_cast<double>(x.size()) + config_.rms_eps);
  std::vector<double> y(x.size());
  for (size_t i = 0; i < x.size(); ++i) y[i] = x[i] * scale * weight[i];
  return y;
}

// GGUF's llama convention (llama.cpp rope mode 0): adjacent pairs (2i, 2i + 1) of each head's first
// rope_dim dims turn by position * inv_freq[i]. (HF checkpoints rotate halves; the converter permutes
// their Q/K rows so that this form is equivalent.)
void ReferenceModel::rope(std::vector<double>& x, uint32_t n_heads) const {
  for (uint32_t h = 0; h < n_heads; ++h) {
    double* head = x.data() + static_cast<size_t>(h) * config_.head_dim;
    for (size_t i = 0; i < inv_freq_.size(); ++i) {
      const double theta = position_ * static_cast<double>(inv_freq_[i]);
      const double c = std::cos(theta), s = std::sin(theta);
      const double x0 = head[2 * i], x1 = head[2 * i + 1];
      head[2 * i] = x0 * c - x1 * s;
      head[2 * i + 1] = x0 * s + x1 * c;
    }
  }
}

std::vector<double> ReferenceModel::step(int32_t token) {
  const model::LlamaConfig& c = config_;
  if (token < 0 || static_cast<uint32_t>(token) >= c.n_vocab) {
    fail_input("reference model: token id " + std::to_string(token) + " is outside the vocabulary [0, " +
               std::to_string(c.n_vocab) + ")");
  }
  if (static_cast<uint32_t>(position_) >= c.context_length) {
    fail_input("reference model: the context is full (context_length " + std::to_string(c.context_length) +
               " positions)");
  }
  const float* embd = token_embd_.w.data() + static_cast<size_t>(token) * c.dim;
  std::vector<double> x(embd, embd + c.dim);  // [dim]

  const uint32_t group = c.n_heads / c.n_kv_heads;
  const size_t kv_dim = c.kv_dim();
  const size_t n_pos = static_cast<size_t>(position_) + 1;
  const double att_scale = 1.0 / std::sqrt(static_cast<double>(c.head_dim));
  std::vector<double> scores(n_pos);
  for (Layer& layer : layers_) {
    std::vector<double> h = rmsnorm(x, layer.attn_norm);
    std::vector<double> q = matvec(layer.wq, h);  // [n_heads * head_dim]
    std::vector<double> k = matvec(layer.wk, h);  // [n_kv_heads * head_dim]
    std::vector<double> v = matvec(layer.wv, h);  // [n_kv_heads * head_dim]
    rope(q, c.n_heads);
    rope(k, c.n_kv_heads);
    layer.k_cache.insert(layer.k_cache.end(), k.begin(), k.end());
    layer.v_cache.insert(layer.v_cache.end(), v.begin(), v.end());

    std::vector<double> attn(c.q_dim(), 0.0);  // [n_heads * head_dim]
    for (uint32_t hq = 0; hq < c.n_heads; ++hq) {
      const double* qh = q.data() + static_cast<size_t>(hq) * c.head_dim;
      const size_t kv_off = static_cast<size_t>(hq / group) * c.head_dim;
      for (size_t t = 0; t < n_pos; ++t) {
        const double* kt = layer.k_cache.data() + t * kv_dim + kv_off;
        double dot = 0;
        for (uint32_t i = 0; i < c.head_dim; ++i) dot += qh[i] * kt[i];
        scores[t] = dot * att_scale;
      }
      const double max = *std::max_element(scores.begin(), scores.end());
      double sum = 0;
      for (double& s : scores) sum += (s = std::exp(s - max));
      double* out = attn.data() + static_cast<size_t>(hq) * c.head_dim;
      for (size_t t = 0; t < n_pos; ++t) {
        const double* vt = layer.v_cache.data() + t * kv_dim + kv_off;
        for (uint32_t i = 0; i < c.head_dim; ++i) out[i] += scores[t] / sum * vt[i];
      }
    }
    const std::vector<double> o = matvec(layer.wo, attn);
    for (uint32_t i = 0; i < c.dim; ++i) x[i] += o[i];

    h = rmsnorm(x, layer.ffn_norm);
    std::vector<double> gate = matvec(layer.gate, h);  // [ffn_dim]
    const std::vector<double> up = matvec(layer.up, h);
    for (uint32_t i = 0; i < c.ffn_dim; ++i) gate[i] = gate[i] / (1.0 + std::exp(-gate[i])) * up[i];
    const std::vector<double> down = matvec(layer.down, gate);
    for (uint32_t i = 0; i < c.dim; ++i) x[i] += down[i];
  }
  ++position_;
  return matvec(output(), rmsnorm(x, output_norm_));
}

std::vector<std::vector<double>> ReferenceModel::forward(std::span<const int32_t> tokens) {
  reset();
  std::vector<std::vector<double>> logits;
  for (int32_t t : tokens) logits.push_back(step(t));
  return logits;
}

void ReferenceModel::reset() {
  position_ = 0;
  for (Layer& layer : layers_) {
    layer.k_cache.clear();
    layer.v_cache.clear();
  }
}

}  // namespace wgllm::cpu
