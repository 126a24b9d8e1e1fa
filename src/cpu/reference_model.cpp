#include "cpu/reference_model.hpp"

#include <algorithm>
#include <cmath>
#include <string>

#include "core/error.hpp"
#include "quant/codec.hpp"

namespace wgllm::cpu {

ReferenceModel::ReferenceModel(const gguf::GgufFile& file, ReferenceOptions options)
    : options_(options), config_(model::LlamaConfig::from_gguf(file, model::kAllFeatures)) {
  const model::LlamaWeights weights = model::LlamaWeights::map(file, config_);
  inv_freq_ = model::rope_inv_freq(config_, weights.rope_freq_factors);
  token_embd_ = load_matrix(file, *weights.token_embd);
  if (!config_.tied_output) output_own_ = load_matrix(file, *weights.output);
  output_norm_ = load_vector(file, *weights.output_norm);
  for (const model::LayerWeights& lw : weights.layers) {
    Layer layer{
        .attn_norm = load_vector(file, *lw.attn_norm),
        .ffn_norm = load_vector(file, *lw.ffn_norm),
        .wq = load_matrix(file, *lw.wq),
        .wk = load_matrix(file, *lw.wk),
        .wv = load_matrix(file, *lw.wv),
        .wo = load_matrix(file, *lw.wo),
        .bq = load_optional(file, lw.bq),
        .bk = load_optional(file, lw.bk),
        .bv = load_optional(file, lw.bv),
        .bo = load_optional(file, lw.bo),
        .q_norm = load_optional(file, lw.attn_q_norm),
        .k_norm = load_optional(file, lw.attn_k_norm),
    };
    if (lw.ffn_gate_inp) {
      layer.router = load_matrix(file, *lw.ffn_gate_inp);
      layer.ffn = {load_matrix(file, *lw.ffn_gate_exps), load_matrix(file, *lw.ffn_up_exps),
                   load_matrix(file, *lw.ffn_down_exps)};
      if (lw.ffn_gate_shexp) {
        layer.shared = {load_matrix(file, *lw.ffn_gate_shexp), load_matrix(file, *lw.ffn_up_shexp),
                        load_matrix(file, *lw.ffn_down_shexp)};
      }
    } else {
      layer.ffn = {load_matrix(file, *lw.ffn_gate), load_matrix(file, *lw.ffn_up),
                   load_matrix(file, *lw.ffn_down)};
    }
    layers_.push_back(std::move(layer));
  }
}

ReferenceModel::Matrix ReferenceModel::load_matrix(const gguf::GgufFile& file,
                                                   const gguf::TensorInfo& t) const {
  Matrix m;
  m.in = static_cast<uint32_t>(t.dims[0]);
  m.out = static_cast<uint32_t>(t.rows());
  m.w = load_vector(file, t);
  const auto traits = gguf::type_traits(static_cast<uint32_t>(t.type));
  m.int8 = options_.int8_activations && traits && traits->block_elements > 1 && m.in % 32 == 0;
  return m;
}

std::vector<float> ReferenceModel::load_vector(const gguf::GgufFile& file, const gguf::TensorInfo& t) {
  // dims[0] is a whole number of blocks (the reader checks), so the whole tensor is one run of blocks.
  std::vector<float> v(t.n_elements);
  quant::dequantize_row(t.type, file.tensor_bytes(t).data(), v.data(), static_cast<int64_t>(t.n_elements));
  return v;
}

std::vector<float> ReferenceModel::load_optional(const gguf::GgufFile& file, const gguf::TensorInfo* t) {
  return t ? load_vector(file, *t) : std::vector<float>{};
}

namespace {

// x with each 32-element piece quantized to int8 and back (ReferenceOptions::int8_activations).
std::vector<double> int8_round_trip(const std::vector<double>& x) {
  std::vector<double> out(x.size());
  for (size_t c0 = 0; c0 < x.size(); c0 += 32) {
    double amax = 0;
    for (size_t k = c0; k < c0 + 32; ++k) amax = std::max(amax, std::fabs(x[k]));
    const double d = amax / 127;
    for (size_t k = c0; k < c0 + 32; ++k)
      out[k] = d > 0 ? d * std::clamp(std::nearbyint(x[k] / d), -127.0, 127.0) : 0;
  }
  return out;
}

}  // namespace

std::vector<double> ReferenceModel::matvec(const Matrix& m, const std::vector<double>& x_in, uint32_t first,
                                           uint32_t rows, const std::vector<float>& bias) {
  std::vector<double> quantized;
  const std::vector<double>& x = m.int8 ? (quantized = int8_round_trip(x_in)) : x_in;
  if (rows == 0) rows = m.out;
  std::vector<double> y(rows);
  for (uint32_t r = 0; r < rows; ++r) {
    const float* row = m.w.data() + static_cast<size_t>(first + r) * m.in;
    double sum = bias.empty() ? 0.0 : static_cast<double>(bias[r]);
    for (uint32_t c = 0; c < m.in; ++c) sum += static_cast<double>(row[c]) * x[c];
    y[r] = sum;
  }
  return y;
}

void ReferenceModel::rmsnorm_inplace(std::vector<double>& x, size_t size,
                                     const std::vector<float>& weight) const {
  for (size_t base = 0; base < x.size(); base += size) {
    double sum_sq = 0;
    for (size_t i = 0; i < size; ++i) sum_sq += x[base + i] * x[base + i];
    const double scale = 1.0 / std::sqrt(sum_sq / static_cast<double>(size) + config_.rms_eps);
    for (size_t i = 0; i < size; ++i) x[base + i] *= scale * (weight.empty() ? 1.0 : weight[i]);
  }
}

std::vector<double> ReferenceModel::rmsnorm(const std::vector<double>& x,
                                            const std::vector<float>& weight) const {
  std::vector<double> y = x;
  rmsnorm_inplace(y, y.size(), weight);
  return y;
}

// llama.cpp's rope modes (model::RopeType): NORM turns adjacent pairs (2i, 2i + 1) of each head's first
// rope_dim dims (HF llama checkpoints rotate halves; the converter permutes their Q/K rows so that this
// form is equivalent), NEOX turns (i, i + rope_dim / 2), both by position * inv_freq[i].
void ReferenceModel::rope(std::vector<double>& x, uint32_t n_heads) const {
  const size_t half = inv_freq_.size();
  const bool neox = config_.rope_type == model::RopeType::Neox;
  for (uint32_t h = 0; h < n_heads; ++h) {
    double* head = x.data() + static_cast<size_t>(h) * config_.head_dim;
    for (size_t i = 0; i < half; ++i) {
      const double theta = position_ * static_cast<double>(inv_freq_[i]);
      const double c = std::cos(theta), s = std::sin(theta);
      double& x0 = head[neox ? i : 2 * i];
      double& x1 = head[neox ? i + half : 2 * i + 1];
      const double a = x0, b = x1;
      x0 = a * c - b * s;
      x1 = a * s + b * c;
    }
  }
}

std::vector<double> ReferenceModel::ffn(const Ffn& f, const std::vector<double>& x, uint32_t e) {
  const uint32_t hidden = f.down.in;  // each expert's rows in gate and up
  std::vector<double> gate = matvec(f.gate, x, e * hidden, hidden);
  const std::vector<double> up = matvec(f.up, x, e * hidden, hidden);
  for (uint32_t i = 0; i < hidden; ++i) gate[i] = gate[i] / (1.0 + std::exp(-gate[i])) * up[i];
  const uint32_t dim = static_cast<uint32_t>(x.size());
  return matvec(f.down, gate, e * dim, dim);
}

std::vector<double> ReferenceModel::moe(uint32_t l, const std::vector<double>& x) {
  const model::LlamaConfig& c = config_;
  const Layer& layer = layers_[l];
  const std::vector<double> logits = matvec(layer.router, x);  // [n_expert]
  std::vector<double> score = logits;
  if (c.expert_gating == model::ExpertGating::Softmax) {
    const double max = *std::max_element(score.begin(), score.end());
    double sum = 0;
    for (double& s : score) sum += (s = std::exp(s - max));
    for (double& s : score) s /= sum;
  }
  std::vector<uint32_t> order(c.n_expert);
  for (uint32_t e = 0; e < c.n_expert; ++e) order[e] = e;
  std::stable_sort(order.begin(), order.end(), [&](uint32_t a, uint32_t b) { return score[a] > score[b]; });
  order.resize(c.n_expert_used);
  routing_[l] = order;
  std::vector<double> weight(c.n_expert_used);
  double total = 0;
  for (uint32_t k = 0; k < c.n_expert_used; ++k) {
    const double s = score[order[k]];
    weight[k] = c.expert_gating == model::ExpertGating::Sigmoid ? 1.0 / (1.0 + std::exp(-s)) : s;
    total += weight[k];
  }
  if (c.expert_weights_norm) {
    for (double& w : weight) w /= total;
  }
  std::vector<double> out = layer.shared.gate.out ? ffn(layer.shared, x) : std::vector<double>(x.size(), 0.0);
  for (uint32_t k = 0; k < c.n_expert_used; ++k) {
    std::vector<double> in = x;
    if (c.expert_weight_before_ffn) {
      for (double& v : in) v *= weight[k];
    }
    const std::vector<double> y = ffn(layer.ffn, in, order[k]);
    const double scale = c.expert_weight_before_ffn ? 1.0 : weight[k];
    for (size_t i = 0; i < out.size(); ++i) out[i] += scale * y[i];
  }
  return out;
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
  const uint32_t pos = static_cast<uint32_t>(position_);
  const double att_scale = 1.0 / std::sqrt(static_cast<double>(c.head_dim));
  routing_.assign(c.n_layers, {});
  for (uint32_t l = 0; l < c.n_layers; ++l) {
    Layer& layer = layers_[l];
    std::vector<double> h = rmsnorm(x, layer.attn_norm);
    std::vector<double> q = matvec(layer.wq, h, 0, 0, layer.bq);  // [n_heads * head_dim]
    std::vector<double> k = matvec(layer.wk, h, 0, 0, layer.bk);  // [n_kv_heads * head_dim]
    std::vector<double> v = matvec(layer.wv, h, 0, 0, layer.bv);  // [n_kv_heads * head_dim]
    if (c.qk_norm) {
      rmsnorm_inplace(q, c.head_dim, layer.q_norm);
      rmsnorm_inplace(k, c.head_dim, layer.k_norm);
    }
    if (c.layer_uses_rope(l)) {
      rope(q, c.n_heads);
      rope(k, c.n_kv_heads);
      if (c.l2_qk_norm) {
        rmsnorm_inplace(q, c.head_dim, {});
        rmsnorm_inplace(k, c.head_dim, {});
      }
    }
    const double temperature = c.attention_temperature(l, pos);
    for (double& e : q) e *= temperature;
    layer.k_cache.insert(layer.k_cache.end(), k.begin(), k.end());
    layer.v_cache.insert(layer.v_cache.end(), v.begin(), v.end());

    const size_t first = c.attention_start(l, pos);
    std::vector<double> scores(pos + 1 - first);
    std::vector<double> attn(c.q_dim(), 0.0);  // [n_heads * head_dim]
    for (uint32_t hq = 0; hq < c.n_heads; ++hq) {
      const double* qh = q.data() + static_cast<size_t>(hq) * c.head_dim;
      const size_t kv_off = static_cast<size_t>(hq / group) * c.head_dim;
      for (size_t t = first; t <= pos; ++t) {
        const double* kt = layer.k_cache.data() + t * kv_dim + kv_off;
        double dot = 0;
        for (uint32_t i = 0; i < c.head_dim; ++i) dot += qh[i] * kt[i];
        scores[t - first] = dot * att_scale;
      }
      const double max = *std::max_element(scores.begin(), scores.end());
      double sum = 0;
      for (double& s : scores) sum += (s = std::exp(s - max));
      double* out = attn.data() + static_cast<size_t>(hq) * c.head_dim;
      for (size_t t = first; t <= pos; ++t) {
        const double* vt = layer.v_cache.data() + t * kv_dim + kv_off;
        for (uint32_t i = 0; i < c.head_dim; ++i) out[i] += scores[t - first] / sum * vt[i];
      }
    }
    const std::vector<double> o = matvec(layer.wo, attn, 0, 0, layer.bo);
    for (uint32_t i = 0; i < c.dim; ++i) x[i] += o[i];

    h = rmsnorm(x, layer.ffn_norm);
    const std::vector<double> f = c.layer_is_moe(l) ? moe(l, h) : ffn(layer.ffn, h);
    for (uint32_t i = 0; i < c.dim; ++i) x[i] += f[i];
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
