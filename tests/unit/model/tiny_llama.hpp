// A small, valid llama GGUF built with GgufWriter from random weights, which tests then bend (drop a key,
// change a tensor's shape or type) before writing.
#pragma once

#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "gguf/gguf_file.hpp"
#include "gguf/gguf_writer.hpp"
#include "quant/codec.hpp"
#include "support/test_support.hpp"

namespace wgllm::test {

struct TinyLlamaShape {
  uint32_t dim = 32, n_layers = 2, n_heads = 4, n_kv_heads = 2, ffn_dim = 64, n_vocab = 48, context = 64;
  gguf::TensorType weight_type = gguf::TensorType::F32;
};

class TinyLlama {
 public:
  explicit TinyLlama(const TinyLlamaShape& s = {}, uint64_t salt = 0) : shape_(s), gen_(rng(salt)) {
    set_string("general.architecture", "llama");
    set_u32("llama.embedding_length", s.dim);
    set_u32("llama.block_count", s.n_layers);
    set_u32("llama.attention.head_count", s.n_heads);
    set_u32("llama.attention.head_count_kv", s.n_kv_heads);
    set_u32("llama.feed_forward_length", s.ffn_dim);
    set_u32("llama.context_length", s.context);
    set_f32("llama.attention.layer_norm_rms_epsilon", 1e-5f);
    const uint32_t head_dim = s.dim / s.n_heads;
    add("token_embd.weight", s.weight_type, {s.dim, s.n_vocab});
    add("output_norm.weight", gguf::TensorType::F32, {s.dim}, 1.0f);
    add("output.weight", s.weight_type, {s.dim, s.n_vocab});
    for (uint32_t l = 0; l < s.n_layers; ++l) {
      const std::string b = "blk." + std::to_string(l) + ".";
      add(b + "attn_norm.weight", gguf::TensorType::F32, {s.dim}, 1.0f);
      add(b + "attn_q.weight", s.weight_type, {s.dim, s.n_heads * head_dim});
      add(b + "attn_k.weight", s.weight_type, {s.dim, s.n_kv_heads * head_dim});
      add(b + "attn_v.weight", s.weight_type, {s.dim, s.n_kv_heads * head_dim});
      add(b + "attn_output.weight", s.weight_type, {s.n_heads * head_dim, s.dim});
      add(b + "ffn_norm.weight", gguf::TensorType::F32, {s.dim}, 1.0f);
      add(b + "ffn_gate.weight", s.weight_type, {s.dim, s.ffn_dim});
      add(b + "ffn_up.weight", s.weight_type, {s.dim, s.ffn_dim});
      add(b + "ffn_down.weight", s.weight_type, {s.ffn_dim, s.dim});
    }
  }

  void set_u32(const std::string& key, uint32_t v) {
    set(key, [key, v](gguf::GgufWriter& w) { w.set_uint32(key, v); });
  }
  void set_f32(const std::string& key, float v) {
    set(key, [key, v](gguf::GgufWriter& w) { w.set_float32(key, v); });
  }
  void set_bool(const std::string& key, bool v) {
    set(key, [key, v](gguf::GgufWriter& w) { w.set_bool(key, v); });
  }
  void set_string(const std::string& key, const std::string& v) {
    set(key, [key, v](gguf::GgufWriter& w) { w.set_string(key, v); });
  }
  void set_strings(const std::string& key, const std::vector<std::string>& v) {
    set(key, [key, v](gguf::GgufWriter& w) { w.set_strings(key, v); });
  }
  void erase_key(const std::string& key) {
    std::erase_if(keys_, [&](const auto& k) { return k.first == key; });
  }

  // Adds (or replaces) a tensor: random N(mean, 0.3^2) values by default, stored as `type`.
  void add(const std::string& name, gguf::TensorType type, std::vector<uint64_t> dims, float mean = 0.0f) {
    uint64_t n = 1;
    for (uint64_t d : dims) n *= d;
    std::normal_distribution<float> dist(mean, 0.3f);
    std::vector<float> values(n);
    for (float& v : values) v = dist(gen_);
    add_values(name, type, std::move(dims), values);
  }
  void add_values(const std::string& name, gguf::TensorType type, std::vector<uint64_t> dims,
                  const std::vector<float>& values) {
    erase_tensor(name);
    const int64_t row = static_cast<int64_t>(dims[0]);
    tensors_.push_back(
        {name, type, std::move(dims),
         quant::quantize_rows(type, values.data(), static_cast<int64_t>(values.size()) / row, row)});
  }
  void erase_tensor(const std::string& name) {
    std::erase_if(tensors_, [&](const Tensor& t) { return t.name == name; });
  }
  // The stored bytes of a tensor added before (to copy one tensor into another).
  const std::vector<uint8_t>& bytes(const std::string& name) const {
    for (const Tensor& t : tensors_) {
      if (t.name == name) return t.bytes;
    }
    throw std::runtime_error("no tensor " + name);
  }
  void add_bytes(const std::string& name, gguf::TensorType type, std::vector<uint64_t> dims,
                 std::vector<uint8_t> bytes) {
    erase_tensor(name);
    tensors_.push_back({name, type, std::move(dims), std::move(bytes)});
  }

  std::string write(const std::string& file_name) const {
    gguf::GgufWriter w;
    for (const auto& [key, setter] : keys_) setter(w);
    for (const Tensor& t : tensors_) w.add_tensor(t.name, t.type, t.dims, t.bytes);
    const std::string path = temp_dir() + "/" + file_name;
    w.write(path);
    return path;
  }
  std::unique_ptr<gguf::GgufFile> open(const std::string& file_name) const {
    return gguf::GgufFile::open(write(file_name));
  }

  const TinyLlamaShape& shape() const { return shape_; }

 private:
  struct Tensor {
    std::string name;
    gguf::TensorType type;
    std::vector<uint64_t> dims;
    std::vector<uint8_t> bytes;
  };
  void set(const std::string& key, std::function<void(gguf::GgufWriter&)> setter) {
    for (auto& k : keys_) {
      if (k.first == key) {
        k.second = std::move(setter);
        return;
      }
    }
    keys_.emplace_back(key, std::move(setter));
  }

  TinyLlamaShape shape_;
  std::mt19937_64 gen_;
  std::vector<std::pair<std::string, std::function<void(gguf::GgufWriter&)>>> keys_;
  std::vector<Tensor> tensors_;
};

}  // namespace wgllm::test
