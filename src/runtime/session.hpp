// A step-driven generation session over one sequence (KV-cache slot 0 of its Forward). Each call records
// its work, submits it, and returns a ticket for the 4-byte sampled id (or the logits); it never waits. The
// prompt runs in passes of up to max_batch tokens, one submit each. The sampled id stays on the GPU for the
// next step's embedding, so a native host may call step() again before the previous ticket lands (the CPU
// encodes step t+1 while step t runs); a browser host calls it when the read-back promise resolves.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "gpu/device.hpp"
#include "runtime/forward.hpp"
#include "runtime/step_params.hpp"

namespace wgllm::runtime {

class Session {
 public:
  Session(Forward& forward, const SamplingParams& sampling);

  // Runs the prompt (at least one token) and samples the first new token. Throws Error(BadInput) when the
  // prompt does not fit the context.
  gpu::ReadTicket prefill(std::span<const int32_t> prompt);
  // Runs the last sampled token and samples the next. Throws Error(BadInput) when the context is full.
  gpu::ReadTicket step();
  // Runs one token without sampling; the ticket delivers that position's logits [n_vocab] f32.
  gpu::ReadTicket evaluate(int32_t token);
  int32_t id_of(gpu::ReadTicket ticket);  // waits (native hosts only)

  uint32_t position() const { return pos_; }  // tokens in the KV cache once the recorded work has run
  bool context_full() const { return pos_ >= forward_.n_ctx(); }

 private:
  gpu::ReadTicket read_sampled();
  Forward& forward_;
  SamplingParams sampling_;
  uint32_t pos_ = 0;
  uint32_t sampled_ = 0;
};

}  // namespace wgllm::runtime
