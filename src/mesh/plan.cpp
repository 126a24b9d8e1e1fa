#include "mesh/plan.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <numeric>

#include "core/error.hpp"

namespace wgllm::mesh {

namespace {

std::string layers_text(const Stage& s) {
  return s.last_layer - s.first_layer == 1
             ? "layer " + std::to_string(s.first_layer)
             : "layers " + std::to_string(s.first_layer) + "-" + std::to_string(s.last_layer - 1);
}

std::string size_text(uint64_t bytes) {
  char buf[32];
  if (bytes >= (uint64_t(1) << 30))
    std::snprintf(buf, sizeof buf, "%.2f GiB", bytes / 1073741824.0);
  else
    std::snprintf(buf, sizeof buf, "%.2f MiB", bytes / 1048576.0);
  return buf;
}

}  // namespace

ModelSizes model_sizes(const gguf::GgufFile& file, const model::LlamaConfig& config, uint32_t n_ctx,
                       uint32_t n_seq) {
  ModelSizes s;
  s.layer_bytes.assign(config.n_layers, 0);
  for (const gguf::TensorInfo& t : file.tensors()) {
    if (t.name.starts_with("blk.")) {
      const size_t dot = t.name.find('.', 4);
      const uint64_t layer = std::strtoull(t.name.c_str() + 4, nullptr, 10);
      if (dot == std::string::npos || layer >= config.n_layers)
        fail_input(file.path() + ": tensor " + t.name + " names no layer below " +
                   std::to_string(config.n_layers));
      s.layer_bytes[layer] += t.n_bytes;
    } else if (t.name == "token_embd.weight") {
      s.embedding_bytes += t.n_bytes;
      if (config.tied_output) s.head_bytes += t.n_bytes;
    } else if (t.name.starts_with("output")) {
      s.head_bytes += t.n_bytes;
    } else {
      s.shared_bytes += t.n_bytes;
    }
  }
  s.kv_bytes_per_layer = 2ull * n_seq * n_ctx * config.kv_dim() * 4;
  return s;
}

std::vector<Stage> plan_stages(const ModelSizes& sizes, std::span<const Peer> peers,
                               std::span<const uint32_t> split) {
  const auto n_layers = static_cast<uint32_t>(sizes.layer_bytes.size());
  const auto n = static_cast<uint32_t>(peers.size());
  if (n == 0) fail_input("the mesh has no stages");
  if (n > n_layers)
    fail_input("the mesh has " + std::to_string(n) + " stages but the model only " +
               std::to_string(n_layers) + " layers: use at most one stage per layer");

  std::vector<uint32_t> counts;  // [n] layers per stage
  if (!split.empty()) {
    if (split.size() != n)
      fail_input("--split gives " + std::to_string(split.size()) + " stages but the mesh has " +
                 std::to_string(n));
    const uint64_t total = std::accumulate(split.begin(), split.end(), uint64_t(0));
    if (total != n_layers)
      fail_input("--split covers " + std::to_string(total) + " layers but the model has " +
                 std::to_string(n_layers));
    counts.assign(split.begin(), split.end());
  } else {
    // Cumulative byte targets from the memory shares; each boundary goes where the bytes so far come
    // closest to the target, leaving at least one layer for every later stage.
    const bool known =
        std::all_of(peers.begin(), peers.end(), [](const Peer& p) { return p.memory_bytes > 0; });
    double memory_total = 0;
    for (const Peer& p : peers) memory_total += known ? double(p.memory_bytes) : 1.0;
    const double per_layer_kv = double(sizes.kv_bytes_per_layer);
    double total = double(sizes.embedding_bytes + sizes.head_bytes);
    for (uint64_t b : sizes.layer_bytes) total += double(b) + per_layer_kv;
    double share = 0, cumulative = double(sizes.embedding_bytes);
    uint32_t layer = 0;
    for (uint32_t i = 0; i + 1 < n; ++i) {
      share += known ? double(peers[i].memory_bytes) : 1.0;
      const double target = total * share / memory_total;
      const uint32_t first = layer;
      const uint32_t last_allowed = n_layers - (n - 1 - i);  // this stage ends at or before it
      // Take layer `layer` while doing so brings the cumulative bytes closer to the target.
      do {
        cumulative += double(sizes.layer_bytes[layer]) + per_layer_kv;
        ++layer;
      } while (layer < last_allowed && std::abs(cumulative + double(sizes.layer_bytes[layer]) + per_layer_kv -
                                                target) < std::abs(cumulative - target));
      counts.push_back(layer - first);
    }
    counts.push_back(n_layers - layer);
  }

  std::vector<Stage> stages(n);
  uint32_t layer = 0;
  for (uint32_t i = 0; i < n; ++i) {
    if (counts[i] == 0) fail_input("--split gives stage " + std::to_string(i) + " no layers");
    Stage& s = stages[i];
    s.first_layer = layer;
    s.last_layer = layer + counts[i];
    layer = s.last_layer;
    s.weight_bytes = sizes.shared_bytes;
    for (uint32_t l = s.first_layer; l < s.last_layer; ++l) s.weight_bytes += sizes.layer_bytes[l];
    if (i == 0) s.weight_bytes += sizes.embedding_bytes;
    if (i + 1 == n) s.weight_bytes += sizes.head_bytes;
    s.kv_bytes = uint64_t(counts[i]) * sizes.kv_bytes_per_layer;
    const Peer& p = peers[i];
    if (p.memory_bytes > 0 && s.bytes() > p.memory_bytes)
      fail_input("stage " + std::to_string(i) + " (" + p.where + ", " + p.device + ") needs " +
                 size_text(s.bytes()) + " for " + layers_text(s) + " but its device has " +
                 size_text(p.memory_bytes) +
                 ": add ranks, move layers with --split, or shrink --ctx-size/--parallel");
  }
  return stages;
}

std::vector<uint32_t> parse_split(const std::string& text) {
  std::vector<uint32_t> out;
  size_t at = 0;
  for (;;) {
    const size_t comma = text.find(',', at);
    const std::string item = text.substr(at, comma == std::string::npos ? std::string::npos : comma - at);
    const bool digits =
        !item.empty() && item.size() <= 9 && item.find_first_not_of("0123456789") == std::string::npos;
    if (!digits || std::stoul(item) == 0)
      fail_input("--split " + text + ": expected layer counts like 10,6 (positive integers), got '" + item +
                 "'");
    out.push_back(static_cast<uint32_t>(std::stoul(item)));
    if (comma == std::string::npos) return out;
    at = comma + 1;
  }
}

std::string describe_plan(std::span<const Stage> stages, std::span<const Peer> peers,
                          const std::string& model, const model::LlamaConfig& config) {
  std::string out = "mesh: " + std::to_string(stages.size()) + (stages.size() == 1 ? " stage" : " stages") +
                    " for " + model + " (" + std::to_string(config.n_layers) + " layers, dim " +
                    std::to_string(config.dim) + ")\n";
  for (size_t i = 0; i < stages.size(); ++i) {
    const Stage& s = stages[i];
    const Peer& p = peers[i];
    std::string parts = layers_text(s);
    if (i == 0) parts += " + embeddings";
    if (i + 1 == stages.size()) parts += " + output";
    out += "  stage " + std::to_string(i) + ": " + p.where + ", " + p.device + " (" + p.backend +
           "): " + parts + ", " + size_text(s.weight_bytes) + " weights + " + size_text(s.kv_bytes) +
           " KV cache";
    out += p.memory_bytes > 0 ? " of " + size_text(p.memory_bytes) + "\n" : " (device memory unknown)\n";
  }
  return out;
}

}  // namespace wgllm::mesh
