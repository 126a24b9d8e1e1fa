#include "model/llama.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>

#include "core/error.hpp"
#include "quant/codec.hpp"

namespace wgllm::model {

namespace {

using gguf::GgufFile;
using gguf::TensorInfo;
using gguf::TensorType;

constexpr const char* kSupportedArchs[] = {"llama", "llama4", "qwen2", "qwen3", "qwen3moe"};

// The types with both a CPU reference decoding and GPU kernels (quant/gpu_layout.hpp).
constexpr TensorType kWeightTypes[] = {TensorType::F32,  TensorType::F16,  TensorType::BF16, TensorType::Q8_0,
                                       TensorType::Q4_0, TensorType::Q4_1, TensorType::Q5_0, TensorType::Q5_1,
                                       TensorType::Q2_K, TensorType::Q3_K, TensorType::Q4_K, TensorType::Q5_K,
                                       TensorType::Q6_K};

[[noreturn]] void fail(const GgufFile& file, const std::string& message) {
  fail_input(file.path() + ": " + message);
}

// A u32 hyperparameter: `def` when the key is absent (required when there is no default).
uint32_t read_u32(const GgufFile& file, const std::string& key, std::optional<uint32_t> def = std::nullopt) {
  const uint64_t v = def ? file.get_uint(key, *def) : file.require_uint(key);
  if (v > std::numeric_limits<uint32_t>::max()) {
    fail(file, key + " = " + std::to_string(v) + " exceeds the limit 4294967295");
  }
  return static_cast<uint32_t>(v);
}

float read_f32(const GgufFile& file, const std::string& key, std::optional<float> def = std::nullopt) {
  const double v = def ? file.get_float(key, *def) : file.require_float(key);
  if (!std::isfinite(v) || std::fabs(v) > std::numeric_limits<float>::max()) {
    fail(file, key + " = " + std::to_string(v) + " is not a finite f32");
  }
  return static_cast<float>(v);
}

void require_positive(const GgufFile& file, const std::string& key, double v) {
  if (!(v > 0)) fail(file, key + " = " + std::to_string(v) + " must be greater than 0");
}

uint32_t vocab_size(const GgufFile& file, const std::string& prefix) {
  if (file.find(prefix + "vocab_size")) return read_u32(file, prefix + "vocab_size");
  if (file.find("tokenizer.ggml.tokens")) {
    const uint64_t n = file.require_array("tokenizer.ggml.tokens", gguf::ValueType::STRING).array_size();
    if (n > std::numeric_limits<uint32_t>::max()) {
      fail(file, "tokenizer.ggml.tokens has " + std::to_string(n) + " entries, over the limit 4294967295");
    }
    return static_cast<uint32_t>(n);
  }
  const TensorInfo* embd = file.find_tensor("token_embd.weight");
  if (!embd) {
    fail(file,
         "no " + prefix + "vocab_size, tokenizer.ggml.tokens or token_embd.weight to size the vocabulary");
  }
  if (embd->dims.size() != 2 || embd->dims[1] > std::numeric_limits<uint32_t>::max()) {
    fail(file,
         "token_embd.weight, which sizes the vocabulary here, is not [dim, n_vocab] with n_vocab < 2^32");
  }
  return static_cast<uint32_t>(embd->dims[1]);
}

std::string shape(std::initializer_list<uint64_t> dims) {
  std::string s = "[";
  for (uint64_t d : dims) s += (s.size() > 1 ? ", " : "") + std::to_string(d);
  return s + "]";
}

const TensorInfo* require_weight(const GgufFile& file, const std::string& name,
                                 std::initializer_list<uint64_t> dims, bool f32_only = false) {
  const TensorInfo& t = file.require_tensor(name, std::span<const uint64_t>(dims.begin(), dims.size()));
  const bool ok = f32_only ? t.type == TensorType::F32
                           : std::find(std::begin(kWeightTypes), std::end(kWeightTypes), t.type) !=
                                 std::end(kWeightTypes);
  if (!ok) {
    std::string allowed;
    if (f32_only) {
      allowed = "f32";
    } else {
      for (TensorType type : kWeightTypes) {
        allowed += (allowed.empty() ? "" : ", ") + std::string(gguf::type_name(type));
      }
    }
    fail(file, "tensor '" + name + "' " + shape(dims) + " has type " + std::string(gguf::type_name(t.type)) +
                   " (" + std::to_string(static_cast<uint32_t>(t.type)) + "); supported: " + allowed);
  }
  return &t;
}

// The family's own hyperparameters, after the common ones. llama.cpp's keys; where llama.cpp hard-codes a
// llama4 value (chunk size, NoPE step, temperature tuning, q/k norm), the default is its value and
// docs/models.md names the key that overrides it.
void read_family(const GgufFile& file, LlamaConfig& c) {
  const std::string p = c.arch + ".";
  c.attn_bias = file.find_tensor("blk.0.attn_q.bias") != nullptr;
  const uint32_t n_expert = read_u32(file, p + "expert_count", 0);
  if (c.arch == "llama") {
    c.sliding_window = read_u32(file, p + "attention.sliding_window", 0);
    if (n_expert) {
      fail(file, p + "expert_count = " + std::to_string(n_expert) +
                     ": mixture-of-experts llama files (Mixtral) are not supported");
    }
    return;
  }
  if (c.arch == "qwen2" || c.arch == "qwen3" || c.arch == "qwen3moe") {
    c.rope_type = RopeType::Neox;
    c.qk_norm = c.arch != "qwen2";
    if (c.arch == "qwen2" && !c.attn_bias) fail(file, "qwen2 needs blk.0.attn_q.bias (the q/k/v biases)");
    if (c.arch == "qwen3moe") {
      c.moe_layer_step = 1;
      c.expert_gating = ExpertGating::Softmax;
      c.expert_weights_norm = file.get_bool(p + "expert_weights_norm", true);
    }
  } else {  // llama4
    c.moe_layer_step = n_expert ? read_u32(file, p + "interleave_moe_layer_step") : 0;
    if (n_expert && c.moe_layer_step == 0)
      fail(file, p + "interleave_moe_layer_step is 0; it must be at least 1");
    c.expert_gating = ExpertGating::Sigmoid;
    c.expert_weight_before_ffn = true;
    // llama.cpp: sliding_window absent -> chunks of 8192 and NoPE every 4th layer; 0 -> neither.
    const bool no_chunks =
        file.find(p + "attention.sliding_window") && read_u32(file, p + "attention.sliding_window") == 0;
    c.attn_chunk_size = no_chunks ? 0 : read_u32(file, p + "attention.sliding_window", 8192);
    c.no_rope_layer_step = read_u32(file, p + "no_rope_layer_step", no_chunks ? 0 : 4);
    c.l2_qk_norm = file.get_bool(p + "use_kq_norm", n_expert != 128);
    c.attn_temp_scale = read_f32(file, p + "attention.temperature_scale", no_chunks ? 0.0f : 0.1f);
    c.attn_temp_floor = read_u32(file, p + "attention.temperature_length", 8192);
    if (c.attn_temp_scale != 0 && c.attn_temp_floor == 0) {
      fail(file,
           p + "attention.temperature_length is 0; it must be at least 1 when temperature_scale is set");
    }
  }
  if (c.moe_layer_step) {
    c.n_expert = n_expert;
    c.n_expert_used = read_u32(file, p + "expert_used_count");
    c.expert_ffn_dim = read_u32(file, p + "expert_feed_forward_length");
    if (c.n_expert == 0) fail(file, p + "expert_count is 0 in a mixture-of-experts model");
    if (c.n_expert_used == 0 || c.n_expert_used > c.n_expert) {
      fail(file, p + "expert_used_count = " + std::to_string(c.n_expert_used) + " must be from 1 to " + p +
                     "expert_count (" + std::to_string(c.n_expert) + ")");
    }
    if (c.expert_ffn_dim == 0) fail(file, p + "expert_feed_forward_length is 0; it must be at least 1");
    if (c.arch == "llama4")
      c.shexp_ffn_dim = read_u32(file, p + "expert_shared_feed_forward_length", c.expert_ffn_dim);
  }
}

}  // namespace

LlamaConfig LlamaConfig::from_gguf(const GgufFile& file, Features supported) {
  LlamaConfig c;
  c.arch = file.require_string("general.architecture");
  if (std::find(std::begin(kSupportedArchs), std::end(kSupportedArchs), c.arch) ==
      std::end(kSupportedArchs)) {
    std::string supported;
    for (const char* a : kSupportedArchs) supported += (supported.empty() ? "" : ", ") + std::string(a);
    fail(file, "general.architecture '" + c.arch + "' is not supported (supported: " + supported + ")");
  }
  const std::string p = c.arch + ".";
  c.dim = read_u32(file, p + "embedding_length");
  c.n_layers = read_u32(file, p + "block_count");
  c.n_heads = read_u32(file, p + "attention.head_count");
  c.n_kv_heads = read_u32(file, p + "attention.head_count_kv", c.n_heads);
  c.ffn_dim = read_u32(file, p + "feed_forward_length");
  c.context_length = read_u32(file, p + "context_length");
  c.n_vocab = vocab_size(file, p);
  for (auto [key, v] : {std::pair{"embedding_length", c.dim},
                        {"block_count", c.n_layers},
                        {"attention.head_count", c.n_heads},
                        {"attention.head_count_kv", c.n_kv_heads},
                        {"feed_forward_length", c.ffn_dim},
                        {"context_length", c.context_length},
                        {"vocab_size", c.n_vocab}}) {
    if (v == 0) fail(file, p + key + " is 0; it must be at least 1");
  }

  const bool explicit_head_dim = file.find(p + "attention.key_length") != nullptr;
  if (explicit_head_dim) {
    c.head_dim = read_u32(file, p + "attention.key_length");
    if (c.head_dim == 0) fail(file, p + "attention.key_length is 0; it must be at least 1");
  } else {
    if (c.dim % c.n_heads != 0) {
      fail(file, p + "embedding_length (" + std::to_string(c.dim) + ") is not a multiple of " + p +
                     "attention.head_count (" + std::to_string(c.n_heads) + ")");
    }
    c.head_dim = c.dim / c.n_heads;
  }
  const uint32_t value_dim = read_u32(file, p + "attention.value_length", c.head_dim);
  if (value_dim != c.head_dim) {
    fail(file, p + "attention.value_length (" + std::to_string(value_dim) +
                   ") differs from the key length (" + std::to_string(c.head_dim) +
                   "); only equal lengths are supported");
  }
  if (uint64_t{c.n_heads} * c.head_dim > std::numeric_limits<uint32_t>::max()) {
    fail(file, p + "attention.head_count * head dim (" + std::to_string(uint64_t{c.n_heads} * c.head_dim) +
                   ") exceeds the limit 4294967295");
  }
  if (c.n_heads % c.n_kv_heads != 0) {
    fail(file, p + "attention.head_count (" + std::to_string(c.n_heads) + ") is not a multiple of " + p +
                   "attention.head_count_kv (" + std::to_string(c.n_kv_heads) + ")");
  }

  c.rope_dim = read_u32(file, p + "rope.dimension_count", c.head_dim);
  if (c.rope_dim == 0 || c.rope_dim % 2 != 0 || c.rope_dim > c.head_dim) {
    fail(file, p + "rope.dimension_count (" + std::to_string(c.rope_dim) +
                   ") must be even, at least 2 and at most the head dim (" + std::to_string(c.head_dim) +
                   ")");
  }

  c.rms_eps = read_f32(file, p + "attention.layer_norm_rms_epsilon");
  require_positive(file, p + "attention.layer_norm_rms_epsilon", c.rms_eps);
  c.rope_freq_base = read_f32(file, p + "rope.freq_base", 10000.0f);
  require_positive(file, p + "rope.freq_base", c.rope_freq_base);

  // As llama.cpp: the factor applies whatever the type says (a factor without a type means linear), a
  // factor of 0 means 1, and files older than rope.scaling.* store it as rope.scale_linear.
  const std::string type = file.get_string(p + "rope.scaling.type", "linear");
  if (type != "linear" && type != "none") {
    fail(file, p + "rope.scaling.type '" + type + "' is not supported (supported: none, linear)");
  }
  const std::string factor_key = file.find(p + "rope.scaling.factor") || !file.find(p + "rope.scale_linear")
                                     ? p + "rope.scaling.factor"
                                     : p + "rope.scale_linear";
  const float factor = read_f32(file, factor_key, 1.0f);
  if (factor < 0) fail(file, factor_key + " = " + std::to_string(factor) + " must not be negative");
  c.rope_scale = factor == 0 ? 1.0f : factor;
  c.rope_scaling = c.rope_scale == 1.0f ? RopeScaling::None : RopeScaling::Linear;

  c.tied_output = file.find_tensor("output.weight") == nullptr;
  read_family(file, c);
  if (const Features extra = c.features() & ~supported) {
    fail(file, "this " + c.arch + " model needs " + feature_names(extra) +
                   ", which this code path does not run (it runs: " +
                   (supported ? feature_names(supported) : std::string("plain llama")) + ")");
  }
  return c;
}

uint32_t LlamaConfig::attention_start(uint32_t l, uint32_t pos) const {
  if (layer_is_chunked(l)) return pos / attn_chunk_size * attn_chunk_size;
  if (sliding_window != 0 && pos >= sliding_window) return pos - sliding_window + 1;
  return 0;
}

double LlamaConfig::attention_temperature(uint32_t l, uint32_t pos) const {
  if (layer_uses_rope(l) || attn_temp_scale == 0) return 1.0;
  return 1.0 + attn_temp_scale * std::log(std::floor((pos + 1.0) / attn_temp_floor) + 1.0);
}

Features LlamaConfig::features() const {
  Features f = 0;
  if (attn_bias) f |= kAttnBias;
  if (qk_norm) f |= kQkNorm;
  if (rope_type == RopeType::Neox) f |= kNeoxRope;
  if (sliding_window) f |= kSlidingWindow;
  if (moe_layer_step) f |= kMoe;
  if (no_rope_layer_step) f |= kNoRopeLayers;
  if (attn_chunk_size) f |= kChunkedAttention;
  if (l2_qk_norm) f |= kL2QkNorm;
  if (attn_temp_scale != 0 && no_rope_layer_step) f |= kAttnTemperature;
  return f;
}

std::string feature_names(Features features) {
  static constexpr std::pair<Feature, const char*> kNames[] = {
      {kAttnBias, "attention biases"},
      {kQkNorm, "per-head q/k RMSNorm"},
      {kNeoxRope, "NEOX-style RoPE"},
      {kSlidingWindow, "sliding-window attention"},
      {kMoe, "mixture-of-experts layers"},
      {kNoRopeLayers, "NoPE layers"},
      {kChunkedAttention, "chunked attention"},
      {kL2QkNorm, "L2 q/k norm"},
      {kAttnTemperature, "attention temperature tuning"},
  };
  std::string s;
  for (auto [f, name] : kNames)
    if (features & f) s += (s.empty() ? "" : ", ") + std::string(name);
  return s;
}

LlamaWeights LlamaWeights::map(const GgufFile& file, const LlamaConfig& c) {
  LlamaWeights w;
  w.token_embd = require_weight(file, "token_embd.weight", {c.dim, c.n_vocab});
  w.output_norm = require_weight(file, "output_norm.weight", {c.dim}, true);
  w.output = c.tied_output ? w.token_embd : require_weight(file, "output.weight", {c.dim, c.n_vocab});
  w.rope_freqs = nullptr;
  if (file.find_tensor("rope_freqs.weight")) {
    w.rope_freqs = require_weight(file, "rope_freqs.weight", {c.rope_dim / 2}, true);
    w.rope_freq_factors.resize(c.rope_dim / 2);
    quant::dequantize_row(TensorType::F32, file.tensor_bytes(*w.rope_freqs).data(),
                          w.rope_freq_factors.data(), c.rope_dim / 2);
    for (size_t i = 0; i < w.rope_freq_factors.size(); ++i) {
      const float f = w.rope_freq_factors[i];
      if (!std::isfinite(f) || !(f > 0)) {
        fail(file, "rope_freqs.weight[" + std::to_string(i) + "] = " + std::to_string(f) +
                       " is not a positive finite frequency factor");
      }
    }
  }
  // Grown one layer at a time: a hostile block_count fails at the first missing tensor, not in an allocation.
  for (uint32_t l = 0; l < c.n_layers; ++l) {
    const std::string b = "blk." + std::to_string(l) + ".";
    LayerWeights lw{
        .attn_norm = require_weight(file, b + "attn_norm.weight", {c.dim}, true),
        .wq = require_weight(file, b + "attn_q.weight", {c.dim, c.q_dim()}),
        .wk = require_weight(file, b + "attn_k.weight", {c.dim, c.kv_dim()}),
        .wv = require_weight(file, b + "attn_v.weight", {c.dim, c.kv_dim()}),
        .wo = require_weight(file, b + "attn_output.weight", {c.q_dim(), c.dim}),
        .ffn_norm = require_weight(file, b + "ffn_norm.weight", {c.dim}, true),
        .ffn_gate = nullptr,
        .ffn_up = nullptr,
        .ffn_down = nullptr,
    };
    if (c.attn_bias) {
      lw.bq = require_weight(file, b + "attn_q.bias", {c.q_dim()}, true);
      lw.bk = require_weight(file, b + "attn_k.bias", {c.kv_dim()}, true);
      lw.bv = require_weight(file, b + "attn_v.bias", {c.kv_dim()}, true);
    }
    if (file.find_tensor(b + "attn_output.bias"))
      lw.bo = require_weight(file, b + "attn_output.bias", {c.dim}, true);
    if (c.qk_norm) {
      lw.attn_q_norm = require_weight(file, b + "attn_q_norm.weight", {c.head_dim}, true);
      lw.attn_k_norm = require_weight(file, b + "attn_k_norm.weight", {c.head_dim}, true);
    }
    if (c.layer_is_moe(l)) {
      lw.ffn_gate_inp = require_weight(file, b + "ffn_gate_inp.weight", {c.dim, c.n_expert});
      lw.ffn_gate_exps =
          require_weight(file, b + "ffn_gate_exps.weight", {c.dim, c.expert_ffn_dim, c.n_expert});
      lw.ffn_up_exps = require_weight(file, b + "ffn_up_exps.weight", {c.dim, c.expert_ffn_dim, c.n_expert});
      lw.ffn_down_exps =
          require_weight(file, b + "ffn_down_exps.weight", {c.expert_ffn_dim, c.dim, c.n_expert});
      if (c.shexp_ffn_dim) {
        lw.ffn_gate_shexp = require_weight(file, b + "ffn_gate_shexp.weight", {c.dim, c.shexp_ffn_dim});
        lw.ffn_up_shexp = require_weight(file, b + "ffn_up_shexp.weight", {c.dim, c.shexp_ffn_dim});
        lw.ffn_down_shexp = require_weight(file, b + "ffn_down_shexp.weight", {c.shexp_ffn_dim, c.dim});
      }
    } else {
      lw.ffn_gate = require_weight(file, b + "ffn_gate.weight", {c.dim, c.ffn_dim});
      lw.ffn_up = require_weight(file, b + "ffn_up.weight", {c.dim, c.ffn_dim});
      lw.ffn_down = require_weight(file, b + "ffn_down.weight", {c.ffn_dim, c.dim});
    }
    w.layers.push_back(lw);
  }
  return w;
}

std::span<const TensorType> supported_weight_types() {
  return kWeightTypes;
}

std::vector<float> rope_inv_freq(const LlamaConfig& config, std::span<const float> freq_factors) {
  const uint32_t pairs = config.rope_dim / 2;
  if (!freq_factors.empty() && freq_factors.size() != pairs) {
    fail_input("rope_inv_freq: " + std::to_string(freq_factors.size()) + " frequency factors for " +
               std::to_string(pairs) + " rotated pairs (rope_dim " + std::to_string(config.rope_dim) + ")");
  }
  std::vector<float> inv_freq(pairs);
  for (uint32_t i = 0; i < pairs; ++i) {
    const double factor = freq_factors.empty() ? 1.0 : freq_factors[i];
    inv_freq[i] =
        static_cast<float>(std::pow(static_cast<double>(config.rope_freq_base), -2.0 * i / config.rope_dim) /
                           factor / config.rope_scale);
  }
  return inv_freq;
}

}  // namespace wgllm::model
