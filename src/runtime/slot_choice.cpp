#include "runtime/slot_choice.hpp"

#include <algorithm>

#include "core/error.hpp"

namespace wgllm::runtime {

std::optional<SlotChoice> choose_slot(std::span<const SlotCandidate> slots, std::span<const int32_t> prompt) {
  if (prompt.empty()) fail_input("the prompt has no tokens");
  auto shared = [&](const SlotCandidate& s) -> size_t {
    const size_t n = std::min(s.cached.size(), prompt.size() - 1);
    return std::mismatch(s.cached.begin(), s.cached.begin() + n, prompt.begin()).first - s.cached.begin();
  };
  const SlotCandidate* best = nullptr;
  size_t best_counted = 0;
  for (const SlotCandidate& s : slots) {
    if (!s.free) continue;
    const size_t common = shared(s);
    const size_t counted =
        common > 0 && (2 * common >= prompt.size() || 2 * common >= s.cached.size()) ? common : 0;
    if (!best || counted > best_counted || (counted == best_counted && s.last_used < best->last_used)) {
      best = &s;
      best_counted = counted;
    }
  }
  if (!best) return std::nullopt;
  return SlotChoice{static_cast<uint32_t>(best - slots.data()), static_cast<uint32_t>(shared(*best))};
}

}  // namespace wgllm::runtime
