#include "runtime/memory_plan.hpp"

#include <algorithm>
#include <cstdio>

#include "core/error.hpp"
#include "kernels/matmul.hpp"
#include "kernels/sample.hpp"
#include "runtime/forward.hpp"

namespace wgllm::runtime {

namespace {

std::string bytes_text(uint64_t n) {
  char buf[64];
  const bool gib = n >= (1ull << 30);
  std::snprintf(buf, sizeof buf, gib ? "%.2f GiB (%llu bytes)" : "%.1f MiB (%llu bytes)",
                double(n) / double(gib ? 1ull << 30 : 1ull << 20), static_cast<unsigned long long>(n));
  return buf;
}

}  // namespace

AttentionSpans attention_spans(uint32_t n_ctx) {
  // 8B at depth 4096: 155 tok/s with spans of 256, 165 with 128 (H200, docs/perf.md); depth 0 the same.
  constexpr uint32_t kTile = 128, kMaxSpans = 64;
  const uint32_t tiles = (n_ctx + kTile - 1) / kTile;
  const uint32_t span = kTile * ((tiles + kMaxSpans - 1) / kMaxSpans);
  return {span, (n_ctx + span - 1) / span};
}

uint64_t attention_partials_bytes(const model::LlamaConfig& c, uint32_t n_ctx, uint32_t tokens) {
  const uint32_t spans = attention_spans(n_ctx).count;
  return spans > 1 ? uint64_t(tokens) * c.n_heads * spans * (c.head_dim + 2) * 4 : 0;
}

MemoryPlan plan_memory(const gguf::GgufFile& file, const model::LlamaConfig& c, const MemoryShape& shape) {
  MemoryPlan plan;
  plan.shape = shape;
  plan.weights = file.tensor_data_bytes();

  const uint64_t cache_buffer = uint64_t(shape.n_seq) * shape.n_ctx * c.kv_dim() * 4;  // one layer's K (or V)
  plan.kv_cache = 2ull * c.n_layers * cache_buffer;

  // f32 per token of a pass: x, xb, q|k|v, attention out, gate|up (Forward rounds the batch up to its
  // widest tile, which this leaves out); logits rows; the cos/sin table [n_ctx, rope_dim / 2, 2] and, with
  // NoPE layers, their q factors [n_ctx].
  // Mixture of experts: gate|up holds each chosen expert's (or the shared expert's) instead, and a token
  // adds the router's logits, its experts' outputs and, per MoE layer, its route (expert, weight).
  const uint64_t ffn_width = std::max({c.ffn_dim, c.n_expert_used * c.expert_ffn_dim, c.shexp_ffn_dim});
  uint64_t moe_layers = 0;
  for (uint32_t l = 0; l < c.n_layers; ++l) moe_layers += c.layer_is_moe(l) ? 1 : 0;
  const uint64_t moe = moe_layers ? c.n_expert + uint64_t(c.n_expert_used) * (c.dim + 2 * moe_layers) : 0;
  const uint64_t per_token = 2ull * c.dim + c.q_dim() + 2ull * c.kv_dim() + c.q_dim() + 2 * ffn_width + moe;
  const uint64_t logits = uint64_t(shape.max_logits) * c.n_vocab * 4;
  const uint64_t rope = uint64_t(shape.n_ctx) * c.rope_dim * 4;
  const uint64_t q_scale = c.no_rope_layer_step ? uint64_t(shape.n_ctx) * 4 : 0;
  const uint64_t partials = attention_partials_bytes(c, shape.n_ctx, Forward::kMaxWidth);
  // The sampler's per-part candidates of each sampled row (one per slot at most): 2 KiB or a quarter of the
  // row's logits at most, so never the largest buffer.
  const uint64_t sampler = kernels::sample_kernels(c.n_vocab, kPenaltyHistory)
                               .partials_bytes(std::min(shape.n_seq, shape.max_logits));
  // The int8 activations of GEMV passes and prefill's GEMMs: a pass's rows, quantized per 32 elements.
  const uint32_t widest = std::max({c.dim, c.q_dim(), c.ffn_dim, c.shexp_ffn_dim});
  const uint32_t act_rows = std::max(shape.max_batch, shape.max_logits);
  const uint64_t act_codes =
      kernels::act_codes_bytes(act_rows, widest) + kernels::act_scales_bytes(act_rows, widest);
  plan.activations =
      uint64_t(shape.max_batch) * per_token * 4 + logits + rope + q_scale + partials + sampler + act_codes;
  plan.largest_buffer =
      std::max({cache_buffer, logits, rope, partials, uint64_t(shape.max_batch) * 2 * ffn_width * 4});
  return plan;
}

void check_memory(const MemoryPlan& plan, const DeviceMemory& device, const std::string& what) {
  const MemoryShape& s = plan.shape;
  const std::string reduce =
      ": use a smaller model (or a smaller quantization), a shorter context or fewer "
      "parallel sequences (now " +
      std::to_string(s.n_ctx) + " positions x " + std::to_string(s.n_seq) + " sequences)";
  if (device.memory_bytes && plan.total() > device.memory_bytes) {
    fail_input(what + ": the model needs " + bytes_text(plan.total()) + " of GPU memory (weights " +
               bytes_text(plan.weights) + ", KV cache " + bytes_text(plan.kv_cache) + ", activations " +
               bytes_text(plan.activations) + ") but the device has " + bytes_text(device.memory_bytes) +
               reduce);
  }
  if (device.max_buffer_size && plan.largest_buffer > device.max_buffer_size) {
    fail_input(what + ": one GPU buffer of the model needs " + bytes_text(plan.largest_buffer) +
               " but the device's largest buffer (maxBufferSize) is " + bytes_text(device.max_buffer_size) +
               reduce);
  }
}

}  // namespace wgllm::runtime
