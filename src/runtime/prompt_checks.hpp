// The checks every way of running tokens (Session, Batcher, the mesh's Pipeline) makes before recording
// anything: one wording of each error, whoever finds it.
#pragma once

#include <cstdint>
#include <span>

namespace wgllm::runtime {

// Throws Error(BadInput) naming the first id outside [0, n_vocab).
void check_token_ids(std::span<const int32_t> ids, uint32_t n_vocab);

// Generator::start's contract: throws Error(BadInput) when the prompt is empty, leaves no room in a context
// of n_ctx positions for a generated token, or holds an id outside the vocabulary.
void check_prompt(std::span<const int32_t> prompt, uint32_t n_ctx, uint32_t n_vocab);

}  // namespace wgllm::runtime
