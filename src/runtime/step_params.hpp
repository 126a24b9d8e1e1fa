// The per-step uniform buffer, mirrored byte for byte by src/kernels/step_params.wgsl.
#pragma once

#include <cstdint>

namespace wgllm::runtime {

struct StepParams {
  uint32_t pos = 0;
  uint32_t n_ctx = 0;
  uint32_t seed = 0;
  uint32_t sample_index = 0;
  float temperature = 0;
  uint32_t top_k = 0;
  float top_p = 1;
  float min_p = 0;
  float repeat_penalty = 1;
  uint32_t penalty_last_n = 0;
  uint32_t pad0 = 0, pad1 = 0;
};
static_assert(sizeof(StepParams) == 48, "StepParams must match step_params.wgsl");

// Sampling settings; defaults as llama.cpp's (CONTRACTS.md).
struct SamplingParams {
  float temperature = 0.8f;  // <= 0: greedy
  int32_t top_k = 40;        // <= 0: off
  float top_p = 0.95f;       // >= 1: off
  float min_p = 0.05f;       // <= 0: off
  float repeat_penalty = 1.0f;
  int32_t penalty_last_n = 64;
  uint32_t seed = 0;
};

// The most recent tokens the repetition penalty can look at (the sampler's history ring).
constexpr uint32_t kPenaltyHistory = 256;

}  // namespace wgllm::runtime
