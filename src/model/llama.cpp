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

constexpr const char* kSupportedArchs[] = {"llama"};

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

}  // namespace

LlamaConfig LlamaConfig::from_gguf(const GgufFile& file) {
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
  return c;
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
    w.layers.push_back(LayerWeights{
        .attn_norm = require_weight(file, b + "attn_norm.weight", {c.dim}, true),
        .wq = require_weight(file, b + "attn_q.weight", {c.dim, c.q_dim()}),
        .wk = require_weight(file, b + "attn_k.weight", {c.dim, c.kv_dim()}),
        .wv = require_weight(file, b + "attn_v.weight", {c.dim, c.kv_dim()}),
        .wo = require_weight(file, b + "attn_output.weight", {c.q_dim(), c.dim}),
        .ffn_norm = require_weight(file, b + "ffn_norm.weight", {c.dim}, true),
        .ffn_gate = require_weight(file, b + "ffn_gate.weight", {c.dim, c.ffn_dim}),
        .ffn_up = require_weight(file, b + "ffn_up.weight", {c.dim, c.ffn_dim}),
        .ffn_down = require_weight(file, b + "ffn_down.weight", {c.ffn_dim, c.dim}),
    });
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
