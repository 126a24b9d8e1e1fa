// The seam between what generates tokens and what serves them: runtime::Batcher implements it on one
// device, the mesh implements it over pipeline stages on several ranks, and the server (and the CLI) drive
// it. One driver thread calls it; it is not thread-safe.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "runtime/step_params.hpp"

namespace wgllm::runtime {

class Generator {
 public:
  virtual ~Generator() = default;

  virtual uint32_t slots() const = 0;         // sequences that can be in flight at once
  virtual uint32_t context_size() const = 0;  // positions per sequence (prompt and generated tokens)
  virtual uint32_t vocab_size() const = 0;

  struct Started {
    uint32_t slot;
    uint32_t cached_tokens;  // prompt tokens whose KV cache was reused instead of recomputed
  };
  // Starts a sequence in a free slot, or returns nullopt when every slot is busy. The slot chosen is the
  // free one whose cached tokens share the longest prefix with `prompt` (when that is a real share: at
  // least half of the prompt or of the slot's cache; else the least recently used); that prefix is not
  // recomputed.
  // Throws Error(BadInput) when the prompt is empty, holds an id outside the vocabulary, or leaves no room
  // in the context for a generated token.
  virtual std::optional<Started> start(std::span<const int32_t> prompt, const SamplingParams& sampling) = 0;
  // Ends a sequence (done, stopped, or its client gone). Its KV cache stays for a later prompt to reuse.
  virtual void finish(uint32_t slot) = 0;

  struct Sampled {
    uint32_t slot;
    int32_t token;
    bool context_full;  // the sequence can take no further token: the driver must finish it
  };
  // One step for every started sequence: the next prompt chunk of those still prefilling, one token of
  // those decoding, recorded into one submit. Returns the token each sequence sampled in this step (a
  // sequence samples its first token in the step that completes its prompt). Natively it blocks until the
  // ids are read back. A sequence's arithmetic does not depend on which others share the step.
  virtual std::vector<Sampled> step() = 0;
  virtual bool busy() const = 0;  // some sequence is started and not finished
  // Why the generator can never step again (a mesh that lost a stage), or nullopt while it may: the driver
  // refuses new requests instead of starting sequences that could only fail.
  virtual std::optional<std::string> broken() const { return std::nullopt; }
};

}  // namespace wgllm::runtime
