// runtime::Generator on one device: continuous batching over the KV-cache slots of a Forward.
// - start() takes the free slot whose cached tokens share the longest prefix with the prompt, if at least
//   half of the prompt or of the slot's cache (else the least recently used free slot), and skips that
//   prefix (at least the prompt's last token is computed: its logits sample the first new token).
// - step() records at most two passes into one submit: the next prompt chunk (up to max_batch tokens) of
//   the earliest-started sequence still prefilling, and one token for every decoding sequence; then it
//   reads back the sampled ids of all slots at once (4 bytes per slot) and waits. Prefill passes never
//   mix sequences and decode passes hold only decode tokens, so a sequence's arithmetic is the same
//   whatever else runs (the kernels are batch-invariant). One prompt chunk per step bounds the time a
//   step takes, so decoding sequences keep their pace while a long prompt comes in.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "runtime/forward.hpp"
#include "runtime/generator.hpp"

namespace wgllm::runtime {

class Batcher final : public Generator {
 public:
  explicit Batcher(Forward& forward);

  uint32_t slots() const override { return static_cast<uint32_t>(slots_.size()); }
  uint32_t context_size() const override { return forward_.n_ctx(); }
  uint32_t vocab_size() const override { return forward_.config().n_vocab; }
  std::optional<Started> start(std::span<const int32_t> prompt, const SamplingParams& sampling) override;
  void finish(uint32_t slot) override;
  std::vector<Sampled> step() override;
  bool busy() const override;

 private:
  enum class State : uint8_t { Free, Prefilling, Decoding };
  struct Slot {
    State state = State::Free;
    std::vector<int32_t> cached;  // the tokens whose K/V this slot's cache holds, positions 0..
    std::vector<int32_t> prompt;  // while prefilling
    SamplingParams sampling;
    uint32_t sampled = 0;  // tokens sampled so far: the RNG stream position
    int32_t last = 0;      // the last sampled token (decoding): the next one to run
    uint64_t order = 0;    // when it started, or when it was last used: start()'s tie break
  };
  Forward& forward_;
  std::vector<Slot> slots_;
  uint64_t clock_ = 0;
};

}  // namespace wgllm::runtime
