// Which KV-cache slot a new sequence takes, and how much of its prompt that slot's cache already holds:
// the rule runtime::Batcher and mesh::Pipeline share (Generator::start), so that one device and a mesh
// reuse the same prefixes.
//
// The free slot sharing the longest prefix with the prompt, if that prefix is at least half of the prompt
// or of what the slot holds (a follow-up turn, a long new message after a conversation). A shorter share
// (BOS, a common opening) is not worth another conversation's cache: every prompt shares BOS, so without
// this rule an unused slot would never be taken while a used one is free. Otherwise, and among equal
// shares, the least recently used free slot (unused ones first), whose cache is the least likely to be
// asked for again; among slots used equally recently, the first. The prompt's last token always runs (its
// logits sample the first new token), so at most all but it is reused.
#pragma once

#include <cstdint>
#include <optional>
#include <span>

namespace wgllm::runtime {

struct SlotCandidate {
  bool free = true;
  std::span<const int32_t> cached;  // the tokens whose K/V the slot's cache holds, positions 0..
  uint64_t last_used = 0;           // larger: started or finished more recently; 0: never used
};

struct SlotChoice {
  uint32_t slot;  // index into the candidates
  // The prefix the chosen slot's cache shares with the prompt (at most all but its last token), also when
  // it was too short to decide the choice: the cache beyond it is overwritten, the prefix still holds.
  uint32_t reused;
};

// nullopt when no slot is free. Throws Error(BadInput) for an empty prompt.
std::optional<SlotChoice> choose_slot(std::span<const SlotCandidate> slots, std::span<const int32_t> prompt);

}  // namespace wgllm::runtime
