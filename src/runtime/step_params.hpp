// Sampling settings, and the per-pass metadata the kernels read (mirrored byte for byte by
// src/kernels/step_params.wgsl).
#pragma once

#include <cstdint>

namespace wgllm::runtime {

// Sampling settings; defaults as llama.cpp's (CONTRACTS.md). The penalties look at the sequence's last
// penalty_last_n tokens (prompt and generated), as llama.cpp's penalties sampler does.
struct SamplingParams {
  float temperature = 0.8f;  // <= 0: greedy
  int32_t top_k = 40;        // <= 0: off
  float top_p = 0.95f;       // >= 1: off
  float min_p = 0.05f;       // <= 0: off
  float repeat_penalty = 1.0f;
  int32_t penalty_last_n = 64;
  uint32_t seed = 0;
  // OpenAI's: a token seen n > 0 times in the window loses presence_penalty + n * frequency_penalty.
  float presence_penalty = 0.0f;
  float frequency_penalty = 0.0f;
};

// The most recent tokens the penalties can look at (each slot's history ring on the GPU).
constexpr uint32_t kPenaltyHistory = 256;

// One token of a pass as the kernels read it.
struct GpuToken {
  uint32_t slot = 0;  // KV-cache slot (sequence)
  uint32_t pos = 0;   // position in the slot
  uint32_t id = 0;    // token id, unless flags has kFromSampler
  uint32_t flags = 0;
};
static_assert(sizeof(GpuToken) == 16, "GpuToken must match step_params.wgsl's Token");
constexpr uint32_t kFromSampler = 1;  // the id is the one the sampler last left for the slot

// One logits row of a pass: which token it belongs to, and how it is sampled.
struct GpuRow {
  uint32_t token = 0;  // index of the token in the pass
  uint32_t slot = 0;
  uint32_t seed = 0;
  uint32_t sample_index = 0;  // tokens this sequence has sampled before: the RNG stream position
  float temperature = 0;
  uint32_t top_k = 0;
  float top_p = 1;
  float min_p = 0;
  float repeat_penalty = 1;
  uint32_t penalty_last_n = 0;
  float presence_penalty = 0;
  float frequency_penalty = 0;
};
static_assert(sizeof(GpuRow) == 48, "GpuRow must match step_params.wgsl's Row");

// The settings of one row as the sampler reads them.
inline GpuRow gpu_row(const SamplingParams& s, uint32_t token, uint32_t slot, uint32_t sample_index) {
  GpuRow r;
  r.token = token;
  r.slot = slot;
  r.seed = s.seed;
  r.sample_index = sample_index;
  r.temperature = s.temperature;
  r.top_k = s.top_k > 0 ? static_cast<uint32_t>(s.top_k) : 0;
  r.top_p = s.top_p;
  r.min_p = s.min_p;
  r.repeat_penalty = s.repeat_penalty;
  r.penalty_last_n = s.penalty_last_n <= 0 ? 0 : static_cast<uint32_t>(s.penalty_last_n);
  if (r.penalty_last_n > kPenaltyHistory) r.penalty_last_n = kPenaltyHistory;
  r.presence_penalty = s.presence_penalty;
  r.frequency_penalty = s.frequency_penalty;
  return r;
}

}  // namespace wgllm::runtime
