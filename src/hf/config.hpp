// A Hugging Face model's config.json, in both dialects that exist in the wild:
//  - transformers 4.x (as published models have it): rope_theta, rope_scaling {type|rope_type, factor, ...},
//    partial_rotary_factor at the top level;
//  - transformers 5.x (as 5.17 writes it): rope_parameters {rope_type, rope_theta, factor, ...} (or one such
//    object per layer type), layer_types, and per-architecture lists such as no_rope_layers.
// Multimodal checkpoints keep the language model's keys under text_config; the getters read those.
// Every problem is an Error(BadInput) naming the file and the key.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace wgllm::hf {

// The rotary embedding as transformers computes it (modeling_rope_utils.py).
struct Rope {
  std::string type = "default";  // default, linear, llama3, ... (as written; "type" and "rope_type" alike)
  double theta = 10000;
  double factor = 1;                                       // linear and llama3
  double low_freq_factor = 1, high_freq_factor = 4;        // llama3
  std::optional<double> original_max_position_embeddings;  // llama3 (required there)
  double partial_rotary_factor = 1;                        // the fraction of each head that rotates
};

class Config {
 public:
  // Reads `path` (a config.json). Throws Error(BadInput) when it is not a JSON object.
  static Config read(const std::string& path);

  const std::string& path() const { return path_; }
  // architectures[0] (e.g. "LlamaForCausalLM"); required.
  std::string architecture() const;
  std::string model_type() const;  // "" when absent

  // The language model's keys (text_config when present). A key whose value is null counts as absent.
  bool has(const std::string& key) const;
  uint32_t u32(const std::string& key) const;  // required; a non-negative integer below 2^32
  uint32_t u32(const std::string& key, uint32_t def) const;
  double number(const std::string& key) const;
  double number(const std::string& key, double def) const;
  bool boolean(const std::string& key, bool def) const;
  std::string string(const std::string& key, const std::string& def) const;
  std::vector<int64_t> ints(const std::string& key) const;  // [] when absent
  std::vector<std::string> strings(const std::string& key) const;

  // rope_parameters (5.x; with per-layer-type objects, the "full_attention" one) or rope_theta +
  // rope_scaling (4.x).
  Rope rope() const;

  [[noreturn]] void fail(const std::string& key, const std::string& problem) const;

 private:
  const nlohmann::json& text() const { return nested_ ? root_["text_config"] : root_; }
  const nlohmann::json* find(const std::string& key) const;
  const nlohmann::json& require(const std::string& key) const;
  Rope rope_from(const nlohmann::json& params, const std::string& where) const;

  std::string path_;
  nlohmann::json root_;
  bool nested_ = false;  // the keys are under text_config
};

}  // namespace wgllm::hf
